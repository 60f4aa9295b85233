"""multiply, pad, dropout2d and channel_scale (and the Multiply, ZeroPadding2D,
SpatialDropout2D and Scale layers) with CUDA device arrays: results stay on the
device and match the CPU (bit for bit where the arithmetic is one rounding or
none, and for the dropout masks). Kernel-level CPU/CUDA comparisons are in
test_cuda_kernels.py (cases in cuda_cases.py)."""

import numpy as np
import pytest
from numba import cuda

import fastcnn
import fastcnn.functional as F
from fastcnn import backend
from fastcnn import layers as L
from fastcnn.kernels.cuda import dropout as cuda_dropout
from fastcnn.kernels.cuda import merge as cuda_merge
from fastcnn.kernels.cuda import pad as cuda_pad
from fastcnn.kernels.cuda import scale as cuda_scale

pytestmark = pytest.mark.skipif(
    not backend.cuda_available(), reason="no CUDA GPU, and the simulator is off"
)
OVERFLOW = "ignore:overflow encountered:RuntimeWarning"  # uint64 hashing, simulated


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    for module in (cuda_merge, cuda_pad, cuda_scale, cuda_dropout):
        monkeypatch.setattr(module, "THREADS_PER_BLOCK", 4)


def _host(value):
    assert backend.is_device_array(value), type(value)
    return value.copy_to_host()


def _dev(*arrays):
    return [cuda.to_device(a) for a in arrays]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multiply_on_device_arrays(dtype, rng):
    x = rng.standard_normal((2, 3, 2, 2)).astype(dtype)
    s = rng.standard_normal((2, 3, 1, 1)).astype(dtype)
    t = rng.standard_normal((3, 1, 2)).astype(dtype)
    xd, sd, td = _dev(x, s, t)
    np.testing.assert_array_equal(_host(F.multiply([xd, sd])), F.multiply([x, s]))
    y = F.multiply([x, s, t])
    dy = rng.standard_normal(y.shape).astype(dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(_host(F.multiply([xd, sd, td])), y, tol, tol)
    got = F.multiply_backward(cuda.to_device(dy), [xd, sd, td])
    for g, r in zip(got, F.multiply_backward(dy, [x, s, t]), strict=True):
        np.testing.assert_allclose(_host(g), r, tol, tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pad_on_device_arrays(dtype, rng):
    x = rng.standard_normal((1, 2, 3, 4)).astype(dtype)
    xd = cuda.to_device(x)
    for pad in [(1, 2, 0, 1), (-1, 1, 1, -2), (-4, 0)]:
        y = F.pad(x, pad, value=-2.0)
        np.testing.assert_array_equal(_host(F.pad(xd, pad, value=-2.0)), y)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx = F.pad_backward(cuda.to_device(dy), pad)
        np.testing.assert_array_equal(_host(dx), F.pad_backward(dy, pad))


@pytest.mark.filterwarnings(OVERFLOW)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout2d_mask_is_the_cpus(dtype, rng):
    x = rng.standard_normal((3, 4, 2, 2)).astype(dtype)
    seed = 2**64 - 77
    np.testing.assert_array_equal(_host(F.dropout2d(cuda.to_device(x), 0.5, seed=seed)),
                                  F.dropout2d(x, 0.5, seed=seed))
    np.testing.assert_array_equal(
        _host(F.dropout2d_backward(cuda.to_device(x), 0.5, seed=seed)),
        F.dropout2d_backward(x, 0.5, seed=seed))
    copied = F.dropout2d(cuda.to_device(x), 0.5, training=False)
    np.testing.assert_array_equal(_host(copied), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_scale_on_device_arrays(dtype, rng):
    x = rng.standard_normal((3, 2, 2, 3)).astype(dtype)
    w = rng.standard_normal(2).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    xd, wd, dyd = _dev(x, w, dy)
    np.testing.assert_array_equal(_host(F.channel_scale(xd, wd)), F.channel_scale(x, w))
    dx, dw = F.channel_scale_backward(dyd, xd, wd)
    rdx, rdw = F.channel_scale_backward(dy, x, w)
    np.testing.assert_array_equal(_host(dx), rdx)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(_host(dw), rdw, tol, tol)


@pytest.mark.filterwarnings(OVERFLOW)
def test_layers_on_device_arrays(rng):
    x = rng.standard_normal((2, 2, 2, 3))
    dy_pad = rng.standard_normal((2, 2, 5, 4))
    for layer, dy in ((L.ZeroPadding2D(((1, 2), (0, 1))), dy_pad),
                      (L.Scale(0.5), x), (L.SpatialDropout2D(0.5), x)):
        layer.build(x.shape[1:], np.float64, np.random.default_rng(0))
        state = getattr(layer, "rng", None)
        state = None if state is None else state.bit_generator.state
        want_y = layer.forward(x, training=True)
        want_dx = layer.backward(dy)
        want_grads = {k: g.copy() for k, g in layer.grads.items()}
        if state is not None:  # the same seed for the device run
            layer.rng.bit_generator.state = state
        got_y = layer.forward(cuda.to_device(x), training=True)
        np.testing.assert_allclose(_host(got_y), want_y, 1e-14, 1e-14)
        np.testing.assert_allclose(_host(layer.backward(cuda.to_device(dy))),
                                   want_dx, 1e-14, 1e-14)
        for key, grad in layer.grads.items():
            np.testing.assert_allclose(backend.to_host(grad), want_grads[key],
                                       1e-14, 1e-14)


def test_a_squeeze_and_excitation_model_on_the_cuda_device(rng):
    fastcnn.seed(0)
    x = fastcnn.Input((2, 3, 3))
    h = L.ZeroPadding2D(1)(x)
    g = L.Reshape((2, 1, 1))(L.Sigmoid()(L.Dense(2)(L.GlobalAvgPool2D()(h))))
    h = L.Scale(0.7)(L.Multiply()([h, g]))
    model = fastcnn.Model(x, L.Dense(2)(L.Flatten()(h)), dtype="float64")
    data = rng.standard_normal((2, 2, 3, 3))
    y = model.forward(data, training=True)
    dx = model.backward(np.ones_like(y))
    grads = {name: grad.copy() for name, _, grad in model._named_grads()}
    model.to("cuda")
    try:
        got = model.forward(data, training=True)  # copied to the device
        np.testing.assert_allclose(_host(got), y, 1e-13, 1e-13)
        got_dx = model.backward(cuda.to_device(np.ones_like(y)))
        np.testing.assert_allclose(backend.to_host(got_dx), dx, 1e-13, 1e-13)
        for name, _, grad in model._named_grads():
            np.testing.assert_allclose(backend.to_host(grad), grads[name], 1e-13,
                                       1e-13, err_msg=name)
    finally:
        model.to("cpu")
