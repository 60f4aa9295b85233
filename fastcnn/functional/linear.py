"""linear and its backward, with torch.nn.functional.linear's argument meanings."""

from __future__ import annotations

import numpy as np

from . import _device
from . import _validate as v


def _check_inputs(op: str, x, weight):
    x = v.float_array(op, "x", x, ndim=2)
    weight = v.float_array(op, "weight", weight, ndim=2)
    v.same_dtype(op, "x", x, weight=weight)
    v.non_empty_batch(op, "x", x)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"{op}: weight has {weight.shape[1]} input features (shape "
            f"{weight.shape}) but x has {x.shape[1]} (shape {x.shape})."
        )
    if weight.shape[0] == 0:
        raise ValueError(f"{op}: weight has no output features (shape {weight.shape}).")
    return x, weight


def linear(x: np.ndarray, weight: np.ndarray,
           bias: np.ndarray | None = None) -> np.ndarray:
    """Affine map ``y = x @ weight.T + bias``.

    Parameters
    ----------
    x : ndarray
        A batch of feature vectors, float32 or float64.
    weight : ndarray
        Weights in PyTorch's layout (one row per output feature).
    bias : ndarray, optional
        One value per output feature.

    Shape: x (N, IN), weight (OUT, IN), bias (OUT,) -> (N, OUT).
    """
    op = "linear"
    x, weight = _check_inputs(op, x, weight)
    c_out = weight.shape[0]
    if bias is None:
        bias = np.zeros(c_out, dtype=x.dtype)
    else:
        bias = v.float_array(op, "bias", bias, ndim=1)
        v.same_dtype(op, "x", x, bias=bias)
        v.shape_is(op, "bias", bias, (c_out,))
    y = _device.empty((x.shape[0], c_out), x.dtype, x, weight, bias)
    # The kernel walks contiguous rows of weight.T so that its inner loop vectorises.
    wt = _device.transpose(weight)
    _device.kernels("dense", x, weight, bias).linear_forward(x, wt, bias, y)
    return y


def linear_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray):
    """Gradients of :func:`linear` with respect to x, weight and bias.

    Returns ``(dx, dweight, dbias)`` for the upstream gradient ``dy``.

    Shape: dy (N, OUT), x (N, IN), weight (OUT, IN) -> dx (N, IN), dweight
    (OUT, IN), dbias (OUT,).
    """
    op = "linear_backward"
    x, weight = _check_inputs(op, x, weight)
    dy = v.float_array(op, "dy", dy, ndim=2)
    v.same_dtype(op, "x", x, dy=dy)
    v.shape_is(op, "dy", dy, (x.shape[0], weight.shape[0]))
    arrays = (dy, x, weight)
    k = _device.kernels("dense", *arrays)
    dx = _device.empty(x.shape, x.dtype, *arrays)
    dweight = _device.empty(weight.shape, weight.dtype, *arrays)
    dbias = _device.empty(weight.shape[0], x.dtype, *arrays)
    k.linear_backward_input(dy, weight, dx)
    k.linear_backward_weight(dy, x, dweight)
    k.linear_backward_bias(dy, dbias)
    return dx, dweight, dbias
