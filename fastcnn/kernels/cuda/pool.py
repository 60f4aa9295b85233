"""CUDA twins of :mod:`fastcnn.kernels.cpu.pool` (same conventions: unpadded x,
windows clipped to the input, PyTorch's window and tie rules).

Forward kernels run one thread per output. Backward kernels run one thread per input
element and GATHER from the windows that contain it, in ``(oh, ow)`` order, where
the CPU kernels scatter each window into its plane in that same order: each input's
gradient is the same sum in the same order, with no atomics. Max pooling recomputes
each candidate window's argmax with the forward's rule.
"""

import math

import numpy as np
from numba import cuda

from .._jit import cuda_device, cuda_kernel
from . import _launch
from ._device import maximum, minimum, unravel4

#: Threads per block (patched small by tests).
THREADS_PER_BLOCK = 256


@cuda_device
def _dilated_taps(o, k, s, p, d, size):
    # Twin of the CPU helper: first and stop index of window o's taps inside
    # [0, size); first >= stop means none.
    first = o * s - p
    stop = minimum(first + (k - 1) * d + 1, size)
    if first < 0:
        first += ((d - 1 - first) // d) * d
    return first, stop


@cuda_device
def _window_argmax(x, n, c, ih0, ih1, dh, iw0, iw1, dw):
    # Twin of the CPU helper on plane x[n, c]: the first maximum in row-major order,
    # every NaN replacing the winner; -inf and the first tap when nothing beats it.
    best = x.dtype.type(-np.inf)
    bh = ih0
    bw = iw0
    for ih in range(ih0, ih1, dh):
        for iw in range(iw0, iw1, dw):
            val = x[n, c, ih, iw]
            if val > best or math.isnan(val):
                best = val
                bh = ih
                bw = iw
    return best, bh, bw


@cuda_device
def _covering(i, k, s, p, d, out_size):
    # Windows o in [lo, hi) whose span o*s - p + [0, (k-1)*d] contains index i.
    lo = -((-(i + p - (k - 1) * d)) // s)
    hi = (i + p) // s + 1
    return maximum(lo, 0), minimum(hi, out_size)


@cuda_kernel
def _max_forward(x, y, kh, kw, sh, sw, ph, pw, dh, dw):
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


def max_pool2d_forward(x, y, kh, kw, sh, sw, ph, pw, dh, dw):
    """``y`` = maximum of each (dilated) window; a window with no tap inside the input
    gives -inf.

    Shape: x (N, C, H, W), y (N, C, OH, OW). Grid: one thread per output.
    """
    if y.size == 0:
        return
    with _launch.staged(x, y, out=(1,)) as (x_d, y_d):
        tpb = THREADS_PER_BLOCK
        _launch.launch(_max_forward, _launch.n_blocks(y.size, tpb), tpb,
                       (x_d, y_d, kh, kw, sh, sw, ph, pw, dh, dw))


@cuda_kernel
def _max_backward(dy, x, dx, lo, hi, kh, kw, sh, sw, ph, pw, dh, dw):
    i = cuda.grid(1)
    if i >= dx.size:
        return
    n_batch, channels, h, w = dx.shape
    oh_size, ow_size = dy.shape[2], dy.shape[3]
    n, c, ih, iw = unravel4(i, channels, h, w)
    oh_lo, oh_hi = _covering(ih, kh, sh, ph, dh, oh_size)
    ow_lo, ow_hi = _covering(iw, kw, sw, pw, dw, ow_size)
    acc = dx.dtype.type(0)
    for oh in range(oh_lo, oh_hi):
        if (ih + ph - oh * sh) % dh != 0:
            continue
        ih0, ih1 = _dilated_taps(oh, kh, sh, ph, dh, h)
        for ow in range(ow_lo, ow_hi):
            if (iw + pw - ow * sw) % dw != 0:
                continue
            iw0, iw1 = _dilated_taps(ow, kw, sw, pw, dw, w)
            best, bh, bw = _window_argmax(x, n, c, ih0, ih1, dh, iw0, iw1, dw)
            if bh == ih and bw == iw:
                acc += dy[n, c, oh, ow]
    v = x[n, c, ih, iw]
    if v <= lo or v >= hi:  # the gate of the CPU twin: a NaN bound stops nothing
        acc = dx.dtype.type(0)
    dx[n, c, ih, iw] = acc


def max_pool2d_backward(dy, x, dx, kh, kw, sh, sw, ph, pw, dh, dw):
    """Route each ``dy`` to its window's argmax (recomputed from ``x`` with the
    forward's rule); ``dx`` is overwritten and overlapping windows accumulate.

    Shape: dy (N, C, OH, OW), x (N, C, H, W), dx (N, C, H, W).
    Grid: one thread per element of ``dx``, gathering over the windows containing it.
    """
    nan = x.dtype.type(np.nan)
    max_pool2d_backward_gated(dy, x, dx, nan, nan, kh, kw, sh, sw, ph, pw, dh, dw)


def max_pool2d_backward_gated(dy, x, dx, lo, hi, kh, kw, sh, sw, ph, pw, dh, dw):
    """:func:`max_pool2d_backward` followed by the backward of the activation that
    produced ``x``: zero where ``x <= lo`` or ``x >= hi`` (a NaN bound stops
    nothing), as the CPU twin.

    Shape: dy (N, C, OH, OW), x (N, C, H, W), dx (N, C, H, W); lo, hi scalars of
    x's dtype. Grid: one thread per element of ``dx``.
    """
    if dx.size == 0:
        return
    with _launch.staged(dy, x, dx, out=(2,)) as (dy_d, x_d, dx_d):
        tpb = THREADS_PER_BLOCK
        _launch.launch(_max_backward, _launch.n_blocks(dx.size, tpb), tpb,
                       (dy_d, x_d, dx_d, lo, hi, kh, kw, sh, sw, ph, pw, dh, dw))


@cuda_device
def _avg_window(o, k, s, p, size):
    # Twin of the CPU helper: (first, stop, extent) of window o.
    first = o * s - p
    stop = minimum(first + k, size + p)
    extent = stop - first
    return maximum(first, 0), minimum(stop, size), extent


@cuda_device
def _divisor(ih0, ih1, ext_h, iw0, iw1, ext_w, count_include_pad):
    if count_include_pad:
        return ext_h * ext_w
    return (ih1 - ih0) * (iw1 - iw0)


@cuda_kernel
def _avg_forward(x, y, kh, kw, sh, sw, ph, pw, count_include_pad):
    i = cuda.grid(1)
    if i >= y.size:
        return
    n_batch, channels, oh_size, ow_size = y.shape
    h, w = x.shape[2], x.shape[3]
    n, c, oh, ow = unravel4(i, channels, oh_size, ow_size)
    ih0, ih1, ext_h = _avg_window(oh, kh, sh, ph, h)
    iw0, iw1, ext_w = _avg_window(ow, kw, sw, pw, w)
    divisor = _divisor(ih0, ih1, ext_h, iw0, iw1, ext_w, count_include_pad)
    acc = y.dtype.type(0)
    for ih in range(ih0, ih1):
        for iw in range(iw0, iw1):
            acc += x[n, c, ih, iw]
    y[n, c, oh, ow] = acc / y.dtype.type(divisor)


def avg_pool2d_forward(x, y, kh, kw, sh, sw, ph, pw, count_include_pad):
    """``y`` = sum of each window's inputs / divisor, the divisor being the window's
    size counting padding (``count_include_pad``) or only the inputs inside.

    Shape: x (N, C, H, W), y (N, C, OH, OW). Grid: one thread per output.
    """
    if y.size == 0:
        return
    with _launch.staged(x, y, out=(1,)) as (x_d, y_d):
        tpb = THREADS_PER_BLOCK
        _launch.launch(_avg_forward, _launch.n_blocks(y.size, tpb), tpb,
                       (x_d, y_d, kh, kw, sh, sw, ph, pw, count_include_pad))


@cuda_kernel
def _avg_backward(dy, dx, kh, kw, sh, sw, ph, pw, count_include_pad):
    i = cuda.grid(1)
    if i >= dx.size:
        return
    n_batch, channels, h, w = dx.shape
    oh_size, ow_size = dy.shape[2], dy.shape[3]
    n, c, ih, iw = unravel4(i, channels, h, w)
    # Windows are k long with no dilation; the clipping below drops the windows
    # whose inside part misses this element.
    oh_lo, oh_hi = _covering(ih, kh, sh, ph, 1, oh_size)
    ow_lo, ow_hi = _covering(iw, kw, sw, pw, 1, ow_size)
    acc = dx.dtype.type(0)
    for oh in range(oh_lo, oh_hi):
        ih0, ih1, ext_h = _avg_window(oh, kh, sh, ph, h)
        if ih < ih0 or ih >= ih1:
            continue
        for ow in range(ow_lo, ow_hi):
            iw0, iw1, ext_w = _avg_window(ow, kw, sw, pw, w)
            if iw < iw0 or iw >= iw1:
                continue
            divisor = _divisor(ih0, ih1, ext_h, iw0, iw1, ext_w, count_include_pad)
            acc += dy[n, c, oh, ow] / dx.dtype.type(divisor)
    dx[n, c, ih, iw] = acc


def avg_pool2d_backward(dy, dx, kh, kw, sh, sw, ph, pw, count_include_pad):
    """Spread each ``dy / divisor`` over its window's inputs; ``dx`` is overwritten
    and overlapping windows accumulate.

    Shape: dy (N, C, OH, OW), dx (N, C, H, W). Grid: one thread per element of
    ``dx``, gathering over the windows containing it.
    """
    if dx.size == 0:
        return
    with _launch.staged(dy, dx, out=(1,)) as (dy_d, dx_d):
        tpb = THREADS_PER_BLOCK
        _launch.launch(_avg_backward, _launch.n_blocks(dx.size, tpb), tpb,
                       (dy_d, dx_d, kh, kw, sh, sw, ph, pw, count_include_pad))


@cuda_kernel
def _global_avg_forward(x, y):
    i = cuda.grid(1)
    if i >= y.size:
        return
    channels, h, w = x.shape[1], x.shape[2], x.shape[3]
    n = i // channels
    c = i % channels
    acc = y.dtype.type(0)
    for ih in range(h):
        for iw in range(w):
            acc += x[n, c, ih, iw]
    y[n, c] = acc / y.dtype.type(h * w)


def global_avg_pool2d_forward(x, y):
    """``y[n, c]`` = mean of plane ``x[n, c]`` (a row-major sum, then one division).

    Shape: x (N, C, H, W), y (N, C). Grid: one thread per ``(n, c)``, summing its
    plane serially (the CPU's order and bits).
    """
    if y.size == 0:
        return
    with _launch.staged(x, y, out=(1,)) as (x_d, y_d):
        tpb = THREADS_PER_BLOCK
        _launch.launch(_global_avg_forward, _launch.n_blocks(y.size, tpb), tpb,
                       (x_d, y_d))


@cuda_kernel
def _global_avg_backward(dy, dx):
    i = cuda.grid(1)
    if i >= dx.size:
        return
    channels, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    plane = h * w
    r = i % plane
    t = i // plane
    c = t % channels
    n = t // channels
    dx[n, c, r // w, r % w] = dy[n, c] / dx.dtype.type(plane)


def global_avg_pool2d_backward(dy, dx):
    """``dx[n, c, :, :] = dy[n, c] / (H * W)``; ``dx`` is overwritten.

    Shape: dy (N, C), dx (N, C, H, W). Grid: one thread per element of ``dx``.
    """
    if dx.size == 0:
        return
    with _launch.staged(dy, dx, out=(1,)) as (dy_d, dx_d):
        tpb = THREADS_PER_BLOCK
        _launch.launch(_global_avg_backward, _launch.n_blocks(dx.size, tpb), tpb,
                       (dy_d, dx_d))
