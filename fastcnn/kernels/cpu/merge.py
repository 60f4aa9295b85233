"""Kernels of the layers that join tensors in a graph model: elementwise sum
(``Add``) and concatenation along an axis (``Concatenate``).

Arrays arrive as views the caller shapes: flat ``(S,)`` for the sum, and
``(outer, channels, inner)`` for concatenation, where ``outer`` is the batch times
every axis before the joined one and ``inner`` every axis after it. Each output
element is written by one ``prange`` iteration, so results are bitwise the same for
any thread count.
"""

from numba import prange

from .._jit import cpu_kernel


@cpu_kernel
def add_forward(a, b, y):
    """``y = a + b``.

    Shape: a (S,), b (S,), y (S,). Parallel over ``S``.
    """
    for i in prange(y.size):
        y[i] = a[i] + b[i]


@cpu_kernel
def channel_copy_in(part, offset, y):
    """``y[:, offset:offset + part.shape[1], :] = part``: one input of a
    concatenation copied into its channel range.

    Shape: part (O, Cp, I), y (O, Cy, I). Parallel over ``O * Cp``.
    """
    outer, channels, inner = part.shape
    for task in prange(outer * channels):
        o, c = task // channels, task % channels
        for i in range(inner):
            y[o, offset + c, i] = part[o, c, i]


@cpu_kernel
def channel_copy_out(y, offset, part):
    """``part = y[:, offset:offset + part.shape[1], :]``: the gradient of one input
    of a concatenation, cut from the output's gradient.

    Shape: y (O, Cy, I), part (O, Cp, I). Parallel over ``O * Cp``.
    """
    outer, channels, inner = part.shape
    for task in prange(outer * channels):
        o, c = task // channels, task % channels
        for i in range(inner):
            part[o, c, i] = y[o, offset + c, i]
