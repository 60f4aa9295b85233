"""layer_norm, group_norm and layer_norm2d (the channel-wise LayerNorm of ConvNeXt)
with their backwards, with torch.nn.functional's meanings.

Each normalises within one sample (never across the batch), so training and
evaluation compute the same thing and there are no running statistics. The
statistics (mean and ``1 / sqrt(var + eps)``, biased variance) are float64 and
every sum is float64 whatever the data's dtype, as in :mod:`.norm`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from .._checks import is_int
from . import _validate as v


def normalized_shape_arg(op: str, value) -> tuple[int, ...]:
    """``normalized_shape`` as a tuple: an int, or a non-empty tuple or list of
    non-negative ints (as torch, which refuses an empty one)."""
    if is_int(value):
        items = (value,)
    elif (isinstance(value, tuple | list) and value
          and all(is_int(item) for item in value)):
        items = tuple(value)
    else:
        raise TypeError(
            f"{op}: normalized_shape must be an int or a non-empty tuple of ints, "
            f"got {value!r:.100}."
        )
    if any(item < 0 or item > v.MAX_SIZE for item in items):
        raise ValueError(
            f"{op}: normalized_shape must hold sizes in [0, 2**31 - 1], got "
            f"{value!r:.100}."
        )
    return tuple(int(item) for item in items)


def _param(op: str, x, name: str, array, shape: tuple[int, ...]):
    """A weight or bias of x's dtype and the given shape; None passes."""
    if array is None:
        return None
    checked = v.float_array(op, name, array, ndim=len(shape))
    v.same_dtype(op, "x", x, **{name: checked})
    v.shape_is(op, name, checked, shape)
    return checked


def _eps(op: str, eps) -> float:
    return v.real_number(op, "eps", eps, low=0.0, low_open=True)


def _dy(op: str, dy, x):
    dy = v.float_array_1d_or_more(op, "dy", dy)
    v.same_dtype(op, "x", x, dy=dy)
    v.shape_is(op, "dy", dy, x.shape)
    return dy


def _saved_stats(op: str, stats, shape: tuple[int, ...], producer: str):
    """``(mean, invstd)`` as ``producer(..., return_stats=True)`` returned them."""
    ok = isinstance(stats, tuple) and len(stats) == 2
    if ok:
        try:
            stats = tuple(v.float_array(op, "stats", a) for a in stats)
        except (TypeError, ValueError):
            ok = False
    if not ok or any(a.dtype != np.float64 or tuple(a.shape) != shape
                     for a in stats):
        raise ValueError(
            f"{op}: stats must be the (mean, invstd) pair that {producer}(..., "
            f"return_stats=True) returned for this x: two float64 arrays of shape "
            f"{shape}."
        )
    return stats


def _or_ones(dev, shape, dtype, weight):
    """weight, or ones (on the op's device) where None."""
    return dev.ones(shape, dtype) if weight is None else weight


def _or_zeros(dev, shape, dtype, bias):
    return dev.zeros(shape, dtype) if bias is None else bias


def _row_stats(dev, rows, eps: float):
    """Per-row mean and invstd of an ``(R, M)`` view, on the op's device."""
    mean = dev.empty(rows.shape[0], np.float64)
    invstd = dev.empty(rows.shape[0], np.float64)
    dev.kernels("layer_norm").row_stats(rows, eps, mean, invstd)
    return mean, invstd


def _empty_backward(dev, x, param_shape):
    """Sums over no values: every gradient is zero (or empty)."""
    return (dev.zeros(x.shape, x.dtype), dev.zeros(param_shape, x.dtype),
            dev.zeros(param_shape, x.dtype))


# ------------------------------------------------------------------- layer_norm


def _check_layer_norm(op: str, x, normalized_shape):
    x = v.float_array_1d_or_more(op, "x", x)
    shape = normalized_shape_arg(op, normalized_shape)
    if x.ndim < len(shape) or tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise ValueError(
            f"{op}: x must end with normalized_shape {shape} (shape (*, "
            f"{', '.join(map(str, shape))})), got x of shape {tuple(x.shape)}."
        )
    return x, shape


def _n_rows(x, shape: tuple[int, ...]) -> int:
    """R: the number of vectors of ``normalized_shape`` in x."""
    return math.prod(x.shape[:x.ndim - len(shape)])


def _rows(x, shape: tuple[int, ...]):
    """x as the ``(R, D)`` view the kernels take."""
    return x.reshape(_n_rows(x, shape), math.prod(shape))


def layer_norm(x: np.ndarray, normalized_shape: int | tuple[int, ...],
               weight: np.ndarray | None = None, bias: np.ndarray | None = None,
               eps: float = 1e-5, *, return_stats: bool = False):
    """Layer normalisation over the trailing ``normalized_shape`` axes of x.

    Each sample's trailing values are shifted to mean 0 and scaled to variance 1
    (biased variance, ``eps`` added), then scaled by ``weight`` and shifted by
    ``bias`` elementwise, as ``torch.nn.functional.layer_norm``.

    Parameters
    ----------
    x : ndarray
        Input, float32 or float64.
    normalized_shape : int or tuple of int
        The trailing shape of x normalised over (non-empty).
    weight, bias : ndarray, optional
        Of shape ``normalized_shape`` and x's dtype (ones and zeros when None).
    eps : float
        Positive number added to the variance before the square root.
    return_stats : bool
        Return ``(y, (mean, invstd))``: the float64 per-row statistics, which
        :func:`layer_norm_backward` takes as ``stats`` instead of recomputing them.

    Shape: x (*, *normalized_shape), weight and bias normalized_shape -> y like x
    (and mean, invstd (R,) float64 with ``return_stats``, R = x.size / D, where D is
    the product of normalized_shape).
    """
    op = "layer_norm"
    x, shape = _check_layer_norm(op, x, normalized_shape)
    weight = _param(op, x, "weight", weight, shape)
    bias = _param(op, x, "bias", bias, shape)
    eps = _eps(op, eps)
    return_stats = v.boolean(op, "return_stats", return_stats)
    dev = backend.device_of(x, weight, bias)
    if x.size == 0:
        y = dev.zeros(x.shape, x.dtype)
        stats = tuple(dev.zeros(_n_rows(x, shape), np.float64) for _ in range(2))
        return (y, stats) if return_stats else y
    rows = _rows(x, shape)
    mean, invstd = _row_stats(dev, rows, eps)
    d = rows.shape[1]
    weight = _or_ones(dev, shape, x.dtype, weight)
    bias = _or_zeros(dev, shape, x.dtype, bias)
    y = dev.empty(x.shape, x.dtype)
    dev.kernels("layer_norm").layer_norm_apply(
        rows, mean, invstd, weight.reshape(d), bias.reshape(d), _rows(y, shape))
    return (y, (mean, invstd)) if return_stats else y


def layer_norm_backward(dy: np.ndarray, x: np.ndarray,
                        normalized_shape: int | tuple[int, ...],
                        weight: np.ndarray | None = None, eps: float = 1e-5, *,
                        stats=None):
    """Gradients of :func:`layer_norm` with respect to x, weight and bias.

    Returns ``(dx, dweight, dbias)``; dweight and dbias are returned even where
    the forward pass had no weight or bias (as if weight were ones). ``stats``,
    the ``(mean, invstd)`` that ``layer_norm(..., return_stats=True)`` returned
    for this x, saves the pass over x that recomputes them (the same result, bit
    for bit).

    Shape: dy, x (*, *normalized_shape); weight normalized_shape -> dx like x,
    dweight and dbias normalized_shape; all zeros (or empty) where x is empty.
    """
    op = "layer_norm_backward"
    x, shape = _check_layer_norm(op, x, normalized_shape)
    dy = _dy(op, dy, x)
    weight = _param(op, x, "weight", weight, shape)
    eps = _eps(op, eps)
    if stats is not None:
        stats = _saved_stats(op, stats, (_n_rows(x, shape),), "layer_norm")
    dev = backend.device_of(dy, x, weight, *(stats or ()))
    if x.size == 0:
        return _empty_backward(dev, x, shape)
    rows = _rows(x, shape)
    mean, invstd = stats if stats is not None else _row_stats(dev, rows, eps)
    d = rows.shape[1]
    weight = _or_ones(dev, shape, x.dtype, weight)
    dx = dev.empty(x.shape, x.dtype)
    dweight = dev.empty(shape, x.dtype)
    dbias = dev.empty(shape, x.dtype)
    dev.kernels("layer_norm").layer_norm_backward(
        _rows(dy, shape), rows, mean, invstd, weight.reshape(d), _rows(dx, shape),
        dweight.reshape(d), dbias.reshape(d))
    return dx, dweight, dbias


# ------------------------------------------------------------------- group_norm


def _check_group_norm(op: str, x, num_groups):
    x = v.float_array_1d_or_more(op, "x", x)
    if x.ndim < 2:
        raise ValueError(
            f"{op}: x must be at least 2-D (N, C, *), got {x.ndim}-D with shape "
            f"{tuple(x.shape)}."
        )
    num_groups = v.positive_int(op, "num_groups", num_groups)
    if x.shape[1] % num_groups:
        raise ValueError(
            f"{op}: x has {x.shape[1]} channels, which num_groups={num_groups} does "
            f"not divide (shape {tuple(x.shape)})."
        )
    return x, num_groups


def _groups(x, num_groups: int):
    """x as the ``(N, G, K, S)`` view the kernels take (x not empty)."""
    n, c = x.shape[0], x.shape[1]
    return x.reshape(n, num_groups, c // num_groups, x.size // (n * c))


def _group_stats(dev, x, num_groups: int, eps: float):
    """Per-group mean and invstd, ``(N, G)`` float64 on the op's device."""
    n = x.shape[0]
    rows = x.reshape(n * num_groups, x.size // (n * num_groups))
    mean, invstd = _row_stats(dev, rows, eps)
    return mean.reshape(n, num_groups), invstd.reshape(n, num_groups)


def group_norm(x: np.ndarray, num_groups: int, weight: np.ndarray | None = None,
               bias: np.ndarray | None = None, eps: float = 1e-5, *,
               return_stats: bool = False):
    """Group normalisation: the channels of each sample are split into
    ``num_groups`` groups, each normalised over its channels and spatial values
    together; then a per-channel scale and shift, as
    ``torch.nn.functional.group_norm``.

    Parameters
    ----------
    x : ndarray
        Input ``(N, C, *)``, float32 or float64; ``num_groups`` divides ``C``.
    num_groups : int
        Positive. 1 normalises each sample over everything (LayerNorm over
        ``(C, *)`` with per-channel affine); ``C`` normalises each channel
        alone (InstanceNorm).
    weight, bias : ndarray, optional
        Per-channel ``(C,)`` scale and shift of x's dtype (ones and zeros when
        None).
    eps : float
        Positive number added to the variance before the square root.
    return_stats : bool
        Return ``(y, (mean, invstd))``: the float64 ``(N, num_groups)``
        statistics, which :func:`group_norm_backward` takes as ``stats``.

    Shape: x (N, C, *), weight and bias (C,) -> y like x (and mean, invstd
    (N, num_groups) float64 with ``return_stats``).
    """
    op = "group_norm"
    x, num_groups = _check_group_norm(op, x, num_groups)
    c = x.shape[1]
    weight = _param(op, x, "weight", weight, (c,))
    bias = _param(op, x, "bias", bias, (c,))
    eps = _eps(op, eps)
    return_stats = v.boolean(op, "return_stats", return_stats)
    dev = backend.device_of(x, weight, bias)
    if x.size == 0:
        y = dev.zeros(x.shape, x.dtype)
        stats = tuple(dev.zeros((x.shape[0], num_groups), np.float64)
                      for _ in range(2))
        return (y, stats) if return_stats else y
    mean, invstd = _group_stats(dev, x, num_groups, eps)
    weight = _or_ones(dev, (c,), x.dtype, weight)
    bias = _or_zeros(dev, (c,), x.dtype, bias)
    y = dev.empty(x.shape, x.dtype)
    k = c // num_groups
    dev.kernels("layer_norm").group_norm_apply(
        _groups(x, num_groups), mean, invstd, weight.reshape(num_groups, k),
        bias.reshape(num_groups, k), _groups(y, num_groups))
    return (y, (mean, invstd)) if return_stats else y


def group_norm_backward(dy: np.ndarray, x: np.ndarray, num_groups: int,
                        weight: np.ndarray | None = None, eps: float = 1e-5, *,
                        stats=None):
    """Gradients of :func:`group_norm` with respect to x, weight and bias.

    Returns ``(dx, dweight, dbias)``; dweight and dbias are returned even where
    the forward pass had no weight or bias (as if weight were ones). ``stats``,
    the ``(mean, invstd)`` that ``group_norm(..., return_stats=True)`` returned
    for this x, saves recomputing them (the same result, bit for bit).

    Shape: dy, x (N, C, *); weight (C,) -> dx like x, dweight (C,), dbias (C,);
    all zeros (or empty) where x is empty.
    """
    op = "group_norm_backward"
    x, num_groups = _check_group_norm(op, x, num_groups)
    dy = _dy(op, dy, x)
    c = x.shape[1]
    weight = _param(op, x, "weight", weight, (c,))
    eps = _eps(op, eps)
    if stats is not None:
        stats = _saved_stats(op, stats, (x.shape[0], num_groups), "group_norm")
    dev = backend.device_of(dy, x, weight, *(stats or ()))
    if x.size == 0:
        return _empty_backward(dev, x, (c,))
    if stats is not None:
        mean, invstd = stats
    else:
        mean, invstd = _group_stats(dev, x, num_groups, eps)
    weight = _or_ones(dev, (c,), x.dtype, weight)
    dx = dev.empty(x.shape, x.dtype)
    dweight = dev.empty(c, x.dtype)
    dbias = dev.empty(c, x.dtype)
    k = c // num_groups
    dev.kernels("layer_norm").group_norm_backward(
        _groups(dy, num_groups), _groups(x, num_groups), mean, invstd,
        weight.reshape(num_groups, k), _groups(dx, num_groups),
        dweight.reshape(num_groups, k), dbias.reshape(num_groups, k))
    return dx, dweight, dbias


# ----------------------------------------------------------------- layer_norm2d


def _check_layer_norm2d(op: str, x):
    return v.float_array(op, "x", x, ndim=4)


def _pixels(x):
    """x as the ``(N, C, S)`` view the kernels take."""
    return x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])


def _pixel_stats(dev, x, eps: float):
    """Per-pixel mean and invstd over the channels, ``(N, H * W)`` float64."""
    n, s = x.shape[0], x.shape[2] * x.shape[3]
    mean = dev.empty((n, s), np.float64)
    invstd = dev.empty((n, s), np.float64)
    dev.kernels("layer_norm").layer_norm2d_stats(_pixels(x), eps, mean, invstd)
    return mean, invstd


def layer_norm2d(x: np.ndarray, weight: np.ndarray | None = None,
                 bias: np.ndarray | None = None, eps: float = 1e-6, *,
                 return_stats: bool = False):
    """Channel-wise layer normalisation of NCHW data, as ConvNeXt uses it: the
    ``C`` values at each pixel are normalised together (biased variance, ``eps``
    added), then scaled and shifted per channel.

    In PyTorch this is spelled with a permute to channels-last and back::

        F.layer_norm(x.permute(0, 2, 3, 1), (C,), weight, bias, eps).permute(0, 3, 1, 2)

    (ConvNeXt's ``LayerNorm(..., data_format="channels_first")``), computed here
    on the NCHW array directly, without the two copies.

    Parameters
    ----------
    x : ndarray
        Input ``(N, C, H, W)``, float32 or float64.
    weight, bias : ndarray, optional
        Per-channel ``(C,)`` scale and shift of x's dtype (ones and zeros when
        None).
    eps : float
        Positive number added to the variance before the square root (1e-6 by
        default, as in ConvNeXt).
    return_stats : bool
        Return ``(y, (mean, invstd))``: the float64 ``(N, H * W)`` per-pixel
        statistics, which :func:`layer_norm2d_backward` takes as ``stats``.

    Shape: x (N, C, H, W), weight and bias (C,) -> y (N, C, H, W) (and mean,
    invstd (N, H * W) float64 with ``return_stats``).
    """
    op = "layer_norm2d"
    x = _check_layer_norm2d(op, x)
    c = x.shape[1]
    weight = _param(op, x, "weight", weight, (c,))
    bias = _param(op, x, "bias", bias, (c,))
    eps = _eps(op, eps)
    return_stats = v.boolean(op, "return_stats", return_stats)
    dev = backend.device_of(x, weight, bias)
    if x.size == 0:
        y = dev.zeros(x.shape, x.dtype)
        shape = (x.shape[0], x.shape[2] * x.shape[3])
        stats = tuple(dev.zeros(shape, np.float64) for _ in range(2))
        return (y, stats) if return_stats else y
    mean, invstd = _pixel_stats(dev, x, eps)
    weight = _or_ones(dev, (c,), x.dtype, weight)
    bias = _or_zeros(dev, (c,), x.dtype, bias)
    y = dev.empty(x.shape, x.dtype)
    dev.kernels("layer_norm").layer_norm2d_apply(_pixels(x), mean, invstd, weight,
                                                 bias, _pixels(y))
    return (y, (mean, invstd)) if return_stats else y


def layer_norm2d_backward(dy: np.ndarray, x: np.ndarray,
                          weight: np.ndarray | None = None, eps: float = 1e-6, *,
                          stats=None):
    """Gradients of :func:`layer_norm2d` with respect to x, weight and bias.

    The same gradients as PyTorch's for
    ``F.layer_norm(x.permute(0, 2, 3, 1), (C,), weight, bias, eps).permute(0, 3,
    1, 2)``. Returns ``(dx, dweight, dbias)``; dweight and dbias are returned even
    where the forward pass had no weight or bias (as if weight were ones).
    ``stats``, the ``(mean, invstd)`` that ``layer_norm2d(..., return_stats=True)``
    returned for this x, saves recomputing them (the same result, bit for bit).

    Shape: dy, x (N, C, H, W); weight (C,) -> dx like x, dweight (C,), dbias (C,);
    all zeros (or empty) where x is empty.
    """
    op = "layer_norm2d_backward"
    x = _check_layer_norm2d(op, x)
    dy = _dy(op, dy, x)
    c = x.shape[1]
    weight = _param(op, x, "weight", weight, (c,))
    eps = _eps(op, eps)
    if stats is not None:
        shape = (x.shape[0], x.shape[2] * x.shape[3])
        stats = _saved_stats(op, stats, shape, "layer_norm2d")
    dev = backend.device_of(dy, x, weight, *(stats or ()))
    if x.size == 0:
        return _empty_backward(dev, x, (c,))
    mean, invstd = stats if stats is not None else _pixel_stats(dev, x, eps)
    weight = _or_ones(dev, (c,), x.dtype, weight)
    dx = dev.empty(x.shape, x.dtype)
    dweight = dev.empty(c, x.dtype)
    dbias = dev.empty(c, x.dtype)
    dev.kernels("layer_norm").layer_norm2d_backward(
        _pixels(dy), _pixels(x), mean, invstd, weight, _pixels(dx), dweight, dbias)
    return dx, dweight, dbias
