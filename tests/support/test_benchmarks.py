"""Benchmarks that are also correctness tests (pytest-benchmark).

Each test times one call through the ``benchmark`` fixture and then checks the result
of what it timed against an independent reference, so a fast but wrong kernel fails.

Timing is off unless asked for: pytest-benchmark times every ``benchmark`` call by
default, which would make the normal suite (and CI) slow and tempt someone to gate on
times. Here, without ``--benchmark-only``, ``--benchmark-enable``, ``--benchmark-json``
or ``--benchmark-save``/``--benchmark-autosave``, each benchmarked call runs exactly
once, as with ``--benchmark-disable``. One short timed run, saved as JSON::

    python -m pytest tests/support/test_benchmarks.py --benchmark-only \\
        --benchmark-json=.benchmarks/pytest-benchmark.json

No test here asserts anything about a time; the times are an artifact to compare
between runs on one machine (``pytest-benchmark compare``), never a CI gate.
Deselect these tests with ``-m "not benchmark"``.
"""

import numpy as np
import pytest

import fastcnn
import fastcnn.functional as F
from fastcnn import models, optimizers

from .. import naive
from ..gradcheck import assert_close

pytest.importorskip("pytest_benchmark")  # the `benchmark` fixture (test extra)

THREADS = 2
LR = 0.01


def _bench(group: str):
    """The ``benchmark`` mark with short-run settings (used only when timing)."""
    return pytest.mark.benchmark(group=group, min_rounds=5, max_time=0.5,
                                 warmup=True, warmup_iterations=2)


def _timing_requested(config) -> bool:
    if config.getoption("benchmark_disable") and not config.getoption(
            "benchmark_enable"):
        return False
    return any(config.getoption(name) for name in (
        "benchmark_enable", "benchmark_only", "benchmark_json", "benchmark_save",
        "benchmark_autosave"))


@pytest.fixture
def timed(benchmark, request):
    """pytest-benchmark's fixture, timing only where the command line asks for it,
    on ``THREADS`` Numba threads."""
    if not _timing_requested(request.config):
        benchmark.disabled = True  # one plain call, no statistics
    import numba

    before = fastcnn.get_num_threads()
    fastcnn.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    yield benchmark
    fastcnn.set_num_threads(before)


@_bench("conv2d")
def test_conv2d_forward_backward(timed, rng):
    x = rng.standard_normal((8, 3, 12, 12)).astype(np.float32)
    w = (rng.standard_normal((4, 3, 3, 3)) / np.sqrt(27)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    dy = rng.standard_normal((8, 4, 12, 12)).astype(np.float32)

    def step():
        y = F.conv2d(x, w, b, stride=1, padding=1)
        return (y, *F.conv2d_backward(dy, x, w, stride=1, padding=1))

    step()  # compile outside the timing
    y, dx, dw, db = timed(step)

    pads = ((1, 1), (1, 1))
    y_ref = naive.conv2d(x, w, b, (1, 1), *pads, (1, 1), 1)
    dx_ref, dw_ref, db_ref = naive.conv2d_backward(dy, x, w, (1, 1), *pads, (1, 1), 1)
    for name, got, ref in [("y", y, y_ref), ("dx", dx, dx_ref), ("dw", dw, dw_ref),
                           ("db", db, db_ref)]:
        assert got.dtype == np.float32, name
        assert_close(got, ref, rtol=1e-4, atol=1e-4, what=name)


@_bench("pool2d")
@pytest.mark.parametrize("op", ["max", "avg"])
def test_pool2d_forward_backward(timed, rng, op):
    x = rng.standard_normal((8, 4, 12, 12)).astype(np.float32)
    dy = rng.standard_normal((8, 4, 6, 6)).astype(np.float32)
    forward, backward = {"max": (F.max_pool2d, F.max_pool2d_backward),
                         "avg": (F.avg_pool2d, F.avg_pool2d_backward)}[op]

    def step():
        return forward(x, 2), backward(dy, x, 2)

    step()
    y, dx = timed(step)

    k = s = (2, 2)
    p = (0, 0)
    if op == "max":
        y_ref = naive.max_pool2d(x, k, s, p, (1, 1), False)
        dx_ref = naive.max_pool2d_backward(dy, x, k, s, p, (1, 1))
    else:
        y_ref = naive.avg_pool2d(x, k, s, p, False, True)
        dx_ref = naive.avg_pool2d_backward(dy, x, k, s, p, True)
    assert_close(y, y_ref, rtol=1e-6, atol=1e-6, what="y")
    assert_close(dx, dx_ref, rtol=1e-6, atol=1e-6, what="dx")


def _lenet5():
    fastcnn.seed(0)
    model = models.lenet5()
    model.compile(optimizers.SGD(lr=LR), "cross_entropy")
    return model


@_bench("train_step")
def test_lenet5_train_step(timed, rng):
    model = _lenet5()
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    initial = model.state_dict()
    model.train_step(x, y)  # compile outside the timing

    def restore():  # every timed step starts from the same weights (not timed)
        model.load_state_dict(initial)

    loss = timed.pedantic(model.train_step, args=(x, y), setup=restore, rounds=20,
                          warmup_rounds=2)

    # The reference: the same weights, forward, loss and gradients by hand, then
    # p - lr * grad (plain SGD has no state, so one step from `initial` is exact).
    ref = _lenet5()
    ref.load_state_dict(initial)
    out = ref.forward(x, training=True)
    ref.backward(F.cross_entropy_backward(out, y))
    expected = {f"{i}.{k}": p - np.float32(LR) * layer.grads[k]
                for i, layer in enumerate(ref.layers) for k, p in layer.params.items()}

    assert np.isfinite(loss)
    assert loss == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-6)
    state = model.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert state[key].dtype == np.float32, key
        assert_close(state[key], value, rtol=1e-6, atol=1e-7, what=key)
