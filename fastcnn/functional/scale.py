"""A multiplier per channel and its backward: ``weight[:, None, None] * x`` for NCHW
batches, ConvNeXt's layer scale (``gamma * x``) and the op of the ``Scale`` layer.

The channels are axis 1 and ``weight`` has one entry per channel; every axis after
the channels is scaled alike, so ``(N, C)`` and ``(N, C, H, W)`` batches both work.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from . import _validate as v


def _view3(array):
    """``array`` as the ``(N, C, S)`` view the kernels take."""
    return array.reshape(array.shape[0], array.shape[1], math.prod(array.shape[2:]))


def channel_scale_trusted(x, weight):
    """``weight[c] * x[:, c]`` of checked, C-contiguous arrays; checks nothing."""
    dev = backend.device_of(x, weight)
    y = dev.empty(x.shape, x.dtype)
    if y.size:
        dev.kernels("scale").channel_scale_forward(_view3(x), weight, _view3(y))
    return y


def channel_scale_backward_trusted(dy, x, weight, param_grads: bool = True):
    """``(dx, dweight)`` of :func:`channel_scale_trusted` (``dweight`` None with
    ``param_grads=False``); checks nothing."""
    dx = channel_scale_trusted(dy, weight)
    if not param_grads:
        return dx, None
    dev = backend.device_of(dy, x, weight)
    dweight = dev.empty(weight.shape, weight.dtype)
    if dweight.size:
        dev.kernels("scale").channel_scale_backward_weight(_view3(dy), _view3(x),
                                                           dweight)
    return dx, dweight


def _checked(op: str, x, weight):
    x = v.float_array(op, "x", x)
    if x.ndim < 2:
        raise ValueError(f"{op}: x must have a batch and a channel axis (N, C, ...), "
                         f"got {x.ndim}-D with shape {x.shape}.")
    weight = v.float_array(op, "weight", weight, ndim=1)
    v.same_dtype(op, "x", x, weight=weight)
    if weight.shape[0] != x.shape[1]:
        raise ValueError(f"{op}: weight has {weight.shape[0]} entries but x has "
                         f"{x.shape[1]} channels (axis 1 of shape {x.shape}); give "
                         f"one per channel.")
    return x, weight


def channel_scale(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Multiply every channel of ``x`` by its entry of ``weight``
    (``weight[:, None, None] * x`` for NCHW batches).

    Parameters
    ----------
    x : ndarray
        float32 or float64, channels on axis 1.
    weight : ndarray
        One multiplier per channel, of x's dtype.

    Shape: x (N, C, *), weight (C,) -> (N, C, *).
    """
    x, weight = _checked("channel_scale", x, weight)
    return channel_scale_trusted(x, weight)


def channel_scale_backward(dy: np.ndarray, x: np.ndarray,
                           weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gradients of :func:`channel_scale`: ``dx = weight[c] * dy`` and
    ``dweight[c]``, the sum of ``dy * x`` over every axis but the channels
    (accumulated in float64, in a fixed order: the same bits for any thread
    count).

    Shape: dy (N, C, *), x (N, C, *), weight (C,) -> (dx (N, C, *), dweight (C,)).
    """
    op = "channel_scale_backward"
    x, weight = _checked(op, x, weight)
    dy = v.float_array(op, "dy", dy)
    v.same_dtype(op, "x", x, dy=dy)
    v.shape_is(op, "dy", dy, x.shape)
    return channel_scale_backward_trusted(dy, x, weight)
