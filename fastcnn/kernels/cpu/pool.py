"""2-D max, average and global average pooling and their input gradients.

Shared conventions
------------------
- ``x`` / ``dx`` have shape ``(N, C, H, W)`` and are NOT padded: kernels clip each
  window to the input instead, because padded positions must never win a max (they
  act as -inf) and count toward an average only when ``count_include_pad`` says so.
- ``y`` / ``dy`` have shape ``(N, C, OH, OW)``; the caller has already sized them with
  PyTorch's rule (``ceil_mode`` included), so every window starts inside the input or
  its left padding.
- Window ``(oh, ow)`` starts at ``(oh * sh - ph, ow * sw - pw)``; max pooling steps
  through it by the dilation, average pooling (no dilation, as in PyTorch) by 1.

Every kernel's ``prange`` runs over the ``N * C`` planes; one iteration owns one output
plane and one input-gradient plane, so overlapping windows accumulate race-free in a
fixed serial order and results are bitwise the same for any thread count.
"""

import numpy as np
from numba import prange

from .._jit import cpu_helper, cpu_kernel
from ._pool_rows import max_2x2_backward_row, max_2x2_forward_row


@cpu_helper
def _dilated_taps(o, k, s, p, d, size):
    """First and stop index of window ``o``'s taps that lie inside ``[0, size)``.

    Taps are ``o*s - p + j*d`` for ``j < k``; the first one inside is the first
    start + multiple of ``d`` that is non-negative. ``first >= stop`` means no tap
    lies inside (possible only with dilation and ``ceil_mode``).
    """
    first = o * s - p
    stop = min(first + (k - 1) * d + 1, size)
    if first < 0:
        first += ((d - 1 - first) // d) * d
    return first, stop


@cpu_helper
def _window_argmax(plane, ih0, ih1, dh, iw0, iw1, dw):
    """PyTorch CPU's argmax of one window: scan row-major and keep the FIRST maximum,
    except that every NaN replaces the current winner (so NaN propagates and the last
    NaN wins). Starting from -inf at the first tap means an all -inf window still
    routes its gradient to that first tap, as in PyTorch.
    """
    best = plane.dtype.type(-np.inf)
    bh = ih0
    bw = iw0
    for ih in range(ih0, ih1, dh):
        row = plane[ih]
        for iw in range(iw0, iw1, dw):
            val = row[iw]
            if val > best or np.isnan(val):
                best = val
                bh = ih
                bw = iw
    return best, bh, bw


@cpu_helper
def _windows_inside(h, w, oh_size, ow_size, kh, kw, sh, sw, ph, pw, dh, dw):
    """True when every window lies wholly inside the input (no padding, no dilation,
    no ceil_mode overhang): the fast paths below need no clipping."""
    return (ph == 0 and pw == 0 and dh == 1 and dw == 1
            and (oh_size - 1) * sh + kh <= h and (ow_size - 1) * sw + kw <= w)


@cpu_helper
def _is_2x2_unpadded(h, w, oh_size, ow_size, kh, kw, sh, sw, ph, pw):
    """True for 2x2 windows at stride 2 without padding, all inside the input (no
    ceil_mode overhang): the case the ``_*_2x2_*`` kernels below serve. (A 2x2
    window inside the input has no padded taps, so ``count_include_pad`` does not
    matter for averages.)"""
    return (kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0
            and 2 * oh_size <= h and 2 * ow_size <= w)


@cpu_helper
def _max_plane_inside(src, dst, kh, kw, sh, sw):
    """Max pooling of one plane whose windows all lie inside it; the same scan and
    tie rule as :func:`_window_argmax` (first maximum, NaN wins), written out with
    unit-step loops because the general path's per-window clipping dominates the
    cost of a 2x2 window."""
    oh_size, ow_size = dst.shape
    for oh in range(oh_size):
        out = dst[oh]
        for ow in range(ow_size):
            best = src.dtype.type(-np.inf)
            for a in range(kh):
                row = src[oh * sh + a]
                for b in range(kw):
                    val = row[ow * sw + b]
                    if val > best or np.isnan(val):
                        best = val
            out[ow] = best


@cpu_helper
def _max_plane_inside_backward(src, grad, plane, kh, kw, sh, sw):
    """Gradient of :func:`_max_plane_inside`: each ``grad`` goes to its window's
    argmax (same rule), accumulated in a fixed order."""
    oh_size, ow_size = grad.shape
    for oh in range(oh_size):
        for ow in range(ow_size):
            best = src.dtype.type(-np.inf)
            bh = oh * sh
            bw = ow * sw
            for a in range(kh):
                row = src[oh * sh + a]
                for b in range(kw):
                    val = row[ow * sw + b]
                    if val > best or np.isnan(val):
                        best = val
                        bh = oh * sh + a
                        bw = ow * sw + b
            plane[bh, bw] += grad[oh, ow]

# ------------------------------------------------------------ 2x2, stride 2 kernels
# The most common pooling by far (every LeNet / VGG-style network), as kernels of
# their own: constant sizes, 4-D indexing and no other code path in the loop body
# let LLVM vectorise them. Inside the general kernels' prange the same loops ran
# 10-20x slower (measured), so the public kernels at the end of this file, plain
# Python, send the 2x2, stride 2, unpadded, undilated, inside-the-input case here and
# everything else to the general kernels. Choosing in Python rather than inside one
# jitted kernel means a network compiles only the kernels it runs (a general
# kernel costs about 4 s to compile, cold).


@cpu_kernel
def _max_pool_2x2_forward(x, y):
    """Max of each 2x2 block; PyTorch's rule (first maximum, every NaN wins), the
    maximum started from the first tap. A row of blocks at a time as vector
    code (:func:`~._pool_rows.max_2x2_forward_row`).

    Shape: x (N, C, H, W), y (N, C, H // 2, W // 2). Parallel over ``N * C``.
    """
    n_batch, channels, oh_size, ow_size = y.shape
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        src = x[n, c]
        out = y[n, c]
        for oh in range(oh_size):
            max_2x2_forward_row(src[2 * oh], src[2 * oh + 1], out[oh], ow_size)


@cpu_helper
def _gated(v, lo, hi):
    """Whether an activation gradient gate stops ``v``: ``v <= lo or v >= hi``.
    A NaN bound never stops anything (both comparisons with it are false), so
    ``(nan, nan)`` is no gate, ``(0, nan)`` is ReLU's backward and ``(0, 6)``
    ReLU6's (:func:`fastcnn.kernels._clamp.gate_bounds`)."""
    return (v <= lo) | (v >= hi)


@cpu_kernel
def _max_pool_2x2_backward(dy, x, dx, lo, hi):
    """Each ``dy`` to its 2x2 block's argmax (the forward's rule), gated by the
    activation that produced ``x`` (:func:`_gated`); ``dx`` is overwritten.

    A row of blocks at a time as explicit vector code
    (:func:`~._pool_rows.max_2x2_backward_row`, branch-free: a branch on the
    argmax mispredicts on post-ReLU inputs, ties at zero). The scalar form took
    4-6x the forward on LeNet's shapes (docs/PERFORMANCE.md).

    Shape: dy (N, C, OH, OW), x (N, C, H, W), dx (N, C, H, W). Parallel over
    ``N * C``.
    """
    n_batch, channels, oh_size, ow_size = dy.shape
    h, w = x.shape[2], x.shape[3]
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        src = x[n, c]
        grad = dy[n, c]
        plane = dx[n, c]
        for oh in range(oh_size):
            max_2x2_backward_row(src[2 * oh], src[2 * oh + 1], grad[oh],
                                 plane[2 * oh], plane[2 * oh + 1], ow_size, lo, hi)
        if h > 2 * oh_size:
            plane[2 * oh_size :, :] = 0
        if w > 2 * ow_size:
            plane[:, 2 * ow_size :] = 0


@cpu_kernel
def _avg_pool_2x2_forward(x, y):
    """Mean of each 2x2 block (row-major sum, then one division, as the general
    kernel does, so results are bitwise the same).

    Shape: x (N, C, H, W), y (N, C, H // 2, W // 2). Parallel over ``N * C``.
    """
    n_batch, channels, oh_size, ow_size = y.shape
    four = y.dtype.type(4)
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        for oh in range(oh_size):
            for ow in range(ow_size):
                acc = y.dtype.type(0)
                for a in range(2):
                    for b in range(2):
                        acc += x[n, c, 2 * oh + a, 2 * ow + b]
                y[n, c, oh, ow] = acc / four


@cpu_kernel
def _avg_pool_2x2_backward(dy, dx):
    """``dy / 4`` to the four inputs of each block; ``dx`` is overwritten (the rows
    and columns past the last block, present for odd sizes, get 0).

    Shape: dy (N, C, OH, OW), dx (N, C, H, W). Parallel over ``N * C``.
    """
    n_batch, channels, oh_size, ow_size = dy.shape
    h, w = dx.shape[2], dx.shape[3]
    four = dx.dtype.type(4)
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        if h > 2 * oh_size:
            dx[n, c, 2 * oh_size :, :] = 0
        if w > 2 * ow_size:
            dx[n, c, :, 2 * ow_size :] = 0
        for oh in range(oh_size):
            for ow in range(ow_size):
                share = dy[n, c, oh, ow] / four
                for a in range(2):
                    for b in range(2):
                        dx[n, c, 2 * oh + a, 2 * ow + b] = share


@cpu_kernel
def _max_pool2d_forward_any(x, y, kh, kw, sh, sw, ph, pw, dh, dw):
    """:func:`max_pool2d_forward` for any window."""
    n_batch, channels, oh_size, ow_size = y.shape
    h, w = x.shape[2], x.shape[3]
    inside = _windows_inside(h, w, oh_size, ow_size, kh, kw, sh, sw, ph, pw, dh, dw)
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        src = x[n, c]
        dst = y[n, c]
        if inside:
            _max_plane_inside(src, dst, kh, kw, sh, sw)
            continue
        for oh in range(oh_size):
            ih0, ih1 = _dilated_taps(oh, kh, sh, ph, dh, h)
            for ow in range(ow_size):
                iw0, iw1 = _dilated_taps(ow, kw, sw, pw, dw, w)
                best, _, _ = _window_argmax(src, ih0, ih1, dh, iw0, iw1, dw)
                dst[oh, ow] = best


@cpu_kernel
def _max_pool2d_backward_any(dy, x, dx, lo, hi, kh, kw, sh, sw, ph, pw, dh, dw):
    """:func:`max_pool2d_backward_gated` for any window."""
    n_batch, channels, oh_size, ow_size = dy.shape
    h, w = x.shape[2], x.shape[3]
    inside = _windows_inside(h, w, oh_size, ow_size, kh, kw, sh, sw, ph, pw, dh, dw)
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        src = x[n, c]
        grad = dy[n, c]
        plane = dx[n, c]
        plane[:, :] = 0
        if inside:
            _max_plane_inside_backward(src, grad, plane, kh, kw, sh, sw)
            _gate_plane(src, plane, lo, hi)
            continue
        for oh in range(oh_size):
            ih0, ih1 = _dilated_taps(oh, kh, sh, ph, dh, h)
            if ih0 >= ih1:
                continue
            for ow in range(ow_size):
                iw0, iw1 = _dilated_taps(ow, kw, sw, pw, dw, w)
                if iw0 >= iw1:
                    continue
                _, bh, bw = _window_argmax(src, ih0, ih1, dh, iw0, iw1, dw)
                plane[bh, bw] += grad[oh, ow]
        _gate_plane(src, plane, lo, hi)


@cpu_helper
def _gate_plane(src, plane, lo, hi):
    """Zero the gradients that the activation which produced ``src`` stops."""
    if np.isnan(lo) and np.isnan(hi):
        return
    for ih in range(plane.shape[0]):
        for iw in range(plane.shape[1]):
            if _gated(src[ih, iw], lo, hi):
                plane[ih, iw] = 0


@cpu_helper
def _avg_window(o, k, s, p, size):
    """PyTorch's average-pool window: ``(first, stop, extent)`` where ``extent`` is
    the window's length counting padding (the end clipped to ``size + p`` only) and
    ``[first, stop)`` is the part inside the input."""
    first = o * s - p
    stop = min(first + k, size + p)
    extent = stop - first
    return max(first, 0), min(stop, size), extent


@cpu_helper
def _avg_divisor(ih0, ih1, ext_h, iw0, iw1, ext_w, count_include_pad):
    """The divisor of one average-pool window: its size counting padding, or only
    the inputs inside it (shared by forward and backward so they cannot disagree)."""
    if count_include_pad:
        return ext_h * ext_w
    return (ih1 - ih0) * (iw1 - iw0)


@cpu_kernel
def _avg_pool2d_forward_any(x, y, kh, kw, sh, sw, ph, pw, count_include_pad):
    """:func:`avg_pool2d_forward` for any window."""
    n_batch, channels, oh_size, ow_size = y.shape
    h, w = x.shape[2], x.shape[3]
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        src = x[n, c]
        dst = y[n, c]
        for oh in range(oh_size):
            ih0, ih1, ext_h = _avg_window(oh, kh, sh, ph, h)
            for ow in range(ow_size):
                iw0, iw1, ext_w = _avg_window(ow, kw, sw, pw, w)
                divisor = _avg_divisor(ih0, ih1, ext_h, iw0, iw1, ext_w,
                                       count_include_pad)
                acc = y.dtype.type(0)
                for ih in range(ih0, ih1):
                    row = src[ih]
                    for iw in range(iw0, iw1):
                        acc += row[iw]
                # Divide in the array's dtype, as PyTorch does (float / float).
                dst[oh, ow] = acc / y.dtype.type(divisor)


@cpu_kernel
def _avg_pool2d_backward_any(dy, dx, kh, kw, sh, sw, ph, pw, count_include_pad):
    """:func:`avg_pool2d_backward` for any window."""
    n_batch, channels, oh_size, ow_size = dy.shape
    h, w = dx.shape[2], dx.shape[3]
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        grad = dy[n, c]
        plane = dx[n, c]
        plane[:, :] = 0
        for oh in range(oh_size):
            ih0, ih1, ext_h = _avg_window(oh, kh, sh, ph, h)
            for ow in range(ow_size):
                iw0, iw1, ext_w = _avg_window(ow, kw, sw, pw, w)
                divisor = _avg_divisor(ih0, ih1, ext_h, iw0, iw1, ext_w,
                                       count_include_pad)
                share = grad[oh, ow] / dx.dtype.type(divisor)
                for ih in range(ih0, ih1):
                    row = plane[ih]
                    for iw in range(iw0, iw1):
                        row[iw] += share


# ------------------------------------------------------------- public entry points
#
# Plain Python: each picks the 2x2 kernel or the general one (see the comment above
# the 2x2 kernels) with the helpers' own Python code (``py_func``), so the rule is
# written once.


def _is_2x2_max(x_shape, y_shape, kh, kw, sh, sw, ph, pw, dh, dw) -> bool:
    h, w, oh_size, ow_size = x_shape[2], x_shape[3], y_shape[2], y_shape[3]
    return (_is_2x2_unpadded.py_func(h, w, oh_size, ow_size, kh, kw, sh, sw, ph, pw)
            and _windows_inside.py_func(h, w, oh_size, ow_size, kh, kw, sh, sw, ph,
                                        pw, dh, dw))


def _is_2x2_avg(x_shape, y_shape, kh, kw, sh, sw, ph, pw) -> bool:
    return _is_2x2_unpadded.py_func(x_shape[2], x_shape[3], y_shape[2], y_shape[3],
                                    kh, kw, sh, sw, ph, pw)


def max_pool2d_forward(x, y, kh, kw, sh, sw, ph, pw, dh, dw):
    """``y`` = maximum of each (dilated) window; a window with no tap inside the input
    gives -inf.

    Shape: x (N, C, H, W), y (N, C, OH, OW). Parallel over ``N * C``.
    """
    if _is_2x2_max(x.shape, y.shape, kh, kw, sh, sw, ph, pw, dh, dw):
        _max_pool_2x2_forward(x, y)
    else:
        _max_pool2d_forward_any(x, y, kh, kw, sh, sw, ph, pw, dh, dw)


def max_pool2d_backward(dy, x, dx, kh, kw, sh, sw, ph, pw, dh, dw):
    """Route each ``dy`` to its window's argmax (recomputed from ``x`` with the
    forward's rule); ``dx`` is overwritten and overlapping windows accumulate.

    Shape: dy (N, C, OH, OW), x (N, C, H, W), dx (N, C, H, W).
    Parallel over ``N * C``.
    """
    nan = x.dtype.type(np.nan)
    max_pool2d_backward_gated(dy, x, dx, nan, nan, kh, kw, sh, sw, ph, pw, dh, dw)


def max_pool2d_backward_gated(dy, x, dx, lo, hi, kh, kw, sh, sw, ph, pw, dh, dw):
    """:func:`max_pool2d_backward` followed by the backward of the activation that
    produced ``x`` in the same pass: a gradient is zeroed where ``x <= lo`` or
    ``x >= hi`` (bounds from :func:`fastcnn.kernels._clamp.gate_bounds`; a NaN
    bound stops nothing), bitwise ``relu_backward`` / ``relu6_backward`` of the
    ungated result.

    Shape: dy (N, C, OH, OW), x (N, C, H, W), dx (N, C, H, W); lo, hi scalars of
    x's dtype. Parallel over ``N * C``.
    """
    if _is_2x2_max(x.shape, dy.shape, kh, kw, sh, sw, ph, pw, dh, dw):
        _max_pool_2x2_backward(dy, x, dx, lo, hi)
    else:
        _max_pool2d_backward_any(dy, x, dx, lo, hi, kh, kw, sh, sw, ph, pw, dh, dw)


def avg_pool2d_forward(x, y, kh, kw, sh, sw, ph, pw, count_include_pad):
    """``y`` = sum of each window's inputs / divisor, the divisor being the window's
    size counting padding (``count_include_pad``) or only the inputs inside.

    Shape: x (N, C, H, W), y (N, C, OH, OW). Parallel over ``N * C``.
    """
    if _is_2x2_avg(x.shape, y.shape, kh, kw, sh, sw, ph, pw):
        _avg_pool_2x2_forward(x, y)
    else:
        _avg_pool2d_forward_any(x, y, kh, kw, sh, sw, ph, pw, count_include_pad)


def avg_pool2d_backward(dy, dx, kh, kw, sh, sw, ph, pw, count_include_pad):
    """Spread each ``dy / divisor`` over its window's inputs; ``dx`` is overwritten
    and overlapping windows accumulate.

    Shape: dy (N, C, OH, OW), dx (N, C, H, W). Parallel over ``N * C``.
    """
    if _is_2x2_avg(dx.shape, dy.shape, kh, kw, sh, sw, ph, pw):
        _avg_pool_2x2_backward(dy, dx)
    else:
        _avg_pool2d_backward_any(dy, dx, kh, kw, sh, sw, ph, pw, count_include_pad)


@cpu_kernel
def global_avg_pool2d_forward(x, y):
    """``y[n, c]`` = mean of plane ``x[n, c]`` (a row-major sum, then one division).

    Shape: x (N, C, H, W), y (N, C). Parallel over ``N * C``.
    """
    n_batch, channels, h, w = x.shape
    count = y.dtype.type(h * w)
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        src = x[n, c]
        acc = y.dtype.type(0)
        for ih in range(h):
            row = src[ih]
            for iw in range(w):
                acc += row[iw]
        y[n, c] = acc / count


@cpu_kernel
def global_avg_pool2d_backward(dy, dx):
    """``dx[n, c, :, :] = dy[n, c] / (H * W)``; ``dx`` is overwritten.

    Shape: dy (N, C), dx (N, C, H, W). Parallel over ``N * C``.
    """
    n_batch, channels, h, w = dx.shape
    count = dx.dtype.type(h * w)
    for task in prange(n_batch * channels):
        n = task // channels
        c = task % channels
        dx[n, c, :, :] = dy[n, c] / count
