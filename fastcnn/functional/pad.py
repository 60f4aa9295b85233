"""Constant padding of the last two axes, with torch.nn.functional.pad's meanings.

``pad`` lists the amounts for the last axis first, as torch does: ``(left, right)``
pads the width, ``(left, right, top, bottom)`` the width and the height. Negative
amounts crop, as in torch (``(-1, -1)`` drops the first and the last column); a
crop may not take more than the axis holds. Only ``mode="constant"`` exists here.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from .._checks import is_int
from . import _validate as v

_OTHER_MODES = ("reflect", "replicate", "circular")


def pad_arg(op: str, pad) -> tuple[int, int, int, int]:
    """``pad`` checked and read as ``(left, right, top, bottom)`` (0 for the height
    when only two amounts are given)."""
    if not isinstance(pad, tuple | list) or not all(is_int(p) for p in pad):
        raise TypeError(f"{op}: pad must be a tuple of 2 or 4 ints, (left, right) or "
                        f"(left, right, top, bottom), got {pad!r:.200}.")
    if len(pad) not in (2, 4):
        raise ValueError(f"{op}: pad must hold 2 or 4 ints, (left, right) or (left, "
                         f"right, top, bottom) for the last two axes, got "
                         f"{len(pad)}: {tuple(pad)!r:.200}.")
    if any(abs(p) > v.MAX_SIZE for p in pad):
        raise ValueError(f"{op}: pad amounts must lie within +-(2**31 - 1), got "
                         f"{tuple(pad)!r:.200}.")
    left, right, top, bottom = (*(int(p) for p in pad), 0, 0)[:4]
    return left, right, top, bottom


def _mode(op: str, mode) -> None:
    if not isinstance(mode, str):
        raise TypeError(f"{op}: mode must be the str 'constant', got {mode!r:.100}.")
    if mode != "constant":
        known = " (not implemented here)" if mode in _OTHER_MODES else ""
        raise ValueError(f"{op}: mode must be 'constant', got {mode!r:.100}{known}; "
                         f"only constant padding exists in fastcnn.")


def _value(op: str, value) -> float:
    # Any real, infinities and NaN included, as torch takes them (-inf pads for a
    # max); None is torch's default, 0.
    if value is None:
        return 0.0
    if not isinstance(value, numbers.Real) or isinstance(value, bool | np.bool_):
        raise TypeError(f"{op}: value must be a real number, got {value!r:.100}.")
    return float(value)


def _check_axes(op: str, name: str, shape, amounts, ndim_needed: int) -> None:
    """Refuse crops larger than the axes they cut (torch refuses them too)."""
    shape = tuple(shape)  # numba's simulated device shapes refuse negative indices
    for axis, (before, after) in zip((-1, -2), amounts, strict=False):
        if axis < -ndim_needed:
            break
        size = shape[axis]
        if size + min(before, 0) + min(after, 0) < 0:
            raise ValueError(
                f"{op}: pad ({before}, {after}) crops more than the {size} entries of "
                f"axis {axis} of {name} (shape {tuple(shape)}).")


def _ndim_needed(op: str, pad, array, name: str) -> int:
    need = len(pad) // 2
    if array.ndim < need:
        raise ValueError(f"{op}: pad of {len(pad)} amounts pads the last {need} axes, "
                         f"but {name} is {array.ndim}-D with shape {array.shape}.")
    return need


def padded_shape(shape, left: int, right: int, top: int, bottom: int):
    """``shape`` with ``left + right`` added to the last axis and ``top + bottom``
    to the one before (when there is one)."""
    out = list(shape)
    out[len(out) - 1] += left + right
    if len(out) > 1:
        out[-2] += top + bottom
    return tuple(out)


def _view3(array):
    """``array`` as the ``(B, H, W)`` view the kernel takes."""
    shape = tuple(array.shape)
    h = shape[-2] if array.ndim > 1 else 1
    return array.reshape(math.prod(shape[:-2]), h, shape[-1])


def pad_trusted(x, left: int, right: int, top: int, bottom: int, value: float = 0.0):
    """``x`` padded (or cropped) on its last two axes; checks nothing."""
    dev = backend.device_of(x)
    y = dev.empty(padded_shape(x.shape, left, right, top, bottom), x.dtype)
    if y.size:
        dev.kernels("pad").pad_constant(_view3(x), _view3(y), np.int64(top),
                                        np.int64(left), x.dtype.type(value))
    return y


def pad_backward_trusted(dy, left: int, right: int, top: int, bottom: int):
    """The gradient of :func:`pad_trusted`: ``dy`` cut back to the input's shape, 0
    where the input was cropped away; checks nothing."""
    dev = backend.device_of(dy)
    dx = dev.empty(padded_shape(dy.shape, -left, -right, -top, -bottom), dy.dtype)
    if dx.size:
        dev.kernels("pad").pad_constant(_view3(dy), _view3(dx), np.int64(-top),
                                        np.int64(-left), dy.dtype.type(0))
    return dx


def pad(x: np.ndarray, pad, mode: str = "constant", value: float = 0.0) -> np.ndarray:
    """Pad the last one or two axes of ``x`` with ``value`` (``torch.nn.functional
    .pad`` in constant mode); negative amounts crop.

    Parameters
    ----------
    x : ndarray
        float32 or float64, of at least ``len(pad) // 2`` axes.
    pad : tuple of int
        ``(left, right)`` for the last axis, or ``(left, right, top, bottom)`` for
        the last two (torch's order: the last axis first). A negative amount
        removes that many entries from that side; a crop may not exceed the axis.
    mode : str
        ``"constant"``, the only mode ("reflect", "replicate" and "circular" are
        refused with a ValueError).
    value : float
        The fill, cast to x's dtype (infinities and NaN allowed; None means 0).

    Shape: x (*, H, W) -> (*, H + top + bottom, W + left + right).
    """
    op = "pad"
    x = v.float_array_1d_or_more(op, "x", x)
    amounts = pad_arg(op, pad)
    _mode(op, mode)
    fill = _value(op, value)
    need = _ndim_needed(op, pad, x, "x")
    left, right, top, bottom = amounts
    _check_axes(op, "x", x.shape, ((left, right), (top, bottom)), need)
    return pad_trusted(x, left, right, top, bottom, fill)


def pad_backward(dy: np.ndarray, pad) -> np.ndarray:
    """The gradient of :func:`pad`: ``dy`` without the padded border, and zeros
    where the forward pass cropped.

    Parameters
    ----------
    dy : ndarray
        The gradient of pad's output.
    pad : tuple of int
        As given to :func:`pad`.

    Shape: dy (*, Ho, Wo) -> dx (*, Ho - top - bottom, Wo - left - right).
    """
    op = "pad_backward"
    dy = v.float_array_1d_or_more(op, "dy", dy)
    left, right, top, bottom = pad_arg(op, pad)
    need = _ndim_needed(op, pad, dy, "dy")
    shape = padded_shape(dy.shape, -left, -right, -top, -bottom)
    if min(shape[len(shape) - need:]) < 0:
        raise ValueError(f"{op}: dy has shape {dy.shape}, smaller than the padding "
                         f"{tuple(pad)} adds; it cannot be pad's output.")
    _check_axes(op, "the input", shape, ((left, right), (top, bottom)), need)
    return pad_backward_trusted(dy, left, right, top, bottom)
