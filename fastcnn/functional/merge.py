"""Joining tensors: elementwise sum and concatenation, with their backwards.

These are what a graph model's ``Add`` and ``Concatenate`` layers run (as
``torch.add`` and ``torch.cat`` do in a PyTorch model). ``axis`` counts the batch
axis, as torch's ``dim`` does: ``axis=1`` is the channel axis of NCHW tensors.
"""

from __future__ import annotations

import math

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
