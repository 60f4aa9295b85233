"""Argument checks shared by every functional op.

Every message names the op and the argument and quotes the value received, e.g.
``conv2d: stride must be a positive int or a pair of positive ints, got (0, 1).``
Kernels trust what passes these checks, so a check missing here can crash the
interpreter there: keep them strict.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from .._checks import is_int as _is_int

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: The largest size hyper-parameter (kernel size, stride, padding, dilation, groups,
#: channel and feature counts) accepted. The kernels index with int64 and multiply
#: these together, and Numba cannot type a Python int beyond int64 (2**64 raised a
#: TypingError from inside the kernel): bigger values are refused here, by name.
MAX_SIZE = 2**31 - 1


def float_array(op: str, name: str, value, ndim: int | tuple[int, ...] | None = None):
    """Check that ``value`` is a float32/float64 ndarray of the given ndim(s) and
    return it C-contiguous (non-contiguous and Fortran-ordered inputs are copied).

    A CUDA device array passes the same checks and is returned as it is (it must be
    C-contiguous already: there is no device-side copy here)."""
    device = backend.is_device_array(value)
    if not device and not isinstance(value, np.ndarray):
        raise TypeError(
            f"{op}: {name} must be a numpy.ndarray of float32 or float64, "
            f"got {type(value).__name__}."
        )
    if device:
        value = backend.cuda_device().native(value)
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{op}: {name} must have dtype float32 or float64, got {value.dtype}."
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if value.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(
                f"{op}: {name} must be {want}, got {value.ndim}-D with shape "
                f"{value.shape}."
            )
    if device:
        return _contiguous_device_array(op, name, value)
    return np.ascontiguousarray(value)


def _contiguous_device_array(op: str, name: str, value):
    if not value.is_c_contiguous():
        raise ValueError(
            f"{op}: {name} is a CUDA device array that is not C-contiguous (shape "
            f"{tuple(value.shape)}, strides {tuple(value.strides)}); pass a "
            f"C-contiguous one."
        )
    return value


def same_dtype(op: str, reference_name: str, reference: np.ndarray, **others) -> None:
    """Check that every array in ``others`` (skipping None) has the reference dtype."""
    for name, array in others.items():
        if array is not None and array.dtype != reference.dtype:
            raise TypeError(
                f"{op}: {name} has dtype {array.dtype} but {reference_name} has dtype "
                f"{reference.dtype}; pass arrays of one dtype (cast with .astype)."
            )


def shape_is(op: str, name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != tuple(shape):
        raise ValueError(
            f"{op}: {name} must have shape {tuple(shape)}, got {array.shape}."
        )


def non_empty_axes(op: str, name: str, array, axes: tuple[int, ...],
                   what: str) -> None:
    """Refuse a zero size on any of ``axes``: the axes an op cannot leave empty
    (PyTorch refuses them too). ``what`` names them and says which may be empty,
    e.g. ``"height or width (only the batch and channel axes may be empty)"``."""
    if any(array.shape[axis] == 0 for axis in axes):
        raise ValueError(
            f"{op}: {name} has a zero-sized {what}; got shape {tuple(array.shape)}."
        )


def pair(op: str, name: str, value, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each at least ``minimum``, as a ``(h, w)`` tuple."""
    if _is_int(value):
        result = (int(value), int(value))
    elif (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(_is_int(v) for v in value)
    ):
        result = (int(value[0]), int(value[1]))
    else:
        raise TypeError(
            f"{op}: {name} must be an int or a pair of ints, got {value!r}."
        )
    if min(result) < minimum:
        kind = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{op}: {name} must be {kind}, got {value!r}.")
    if max(result) > MAX_SIZE:
        raise ValueError(f"{op}: {name} must be at most 2**31 - 1, got {value!r}.")
    return result


def positive_int(op: str, name: str, value) -> int:
    if not _is_int(value):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}.")
    if value < 1:
        raise ValueError(f"{op}: {name} must be positive, got {value!r}.")
    if value > MAX_SIZE:
        raise ValueError(f"{op}: {name} must be at most 2**31 - 1, got {value!r}.")
    return int(value)


def non_negative_int(op: str, name: str, value) -> int:
    if not _is_int(value):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}.")
    if value < 0:
        raise ValueError(f"{op}: {name} must be >= 0, got {value!r}.")
    if value > MAX_SIZE:
        raise ValueError(f"{op}: {name} must be at most 2**31 - 1, got {value!r}.")
    return int(value)


def real_number(op: str, name: str, value, low=None, high=None,
                low_open=False, high_open=False) -> float:
    """A finite real number inside ``[low, high]`` (ends open where asked)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool | np.bool_):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}.")
    v = float(value)
    bad = not np.isfinite(v)
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        where = f"in {lo}{low if low is not None else '-inf'}, "
        where += f"{high if high is not None else 'inf'}{hi}"
        raise ValueError(
            f"{op}: {name} must be a finite number {where}, got {value!r}."
        )
    return v


def boolean(op: str, name: str, value) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{op}: {name} must be a bool, got {value!r}.")
    return bool(value)


def labels_array(op: str, name: str, labels, shape: tuple[int, ...], num_classes: int,
                 ignore_index: int | None = None) -> np.ndarray:
    """Integer class labels of ``shape`` with values in ``[0, num_classes)`` or equal
    to ``ignore_index`` (which need not lie in that range), returned as a NumPy
    int64 array (device labels are copied to the host to be checked)."""
    labels = backend.to_host(labels)
    if not isinstance(labels, np.ndarray):
        raise TypeError(
            f"{op}: {name} must be a numpy.ndarray of integers, "
            f"got {type(labels).__name__}."
        )
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"{op}: {name} must have an integer dtype (class indices), got "
            f"{labels.dtype}."
        )
    if labels.shape != tuple(shape):
        raise ValueError(
            f"{op}: {name} must have shape {tuple(shape)}, got {labels.shape}."
        )
    # Compared in the labels' own dtype: NumPy compares with an out-of-range Python
    # int correctly (uint8 labels never equal -100), where a cast would wrap.
    kept = labels if ignore_index is None else labels[labels != ignore_index]
    if kept.size and (kept.min() < 0 or kept.max() >= num_classes):
        bad = kept[(kept < 0) | (kept >= num_classes)][0]
        also = ("" if ignore_index is None else
                f" Only ignore_index ({ignore_index}) may lie outside.")
        raise ValueError(
            f"{op}: {name} must lie in [0, {num_classes}) for {num_classes} "
            f"classes, got {int(bad)}.{also}"
        )
    # reshape: np.ascontiguousarray makes a 0-D (unbatched) label 1-D.
    return np.ascontiguousarray(labels, dtype=np.int64).reshape(labels.shape)


def reduction_arg(op: str, value) -> str:
    if value not in ("mean", "sum", "none"):
        raise ValueError(
            f"{op}: reduction must be 'mean', 'sum' or 'none', got {value!r}."
        )
    return value


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int,
                     ceil_mode: bool) -> int:
    """PyTorch's pooling output size (``pooling_output_shape`` in ATen).

    With ``ceil_mode`` the last window may start past the end of the input but must
    start inside the input or its left padding.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def float_array_1d_or_more(op: str, name: str, value) -> np.ndarray:
    """A float32/float64 ndarray of any ndim >= 1, returned C-contiguous (for
    elementwise ops and losses that take any shape). Zero-sized axes are allowed:
    the result is then empty, as in PyTorch."""
    array = float_array(op, name, value)
    # Checked on value: np.ascontiguousarray turns a 0-D array into a 1-D one.
    if value.ndim == 0:
        raise ValueError(
            f"{op}: {name} must have at least 1 dimension, got a 0-D array."
        )
    return array
