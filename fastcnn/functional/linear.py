"""linear and its backward, with torch.nn.functional.linear's argument meanings
(inputs of any ndim >= 1: the last axis holds the features)."""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..kernels._clamp import clamp_host
from . import _validate as v


def _check_inputs(op: str, x, weight):
    x = v.float_array_1d_or_more(op, "x", x)
    weight = v.float_array(op, "weight", weight, ndim=2)
    v.same_dtype(op, "x", x, weight=weight)
    # tuple(): the CUDA simulator's device-array shape takes no negative index.
    shape = tuple(x.shape)
    if weight.shape[1] != shape[-1]:
        raise ValueError(
            f"{op}: weight has {weight.shape[1]} input features (shape "
            f"{weight.shape}) but x has {shape[-1]} (shape {shape})."
        )
    return x, weight


def _rows(a):
    """``a`` (..., F) as a (M, F) matrix (a view): the leading axes are a batch."""
    shape = tuple(a.shape)
    return a.reshape(math.prod(shape[:-1]), shape[-1])


def _is_degenerate(x, weight) -> bool:
    """An empty batch, no input features or no output features: the result is
    known without a kernel (and a CUDA kernel must not see a zero-sized grid)."""
    return x.size == 0 or weight.size == 0


def linear(x: np.ndarray, weight: np.ndarray,
           bias: np.ndarray | None = None) -> np.ndarray:
    """Affine map ``y = x @ weight.T + bias``.

    Parameters
    ----------
    x : ndarray
        Feature vectors along the last axis, float32 or float64; any leading axes
        (none for one vector) are a batch, as in PyTorch.
    weight : ndarray
        Weights in PyTorch's layout (one row per output feature).
    bias : ndarray, optional
        One value per output feature.

    Shape: x (*, IN), weight (OUT, IN), bias (OUT,) -> (*, OUT); e.g. x (N, IN)
    -> (N, OUT), x (IN,) -> (OUT,).

    The batch, IN and OUT may be empty, as in PyTorch: the result is empty, or with
    IN = 0 the bias broadcast (an empty sum).
    """
    op = "linear"
    x, weight = _check_inputs(op, x, weight)
    if bias is not None:
        bias = v.float_array(op, "bias", bias, ndim=1)
        v.same_dtype(op, "x", x, bias=bias)
        v.shape_is(op, "bias", bias, (weight.shape[0],))
    if x.ndim == 2:
        return linear_trusted(x, weight, bias)
    y = linear_trusted(_rows(x), weight, bias)
    return y.reshape(*tuple(x.shape)[:-1], weight.shape[0])


def linear_trusted(x, weight, bias, clamp=None):
    """:func:`linear` on arguments that passed its checks (C-contiguous arrays of
    one float dtype, matching shapes); ``bias`` may be None. Checks nothing:
    layers call it with what they validated at build. ``clamp``: an interval of
    ``kernels._clamp.CLAMPS`` that the kernel limits the output to as it stores it
    (a fused ReLU or ReLU6)."""
    c_out = weight.shape[0]
    if bias is None:
        bias = np.zeros(c_out, dtype=x.dtype)
    dev = backend.device_of(x, weight, bias)
    if _is_degenerate(x, weight):
        # No input features: every output is its bias (an empty sum).
        y = np.zeros((x.shape[0], c_out), x.dtype) + dev.to_host(bias)
        return dev.move_in(clamp_host(y, clamp))
    y = dev.empty((x.shape[0], c_out), x.dtype)
    # The CPU kernel walks rows of weight.T (its twin transposes, so that the inner
    # loop vectorises); the GPU's reads weight where it is (no launch of its own).
    dev.kernels("dense").linear_forward_untransposed(x, weight, bias, y, clamp)
    return y


def linear_runner(x_shape, weight, bias, clamp=None):
    """``run(x)``, :func:`linear_trusted` of these arguments for host (NumPy)
    inputs ``x`` of shape ``x_shape`` (N, IN), decided once (see
    ``conv.conv2d_runner``); None where :func:`linear_trusted` would take
    another route."""
    if bias is None:
        bias = np.zeros(weight.shape[0], dtype=weight.dtype)
    if (type(weight) is not np.ndarray or type(bias) is not np.ndarray
            or len(x_shape) != 2 or x_shape[0] == 0 or weight.size == 0):
        return None
    dev = backend.device_of(weight, bias)
    forward = dev.kernels("dense").linear_forward_untransposed
    shape, dtype = (x_shape[0], weight.shape[0]), weight.dtype
    empty = dev.empty

    def run(x):
        y = empty(shape, dtype)
        forward(x, weight, bias, y, clamp)
        return y

    return run


def linear_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray):
    """Gradients of :func:`linear` with respect to x, weight and bias.

    Returns ``(dx, dweight, dbias)`` for the upstream gradient ``dy``; dweight and
    dbias sum over every leading (batch) axis.

    Shape: dy (*, OUT), x (*, IN), weight (OUT, IN) -> dx (*, IN), dweight
    (OUT, IN), dbias (OUT,).

    With an empty batch, IN or OUT 0, dx and dweight are zeros (or empty) and dbias
    is dy summed over the batch, zeros for an empty batch.
    """
    op = "linear_backward"
    x, weight = _check_inputs(op, x, weight)
    dy = v.float_array_1d_or_more(op, "dy", dy)
    v.same_dtype(op, "x", x, dy=dy)
    v.shape_is(op, "dy", dy, (*tuple(x.shape)[:-1], weight.shape[0]))
    if x.ndim == 2:
        return linear_backward_trusted(dy, x, weight)
    dx, dweight, dbias = linear_backward_trusted(_rows(dy), _rows(x), weight)
    return dx.reshape(x.shape), dweight, dbias


def linear_backward_trusted(dy, x, weight, param_grads: bool = True, out=None):
    """:func:`linear_backward` on checked arguments; checks nothing.
    ``param_grads=False`` computes dx only (dweight, dbias None): a frozen layer.
    ``out``: a ``(dweight, dbias)`` pair of arrays (the layer's gradients, beside
    dy, of the right shapes) the kernels write into instead of new ones."""
    dev = backend.device_of(dy, x, weight)
    k = dev.kernels("dense")
    if not param_grads:
        if _is_degenerate(x, weight):
            return dev.zeros(x.shape, x.dtype), None, None
        dx = dev.empty(x.shape, x.dtype)
        k.linear_backward_input(dy, weight, dx)
        return dx, None, None
    if _is_degenerate(x, weight):
        dx = dev.zeros(x.shape, x.dtype)
        dweight = dev.zeros(weight.shape, weight.dtype)
        if dy.size == 0:
            dbias = dev.zeros(weight.shape[0], x.dtype)
        else:  # no input features: dy is all there is
            dbias = dev.empty(weight.shape[0], x.dtype)
            k.linear_backward_bias(dy, dbias)
        return dx, dweight, dbias
    dx = dev.empty(x.shape, x.dtype)
    dweight, dbias = out if out is not None else (
        dev.empty(weight.shape, weight.dtype), dev.empty(weight.shape[0], x.dtype))
    k.linear_backward_input(dy, weight, dx)
    k.linear_backward_params(dy, x, dweight, dbias)
    return dx, dweight, dbias
