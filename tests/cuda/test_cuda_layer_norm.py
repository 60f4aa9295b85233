"""layer_norm, group_norm, layer_norm2d (and batch_norm on (N, C, L)) through the
op layer and the layers with CUDA device arrays: results stay on the device and
match the CPU, saved statistics included. Kernel-level CPU/CUDA comparisons are in
test_cuda_kernels.py (cases in cuda_cases.py)."""

import numpy as np
import pytest
from numba import cuda

import fastcnn.functional as F
from fastcnn import backend
from fastcnn import layers as L
from fastcnn.kernels.cuda import layer_norm as cuda_layer_norm
from fastcnn.kernels.cuda import norm as cuda_norm

pytestmark = pytest.mark.skipif(
    not backend.cuda_available(), reason="no CUDA GPU, and the simulator is off"
)

#: name -> (forward(x, w, b, **kw), backward(dy, x, w, **kw), x shape, param shape)
OPS = {
    "layer_norm": (lambda x, w, b, **kw: F.layer_norm(x, (3, 4), w, b, 1e-3, **kw),
                   lambda dy, x, w, **kw: F.layer_norm_backward(dy, x, (3, 4), w,
                                                                1e-3, **kw),
                   (2, 2, 3, 4), (3, 4)),
    "group_norm": (lambda x, w, b, **kw: F.group_norm(x, 2, w, b, 1e-3, **kw),
                   lambda dy, x, w, **kw: F.group_norm_backward(dy, x, 2, w, 1e-3,
                                                                **kw),
                   (2, 4, 3, 3), (4,)),
    "layer_norm2d": (lambda x, w, b, **kw: F.layer_norm2d(x, w, b, **kw),
                     lambda dy, x, w, **kw: F.layer_norm2d_backward(dy, x, w, **kw),
                     (2, 3, 3, 4), (3,)),
}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(cuda_layer_norm, "THREADS_PER_BLOCK", 4)
    monkeypatch.setattr(cuda_norm, "THREADS_PER_BLOCK", 4)


def _host(value):
    assert backend.is_device_array(value), type(value)
    return value.copy_to_host()


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ops_on_device_arrays_match_the_cpu(name, dtype):
    forward, backward, shape, pshape = OPS[name]
    rng = np.random.default_rng(3)
    x = (2 * rng.standard_normal(shape) + 1).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(pshape).astype(dtype)
    b = rng.standard_normal(pshape).astype(dtype)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    xd, dyd, wd, bd = (cuda.to_device(a) for a in (x, dy, w, b))
    y, stats = forward(xd, wd, bd, return_stats=True)
    np.testing.assert_allclose(_host(y), forward(x, w, b), tol, tol)
    want = backward(dy, x, w)
    for got in (backward(dyd, xd, wd), backward(dyd, xd, wd, stats=stats),
                backward(dyd, xd, None)):
        assert all(backend.is_device_array(g) for g in got)
    for g, e in zip(backward(dyd, xd, wd, stats=stats), want, strict=True):
        np.testing.assert_allclose(_host(g), e, tol, tol)
    for g, e in zip(backward(dyd, xd, None), backward(dy, x, None), strict=True):
        np.testing.assert_allclose(_host(g), e, tol, tol)
    # NumPy inputs with the device's statistics run on the device too.
    got = backward(dy, x, w, stats=stats)
    np.testing.assert_allclose(_host(got[0]), want[0], tol, tol)


def test_empty_inputs_stay_on_the_device():
    x = cuda.to_device(np.zeros((0, 4, 2, 2)))
    y = F.group_norm(x, 2)
    assert backend.is_device_array(y) and y.shape == (0, 4, 2, 2)
    dx, dw, db = F.layer_norm2d_backward(x, x)
    assert backend.is_device_array(dw) and not _host(dw).any()


def test_batch_norm_on_ncl_device_arrays():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 5))
    dy = rng.standard_normal(x.shape)
    y = F.batch_norm(cuda.to_device(x), None, None, training=True)
    np.testing.assert_allclose(_host(y), F.batch_norm(x, None, None, training=True),
                               1e-12, 1e-12)
    got = F.batch_norm_backward(cuda.to_device(dy), cuda.to_device(x), None, None,
                                training=True)
    for g, e in zip(got, F.batch_norm_backward(dy, x, None, None, training=True),
                    strict=True):
        np.testing.assert_allclose(_host(g), e, 1e-12, 1e-12)


@pytest.mark.parametrize("layer, shape", [(L.LayerNorm((2, 3)), (2, 2, 3)),
                                          (L.GroupNorm(2), (4, 2, 2)),
                                          (L.LayerNorm2D(), (3, 2, 3)),
                                          (L.BatchNorm1D(), (2, 4))])
def test_layers_on_device_arrays(layer, shape):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, *shape))
    dy = rng.standard_normal(x.shape)
    layer.build(shape, np.float64)
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape)
    want_y = layer.forward(x, training=True)
    want_dx = layer.backward(dy)
    want_grads = {k: g.copy() for k, g in layer.grads.items()}
    np.testing.assert_allclose(_host(layer.forward(cuda.to_device(x),
                                                   training=True)),
                               want_y, 1e-12, 1e-12)
    np.testing.assert_allclose(_host(layer.backward(cuda.to_device(dy))), want_dx,
                               1e-12, 1e-12)
    for key, grad in layer.grads.items():
        np.testing.assert_allclose(backend.to_host(grad), want_grads[key], 1e-12,
                                   1e-12, err_msg=key)
