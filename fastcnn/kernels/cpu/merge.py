"""Kernels of the layers that join tensors in a graph model: elementwise sum
(``Add``), concatenation along an axis (``Concatenate``) and the broadcast product
(``Multiply``) with its backward.

Arrays arrive as views the caller shapes: flat ``(S,)`` for the sum, and
``(outer, channels, inner)`` for concatenation, where ``outer`` is the batch times
every axis before the joined one and ``inner`` every axis after it; the product's
layout is described below. Each output element is written by one ``prange``
iteration, so results are bitwise the same for any thread count.
"""

import numpy as np
from numba import prange

from .._jit import cpu_helper, cpu_kernel
from ._dots import _dot64


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


# ------------------------------------------------------------- broadcast products
#
# ``multiply_forward`` and ``multiply_backward`` take flat operands and describe the
# broadcast by int64 tables of length D >= 1: ``dims``, the output's axes, and one
# ``strides`` table per operand, its element strides along those axes (0 where the
# operand has size 1 and is broadcast). The caller merges neighbouring axes first,
# so ``x (N, C, H, W) * s (N, C, 1, 1)`` arrives as dims ``(N*C, H*W)``.


@cpu_helper
def _row_offsets(row, dims, a_strides, b_strides):
    """The offsets in ``a`` and ``b`` of the first element of output row ``row`` (a
    row is the last axis; ``row`` counts the others in C order)."""
    oa = np.int64(0)
    ob = np.int64(0)
    for d in range(dims.shape[0] - 2, -1, -1):
        q = row % dims[d]
        row //= dims[d]
        oa += q * a_strides[d]
        ob += q * b_strides[d]
    return oa, ob


@cpu_kernel
def multiply_forward(a, a_strides, b, b_strides, dims, y):
    """``y = a * b`` with broadcasting, ``y`` in C order over ``dims``.

    Shape: a (A,), b (B,), y (prod(dims),) flat; a_strides, b_strides, dims (D,)
    int64. Parallel over the rows of the last axis.
    """
    last = dims.shape[0] - 1
    inner = dims[last]
    sa = a_strides[last]
    sb = b_strides[last]
    for task in prange(y.size // inner):
        row = np.int64(task)  # prange counts unsigned: int64 keeps the maths signed
        oa, ob = _row_offsets(row, dims, a_strides, b_strides)
        out = y[row * inner:(row + 1) * inner]
        # Rows read contiguously or as one repeated value are the common cases (a
        # gate times a map): loops over slices, which vectorise.
        if sa == 1 and sb == 0:
            _row_times_value(a[oa:oa + inner], b[ob], out)
        elif sa == 0 and sb == 1:
            _row_times_value(b[ob:ob + inner], a[oa], out)
        elif sa == 1 and sb == 1:
            ra = a[oa:oa + inner]
            rb = b[ob:ob + inner]
            for k in range(inner):
                out[k] = ra[k] * rb[k]
        else:
            for k in range(inner):
                out[k] = a[oa + k * sa] * b[ob + k * sb]


@cpu_helper
def _row_times_value(row, value, out):
    for k in range(out.shape[0]):
        out[k] = row[k] * value


@cpu_helper
def _part_offsets(index, dims, b_strides, a_strides, kept, skip):
    """Offsets in ``dy`` (C order over ``dims``) and in ``b`` of ``index`` counted
    over the axes where ``a`` is kept (``kept == 1``: ``a_strides != 0``) or
    broadcast (``kept == 0``), axis ``skip`` left out."""
    oy = np.int64(0)
    ob = np.int64(0)
    step = np.int64(1)
    for d in range(dims.shape[0] - 1, -1, -1):
        n = dims[d]
        if d != skip and (a_strides[d] != 0) == (kept == 1):
            q = index % n
            index //= n
            oy += q * step
            ob += q * b_strides[d]
        step *= n
    return oy, ob


@cpu_kernel
def multiply_backward(dy, b, b_strides, a_strides, dims, da):
    """The gradient of ``a`` in ``y = a * b``: ``da[j]`` is the sum of ``dy * b``
    over the output positions that read ``a[j]`` (one where ``a`` is not
    broadcast), accumulated in float64 in a fixed order: C order of those
    positions, the innermost axis as a vectorised dot where it is contiguous.

    Shape: dy (prod(dims),), b (B,), da (A,) flat; b_strides, a_strides, dims (D,)
    int64. Parallel over ``A``: each ``da[j]`` is summed by one iteration.
    """
    ndim = dims.shape[0]
    # The last broadcast axis of a is summed by the innermost loop (contiguous in dy
    # where it is the last axis); the other broadcast axes by an outer counter.
    last = np.int64(-1)
    for d in range(ndim):
        if a_strides[d] == 0:
            last = np.int64(d)
    inner = np.int64(1)
    y_inner = np.int64(0)
    b_inner = np.int64(0)
    outer = np.int64(1)
    step = np.int64(1)
    for d in range(ndim - 1, -1, -1):
        if d == last:
            inner = dims[d]
            y_inner = step
            b_inner = b_strides[d]
        elif a_strides[d] == 0:
            outer *= dims[d]
        step *= dims[d]
    kept = np.int64(1)
    summed = np.int64(0)
    # A contiguous last axis in dy and b (a gate's map) sums as one vectorised dot.
    rows = y_inner == 1 and b_inner == 1
    for j in prange(da.size):
        oy, ob = _part_offsets(np.int64(j), dims, b_strides, a_strides, kept, last)
        acc = 0.0
        for r in range(outer):
            ry, rb = _part_offsets(np.int64(r), dims, b_strides, a_strides, summed,
                                   last)
            start_y = oy + ry
            start_b = ob + rb
            if rows:
                acc += _dot64(dy[start_y:start_y + inner], b[start_b:start_b + inner])
            else:
                for k in range(inner):
                    acc += np.float64(dy[start_y + k * y_inner]) * np.float64(
                        b[start_b + k * b_inner])
        da[j] = acc
