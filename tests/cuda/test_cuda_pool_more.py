"""Pooling with indices, max unpooling and adaptive average pooling on CUDA device
arrays: the launchers give the CPU kernels' results bit for bit (same selections,
same sums in the same order), the ops keep results on the device, and the
AdaptiveAvgPool2D layer runs there. Kernel-by-kernel cases are shared with
test_cuda_kernels.py (cuda_cases.py); shapes stay tiny for the simulator."""

import numpy as np
import pytest
from numba import cuda

import fastcnn.functional as F
from fastcnn import backend
from fastcnn import layers as L
from fastcnn.kernels.cpu import pool_more as cpu_pool_more
from fastcnn.kernels.cuda import pool_more as cuda_pool_more

from .cuda_cases import CASES

pytestmark = pytest.mark.skipif(
    not backend.cuda_available(), reason="no CUDA GPU, and the simulator is off"
)

DTYPES = [np.float32, np.float64]


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(cuda_pool_more, "THREADS_PER_BLOCK", 4)


def _host(value):
    assert backend.is_device_array(value), type(value)
    return value.copy_to_host()


KERNEL_CASES = [(name, i) for (module, name), builders in CASES.items()
                if module == "pool_more" for i in range(len(builders))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "index"), KERNEL_CASES)
def test_launchers_equal_the_cpu_kernels_bit_for_bit(name, index, dtype):
    args, outs = CASES[("pool_more", name)][index](np.random.default_rng(index), dtype)
    expected = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    actual = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    getattr(cpu_pool_more, name)(*expected)
    getattr(cuda_pool_more, name)(*actual)
    for o in outs:
        assert actual[o].tobytes() == expected[o].tobytes(), f"{name} arg {o}"


def test_unpool_repeated_indices_keep_the_last_in_row_major_order():
    # Every input of a plane targets position 3: the claim pass must pick the last.
    x = np.arange(2 * 3 * 2 * 3, dtype=np.float64).reshape(2, 3, 2, 3)
    idx = np.full(x.shape, 3, np.int64)
    y = _host(F.max_unpool2d(cuda.to_device(x), idx, 2, output_size=(4, 6)))
    assert (y.reshape(2, 3, -1)[:, :, 3] == x[:, :, 1, 2]).all()
    assert np.count_nonzero(y) == 6


@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_on_device_arrays_match_the_cpu(dtype):
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (2, 2, 5, 6)).astype(dtype)
    cfg = dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True)
    y, idx = F.max_pool2d(x, **cfg, return_indices=True)
    yd, idxd = F.max_pool2d(cuda.to_device(x), **cfg, return_indices=True)
    np.testing.assert_array_equal(_host(yd), y)
    np.testing.assert_array_equal(_host(idxd), idx)
    dy = rng.standard_normal(y.shape).astype(dtype)
    # Indices may stay on the device: they are copied to the host to be checked.
    got = F.max_pool2d_backward(cuda.to_device(dy), cuda.to_device(x), **cfg,
                                indices=idxd)
    assert _host(got).tobytes() == F.max_pool2d_backward(dy, x, **cfg,
                                                         indices=idx).tobytes()

    up = F.max_unpool2d(cuda.to_device(y), idxd, 3, stride=2, padding=1,
                        output_size=(5, 6))
    np.testing.assert_array_equal(_host(up), F.max_unpool2d(
        y, idx, 3, stride=2, padding=1, output_size=(5, 6)))
    dup = rng.standard_normal((2, 2, 5, 6)).astype(dtype)
    got = F.max_unpool2d_backward(cuda.to_device(dup), idxd, 3, stride=2, padding=1,
                                  output_size=(5, 6))
    np.testing.assert_array_equal(_host(got), F.max_unpool2d_backward(
        dup, idx, 3, stride=2, padding=1, output_size=(5, 6)))

    for out in [(3, 4), 1, (None, 8)]:
        ya = _host(F.adaptive_avg_pool2d(cuda.to_device(x), out))
        assert ya.tobytes() == F.adaptive_avg_pool2d(x, out).tobytes()
        dya = rng.standard_normal(ya.shape).astype(dtype)
        got = F.adaptive_avg_pool2d_backward(cuda.to_device(dya), cuda.to_device(x),
                                             out)
        assert _host(got).tobytes() == F.adaptive_avg_pool2d_backward(
            dya, x, out).tobytes()


def test_out_of_range_device_indices_are_refused():
    y = cuda.to_device(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"max_unpool2d: indices must lie in "
                       r"\[0, 16\)"):
        F.max_unpool2d(y, cuda.to_device(np.full((1, 1, 2, 2), 16, np.int64)), 2)


def test_adaptive_layer_on_device_arrays():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 7))
    dy = rng.standard_normal((2, 3, 3, 2))
    layer = L.AdaptiveAvgPool2D((3, 2))
    layer.build((3, 5, 7))
    want_y = layer.forward(x)
    want_dx = layer.backward(dy)
    got_y = layer.forward(cuda.to_device(x))
    assert _host(got_y).tobytes() == want_y.tobytes()
    assert _host(layer.backward(cuda.to_device(dy))).tobytes() == want_dx.tobytes()
