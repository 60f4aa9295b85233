"""The training loop's strategies: SingleProcess and DataParallel speak the same
interface, and SingleProcess steps like one process with the whole batch."""

import inspect

import numpy as np
import pytest

from fastcnn.distributed import DataParallel
from fastcnn.training import SingleProcess, make_strategy

#: What fastcnn.training.loop asks of a strategy.
METHODS = ["callbacks_for_rank", "num_steps", "shard", "step_rows", "train_batch",
           "agree", "average_buffers", "evaluate"]
ATTRIBUTES = ["is_root", "loss_checked_after_step"]


@pytest.mark.parametrize("name", METHODS)
def test_both_strategies_have_each_method_with_the_same_parameters(name):
    ours = inspect.signature(getattr(SingleProcess, name))
    theirs = inspect.signature(getattr(DataParallel, name))
    assert list(ours.parameters) == list(theirs.parameters)


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_both_strategies_have_each_attribute(name):
    assert hasattr(SingleProcess, name) and hasattr(DataParallel, name)
    assert SingleProcess.loss_checked_after_step is False
    assert DataParallel.loss_checked_after_step is True


@pytest.mark.parametrize("n, batch", [(1, 1), (7, 3), (64, 8), (65, 8), (5, 32)])
def test_single_process_steps_cover_every_row_once(n, batch):
    strategy = SingleProcess(model=None, seed=0)
    order = np.random.default_rng(n).permutation(n)
    assert strategy.shard(order) is order
    steps = strategy.num_steps(n, batch)
    sizes = [strategy.step_rows(s, n, batch) for s in range(steps)]
    assert sizes == [len(order[s * batch : (s + 1) * batch]) for s in range(steps)]
    assert sum(sizes) == n and all(sizes)
    assert strategy.agree(True) is True and strategy.agree(False) is False
    callbacks = [object(), object()]
    assert strategy.callbacks_for_rank(callbacks) == callbacks


@pytest.mark.parametrize("distributed", [False, None, 0])
def test_no_distribution_is_a_single_process(distributed):
    strategy = make_strategy(None, distributed, 7, None, None, check_finite=True)
    assert isinstance(strategy, SingleProcess)
    assert strategy.seed == 7 and strategy.check_finite and strategy.is_root
