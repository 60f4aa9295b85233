"""A learnable multiplier per channel (``Scale``, ConvNeXt's layer scale): the
product, which is also its input gradient, and the weight gradient.

Arrays arrive as ``(N, C, S)`` views, ``S`` every axis after the channels (1 for
``(N, C)`` batches).
"""

import numpy as np
from numba import prange

from .._jit import cpu_kernel
from ._dots import _dot64


@cpu_kernel
def channel_scale_forward(x, weight, y):
    """``y[n, c, s] = weight[c] * x[n, c, s]``; with ``dy`` for ``x``, the input
    gradient ``dx``.

    Shape: x, y (N, C, S), weight (C,). Parallel over ``N * C``.
    """
    channels, size = x.shape[1], x.shape[2]
    for task in prange(x.shape[0] * channels):
        t = np.int64(task)
        n = t // channels
        c = t % channels
        g = weight[c]
        src = x[n, c]
        out = y[n, c]
        for s in range(size):
            out[s] = g * src[s]


@cpu_kernel
def channel_scale_backward_weight(dy, x, dweight):
    """``dweight[c] = sum over n, s of dy[n, c, s] * x[n, c, s]``, in float64: one
    vectorised dot per map, added in n order.

    Shape: dy, x (N, C, S), dweight (C,). Parallel over ``C``.
    """
    for c in prange(x.shape[1]):
        acc = 0.0
        for n in range(x.shape[0]):
            acc += _dot64(dy[n, c], x[n, c])
        dweight[c] = acc
