"""CUDA launchers against the CPU kernels, and the op layer on the "cuda" device
against tests/naive.py, on tiny shapes.

In CI these run on the simulator (``NUMBA_ENABLE_CUDASIM=1``, set by conftest.py)
with block sizes patched small, so that every multi-block path runs; on a real GPU
(``NUMBA_ENABLE_CUDASIM=0``, see tools/gpu_check.py) they run twice, with the
small and with the default block sizes.
"""

import importlib

import numpy as np
import pytest
from numba import config as numba_config
from numba import cuda

import fastcnn
import fastcnn.functional as F
from fastcnn import backend
from fastcnn.kernels.cuda import _launch

from .. import naive
from .cuda_cases import CASES

pytestmark = pytest.mark.skipif(
    not backend.cuda_available(), reason="no CUDA GPU, and the simulator is off"
)

SIMULATOR = bool(numba_config.ENABLE_CUDASIM)
SUBJECTS = ("conv", "pool", "pool_more", "dense", "activation", "loss", "dropout",
            "norm", "layer_norm", "optim", "merge", "pad", "scale", "_layout")
CUDA_MODULES = [importlib.import_module(f"fastcnn.kernels.cuda.{s}") for s in SUBJECTS]
DTYPES = [np.float32, np.float64]
#: Outputs equal to the CPU's bit for bit: selections, masks and serial sums.
EXACT = {("activation", "relu_forward"), ("activation", "relu_backward"),
         ("pool", "max_pool2d_forward"), ("dropout", "dropout_apply"),
         ("loss", "sum_in_order"), ("dense", "linear_backward_bias")}
OVERFLOW = "ignore:overflow encountered:RuntimeWarning"  # uint64 hashing, simulated


@pytest.fixture(autouse=True, params=["small"] if SIMULATOR else ["small", "default"])
def block_sizes(request, monkeypatch):
    """4 threads per block and 2 x 2 tiles: several blocks even on tiny shapes."""
    if request.param == "small":
        for module in CUDA_MODULES:
            monkeypatch.setattr(module, "THREADS_PER_BLOCK", 4)
            for name in ("TILE",):
                if hasattr(module, name):
                    monkeypatch.setattr(module, name, 2)
    return request.param


@pytest.fixture
def on_cuda():
    previous = fastcnn.get_device()
    fastcnn.set_device("cuda")
    yield
    fastcnn.set_device(previous)


def _copy(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def assert_matches(actual, expected, dtype, what="", exact=False):
    """Same NaN and inf positions; finite values within float rounding (relative to
    the largest magnitude), or bit for bit with ``exact``."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    if exact:
        assert actual.tobytes() == expected.tobytes(), f"{what}: not bitwise equal"
        return
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), what)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite & ~np.isnan(expected)],
                                  expected[~finite & ~np.isnan(expected)], what)
    tol = 2e-5 if np.dtype(dtype) == np.float32 else 1e-12
    scale = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    error = float(np.max(np.abs(actual[finite].astype(np.float64)
                                - expected[finite]), initial=0.0))
    assert error <= tol * scale, f"{what}: max error {error:.3g} (scale {scale:.3g})"


def _kernels(module, function):
    cpu = getattr(importlib.import_module(f"fastcnn.kernels.cpu.{module}"), function)
    gpu = getattr(importlib.import_module(f"fastcnn.kernels.cuda.{module}"), function)
    return cpu, gpu


KERNEL_CASES = [
    pytest.param(module, function, i, id=f"{module}.{function}[{i}]")
    for (module, function), builders in CASES.items()
    for i in range(len(builders))
]


# ------------------------------------------------------------- launchers vs the CPU


@pytest.mark.filterwarnings(OVERFLOW)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("module,function,index", KERNEL_CASES)
def test_launcher_matches_cpu_kernel(module, function, index, dtype):
    args, outs = CASES[(module, function)][index](np.random.default_rng(index), dtype)
    cpu, gpu = _kernels(module, function)
    expected, actual = _copy(args), _copy(args)
    cpu(*expected)
    gpu(*actual)
    for o in outs:
        assert_matches(actual[o], expected[o], actual[o].dtype, f"{function} arg {o}",
                       exact=(module, function) in EXACT)


@pytest.mark.filterwarnings(OVERFLOW)
@pytest.mark.parametrize(
    "module,function", [pytest.param(*key, id=".".join(key)) for key in CASES]
)
def test_launcher_writes_device_arrays_in_place(module, function):
    # The last (smallest) case of each kernel, with every array on the device.
    args, outs = CASES[(module, function)][-1](np.random.default_rng(7), np.float32)
    cpu, gpu = _kernels(module, function)
    expected = _copy(args)
    cpu(*expected)
    device = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
    gpu(*device)
    for o in outs:
        assert_matches(device[o].copy_to_host(), expected[o], expected[o].dtype,
                       f"{function} arg {o}", exact=(module, function) in EXACT)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_untiled_conv_forward_matches_cpu(dtype, monkeypatch):
    # Shapes whose input patch would not fit in shared memory take the direct path.
    monkeypatch.setattr(_launch, "MAX_SHARED_BYTES", 0)
    for i, build in enumerate(CASES[("conv", "conv2d_forward")]):
        args, outs = build(np.random.default_rng(i), dtype)
        cpu, gpu = _kernels("conv", "conv2d_forward")
        expected, actual = _copy(args), _copy(args)
        cpu(*expected)
        gpu(*actual)
        assert_matches(actual[3], expected[3], dtype, f"direct conv case {i}")


def test_weight_gradient_is_deterministic():
    args, _ = CASES[("conv", "conv2d_backward_weight")][0](
        np.random.default_rng(3), np.float64
    )
    _, gpu = _kernels("conv", "conv2d_backward_weight")
    first, second = _copy(args), _copy(args)
    gpu(*first)
    gpu(*second)
    assert first[2].tobytes() == second[2].tobytes()


CONV_LAUNCHERS = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight",
                  "conv2d_backward_params"]


@pytest.mark.parametrize("function", CONV_LAUNCHERS)
def test_conv_launchers_launch_one_kernel(function, monkeypatch):
    # No pad, crop or summing launches: the tile loads bound-check the padding, and
    # the last block of a split weight gradient adds the partials.
    launched = []
    monkeypatch.setattr(_launch, "RECORDER", lambda kernel, args: launched.append(args))
    _, gpu = _kernels("conv", function)
    for i, build in enumerate(CASES[("conv", function)]):
        args, _ = build(np.random.default_rng(i), np.float32)
        launched.clear()
        gpu(*args)
        assert len(launched) == 1, f"case {i}: {len(launched)} launches"


def test_split_params_gradient_is_deterministic_and_resets_its_tickets(monkeypatch):
    from fastcnn.kernels.cuda import conv as cuda_conv

    args, _ = CASES[("conv", "conv2d_backward_params")][0](
        np.random.default_rng(3), np.float64
    )
    _, gpu = _kernels("conv", "conv2d_backward_params")
    with monkeypatch.context() as patch:
        recorded = []
        patch.setattr(_launch, "RECORDER", lambda kernel, a: recorded.append(a))
        gpu(*_copy(args))
        assert int(recorded[0][-2]) == 3  # splits: the last-block path runs
    first, second = _copy(args), _copy(args)
    gpu(*first)
    gpu(*second)
    assert first[2].tobytes() == second[2].tobytes()
    assert first[3].tobytes() == second[3].tobytes()
    for counters in cuda_conv._COUNTERS.values():
        assert not np.asarray(counters.copy_to_host()).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_dense_one_launch_paths_match_the_unfused_launchers_bit_for_bit(
        dtype, monkeypatch):
    """linear_forward_untransposed reads w where linear_forward reads a transposed
    copy, and linear_backward_params' bias column is linear_backward_bias's sum:
    the same operations in the same order, so the same bits, in one launch each."""
    from fastcnn.kernels.cuda import dense

    rng = np.random.default_rng(11)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((11, 5), (13, 5), 13))
    dy = rng.standard_normal((11, 13)).astype(dtype)
    y, y_ref = np.empty((11, 13), dtype), np.empty((11, 13), dtype)
    dense.linear_forward_untransposed(x, w, b, y, (0.0, np.inf))
    dense.linear_forward(x, np.ascontiguousarray(w.T), b, y_ref, (0.0, np.inf))
    assert y.tobytes() == y_ref.tobytes()
    dw, db = np.empty((13, 5), dtype), np.empty(13, dtype)
    dw_ref, db_ref = np.empty((13, 5), dtype), np.empty(13, dtype)
    dense.linear_backward_params(dy, x, dw, db)
    dense.linear_backward_weight(dy, x, dw_ref)
    dense.linear_backward_bias(dy, db_ref)
    assert dw.tobytes() == dw_ref.tobytes() and db.tobytes() == db_ref.tobytes()
    launches = []
    monkeypatch.setattr(_launch, "RECORDER", lambda kernel, args: launches.append(1))
    dense.linear_forward_untransposed(x, w, b, y)
    dense.linear_backward_params(dy, x, dw, db)
    assert len(launches) == 2


@pytest.mark.filterwarnings(OVERFLOW)
def test_dropout_device_hash_matches_cpu_bit_for_bit():
    from fastcnn.kernels.cpu import dropout as cpu_dropout
    from fastcnn.kernels.cuda import dropout as cuda_dropout

    @cuda.jit
    def draw(seed, out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = cuda_dropout.uniform01(seed, np.uint64(i))

    seed = np.uint64(2**64 - 12345)
    out = cuda.to_device(np.zeros(8))
    draw[2, 4](seed, out)
    expected = [cpu_dropout.uniform01(seed, np.uint64(i)) for i in range(8)]
    assert out.copy_to_host().tolist() == expected


# ------------------------------------------------------- the op layer on "cuda"


def test_set_device_cuda_and_auto(on_cuda):
    assert fastcnn.get_device() == "cuda"
    assert fastcnn.set_device("auto") == "cuda"


def test_conv2d_on_cuda_matches_naive(on_cuda, rng):
    x = rng.standard_normal((1, 2, 4, 4))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    y = F.conv2d(x, w, b, padding=1)
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(
        y, naive.conv2d(x, w, b, (1, 1), (1, 1), (1, 1), (1, 1), 1), 1e-12, 1e-12
    )
    dy = rng.standard_normal(y.shape)
    got = F.conv2d_backward(dy, x, w, padding=1)
    want = naive.conv2d_backward(dy, x, w, (1, 1), (1, 1), (1, 1), (1, 1), 1)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(g, r, 1e-12, 1e-12)


def test_pooling_on_cuda_matches_naive(on_cuda, rng):
    x = rng.standard_normal((1, 2, 4, 5))
    y = F.max_pool2d(x, 2, stride=1)
    np.testing.assert_array_equal(
        y, naive.max_pool2d(x, (2, 2), (1, 1), (0, 0), (1, 1), False)
    )
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        F.max_pool2d_backward(dy, x, 2, stride=1),
        naive.max_pool2d_backward(dy, x, (2, 2), (1, 1), (0, 0), (1, 1)), 1e-12, 0,
    )
    np.testing.assert_allclose(
        F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
        naive.avg_pool2d(x, (3, 3), (2, 2), (1, 1), False, False), 1e-12, 1e-12,
    )


def test_dense_activation_and_loss_on_cuda_match_naive(on_cuda, rng):
    x = rng.standard_normal((4, 5))
    w = rng.standard_normal((3, 5))
    b = rng.standard_normal(3)
    z = F.linear(x, w, b)
    np.testing.assert_allclose(z, naive.linear(x, w, b), 1e-12, 1e-12)
    dz = rng.standard_normal(z.shape)
    for g, r in zip(F.linear_backward(dz, x, w), naive.linear_backward(dz, x, w),
                    strict=True):
        np.testing.assert_allclose(g, r, 1e-12, 1e-12)
    np.testing.assert_array_equal(F.relu(z), naive.relu(z))
    np.testing.assert_allclose(F.softmax(z, dim=1), naive.softmax(z, 1), 1e-12, 1e-12)
    labels = np.array([0, 2, 1, 2])
    loss = F.cross_entropy(z, labels, label_smoothing=0.1)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, naive.cross_entropy(z, labels, None, "mean", 0.1),
                               1e-12)
    np.testing.assert_allclose(
        F.cross_entropy_backward(z, labels, label_smoothing=0.1),
        naive.cross_entropy_backward(z, labels, None, "mean", 0.1), 1e-12, 1e-12,
    )


@pytest.mark.filterwarnings(OVERFLOW)
def test_dropout_and_batch_norm_on_cuda_match_naive(on_cuda, rng):
    x = rng.standard_normal((3, 2, 2, 2))
    np.testing.assert_array_equal(F.dropout(x, 0.4, seed=99),
                                  naive.dropout(x, 0.4, True, 99))
    rm, rv = np.zeros(2), np.ones(2)
    y = F.batch_norm(x, rm, rv, training=True)
    ry, rmean, rvar = naive.batch_norm(x, np.zeros(2), np.ones(2), None, None, True,
                                       0.1, 1e-5)
    np.testing.assert_allclose(y, ry, 1e-10, 1e-10)
    np.testing.assert_allclose(rm, rmean, 1e-12, 1e-12)
    np.testing.assert_allclose(rv, rvar, 1e-12, 1e-12)
    dy = rng.standard_normal(x.shape)
    got = F.batch_norm_backward(dy, x, None, None, training=True)
    want = naive.batch_norm_backward(dy, x, None, None, None, True, 1e-5)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(g, r, 1e-9, 1e-9)


# --------------------------------------------- device arrays through the op layer


def _dev(*arrays):
    return [cuda.to_device(a) for a in arrays]


def _host(value):
    return value.copy_to_host() if backend.is_device_array(value) else value


def _same(device_result, cpu_result, tol=1e-12):
    assert backend.is_device_array(device_result), type(device_result)
    np.testing.assert_allclose(_host(device_result), cpu_result, tol, tol)


def test_ops_keep_device_arrays_on_the_device(rng):
    # The device stays "cpu": device-array inputs alone select the CUDA kernels.
    assert fastcnn.get_device() == "cpu"
    x = rng.standard_normal((1, 2, 4, 4))
    w = rng.standard_normal((2, 2, 3, 3))
    b = rng.standard_normal(2)
    xd, wd, bd = _dev(x, w, b)
    y = F.conv2d(x, w, b, padding=1)
    yd = F.conv2d(xd, wd, bd, padding=1)
    _same(yd, y)
    dy = rng.standard_normal(y.shape)
    for g, r in zip(F.conv2d_backward(cuda.to_device(dy), xd, wd, padding=1),
                    F.conv2d_backward(dy, x, w, padding=1), strict=True):
        _same(g, r)
    _same(F.max_pool2d(yd, 2), F.max_pool2d(y, 2))
    pooled = F.max_pool2d(y, 2)
    dp = rng.standard_normal(pooled.shape)
    _same(F.max_pool2d_backward(cuda.to_device(dp), yd, 2),
          F.max_pool2d_backward(dp, y, 2))
    _same(F.relu(yd), F.relu(y))
    flat = yd.reshape(1, 32)
    lw = rng.standard_normal((3, 32))
    z = F.linear(y.reshape(1, 32), lw)
    zd = F.linear(flat, cuda.to_device(lw))
    _same(zd, z)
    _same(F.softmax(zd, dim=-1), F.softmax(z, dim=-1))
    _same(F.softmax(zd, dim=0), F.softmax(z, dim=0))  # the host round trip
    labels = np.array([1])
    assert F.cross_entropy(zd, cuda.to_device(labels)) == pytest.approx(
        F.cross_entropy(z, labels), rel=1e-12
    )
    _same(F.cross_entropy_backward(zd, labels), F.cross_entropy_backward(z, labels))


@pytest.mark.filterwarnings(OVERFLOW)
def test_more_ops_on_device_arrays(rng):
    x = rng.standard_normal((3, 2))
    xd = cuda.to_device(x)
    _same(F.dropout(xd, 0.5, seed=5), F.dropout(x, 0.5, seed=5), 0)
    copied = F.dropout(xd, 0.5, training=False)
    assert backend.is_device_array(copied) and copied is not xd
    rm, rv = np.zeros(2), np.ones(2)
    rmd, rvd = _dev(rm, rv)
    _same(F.batch_norm(xd, rmd, rvd, training=True),
          F.batch_norm(x, rm, rv, training=True), 1e-10)
    np.testing.assert_allclose(rmd.copy_to_host(), rm, 1e-12, 1e-12)
    np.testing.assert_allclose(rvd.copy_to_host(), rv, 1e-12, 1e-12)
    target = rng.standard_normal(x.shape)
    assert F.mse_loss(xd, cuda.to_device(target)) == pytest.approx(
        F.mse_loss(x, target), rel=1e-12
    )
    weight = rng.uniform(0.5, 2, 2)
    _same(F.binary_cross_entropy_with_logits_backward(
              xd, cuda.to_device(target), weight=cuda.to_device(weight)),
          F.binary_cross_entropy_with_logits_backward(x, target, weight=weight))


def test_device_arrays_are_validated_like_numpy_arrays():
    with pytest.raises(TypeError, match="conv2d: x must have dtype float32 or "
                                        "float64, got int32"):
        F.conv2d(cuda.to_device(np.ones((1, 1, 3, 3), np.int32)), np.ones((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="relu: x is a CUDA device array that is not "
                                         "C-contiguous"):
        F.relu(cuda.to_device(np.ones((4, 4)))[:, ::2])
    with pytest.raises(ValueError, match=r"linear: weight has 4 input features"):
        F.linear(cuda.to_device(np.ones((2, 3))), cuda.to_device(np.ones((2, 4))))


def test_training_steps_on_device_arrays_match_cpu(rng):
    """Two SGD steps of conv -> relu -> max pool -> linear -> cross-entropy with the
    activations on the device match the CPU within 1e-9 in float64."""
    x = rng.standard_normal((2, 1, 4, 4))
    labels = np.array([0, 2])
    params = {"cw": rng.standard_normal((2, 1, 3, 3)), "cb": rng.standard_normal(2),
              "lw": rng.standard_normal((3, 8)), "lb": rng.standard_normal(3)}

    def step(p, xs, to):
        y = F.conv2d(xs, to(p["cw"]), to(p["cb"]), padding=1)
        a = F.relu(y)
        m = F.max_pool2d(a, 2)
        z = F.linear(m.reshape(2, 8), to(p["lw"]), to(p["lb"]))
        loss = F.cross_entropy(z, labels)
        dz = F.cross_entropy_backward(z, labels)
        dm, dlw, dlb = F.linear_backward(dz, m.reshape(2, 8), to(p["lw"]))
        da = F.max_pool2d_backward(dm.reshape(2, 2, 2, 2), a, 2)
        dy = F.relu_backward(da, y)
        _, dcw, dcb = F.conv2d_backward(dy, xs, to(p["cw"]), padding=1)
        grads = {"cw": dcw, "cb": dcb, "lw": dlw, "lb": dlb}
        return loss, {k: p[k] - 0.1 * _host(g) for k, g in grads.items()}

    cpu_params, gpu_params = dict(params), dict(params)
    for _ in range(2):
        cpu_loss, cpu_params = step(cpu_params, x, lambda a: a)
        gpu_loss, gpu_params = step(gpu_params, cuda.to_device(x), cuda.to_device)
        assert abs(cpu_loss - gpu_loss) <= 1e-9
    for k in params:
        np.testing.assert_allclose(gpu_params[k], cpu_params[k], 1e-9, 1e-9)
