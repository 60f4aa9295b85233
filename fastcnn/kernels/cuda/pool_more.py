"""CUDA twins of :mod:`fastcnn.kernels.cpu.pool_more` (same conventions: PyTorch's
flat ``ih * W + iw`` indices, indices outside the addressed plane skipped, PyTorch's
adaptive bins).

Forward kernels run one thread per output. Gradients run one thread per input
element and GATHER, in ``(oh, ow)`` order, from the outputs whose window or bin
contains it, where the CPU kernels scatter in that same order: each element's
gradient is the same sum in the same order, with no float atomics.

Max unpooling scatters, and repeated indices must keep the CPU's winner (the last
in row-major order): a first pass claims each output position for the largest
input position that targets it (an int64 ``atomic.max``, whose result does not
depend on the order threads run in), a second writes every output from its claim.
"""

import numpy as np
from numba import cuda

from .._jit import cuda_device, cuda_kernel
from . import _launch
from ._device import maximum, minimum, unravel4
from .pool import _covering, _dilated_taps, _window_argmax

#: Threads per block (patched small by tests).
THREADS_PER_BLOCK = 256


@cuda_device
def _adaptive_bin(o, out_size, in_size):
    # Twin of the CPU helper: [floor(o*S/O), ceil((o+1)*S/O)).
    start = (o * in_size) // out_size
    stop = ((o + 1) * in_size + out_size - 1) // out_size
    return start, stop


@cuda_device
def _adaptive_covering(i, in_size, out_size):
    # Bins o in [lo, hi) that contain input i: start_o <= i < stop_o solves to
    # floor(i*O/S) <= o < ceil((i+1)*O/S).
    lo = (i * out_size) // in_size
    hi = ((i + 1) * out_size + in_size - 1) // in_size
    return maximum(lo, 0), minimum(hi, out_size)


def _launch_over(kernel, count, args):
    tpb = THREADS_PER_BLOCK
    _launch.launch(kernel, _launch.n_blocks(count, tpb), tpb, args)


@cuda_kernel
def _max_forward_indices(x, y, indices, kh, kw, sh, sw, ph, pw, dh, dw):
    i = cuda.grid(1)
    if i >= y.size:
        return
    n_batch, channels, oh_size, ow_size = y.shape
    h, w = x.shape[2], x.shape[3]
    n, c, oh, ow = unravel4(i, channels, oh_size, ow_size)
    ih0, ih1 = _dilated_taps(oh, kh, sh, ph, dh, h)
    iw0, iw1 = _dilated_taps(ow, kw, sw, pw, dw, w)
    best, bh, bw = _window_argmax(x, n, c, ih0, ih1, dh, iw0, iw1, dw)
    y[n, c, oh, ow] = best
    indices[n, c, oh, ow] = bh * w + bw


def max_pool2d_forward_indices(x, y, indices, kh, kw, sh, sw, ph, pw, dh, dw):
    """``y`` = maximum of each (dilated) window and ``indices`` = where it lies
    (``ih * W + iw``), with the CPU's rule.

    Shape: x (N, C, H, W), y (N, C, OH, OW), indices (N, C, OH, OW) int64.
    Grid: one thread per output.
    """
    if y.size == 0:
        return
    with _launch.staged(x, y, indices, out=(1, 2)) as (x_d, y_d, i_d):
        _launch_over(_max_forward_indices, y.size,
                     (x_d, y_d, i_d, kh, kw, sh, sw, ph, pw, dh, dw))


@cuda_kernel
def _max_backward_indices(dy, indices, dx, kh, kw, sh, sw, ph, pw, dh, dw):
    i = cuda.grid(1)
    if i >= dx.size:
        return
    n_batch, channels, h, w = dx.shape
    oh_size, ow_size = dy.shape[2], dy.shape[3]
    n, c, ih, iw = unravel4(i, channels, h, w)
    # Only a window whose span contains this element can hold its index (the op
    # layer has checked that every index lies on a tap of its own window).
    oh_lo, oh_hi = _covering(ih, kh, sh, ph, dh, oh_size)
    ow_lo, ow_hi = _covering(iw, kw, sw, pw, dw, ow_size)
    here = ih * w + iw
    acc = dx.dtype.type(0)
    for oh in range(oh_lo, oh_hi):
        for ow in range(ow_lo, ow_hi):
            if indices[n, c, oh, ow] == here:
                acc += dy[n, c, oh, ow]
    dx[n, c, ih, iw] = acc


def max_pool2d_backward_indices(dy, indices, dx, kh, kw, sh, sw, ph, pw, dh, dw):
    """Add each ``dy`` to ``dx`` at its index; ``dx`` is overwritten and indices
    outside the plane route nothing.

    Shape: dy (N, C, OH, OW), indices (N, C, OH, OW) int64, dx (N, C, H, W).
    Grid: one thread per element of ``dx``, gathering over the windows containing
    it.
    """
    if dx.size == 0:
        return
    with _launch.staged(dy, indices, dx, out=(2,)) as (dy_d, i_d, dx_d):
        _launch_over(_max_backward_indices, dx.size,
                     (dy_d, i_d, dx_d, kh, kw, sh, sw, ph, pw, dh, dw))


@cuda_kernel
def _unpool_clear(claim):
    i = cuda.grid(1)
    if i < claim.size:
        claim[i] = -1


@cuda_kernel
def _unpool_claim(indices, claim, plane_size):
    i = cuda.grid(1)
    if i >= indices.size:
        return
    n_batch, channels, h, w = indices.shape
    n, c, ih, iw = unravel4(i, channels, h, w)
    target = indices[n, c, ih, iw]
    if target >= 0 and target < plane_size:
        cuda.atomic.max(claim, (n * channels + c) * plane_size + target, ih * w + iw)


@cuda_kernel
def _unpool_write(x, claim, y):
    i = cuda.grid(1)
    if i >= y.size:
        return
    w = x.shape[3]
    n_batch, channels, oh_size, ow_size = y.shape
    n, c, oh, ow = unravel4(i, channels, oh_size, ow_size)
    source = claim[i]
    if source >= 0:
        y[n, c, oh, ow] = x[n, c, source // w, source % w]
    else:
        y[n, c, oh, ow] = y.dtype.type(0)


def max_unpool2d_forward(x, indices, y):
    """``y`` = zeros with each ``x`` written at its index; where indices repeat, the
    last in row-major order wins (as on the CPU). Indices outside the plane are
    skipped.

    Shape: x (N, C, H, W), indices (N, C, H, W) int64, y (N, C, OH, OW).
    Grid: one thread per output (clear, write) and per input (claim), with an int64
    claim buffer of y's size.
    """
    if y.size == 0:
        return
    plane_size = y.shape[2] * y.shape[3]
    with _launch.staged(x, indices, y, out=(2,)) as (x_d, i_d, y_d):
        claim = _launch.scratch((y.size,), np.int64)
        _launch_over(_unpool_clear, y.size, (claim,))
        if x.size:
            _launch_over(_unpool_claim, x.size, (i_d, claim, plane_size))
        _launch_over(_unpool_write, y.size, (x_d, claim, y_d))


@cuda_kernel
def _unpool_backward(dy, indices, dx):
    i = cuda.grid(1)
    if i >= dx.size:
        return
    n_batch, channels, h, w = dx.shape
    ow_size = dy.shape[3]
    plane_size = dy.shape[2] * ow_size
    n, c, ih, iw = unravel4(i, channels, h, w)
    target = indices[n, c, ih, iw]
    if target >= 0 and target < plane_size:
        dx[n, c, ih, iw] = dy[n, c, target // ow_size, target % ow_size]
    else:
        dx[n, c, ih, iw] = dx.dtype.type(0)


def max_unpool2d_backward(dy, indices, dx):
    """``dx`` = ``dy`` gathered at each index (0 outside the plane); repeated
    indices each get that position's gradient.

    Shape: dy (N, C, OH, OW), indices (N, C, H, W) int64, dx (N, C, H, W).
    Grid: one thread per element of ``dx``.
    """
    if dx.size == 0:
        return
    with _launch.staged(dy, indices, dx, out=(2,)) as (dy_d, i_d, dx_d):
        _launch_over(_unpool_backward, dx.size, (dy_d, i_d, dx_d))


@cuda_kernel
def _adaptive_forward(x, y):
    i = cuda.grid(1)
    if i >= y.size:
        return
    n_batch, channels, oh_size, ow_size = y.shape
    h, w = x.shape[2], x.shape[3]
    n, c, oh, ow = unravel4(i, channels, oh_size, ow_size)
    ih0, ih1 = _adaptive_bin(oh, oh_size, h)
    iw0, iw1 = _adaptive_bin(ow, ow_size, w)
    acc = y.dtype.type(0)
    for ih in range(ih0, ih1):
        for iw in range(iw0, iw1):
            acc += x[n, c, ih, iw]
    y[n, c, oh, ow] = acc / y.dtype.type((ih1 - ih0) * (iw1 - iw0))


def adaptive_avg_pool2d_forward(x, y):
    """``y`` = mean of each adaptive bin (a row-major sum, then one division).

    Shape: x (N, C, H, W), y (N, C, OH, OW). Grid: one thread per output.
    """
    if y.size == 0:
        return
    with _launch.staged(x, y, out=(1,)) as (x_d, y_d):
        _launch_over(_adaptive_forward, y.size, (x_d, y_d))


@cuda_kernel
def _adaptive_backward(dy, dx):
    i = cuda.grid(1)
    if i >= dx.size:
        return
    n_batch, channels, h, w = dx.shape
    oh_size, ow_size = dy.shape[2], dy.shape[3]
    n, c, ih, iw = unravel4(i, channels, h, w)
    oh_lo, oh_hi = _adaptive_covering(ih, h, oh_size)
    ow_lo, ow_hi = _adaptive_covering(iw, w, ow_size)
    acc = dx.dtype.type(0)
    for oh in range(oh_lo, oh_hi):
        ih0, ih1 = _adaptive_bin(oh, oh_size, h)
        for ow in range(ow_lo, ow_hi):
            iw0, iw1 = _adaptive_bin(ow, ow_size, w)
            acc += dy[n, c, oh, ow] / dx.dtype.type((ih1 - ih0) * (iw1 - iw0))
    dx[n, c, ih, iw] = acc


def adaptive_avg_pool2d_backward(dy, dx):
    """Spread each ``dy / bin size`` over its bin; ``dx`` is overwritten and
    overlapping bins accumulate.

    Shape: dy (N, C, OH, OW), dx (N, C, H, W). Grid: one thread per element of
    ``dx``, gathering over the bins containing it.
    """
    if dx.size == 0:
        return
    with _launch.staged(dy, dx, out=(1,)) as (dy_d, dx_d):
        _launch_over(_adaptive_backward, dx.size, (dy_d, dx_d))
