"""Max, average and global average pooling and their backwards, with
torch.nn.functional's argument meanings (max_pool2d, avg_pool2d,
adaptive_avg_pool2d(x, 1)). Max unpooling is in :mod:`.unpool`, adaptive average
pooling in :mod:`.adaptive_pool`."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import backend
from ..kernels._clamp import gate_bounds
from . import _pool_indices
from . import _validate as v


class PoolGeometry(NamedTuple):
    """Validated hyper-parameters of one pooling; every field is an (h, w) pair."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    out_hw: tuple[int, int]

    def kernel_args(self) -> tuple[int, ...]:
        """The positional hyper-parameters of the max-pool kernels."""
        return (*self.kernel, *self.stride, *self.padding, *self.dilation)


def pool_geometry(op: str, x_shape, kernel_size, stride, padding, dilation,
                  ceil_mode) -> PoolGeometry:
    """Validate a pooling configuration against the shape of x, as PyTorch does."""
    kernel = v.pair(op, "kernel_size", kernel_size, minimum=1)
    stride = kernel if stride is None else v.pair(op, "stride", stride, minimum=1)
    padding = v.pair(op, "padding", padding, minimum=0)
    dilation = v.pair(op, "dilation", dilation, minimum=1)
    ceil_mode = v.boolean(op, "ceil_mode", ceil_mode)
    # PyTorch's rule (on the autograd path) compares padding with the kernel size
    # itself, not the dilated extent: it keeps windows from lying wholly in padding.
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{op}: padding must be at most half of kernel_size, got "
            f"padding={padding} with kernel_size={kernel}."
        )
    out = tuple(
        v.pool_output_size(size, k, s, p, d, ceil_mode)
        for size, k, s, p, d in zip(x_shape[2:], kernel, stride, padding, dilation,
                                    strict=True)
    )
    if min(out) < 1:
        raise ValueError(
            f"{op}: kernel_size={kernel} (dilation={dilation}, stride={stride}, "
            f"padding={padding}, ceil_mode={ceil_mode}) leaves an output of size "
            f"{out} for x of shape {tuple(x_shape)}; the input is too small."
        )
    return PoolGeometry(kernel, stride, padding, dilation, (out[0], out[1]))


def _check_x(op: str, x) -> np.ndarray:
    x = v.float_array(op, "x", x, ndim=4)
    # As in PyTorch, only the batch may be empty (it refuses C = 0 and H, W = 0).
    v.non_empty_axes(op, "x", x, (1, 2, 3), "channel, height or width (only the "
                     "batch axis may be empty)")
    return x


def _check_dy(op: str, dy, x: np.ndarray, shape) -> np.ndarray:
    dy = v.float_array(op, "dy", dy, ndim=len(shape))
    v.same_dtype(op, "x", x, dy=dy)
    v.shape_is(op, "dy", dy, shape)
    return dy


def max_pool2d(x: np.ndarray, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """2-D max pooling; padded positions never win (they act as -inf).

    Parameters
    ----------
    x : ndarray
        Input images, float32 or float64.
    kernel_size : int or (int, int)
        Window size.
    stride : int or (int, int), optional
        Step between windows; None means ``kernel_size``.
    padding : int or (int, int)
        Implicit -inf padding on each side, at most half of ``kernel_size``.
    dilation : int or (int, int)
        Step between window taps.
    ceil_mode : bool
        Round the output size up (a last, partial window), as in PyTorch.
    return_indices : bool
        Also return where each maximum lies, as PyTorch does: the flat position
        ``ih * W + iw`` in its input plane, int64 (what :func:`max_unpool2d` and
        ``max_pool2d_backward(..., indices=)`` take).

    Returns
    -------
    y : ndarray
        The pooled images, x's dtype.
    indices : ndarray of int64
        Only with ``return_indices``: y's shape.

    Shape: x (N, C, H, W) -> (N, C, OH, OW) with
    OH = (H + 2*padding - dilation*(kernel_size-1) - 1) // stride + 1
    (rounded up with ``ceil_mode``, dropping a last window that would start in the
    right padding); indices (N, C, OH, OW).

    Notes
    -----
    Ties keep the first maximum in row-major window order; NaN propagates (the last
    NaN of a window is its index). A window with no tap inside the input
    (possible with dilation only) gives -inf and, as in PyTorch, the index
    ``ih * W + iw`` of its first tap, which lies outside the input (the number may
    still fall inside ``[0, H * W)``).
    An empty batch gives an empty result; C, H and W must be positive (as in
    PyTorch).
    """
    op = "max_pool2d"
    x = _check_x(op, x)
    geo = pool_geometry(op, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    if v.boolean(op, "return_indices", return_indices):
        return max_pool2d_with_indices_trusted(x, geo)
    return max_pool2d_trusted(x, geo)


def max_pool2d_trusted(x, geo: PoolGeometry):
    """:func:`max_pool2d` on a checked, C-contiguous x and its ``geo``; checks
    nothing (layers call it with what they validated at build)."""
    dev = backend.device_of(x)
    if x.shape[0] == 0:
        return dev.zeros((0, *x.shape[1:2], *geo.out_hw), x.dtype)
    y = dev.empty((*x.shape[:2], *geo.out_hw), x.dtype)
    dev.kernels("pool").max_pool2d_forward(x, y, *geo.kernel_args())
    return y


def max_pool2d_runner(x_shape, dtype, geo: PoolGeometry):
    """``run(x)``, :func:`max_pool2d_trusted` for host inputs of shape
    ``x_shape`` and ``dtype``, decided once (see ``conv.conv2d_runner``); None
    for an empty batch."""
    if x_shape[0] == 0:
        return None
    dev = backend.device_of()
    forward = dev.kernels("pool").max_pool2d_forward
    shape, args = (*x_shape[:2], *geo.out_hw), geo.kernel_args()
    empty = dev.empty

    def run(x):
        y = empty(shape, dtype)
        forward(x, y, *args)
        return y

    return run


def max_pool2d_backward(dy: np.ndarray, x: np.ndarray, kernel_size, stride=None,
                        padding=0, dilation=1, ceil_mode: bool = False,
                        indices: np.ndarray | None = None) -> np.ndarray:
    """Gradient of :func:`max_pool2d` with respect to x.

    Each window's ``dy`` goes to exactly one input, its argmax; inputs shared by
    overlapping windows accumulate. Without ``indices`` the argmax is recomputed
    from x with the forward's tie rule; with them (what ``max_pool2d(...,
    return_indices=True)`` returned) the gradient goes where they point, as
    PyTorch's backward does, and x gives only the shape.

    Parameters
    ----------
    indices : ndarray of int, optional
        dy's shape. Each must be a position ``ih * W + iw`` on a tap of its own
        window inside the input (ValueError otherwise); the index of a window with
        no tap inside the input is ignored (such a window routes nothing).

    Shape: dy (N, C, OH, OW), x (N, C, H, W), indices (N, C, OH, OW) ->
    dx (N, C, H, W).
    """
    op = "max_pool2d_backward"
    x = _check_x(op, x)
    geo = pool_geometry(op, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    dy = _check_dy(op, dy, x, (*x.shape[:2], *geo.out_hw))
    if indices is None:
        return max_pool2d_backward_trusted(dy, x, geo)
    indices = _pool_indices.index_array(op, "indices", indices, dy.shape)
    indices = _pool_indices.window_indices(op, "indices", indices, geo,
                                           x.shape[2], x.shape[3])
    return max_pool2d_backward_indices_trusted(dy, indices, x.shape, geo)


def max_pool2d_backward_trusted(dy, x, geo: PoolGeometry, gate=None):
    """:func:`max_pool2d_backward` on checked arguments; checks nothing.

    ``gate``: the interval (``fastcnn.kernels._clamp.CLAMPS``) of the ReLU or ReLU6
    whose output ``x`` is: its backward is applied in the same pass, bitwise
    ``relu_backward(max_pool2d_backward(dy, x), x)`` (None: not applied).
    """
    dev = backend.device_of(x, dy)
    if x.shape[0] == 0:
        return dev.zeros(x.shape, x.dtype)
    dx = dev.empty(x.shape, x.dtype)
    lo, hi = gate_bounds(gate, x.dtype)
    dev.kernels("pool").max_pool2d_backward_gated(dy, x, dx, lo, hi,
                                                  *geo.kernel_args())
    return dx


def max_pool2d_with_indices_trusted(x, geo: PoolGeometry):
    """``max_pool2d(..., return_indices=True)`` on a checked, C-contiguous x and
    its ``geo``: ``(y, indices)``, both on x's device; checks nothing."""
    dev = backend.device_of(x)
    shape = (*x.shape[:2], *geo.out_hw)
    if x.shape[0] == 0:
        return dev.zeros(shape, x.dtype), dev.zeros(shape, np.int64)
    y = dev.empty(shape, x.dtype)
    indices = dev.empty(shape, np.int64)
    dev.kernels("pool_more").max_pool2d_forward_indices(x, y, indices,
                                                        *geo.kernel_args())
    return y, indices


def max_pool2d_backward_indices_trusted(dy, indices, x_shape, geo: PoolGeometry):
    """``max_pool2d_backward(..., indices=)`` on a checked dy and indices that
    :func:`._pool_indices.window_indices` returned; checks nothing."""
    dev = backend.device_of(dy)
    if x_shape[0] == 0:
        return dev.zeros(x_shape, dy.dtype)
    dx = dev.empty(x_shape, dy.dtype)
    dev.kernels("pool_more").max_pool2d_backward_indices(dy, indices, dx,
                                                         *geo.kernel_args())
    return dx


def _avg_geometry(op, x_shape, kernel_size, stride, padding, ceil_mode,
                  count_include_pad):
    geo = pool_geometry(op, x_shape, kernel_size, stride, padding, 1, ceil_mode)
    include = v.boolean(op, "count_include_pad", count_include_pad)
    return geo, include


def _avg_args(geo: PoolGeometry, count_include_pad: bool) -> tuple:
    """The positional hyper-parameters of the average-pool kernels."""
    return (*geo.kernel, *geo.stride, *geo.padding, count_include_pad)


def avg_pool2d(x: np.ndarray, kernel_size, stride=None, padding=0,
               ceil_mode: bool = False, count_include_pad: bool = True) -> np.ndarray:
    """2-D average pooling.

    Parameters
    ----------
    x : ndarray
        Input images, float32 or float64.
    kernel_size : int or (int, int)
        Window size.
    stride : int or (int, int), optional
        Step between windows; None means ``kernel_size``.
    padding : int or (int, int)
        Implicit zero padding on each side, at most half of ``kernel_size``.
    ceil_mode : bool
        Round the output size up (a last, partial window), as in PyTorch.
    count_include_pad : bool
        Divide by the window's size including padding (PyTorch's default) rather
        than by the number of inputs it covers. The part of a ``ceil_mode`` window
        beyond the right padding never counts.

    Shape: x (N, C, H, W) -> (N, C, OH, OW) with
    OH = (H + 2*padding - kernel_size) // stride + 1 (rounded up with ``ceil_mode``).
    An empty batch gives an empty result; C, H and W must be positive (as in
    PyTorch).
    """
    op = "avg_pool2d"
    x = _check_x(op, x)
    geo, include = _avg_geometry(op, x.shape, kernel_size, stride, padding,
                                 ceil_mode, count_include_pad)
    return avg_pool2d_trusted(x, geo, include)


def avg_pool2d_trusted(x, geo: PoolGeometry, count_include_pad: bool):
    """:func:`avg_pool2d` on a checked, C-contiguous x and its ``geo``; checks
    nothing."""
    dev = backend.device_of(x)
    if x.shape[0] == 0:
        return dev.zeros((0, *x.shape[1:2], *geo.out_hw), x.dtype)
    y = dev.empty((*x.shape[:2], *geo.out_hw), x.dtype)
    dev.kernels("pool").avg_pool2d_forward(x, y, *_avg_args(geo, count_include_pad))
    return y


def avg_pool2d_backward(dy: np.ndarray, x: np.ndarray, kernel_size, stride=None,
                        padding=0, ceil_mode: bool = False,
                        count_include_pad: bool = True) -> np.ndarray:
    """Gradient of :func:`avg_pool2d` with respect to x: each ``dy / divisor`` is
    spread over the inputs of its window.

    Shape: dy (N, C, OH, OW), x (N, C, H, W) -> dx (N, C, H, W).
    """
    op = "avg_pool2d_backward"
    x = _check_x(op, x)
    geo, include = _avg_geometry(op, x.shape, kernel_size, stride, padding,
                                 ceil_mode, count_include_pad)
    dy = _check_dy(op, dy, x, (*x.shape[:2], *geo.out_hw))
    return avg_pool2d_backward_trusted(dy, x, geo, include)


def avg_pool2d_backward_trusted(dy, x, geo: PoolGeometry, count_include_pad: bool):
    """:func:`avg_pool2d_backward` on checked arguments; checks nothing."""
    dev = backend.device_of(x, dy)
    if x.shape[0] == 0:
        return dev.zeros(x.shape, x.dtype)
    dx = dev.empty(x.shape, x.dtype)
    dev.kernels("pool").avg_pool2d_backward(dy, dx,
                                            *_avg_args(geo, count_include_pad))
    return dx


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    """Mean of every feature map (``adaptive_avg_pool2d(x, 1)`` flattened).

    Shape: x (N, C, H, W) -> (N, C).

    Any axis may be empty, as in PyTorch: the mean of an empty map (H or W 0)
    is NaN.
    """
    op = "global_avg_pool2d"
    x = v.float_array(op, "x", x, ndim=4)
    return global_avg_pool2d_trusted(x)


def global_avg_pool2d_trusted(x):
    """:func:`global_avg_pool2d` on a checked, C-contiguous x; checks nothing."""
    dev = backend.device_of(x)
    if x.size == 0:
        y = np.full(x.shape[:2], np.nan, x.dtype)
        return dev.move_in(y)
    y = dev.empty(x.shape[:2], x.dtype)
    dev.kernels("pool").global_avg_pool2d_forward(x, y)
    return y


def global_avg_pool2d_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`global_avg_pool2d`: ``dy / (H * W)`` over each map.

    Shape: dy (N, C), x (N, C, H, W) -> dx (N, C, H, W).
    """
    op = "global_avg_pool2d_backward"
    x = v.float_array(op, "x", x, ndim=4)
    dy = _check_dy(op, dy, x, x.shape[:2])
    return global_avg_pool2d_backward_trusted(dy, x)


def global_avg_pool2d_backward_trusted(dy, x):
    """:func:`global_avg_pool2d_backward` on checked arguments; checks nothing."""
    dev = backend.device_of(x, dy)
    if x.size == 0:
        return dev.zeros(x.shape, x.dtype)
    dx = dev.empty(x.shape, x.dtype)
    dev.kernels("pool").global_avg_pool2d_backward(dy, dx)
    return dx
