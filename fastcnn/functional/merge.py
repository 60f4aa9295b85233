"""Joining tensors: elementwise sum, concatenation and the broadcast product, with
their backwards.

These are what a graph model's ``Add``, ``Concatenate`` and ``Multiply`` layers run
(as ``torch.add``, ``torch.cat`` and ``torch.mul`` do in a PyTorch model).
``axis`` counts the batch axis, as torch's ``dim`` does: ``axis=1`` is the channel
axis of NCHW tensors.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from .._checks import is_int
from . import _validate as v


def _inputs(op: str, xs, minimum: int = 2) -> list:
    if not isinstance(xs, list | tuple) or len(xs) < minimum:
        raise TypeError(f"{op}: xs must be a list of at least {minimum} arrays, got "
                        f"{type(xs).__name__}"
                        f"{f' of {len(xs)}' if isinstance(xs, list | tuple) else ''}.")
    arrays = [v.float_array(op, f"xs[{i}]", x) for i, x in enumerate(xs)]
    for i, x in enumerate(arrays[1:], start=1):
        v.same_dtype(op, "xs[0]", arrays[0], **{f"xs[{i}]": x})
    return arrays


def add_trusted(a, b):
    """``a + b`` of checked, C-contiguous arrays of one shape and dtype."""
    dev = backend.device_of(a, b)
    y = dev.empty(a.shape, a.dtype)
    if y.size:
        dev.kernels("merge").add_forward(a.ravel(), b.ravel(), y.ravel())
    return y


def add(xs) -> object:
    """The elementwise sum of arrays of one shape (no broadcasting).

    Its backward is the identity for every input: each receives ``dy``.

    Shape: xs [(*), (*), ...] -> (*).
    """
    xs = _inputs("add", xs)
    for i, x in enumerate(xs[1:], start=1):
        v.shape_is("add", f"xs[{i}]", x, xs[0].shape)
    y = xs[0]
    for x in xs[1:]:
        y = add_trusted(y, x)
    return y


def _split_shape(shape, axis: int) -> tuple[int, int, int]:
    """``(outer, shape[axis], inner)``: the 3-D view the merge kernels take."""
    return (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))


def concatenate_trusted(xs, axis: int):
    """``xs`` joined along ``axis`` (checked arrays agreeing on every other axis)."""
    dev = backend.device_of(*xs)
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    y = dev.empty(tuple(shape), xs[0].dtype)
    if y.size == 0:
        return y
    kernel = dev.kernels("merge").channel_copy_in
    view = y.reshape(_split_shape(y.shape, axis))
    offset = 0
    for x in xs:
        if x.size:
            kernel(x.reshape(_split_shape(x.shape, axis)), offset, view)
        offset += x.shape[axis]
    return y


def concatenate_backward_trusted(dy, sizes, axis: int) -> list:
    """The gradient of each input of :func:`concatenate_trusted`: ``dy`` cut into
    ``sizes`` along ``axis``."""
    dev = backend.device_of(dy)
    kernel = dev.kernels("merge").channel_copy_out
    view = dy.reshape(_split_shape(dy.shape, axis))
    parts, offset = [], 0
    for size in sizes:
        shape = list(dy.shape)
        shape[axis] = size
        part = dev.empty(tuple(shape), dy.dtype)
        if part.size:
            kernel(view, offset, part.reshape(_split_shape(part.shape, axis)))
        parts.append(part)
        offset += size
    return parts


def _axis(op: str, axis, ndim: int) -> int:
    if not is_int(axis) or not -ndim < axis < ndim or axis % ndim == 0:
        raise ValueError(f"{op}: axis must be a non-batch axis of {ndim}-D arrays "
                         f"(1 to {ndim - 1}, or negative), got {axis!r}.")
    return int(axis) % ndim


def concatenate(xs, axis: int = 1):
    """Arrays joined along ``axis`` (``torch.cat(xs, dim=axis)``); they must agree
    on every other axis.

    Shape: xs [(N, ..., C_i, ...), ...] -> (N, ..., sum C_i, ...).
    """
    op = "concatenate"
    xs = _inputs(op, xs)
    axis = _axis(op, axis, xs[0].ndim)
    for i, x in enumerate(xs[1:], start=1):
        if x.ndim != xs[0].ndim or any(a != b for k, (a, b) in enumerate(
                zip(x.shape, xs[0].shape, strict=True)) if k != axis):
            raise ValueError(f"{op}: xs[{i}] has shape {x.shape} but xs[0] has "
                             f"{xs[0].shape}; they may differ on axis {axis} only.")
    return concatenate_trusted(xs, axis)


def concatenate_backward(dy, sizes, axis: int = 1) -> list:
    """The gradients of :func:`concatenate`'s inputs: ``dy`` cut along ``axis``
    into pieces of ``sizes`` (the inputs' sizes on that axis).

    Shape: dy (N, ..., sum C_i, ...) -> [(N, ..., C_i, ...), ...].
    """
    op = "concatenate_backward"
    dy = v.float_array(op, "dy", dy)
    axis = _axis(op, axis, dy.ndim)
    if not isinstance(sizes, list | tuple) or not all(
            is_int(s) and s >= 0 for s in sizes):
        raise TypeError(f"{op}: sizes must be a list of non-negative ints, got "
                        f"{sizes!r:.200}.")
    if sum(sizes) != dy.shape[axis]:
        raise ValueError(f"{op}: sizes {list(sizes)} add up to {sum(sizes)} but dy "
                         f"has {dy.shape[axis]} on axis {axis}.")
    return concatenate_backward_trusted(dy, [int(s) for s in sizes], axis)


# --------------------------------------------------------------- broadcast product


def broadcast_shape(op: str, shapes, names) -> tuple[int, ...]:
    """The shape arrays of ``shapes`` broadcast to (NumPy's and torch's rule: axes
    aligned from the right, each equal or 1); raises naming the first that does
    not fit."""
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for shape, name in zip(shapes, names, strict=True):
        for k, size in enumerate(shape, start=ndim - len(shape)):
            if size != 1 and out[k] not in (1, size):
                raise ValueError(
                    f"{op}: {name} has shape {tuple(shape)}, which does not "
                    f"broadcast against the others (axis {k - ndim} is {size} but "
                    f"the others make it {out[k]}); each axis must match or be 1.")
            if size != 1:
                out[k] = size
    return tuple(out)


def _broadcast_tables(out_shape, shapes) -> tuple:
    """The int64 tables the product kernels take: the output's axes (neighbours
    merged where every operand allows it, size-1 axes dropped) and each operand's
    strides along them (0 where it is broadcast)."""
    ndim = len(out_shape)
    strides = []
    for shape in shapes:
        padded = (1,) * (ndim - len(shape)) + tuple(shape)
        step, row = 1, [0] * ndim
        for k in range(ndim - 1, -1, -1):
            row[k] = step if padded[k] != 1 else 0
            step *= padded[k]
        strides.append(row)
    dims, merged = [], [[] for _ in shapes]
    for k in range(ndim):
        if out_shape[k] == 1:
            continue
        # Axis k joins the one before when, for every operand, stepping over the
        # whole of axis k is one step of the axis before (0 == 0 where broadcast).
        if dims and all(m[-1] == s[k] * out_shape[k]
                        for m, s in zip(merged, strides, strict=True)):
            dims[-1] *= out_shape[k]
            for m, s in zip(merged, strides, strict=True):
                m[-1] = s[k]
            continue
        dims.append(out_shape[k])
        for m, s in zip(merged, strides, strict=True):
            m.append(s[k])
    if not dims:  # one element: every operand read at offset 0
        dims, merged = [1], [[0] for _ in shapes]
    return (np.array(dims, np.int64),
            [np.array(m, np.int64) for m in merged])


def _product_pair(dev, a, b, out_shape):
    """``a * b`` broadcast to ``out_shape`` on ``dev`` (checked arrays)."""
    y = dev.empty(out_shape, a.dtype)
    if y.size:
        dims, (sa, sb) = _broadcast_tables(out_shape, [a.shape, b.shape])
        dev.kernels("merge").multiply_forward(
            a.reshape(-1), dev.move_in(sa), b.reshape(-1), dev.move_in(sb),
            dev.move_in(dims), y.reshape(-1))
    return y


def _product_inputs(op: str, xs) -> list:
    """:func:`_inputs`, and no 0-D array (a scalar factor is a 1-element array)."""
    arrays = _inputs(op, xs)
    for i, x in enumerate(xs):
        if x.ndim == 0:
            raise ValueError(f"{op}: xs[{i}] must have at least 1 dimension, got a "
                             f"0-D array (pass a scalar factor as shape (1,)).")
    return arrays


def multiply_trusted(xs):
    """The broadcast product of checked, C-contiguous arrays of one dtype whose
    shapes broadcast, multiplied left to right."""
    dev = backend.device_of(*xs)
    y = xs[0]
    for x in xs[1:]:
        y = _product_pair(dev, y, x, np.broadcast_shapes(y.shape, x.shape))
    return y


def multiply_backward_trusted(dy, xs) -> list:
    """The gradient of each input of :func:`multiply_trusted`: ``dy`` times the
    product of the other inputs, summed over the axes that input was broadcast
    along (checked arrays; ``dy`` of the broadcast shape)."""
    dev = backend.device_of(dy, *xs)
    kernel = dev.kernels("merge").multiply_backward
    grads = []
    for i, x in enumerate(xs):
        others = xs[:i] + xs[i + 1:]
        b = others[0] if len(others) == 1 else multiply_trusted(others)
        if dy.size == 0 or x.size == 0:
            grads.append(dev.zeros(x.shape, x.dtype))
            continue
        if x.shape == dy.shape:  # nothing to sum: dy * b, one rounding either way
            grads.append(_product_pair(dev, dy, b, dy.shape))
            continue
        dims, (sb, sa) = _broadcast_tables(dy.shape, [b.shape, x.shape])
        dx = dev.empty(x.shape, x.dtype)
        kernel(dy.reshape(-1), b.reshape(-1), dev.move_in(sb), dev.move_in(sa),
               dev.move_in(dims), dx.reshape(-1))
        grads.append(dx)
    return grads


def multiply(xs) -> object:
    """The elementwise product of arrays, broadcasting axes of size 1 as
    ``torch.mul`` does (axes aligned from the right): ``x (N, C, H, W)`` times
    ``s (N, C, 1, 1)`` scales every channel map, the join of a squeeze-and-
    excitation block. Several arrays are multiplied left to right.

    Parameters
    ----------
    xs : list of ndarray
        At least two float32 or float64 arrays of one dtype whose shapes broadcast.

    Shape: xs [(*s_1), (*s_2), ...] -> the broadcast shape of the s_i.
    """
    xs = _product_inputs("multiply", xs)
    broadcast_shape("multiply", [x.shape for x in xs],
                    [f"xs[{i}]" for i in range(len(xs))])
    return multiply_trusted(xs)


def multiply_backward(dy, xs) -> list:
    """The gradients of :func:`multiply`'s inputs: for each, ``dy`` times the
    product of the others, summed over the axes it was broadcast along (in
    float64, in a fixed order), so each has its input's shape.

    Shape: dy (broadcast shape), xs [(*s_1), ...] -> [(*s_1), (*s_2), ...].
    """
    op = "multiply_backward"
    xs = _product_inputs(op, xs)
    shape = broadcast_shape(op, [x.shape for x in xs],
                            [f"xs[{i}]" for i in range(len(xs))])
    dy = v.float_array_1d_or_more(op, "dy", dy)
    v.same_dtype(op, "xs[0]", xs[0], dy=dy)
    v.shape_is(op, "dy", dy, shape)
    return multiply_backward_trusted(dy, xs)
