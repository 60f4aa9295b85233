"""The new activations (gelu, silu, elu, softplus, hardswish, hardsigmoid, relu6,
mish) through the op layer and the layers with CUDA device arrays: results stay
on the device and match the CPU. Kernel-level CPU/CUDA comparisons are in
test_cuda_kernels.py (cases in cuda_cases.py)."""

import numpy as np
import pytest
from numba import cuda

import fastcnn.functional as F
from fastcnn import backend
from fastcnn import layers as L
from fastcnn.kernels.cuda import activation as cuda_activation

pytestmark = pytest.mark.skipif(
    not backend.cuda_available(), reason="no CUDA GPU, and the simulator is off"
)

#: name -> (forward(x), backward(dy, x)), every hyper-parameter off its default.
OPS = {
    "gelu": (F.gelu, F.gelu_backward),
    "gelu_tanh": (lambda x: F.gelu(x, "tanh"),
                  lambda dy, x: F.gelu_backward(dy, x, "tanh")),
    "silu": (F.silu, F.silu_backward),
    "elu": (lambda x: F.elu(x, 0.7), lambda dy, x: F.elu_backward(dy, x, 0.7)),
    "softplus": (lambda x: F.softplus(x, 2.0, 3.0),
                 lambda dy, x: F.softplus_backward(dy, x, 2.0, 3.0)),
    "hardswish": (F.hardswish, F.hardswish_backward),
    "hardsigmoid": (F.hardsigmoid, F.hardsigmoid_backward),
    "relu6": (F.relu6, F.relu6_backward),
    "mish": (F.mish, F.mish_backward),
}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(cuda_activation, "THREADS_PER_BLOCK", 4)


def _host(value):
    assert backend.is_device_array(value), type(value)
    return value.copy_to_host()


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ops_on_device_arrays_match_the_cpu(name, dtype):
    forward, backward = OPS[name]
    rng = np.random.default_rng(3)
    x = (3 * rng.standard_normal((2, 9))).astype(dtype)
    x[0, :4] = [-3, 3, 6, np.nan]
    dy = rng.standard_normal(x.shape).astype(dtype)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    got = _host(forward(cuda.to_device(x)))
    np.testing.assert_allclose(got, forward(x), tol, tol)
    got = _host(backward(cuda.to_device(dy), cuda.to_device(x)))
    np.testing.assert_allclose(got, backward(dy, x), tol, tol)


@pytest.mark.parametrize("cls, kwargs", [(L.GELU, {"approximate": "tanh"}),
                                         (L.Softplus, {"beta": 0.5}),
                                         (L.Mish, {})])
def test_layers_on_device_arrays(cls, kwargs):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 7))
    dy = rng.standard_normal((2, 7))
    layer = cls(**kwargs)
    layer.build((7,))
    want_y = layer.forward(x)
    want_dx = layer.backward(dy)
    np.testing.assert_allclose(_host(layer.forward(cuda.to_device(x))), want_y,
                               1e-13, 1e-13)
    np.testing.assert_allclose(_host(layer.backward(cuda.to_device(dy))), want_dx,
                               1e-13, 1e-13)
