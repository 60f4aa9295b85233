"""Concurrency: ``predict`` from several Python threads at once, and training that
gives the same bits with 1 and 2 Numba threads."""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastcnn
from fastcnn import models

from ..threads import assert_bitwise_equal, results_by_thread_count


def _run_in_threads(fn, n_threads):
    """Call ``fn(i)`` from ``n_threads`` threads released together; returns the
    results in thread order and re-raises the first error."""
    barrier = threading.Barrier(n_threads)
    results, errors = [None] * n_threads, []

    def worker(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("builder", ["lenet5", "simple_cnn"])
def test_predict_from_four_threads_matches_serial_bitwise(builder):
    """4 threads x 6 predict calls on one model (forward keeps per-layer caches in
    the layers, which concurrent calls overwrite; eval-mode outputs must not depend
    on them). Thread i predicts its own batches, with batch sizes that differ between
    threads, so that the calls interleave layer by layer."""
    fastcnn.seed(0)
    if builder == "lenet5":
        model = models.lenet5()
        shape = (1, 28, 28)
    else:
        model = models.simple_cnn(input_shape=(3, 16, 16), width=8)
        shape = (3, 16, 16)
        # Non-trivial running statistics, so that eval mode really uses them.
        model.compile("sgd", "cross_entropy")
        rng = np.random.default_rng(1)
        model.train_step(rng.standard_normal((8, *shape)).astype(np.float32),
                         rng.integers(0, 10, 8))
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((5 + i, *shape)).astype(np.float32)
              for i in range(4)]
    serial = [model.predict(x, batch_size=2 + i) for i, x in enumerate(inputs)]

    def many_predicts(i):
        return [model.predict(inputs[i], batch_size=2 + i) for _ in range(6)]

    concurrent = _run_in_threads(many_predicts, 4)
    for i, outputs in enumerate(concurrent):
        for out in outputs:
            assert_bitwise_equal(out, serial[i], f"thread {i}")


def test_predict_from_threads_does_not_abort_under_the_workqueue_layer():
    """Numba's workqueue threading layer aborts the process on concurrent parallel
    regions; predict takes a lock there. In a subprocess: an abort would kill it."""
    script = textwrap.dedent("""
        import threading, numpy as np, numba, fastcnn
        from fastcnn import models
        fastcnn.seed(0)
        model = models.lenet5()
        x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype("f4")
        def work():
            for _ in range(5):
                model.predict(x)
        threads = [threading.Thread(target=work) for _ in range(3)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(numba.threading_layer())
    """)
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    done = subprocess.run([sys.executable, "-c", script], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "workqueue"


def _train_a_few_steps(builder, shape):
    fastcnn.seed(3)
    model = getattr(models, builder)(input_shape=shape, **(
        {"width": 8} if builder == "simple_cnn" else {}))
    model.compile("adam", "cross_entropy")
    rng = np.random.default_rng(4)
    for _ in range(3):
        x = rng.standard_normal((8, *shape)).astype(np.float32)
        model.train_step(x, rng.integers(0, 10, 8))
    return tuple(model.state_dict().values())


@pytest.mark.parametrize(("builder", "shape"), [("lenet5", (1, 28, 28)),
                                                ("simple_cnn", (3, 16, 16))])
def test_training_gives_the_same_bits_with_1_and_2_numba_threads(builder, shape):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:  # pragma: no cover - 1-core machines
        pytest.skip("needs at least 2 Numba threads")
    one, two = results_by_thread_count(lambda: _train_a_few_steps(builder, shape))
    assert_bitwise_equal(one, two, f"{builder} weights after 3 Adam steps")
