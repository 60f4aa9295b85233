"""Max unpooling (``torch.nn.functional.max_unpool2d``) and its backward.

There is no ``MaxUnpool2D`` layer: it takes two inputs (the pooled values and the
indices of the max pooling it undoes), and the layers of a ``Sequential`` pass one
array from layer to layer; a graph-model layer that carries indices between two
layers is more machinery than a partial inverse of max pooling is worth. The ops
below serve hand-written loops (and the pool-then-unpool autoencoder idiom).
"""

from __future__ import annotations

import numpy as np

from .. import backend
from .._checks import is_int
from . import _pool_indices
from . import _validate as v
from .pool import _check_x


def _is_size_list(value) -> bool:
    return isinstance(value, tuple | list) and all(is_int(s) for s in value)


def unpool_output_size(op: str, x_shape, kernel_size, stride, padding,
                       output_size) -> tuple[int, int]:
    """PyTorch's unpooled (H, W): ``(H_in - 1) * stride - 2 * padding +
    kernel_size`` by default; a given ``output_size`` (a pair, or a 4-sequence
    whose last two are taken) must lie strictly between that minus and plus the
    stride. Validates the hyper-parameters too."""
    kernel = v.pair(op, "kernel_size", kernel_size, minimum=1)
    stride = kernel if stride is None else v.pair(op, "stride", stride, minimum=1)
    padding = v.pair(op, "padding", padding, minimum=0)
    default = tuple((size - 1) * s - 2 * p + k for size, k, s, p in
                    zip(x_shape[2:], kernel, stride, padding, strict=True))
    if output_size is None:
        out = default
    else:
        if not _is_size_list(output_size) or len(output_size) not in (2, 4):
            raise TypeError(
                f"{op}: output_size must be None or a sequence of 2 ints (or 4, "
                f"of which the last 2 are used, as in PyTorch), got "
                f"{output_size!r:.200}."
            )
        out = tuple(int(s) for s in output_size[-2:])
        for axis, (size, base, s) in enumerate(zip(out, default, stride,
                                                   strict=True)):
            if not base - s < size < base + s:
                raise ValueError(
                    f"{op}: output_size {tuple(output_size)} is invalid: entry "
                    f"{axis} must lie strictly between {base - s} and {base + s} "
                    f"(the default size {base} minus and plus the stride {s})."
                )
    if min(out) < 1:
        raise ValueError(
            f"{op}: kernel_size={kernel}, stride={stride}, padding={padding} give an "
            f"output of size {out} for x of shape {tuple(x_shape)}; it must be at "
            f"least 1 (use less padding)."
        )
    if max(out) > v.MAX_SIZE:
        raise ValueError(f"{op}: the output size {out} exceeds 2**31 - 1.")
    return out[0], out[1]


def max_unpool2d(x: np.ndarray, indices: np.ndarray, kernel_size, stride=None,
                 padding=0, output_size=None) -> np.ndarray:
    """Partial inverse of :func:`max_pool2d`: each value of ``x`` is written at its
    index in a plane of zeros.

    Parameters
    ----------
    x : ndarray
        The pooled values, float32 or float64.
    indices : ndarray of int
        x's shape: the flat position ``oh * OW + ow`` in the output plane of each
        value (``max_pool2d(..., return_indices=True)`` gives them). Each must lie
        in ``[0, OH * OW)`` (ValueError otherwise: nothing is written out of
        bounds).
    kernel_size, stride, padding : int or (int, int)
        Those of the max pooling undone (stride None means ``kernel_size``).
    output_size : (int, int), optional
        The size to restore where the pooling rounded down (as PyTorch: a pair, or
        four ints of which the last two are used); default
        ``(H - 1) * stride - 2 * padding + kernel_size``.

    Shape: x (N, C, H, W), indices (N, C, H, W) -> (N, C, OH, OW).

    Notes
    -----
    Where indices repeat in one plane, the value last in row-major order wins:
    PyTorch's result on one thread (with several threads, and on CUDA, PyTorch's
    winner varies from run to run; here it never does).
    """
    op = "max_unpool2d"
    x = _check_x(op, x)
    out = unpool_output_size(op, x.shape, kernel_size, stride, padding, output_size)
    indices = _checked_indices(op, indices, x.shape, out)
    return max_unpool2d_trusted(x, indices, out)


def _checked_indices(op, indices, shape, out):
    indices = _pool_indices.index_array(op, "indices", indices, shape)
    size = out[0] * out[1]
    return _pool_indices.in_range(op, "indices", indices, size,
                                  f"positions in an output plane of {out[0]}x{out[1]}")


def max_unpool2d_trusted(x, indices, out_hw):
    """:func:`max_unpool2d` on a checked x and int64 indices that lie in the
    ``out_hw`` plane; checks nothing."""
    dev = backend.device_of(x)
    shape = (*x.shape[:2], *out_hw)
    if x.shape[0] == 0:
        return dev.zeros(shape, x.dtype)
    y = dev.empty(shape, x.dtype)
    dev.kernels("pool_more").max_unpool2d_forward(x, indices, y)
    return y


def max_unpool2d_backward(dy: np.ndarray, indices: np.ndarray, kernel_size,
                          stride=None, padding=0, output_size=None) -> np.ndarray:
    """Gradient of :func:`max_unpool2d` with respect to x: ``dy`` gathered at each
    index.

    Arguments as :func:`max_unpool2d`; x's shape is ``indices``'s.

    Shape: dy (N, C, OH, OW), indices (N, C, H, W) -> dx (N, C, H, W), dy's dtype.

    Notes
    -----
    As in PyTorch, every element whose index repeats gets the gradient of that
    position, also those the forward overwrote (whose true gradient is 0).
    """
    op = "max_unpool2d_backward"
    dy = v.float_array(op, "dy", dy, ndim=4)
    host = _pool_indices.index_array(op, "indices", indices, None)
    out = unpool_output_size(op, host.shape, kernel_size, stride, padding,
                             output_size)
    v.shape_is(op, "dy", dy, (*host.shape[:2], *out))
    indices = _checked_indices(op, host, host.shape, out)
    return max_unpool2d_backward_trusted(dy, indices)


def max_unpool2d_backward_trusted(dy, indices):
    """:func:`max_unpool2d_backward` on a checked dy and int64 indices that lie in
    its planes; checks nothing."""
    dev = backend.device_of(dy)
    if indices.shape[0] == 0:
        return dev.zeros(indices.shape, dy.dtype)
    dx = dev.empty(indices.shape, dy.dtype)
    dev.kernels("pool_more").max_unpool2d_backward(dy, indices, dx)
    return dx
