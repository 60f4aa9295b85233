"""ReLU and ReLU6 as the store of the Conv2D and Dense kernels (``kernels._clamp``):
the same bits as the activation run as a layer after them, forward and backward,
on every kernel path; no pass of their own."""

import numpy as np
import pytest

import fastcnn
from fastcnn import layers as L
from fastcnn.kernels._clamp import CLAMPS, bounds
from fastcnn.kernels.cpu import conv as conv_kernels
from fastcnn.kernels.cpu import dense as dense_kernels

ACTIVATION_LAYERS = {"relu": L.ReLU, "relu6": L.ReLU6}

# (layer kwargs, input shape): one per forward kernel of kernels/cpu/_conv_plan.py.
CONV_CASES = {
    "rows": ({"filters": 4, "kernel_size": 3, "padding": 1}, (3, 7, 7)),
    "shifted": ({"filters": 64, "kernel_size": (7, 1)}, (2, 30, 30)),
    "im2col": ({"filters": 5, "kernel_size": 3, "stride": 2}, (3, 9, 9)),
    "winograd": ({"filters": 8, "kernel_size": 3, "padding": 1}, (8, 6, 6)),
}


def _spiky(rng, shape, dtype):
    # Values around both ends of the intervals, exact zeros, -0.0 and NaN.
    x = (4 * rng.standard_normal(shape)).astype(dtype)
    flat = x.reshape(-1)
    flat[::11] = 0.0
    flat[5::13] = -0.0
    flat[7::17] = 6.0
    return x


def _fused_and_plain(make, kwargs, in_shape, name, dtype):
    fused = fastcnn.Sequential([make(**kwargs, activation=name)],
                               input_shape=in_shape, dtype=dtype)
    plain = fastcnn.Sequential([make(**kwargs), ACTIVATION_LAYERS[name]()],
                               input_shape=in_shape, dtype=dtype)
    plain.load_state_dict(dict(zip(plain.state_dict(), fused.get_weights(),
                                   strict=True)))
    return fused, plain


def _assert_same_step(fused, plain, x, rng):
    y_fused = fused.forward(x, training=True)
    y_plain = plain.forward(x, training=True)
    assert y_fused.tobytes() == y_plain.tobytes()
    dy = rng.standard_normal(y_fused.shape).astype(x.dtype)
    assert fused.backward(dy).tobytes() == plain.backward(dy).tobytes()
    grads_f = [g for layer in fused.layers for g in layer.grads.values()]
    grads_p = [g for layer in plain.layers for g in layer.grads.values()]
    for a, b in zip(grads_f, grads_p, strict=True):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CLAMPS))
@pytest.mark.parametrize("path", sorted(CONV_CASES))
def test_conv2d_activation_in_the_kernel_equals_the_layer_after(path, name, dtype,
                                                                 rng, monkeypatch):
    kwargs, in_shape = CONV_CASES[path]
    fused, plain = _fused_and_plain(L.Conv2D, kwargs, in_shape, name, dtype)
    weight = fused.layers[0].params["weight"]
    # Biases that put outputs at 0, 6 and beyond: the intervals' ends matter.
    fused.layers[0].params["bias"][...] = np.linspace(-3, 7, weight.shape[0])
    plain.layers[0].params["bias"][...] = fused.layers[0].params["bias"]
    x = _spiky(rng, (3, *in_shape), dtype)
    y = np.empty((3, *fused.output_shape))
    plan = conv_kernels._forward_path(x.shape, weight.shape, y.shape,
                                      *fused.layers[0].stride, 1, 1, 1)
    assert plan == path
    # The fused layer runs no activation kernel of its own in the forward.
    ran = []
    original = fastcnn.layers.activation.elementwise_trusted
    monkeypatch.setattr(fastcnn.layers.activation, "elementwise_trusted",
                        lambda kernel, *a, **k: ran.append(kernel)
                        or original(kernel, *a, **k))
    fused.forward(x, training=False)
    assert not [k for k in ran if k.endswith("_forward")], ran
    _assert_same_step(fused, plain, x, rng)


@pytest.mark.parametrize("name", sorted(CLAMPS))
def test_depthwise_and_separable_activation_in_the_kernel(name, rng):
    for make, kwargs in ((L.DepthwiseConv2D, {"kernel_size": 3, "padding": 1}),
                         (L.SeparableConv2D, {"filters": 5, "kernel_size": 3})):
        fused, plain = _fused_and_plain(make, kwargs, (4, 7, 7), name, "float32")
        _assert_same_step(fused, plain, _spiky(rng, (2, 4, 7, 7), np.float32), rng)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CLAMPS))
def test_dense_activation_in_the_kernel_equals_the_layer_after(name, dtype, rng):
    fused, plain = _fused_and_plain(L.Dense, {"units": 37}, (19,), name, dtype)
    fused.layers[0].params["bias"][...] = np.linspace(-3, 7, 37)
    plain.layers[0].params["bias"][...] = fused.layers[0].params["bias"]
    x = _spiky(rng, (9, 19), dtype)
    _assert_same_step(fused, plain, x, rng)
    # Frozen: the input gradient alone still goes through the activation.
    fused.layers[0].trainable = False
    plain.layers[0].trainable = False
    fused.forward(x, training=True)
    plain.forward(x, training=True)
    dy = rng.standard_normal((9, 37)).astype(dtype)
    assert fused.backward(dy).tobytes() == plain.backward(dy).tobytes()


def test_the_kernels_clamp_as_relu_and_relu6_do_nan_and_signed_zero_included(rng):
    # At the kernel level: conv2d_forward / linear_forward with a clamp give
    # exactly relu / relu6 of their output without one.
    import fastcnn.functional as F

    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    x[0, 0, 2, 2] = np.nan
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = np.array([-0.0, 0.0, 6.0, -7.0], np.float32)
    plain = np.empty((2, 4, 4, 4), np.float32)
    conv_kernels.conv2d_forward(x, w, b, plain, 0, 0, 1, 1, 1, 1, 1)
    assert np.isnan(plain).any()
    for name, op in (("relu", F.relu), ("relu6", F.relu6)):
        y = np.empty_like(plain)
        conv_kernels.conv2d_forward(x, w, b, y, 0, 0, 1, 1, 1, 1, 1, CLAMPS[name])
        assert y.tobytes() == op(plain).tobytes()
    xd = rng.standard_normal((5, 7)).astype(np.float32)
    xd[1, 3] = np.nan
    wt = rng.standard_normal((7, 4)).astype(np.float32)
    plain = np.empty((5, 4), np.float32)
    dense_kernels.linear_forward(xd, wt, b, plain)
    for name, op in (("relu", F.relu), ("relu6", F.relu6)):
        y = np.empty_like(plain)
        dense_kernels.linear_forward(xd, wt, b, y, CLAMPS[name])
        assert y.tobytes() == op(plain).tobytes()
    # None keeps every value as it is.
    assert bounds(None, np.float32) == (-np.inf, np.inf)


@pytest.mark.parametrize("name", sorted(CLAMPS))
def test_parameters_replaced_by_hand_take_the_checked_path_with_the_same_bits(name,
                                                                             rng):
    # A Fortran-ordered weight sends the layer through the public, checking op,
    # which takes no clamp: the activation then runs as a pass, same results.
    for make, kwargs, shape in ((L.Conv2D, {"filters": 4, "kernel_size": 3},
                                 (3, 6, 6)), (L.Dense, {"units": 6}, (5,))):
        fused, plain = _fused_and_plain(make, kwargs, shape, name, "float64")
        layer = fused.layers[0]
        layer.params["weight"] = np.asfortranarray(layer.params["weight"])
        assert not layer._params_as_built()
        _assert_same_step(fused, plain, _spiky(rng, (3, *shape), np.float64), rng)
