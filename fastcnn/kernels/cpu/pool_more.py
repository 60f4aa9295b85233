"""Pooling with argmax indices (max pooling that returns them, its gradient through
them, max unpooling) and adaptive average pooling, with their input gradients.

Conventions (those of :mod:`.pool`, plus):

- ``indices`` is int64 with the shape of the pooled array; entry ``(n, c, oh, ow)`` is
  the flat position ``ih * W + iw`` of its window's maximum in plane ``x[n, c]``, as
  in PyTorch. A window with no tap inside the input (possible with dilation only)
  holds PyTorch's value, computed from its first tap, which lies outside the input.
  Kernels that read indices skip every index outside the plane they address (the
  op layer has validated the rest), so none writes out of bounds.
- Adaptive average pooling uses PyTorch's bins: output ``o`` of ``O`` over an axis of
  ``S`` inputs averages ``[floor(o*S/O), ceil((o+1)*S/O))``.

Every ``prange`` runs over the ``N * C`` planes, and one iteration owns one plane of
each array it writes: the scatters (max unpooling, the max-pool gradient, the
adaptive-pool gradient) happen within that plane in a fixed serial order, so they are
race-free and bitwise the same for any thread count.
"""

from numba import prange

from .._jit import cpu_helper, cpu_kernel
from .pool import _dilated_taps, _window_argmax


@cpu_helper
def _adaptive_bin(o, out_size, in_size):
    """PyTorch's bin of output ``o``: ``[floor(o*S/O), ceil((o+1)*S/O))`` (all
    operands non-negative, so plain floor division)."""
    start = (o * in_size) // out_size
    stop = ((o + 1) * in_size + out_size - 1) // out_size
    return start, stop


@cpu_kernel
def max_pool2d_forward_indices(x, y, indices, kh, kw, sh, sw, ph, pw, dh, dw):
    """``y`` = maximum of each (dilated) window and ``indices`` = where it lies
    (``ih * W + iw``), with :func:`.pool.max_pool2d_forward`'s rule (first maximum
    in row-major order, every NaN wins).

    Shape: x (N, C, H, W), y (N, C, OH, OW), indices (N, C, OH, OW) int64.
    Parallel over ``N * C``.
    """
    n_batch, channels, oh_size, ow_size = y.shape
    h, w = x.shape[2], x.shape[3]
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        src = x[n, c]
        dst = y[n, c]
        where = indices[n, c]
        for oh in range(oh_size):
            ih0, ih1 = _dilated_taps(oh, kh, sh, ph, dh, h)
            for ow in range(ow_size):
                iw0, iw1 = _dilated_taps(ow, kw, sw, pw, dw, w)
                best, bh, bw = _window_argmax(src, ih0, ih1, dh, iw0, iw1, dw)
                dst[oh, ow] = best
                where[oh, ow] = bh * w + bw


@cpu_kernel
def max_pool2d_backward_indices(dy, indices, dx, kh, kw, sh, sw, ph, pw, dh, dw):
    """Add each ``dy`` to ``dx`` at its index; ``dx`` is overwritten, windows sharing
    an argmax accumulate in ``(oh, ow)`` order (the order, and so the bits, of
    :func:`.pool.max_pool2d_backward`) and indices outside the plane route nothing.
    The window hyper-parameters are unused here; the CUDA twin gathers with them.

    Shape: dy (N, C, OH, OW), indices (N, C, OH, OW) int64, dx (N, C, H, W).
    Parallel over ``N * C``.
    """
    n_batch, channels, oh_size, ow_size = dy.shape
    w = dx.shape[3]
    size = dx.shape[2] * w
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        grad = dy[n, c]
        where = indices[n, c]
        plane = dx[n, c]
        plane[:, :] = 0
        for oh in range(oh_size):
            for ow in range(ow_size):
                i = where[oh, ow]
                if i >= 0 and i < size:
                    plane[i // w, i % w] += grad[oh, ow]


@cpu_kernel
def max_unpool2d_forward(x, indices, y):
    """``y`` = zeros with each ``x`` written at its index; where indices repeat, the
    last in row-major order wins (PyTorch on one thread). Indices outside the
    plane are skipped.

    Shape: x (N, C, H, W), indices (N, C, H, W) int64, y (N, C, OH, OW).
    Parallel over ``N * C``.
    """
    n_batch, channels, h, w = x.shape
    ow_size = y.shape[3]
    size = y.shape[2] * ow_size
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        src = x[n, c]
        where = indices[n, c]
        plane = y[n, c]
        plane[:, :] = 0
        for ih in range(h):
            for iw in range(w):
                i = where[ih, iw]
                if i >= 0 and i < size:
                    plane[i // ow_size, i % ow_size] = src[ih, iw]


@cpu_kernel
def max_unpool2d_backward(dy, indices, dx):
    """``dx`` = ``dy`` gathered at each index (0 outside the plane). As in PyTorch,
    every element whose index repeats gets that position's gradient, the ones the
    forward overwrote included.

    Shape: dy (N, C, OH, OW), indices (N, C, H, W) int64, dx (N, C, H, W).
    Parallel over ``N * C``.
    """
    n_batch, channels, h, w = dx.shape
    ow_size = dy.shape[3]
    size = dy.shape[2] * ow_size
    zero = dx.dtype.type(0)
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        grad = dy[n, c]
        where = indices[n, c]
        plane = dx[n, c]
        for ih in range(h):
            for iw in range(w):
                i = where[ih, iw]
                if i >= 0 and i < size:
                    plane[ih, iw] = grad[i // ow_size, i % ow_size]
                else:
                    plane[ih, iw] = zero


@cpu_kernel
def adaptive_avg_pool2d_forward(x, y):
    """``y`` = mean of each adaptive bin (a row-major sum, then one division, as
    the other average pools).

    Shape: x (N, C, H, W), y (N, C, OH, OW). Parallel over ``N * C``.
    """
    n_batch, channels, oh_size, ow_size = y.shape
    h, w = x.shape[2], x.shape[3]
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        src = x[n, c]
        dst = y[n, c]
        for oh in range(oh_size):
            ih0, ih1 = _adaptive_bin(oh, oh_size, h)
            for ow in range(ow_size):
                iw0, iw1 = _adaptive_bin(ow, ow_size, w)
                acc = y.dtype.type(0)
                for ih in range(ih0, ih1):
                    row = src[ih]
                    for iw in range(iw0, iw1):
                        acc += row[iw]
                dst[oh, ow] = acc / y.dtype.type((ih1 - ih0) * (iw1 - iw0))


@cpu_kernel
def adaptive_avg_pool2d_backward(dy, dx):
    """Spread each ``dy / bin size`` over its bin; ``dx`` is overwritten and
    overlapping bins accumulate in ``(oh, ow)`` order.

    Shape: dy (N, C, OH, OW), dx (N, C, H, W). Parallel over ``N * C``.
    """
    n_batch, channels, oh_size, ow_size = dy.shape
    h, w = dx.shape[2], dx.shape[3]
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        grad = dy[n, c]
        plane = dx[n, c]
        plane[:, :] = 0
        for oh in range(oh_size):
            ih0, ih1 = _adaptive_bin(oh, oh_size, h)
            for ow in range(ow_size):
                iw0, iw1 = _adaptive_bin(ow, ow_size, w)
                share = grad[oh, ow] / dx.dtype.type((ih1 - ih0) * (iw1 - iw0))
                for ih in range(ih0, ih1):
                    row = plane[ih]
                    for iw in range(iw0, iw1):
                        row[iw] += share

