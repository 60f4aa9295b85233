"""2-D convolution (cross-correlation, as in PyTorch) and its three gradients.

Shared conventions
------------------
- The public functions take the input unpadded, with the rows of zeros on top
  (``pad_t``) and columns on the left (``pad_l``) it is read with; the rest of
  the padding is implied by the output's shape. Winograd reads it so directly; the
  other kernels take ``xp``, a zero-padded copy ``(N, C_in, Hp, Wp)`` made by
  the public function, so that every index they compute is non-negative.
- ``w`` has PyTorch's layout ``(C_out, C_in // groups, KH, KW)``.
- ``y`` / ``dy`` have shape ``(N, C_out, OH, OW)`` with
  ``OH = (Hp - dh * (KH - 1) - 1) // sh + 1`` (same for width).
- Output channel ``co`` reads input channels ``g * cin_g ... (g + 1) * cin_g - 1``
  where ``g = co // (C_out // groups)``.

How it is computed
------------------
Each group is a small matrix product per image: with ``P`` the "im2col" patch matrix
of one image (row ``k = (ci, kh, kw)``, column ``p = (oh, ow)``), ``y = W @ P``,
``dP = W.T @ dy`` (scattered back into ``dx``) and ``dW = dy @ P.T``. ``P`` is never
built whole: ``y`` and ``dP`` are computed a tile of output positions and a chunk of
input channels at a time (:func:`_gemm_tiles`), into a scratch buffer of each
parallel task small enough to stay in cache, with contiguous inner loops that LLVM
vectorises (four output rows by four rows of ``P`` per pass, so each load serves
four multiply-adds). ``dW`` is dot products of ``dy`` rows with patch rows.

Determinism
-----------
``prange`` runs over (image, tile) pairs for ``y`` and over (image, group, channel
chunk) triples for ``dx`` (their output slices are disjoint); ``dW`` sums per-image
partial products into a buffer with one slot per image, then adds the slots in image
order. Every sum therefore happens in an order fixed by the shapes alone: results
are bitwise the same for any thread count.
"""

import functools

import numpy as np
from numba import boolean, int64, prange

from ... import _buffers
from .._clamp import bounds
from .._jit import cpu_helper, cpu_kernel, cpu_reduction
from .._padding import padded_hw
from ._clamp import _clamp, clamp_row
from ._conv_plan import (
    _forward_path,
    _gemm_tiles,
    _input_grad_path,
    _input_grad_task,
    _weight_grad_path,
    flipped_depthwise_padding,
)
from ._depthwise import (
    all_finite,
    conv2d_depthwise,
    conv2d_depthwise_input_grad,
    conv2d_depthwise_input_grad_phases,
    conv2d_depthwise_weight_grad,
)
from ._depthwise_rows import (
    conv2d_depthwise_rows,
    conv2d_depthwise_rows_weight_grad,
    fits_rows,
    padding_fits_rows,
)
from ._dots import _add_dots
from ._gemm import _gemm_rows_store
from ._input_grad_rows import conv2d_backward_input_rows
from ._row_products import (
    _accumulate,
    _accumulate_tall_first,
    _filters_by_column,
    _pitch_rows,
    _plain_rows,
    _tap_rows,
)
from ._stride2_rows import add_to_evens, copy_evens
from ._tasks import cpu_task
from ._vector_rows import copy_row
from ._weight_gemm import _sum_slots, conv2d_backward_weight_gemm
from ._winograd import (
    winograd_conv3x3,
    winograd_filters,
    winograd_plan,
    winograd_weight_grad3x3,
    winograd_weight_plan,
)
from .pad import pad_constant


@cpu_helper
def _im2col(xp, n, ci0, cin_g, kh_size, kw_size, sh, sw, dh, dw, ow_size, p0, count,
            patch, col0):
    """``patch[k, j] = xp[n, ci0 + ci, oh*sh + kh*dh, ow*sw + kw*dw]`` for the
    ``count`` output positions ``p = p0 + j`` (``oh, ow = divmod(p, OW)``).

    Works one output row segment at a time: with stride 1 each (k, segment) is one
    contiguous copy, which vectorises.
    """
    j = 0
    while j < count:
        oh = (p0 + j) // ow_size
        ow = p0 + j - oh * ow_size
        seg = min(ow_size - ow, count - j)
        k = 0
        for ci in range(cin_g):
            plane = xp[n, ci0 + ci]
            for kh in range(kh_size):
                src = plane[oh * sh + kh * dh]
                for kw in range(kw_size):
                    dst = patch[k, col0 + j : col0 + j + seg]
                    if sw == 1:
                        row = src[ow + kw * dw : ow + kw * dw + seg]
                        for t in range(seg):
                            dst[t] = row[t]
                    elif sw == 2:
                        copy_evens(src, ow * 2 + kw * dw, patch[k], col0 + j, seg)
                    else:
                        for t in range(seg):
                            dst[t] = src[(ow + t) * sw + kw * dw]
                    k += 1
        j += seg


#: :func:`_forward_path` remembered per shapes: it costs 1.3 us a call, a tenth
#: of LeNet-5's second convolution at batch 1. Its rules read constants only.
_cached_forward_path = functools.lru_cache(maxsize=256)(_forward_path)


@cpu_helper
def _col2im_add(dpatch, dxp, n, ci0, cin_g, kh_size, kw_size, sh, sw, dh, dw, ow_size,
                p0, count, col0):
    """The adjoint of :func:`_im2col`: add ``dpatch[k, j]`` back into the padded
    input position it was copied from, in a fixed order (segments, then k)."""
    j = 0
    while j < count:
        oh = (p0 + j) // ow_size
        ow = p0 + j - oh * ow_size
        seg = min(ow_size - ow, count - j)
        k = 0
        for ci in range(cin_g):
            plane = dxp[n, ci0 + ci]
            for kh in range(kh_size):
                dst = plane[oh * sh + kh * dh]
                for kw in range(kw_size):
                    src = dpatch[k, col0 + j : col0 + j + seg]
                    if sw == 1:
                        out = dst[ow + kw * dw : ow + kw * dw + seg]
                        for t in range(seg):
                            out[t] += src[t]
                    elif sw == 2:
                        add_to_evens(dpatch[k], col0 + j, dst, ow * 2 + kw * dw, seg)
                    else:
                        for t in range(seg):
                            dst[(ow + t) * sw + kw * dw] += src[t]
                    k += 1
        j += seg


@cpu_helper
def _fill_rows(dst, values, v0, count):
    """``dst[r, :count] = values[v0 + r]`` for every row ``r`` of ``dst`` (a tile's
    outputs started from their biases)."""
    for r in range(dst.shape[0]):
        row = dst[r]
        value = values[v0 + r]
        for j in range(count):
            row[j] = value


@cpu_helper
def _pack_images(planes, n0, count, c0, out):
    """``out[c, i*P:(i+1)*P] = planes[n0 + i, c0 + c]`` for every row ``c`` of
    ``out`` and ``i < count``: channel planes (``planes`` is (N, C, P)) of ``count``
    consecutive images side by side, as a several-image tile lays them out."""
    positions = planes.shape[2]
    for c in range(out.shape[0]):
        for i in range(count):
            src = planes[n0 + i, c0 + c]
            dst = out[c, i * positions : (i + 1) * positions]
            for j in range(positions):
                dst[j] = src[j]


@cpu_kernel
def _conv2d_forward_im2col(xp, w, b, y, sh, sw, dh, dw, groups, lo, hi):
    """:func:`conv2d_forward` through patches copied out of ``xp`` (any stride).

    Parallel over tiles of output positions: part of one image, or several whole
    images when an image has few positions. Each tile sums its patch a chunk of
    input channels at a time (see :func:`_gemm_tiles`) into a scratch output,
    copied into ``y`` at the end.
    """
    n_batch, c_out, oh_size, ow_size = y.shape
    cin_g, kh_size, kw_size = w.shape[1], w.shape[2], w.shape[3]
    cout_g = c_out // groups
    taps = kh_size * kw_size
    k_size = cin_g * taps
    positions = oh_size * ow_size
    tile, chunk, images = _gemm_tiles(cout_g, positions, taps, cin_g, n_batch)
    wm = w.reshape(c_out, k_size)
    wt = _filters_by_column(w, n_batch * positions)
    yv = y.reshape(n_batch, c_out, positions)
    zero = np.int64(0)
    row_of, off_of = _plain_rows(chunk * taps)
    tiles = (positions + tile - 1) // tile  # per image, when images == 1
    tasks = n_batch * tiles if images == 1 else (n_batch + images - 1) // images
    for task in prange(tasks):
        t = np.int64(task)
        if images == 1:
            n0, p0, count = t // tiles, (t % tiles) * tile, np.int64(1)
            width = min(tile, positions - p0)
        else:
            n0, p0, count = t * images, zero, min(images, n_batch - t * images)
            width = positions
        cols = count * width
        patch = np.empty((chunk * taps, tile), dtype=y.dtype)
        acc = np.empty((cout_g, tile), dtype=y.dtype)
        for g in range(groups):
            co0 = g * cout_g
            _fill_rows(acc, b, co0, cols)
            for c0 in range(0, cin_g, chunk):
                c_count = min(chunk, cin_g - c0)
                for i in range(count):
                    _im2col(xp, n0 + i, g * cin_g + c0, c_count, kh_size, kw_size, sh,
                            sw, dh, dw, ow_size, p0, width, patch, i * width)
                _accumulate_tall_first(acc, zero, cout_g, zero, wm, wt.T, co0,
                                       c0 * taps, patch, zero, row_of, off_of,
                                       c_count * taps, zero, cols)
            for i in range(count):
                for co in range(cout_g):
                    src = acc[co, i * width : (i + 1) * width]
                    dst = yv[n0 + i, co0 + co, p0 : p0 + width]
                    for j in range(width):
                        dst[j] = _clamp(src[j], lo, hi)


@cpu_kernel
def _conv2d_forward_shifted(xp, w, b, y, dh, dw, groups, lo, hi):
    """:func:`conv2d_forward` for stride 1, without copying patches.

    With stride 1, output ``(oh, ow)`` reads tap ``(kh, kw)`` of channel ``ci`` at
    flat index ``q + kh*dh*Wp + kw*dw`` of the padded plane, where
    ``q = oh*Wp + ow``. So over a range of ``q`` every patch row is a contiguous
    window of the plane itself, shifted by its tap's offset: the product runs on
    those windows directly. The price: ``q`` also covers the ``Wp - OW`` columns
    past each output row's end, computed and dropped (3-12% more work for
    "same" padding; the copies it saves cost more: measured below). Parallel over
    (image, tile of ``q``); sums in the same fixed order as the im2col path's.
    """
    n_batch, c_out, oh_size, ow_size = y.shape
    wp = xp.shape[3]
    cin_g, kh_size, kw_size = w.shape[1], w.shape[2], w.shape[3]
    cout_g = c_out // groups
    taps = kh_size * kw_size
    k_size = cin_g * taps
    wide = (oh_size - 1) * wp + ow_size
    tile, chunk, _ = _gemm_tiles(cout_g, wide, taps, cin_g, 1)
    tiles = (wide + tile - 1) // tile
    wm = w.reshape(c_out, k_size)
    wt = _filters_by_column(w, n_batch * wide)
    xflat = xp.reshape(xp.shape[0], xp.shape[1], xp.shape[2] * wp)
    zero = np.int64(0)
    # Row k of a chunk: channel k // taps of the chunk, shifted by its tap's offset.
    row_of, off_of = _tap_rows(chunk, kh_size, kw_size, np.int64(1), np.int64(0),
                               dh * wp, dw)
    for task in prange(n_batch * tiles):
        n = task // tiles
        q0 = (task % tiles) * tile
        count = min(tile, wide - q0)
        acc = np.empty((cout_g, tile), dtype=y.dtype)
        for g in range(groups):
            co0 = g * cout_g
            _fill_rows(acc, b, co0, count)
            for c0 in range(0, cin_g, chunk):
                c_count = min(chunk, cin_g - c0)
                _accumulate_tall_first(acc, zero, cout_g, zero, wm, wt.T, co0,
                                       c0 * taps, xflat[n], g * cin_g + c0, row_of,
                                       off_of, c_count * taps, q0, count)
            # Keep the columns that are outputs (ow < OW) of each output row.
            oh = q0 // wp
            while oh * wp < q0 + count:
                start = max(q0, oh * wp)
                end = min(q0 + count, oh * wp + ow_size)
                for co in range(cout_g):
                    # Slices, so the copy has no signed offsets (which would cost
                    # a wraparound check per element and keep it scalar).
                    src = acc[co, start - q0 : end - q0]
                    dst = y[n, co0 + co, oh, start - oh * wp : end - oh * wp]
                    for t in range(end - start):
                        dst[t] = _clamp(src[t], lo, hi)
                oh += 1


@cpu_helper
def _copy_band_rows(x, n0, count, ci0, c_count, kh_size, dh, oh_size, pad_t, pad_l,
                    wp, plane_buf, band):
    """``band[c * KH + kh, i*OH*Wp + r*Wp + col] = xp[n0 + i, ci0 + c, r + kh*dh,
    col]``, where ``xp`` is ``x`` read as if zero-padded by ``pad_t`` rows on top
    and ``pad_l`` columns on the left to ``Wp`` columns (and with zero rows below):
    for each input channel and kernel row, the ``OH`` padded rows the output rows
    read, ``count`` images side by side; the ``band.shape[1] - count*OH*Wp``
    spare columns at the end are zeroed. Each kernel row's rows are one
    contiguous copy per image: of ``x`` itself where it needs no padding, else
    of the image's padded plane, built in ``plane_buf`` (at least ``(OH + dh*(KH
    - 1)) * Wp`` long) once for all kernel rows. No padded copy of all of ``x``:
    LeNet-5's first convolution made one per forward and per weight gradient."""
    h, w = x.shape[2], x.shape[3]
    span = oh_size * wp
    hp = oh_size + dh * (kh_size - 1)
    padded = not (pad_t == 0 and pad_l == 0 and wp == w and hp <= h)
    lead = min(pad_l, wp)
    inner = max(min(w, wp - lead), 0)
    zero = np.int64(0)
    # Planes taken flat by indexing, not by reshaping each one: a reshape per
    # (channel, image) cost more than the copy on small planes (docs/PERFORMANCE.md).
    flat = x.reshape(x.shape[0], x.shape[1], h * w)
    for c in range(c_count):
        for i in range(count):
            if padded:
                source = x[n0 + i, ci0 + c]
                for r in range(hp):
                    dst = plane_buf[r * wp : (r + 1) * wp]
                    source_row = r - pad_t
                    if source_row < 0 or source_row >= h:
                        for t in range(wp):
                            dst[t] = 0
                        continue
                    for t in range(lead):
                        dst[t] = 0
                    copy_row(source[source_row], zero, plane_buf, r * wp + lead, inner)
                    for t in range(lead + inner, wp):
                        dst[t] = 0
                rows = plane_buf
            else:
                rows = flat[n0 + i, ci0 + c]
            for kh in range(kh_size):
                src = rows[kh * dh * wp : kh * dh * wp + span]
                dst = band[c * kh_size + kh, i * span : (i + 1) * span]
                for t in range(span):
                    dst[t] = src[t]
    for k in range(c_count * kh_size):
        tail = band[k, count * span :]
        for t in range(tail.shape[0]):
            tail[t] = 0


@cpu_helper
def _band_layout(c_out, cin_g, kh_size, kw_size, groups, oh_size, wp, dw, n_batch):
    """The layout both band-row kernels (:func:`_conv2d_forward_rows`,
    :func:`_conv2d_backward_weight_rows`) work in: ``(cout_g, taps, k_size, span,
    chunk, images, spare, row_of, off_of)``, where ``span = OH * Wp`` is one
    image's columns, ``chunk`` and ``images`` the forward's tiles
    (:func:`_gemm_tiles`), ``spare`` the columns a shift reads past the last
    image, and row ``k`` of a chunk is band row (channel, kh) of tap ``k``
    shifted by ``kw * dw``."""
    cout_g = c_out // groups
    taps = kh_size * kw_size
    span = oh_size * wp
    _, chunk, images = _gemm_tiles(cout_g, span, taps, cin_g, n_batch)
    row_of, off_of = _tap_rows(chunk, kh_size, kw_size, kh_size, np.int64(1),
                               np.int64(0), dw)
    return (cout_g, taps, cin_g * taps, span, chunk, images, (kw_size - 1) * dw,
            row_of, off_of)


def _conv2d_forward_rows(x, w, b, y, pad_t, pad_l, dh, dw, groups, lo, hi):
    """:func:`conv2d_forward` for stride 1 with several small images per task.

    The im2col path copies one patch row per (channel, kh, kw): ``KH*KW`` times
    the input, in output-row segments (for 10-wide outputs, ten floats at a
    time). Here each (channel, kh) gets one row holding the padded rows its
    outputs read, whole and image after image (:func:`_copy_band_rows`: ``KH``
    times the input, one contiguous copy per image); the ``KW`` taps are then
    shifts of that row, as in :func:`_conv2d_forward_shifted`, and the columns
    past each output row's end (``Wp - OW`` of every ``Wp``) are computed and
    dropped. Sums in the same order as the other two forward kernels (so the
    same bits). Parallel over groups of whole images and, when they make fewer
    than four tasks (a batch of one), over blocks of output channels too
    (:func:`_channel_blocks`: the blocks start at multiples of four rows of a
    group, so each output is summed by the same micro-kernel as without them).
    ``x`` is read as if padded (:func:`_copy_band_rows`), to the ``Wp = OW +
    dw*(KW - 1)`` columns the windows span. The tasks run as
    :func:`_forward_rows_task` (see ``_tasks.py``).
    """
    _forward_rows_kernel(_forward_rows_task.address(y.dtype), x, w, b, y, pad_t,
                         pad_l, dh, dw, groups, lo, hi)


@cpu_kernel
def _forward_rows_kernel(task, x, w, b, y, pad_t, pad_l, dh, dw, groups, lo, hi):
    """:func:`_conv2d_forward_rows` with the task's address."""
    n_batch, c_out, oh_size, ow_size = y.shape
    cin_g, kh_size, kw_size = w.shape[1], w.shape[2], w.shape[3]
    wp = ow_size + dw * (kw_size - 1)
    cout_g, taps, k_size, span, chunk, images, spare, row_of, off_of = _band_layout(
        c_out, cin_g, kh_size, kw_size, groups, oh_size, wp, dw, n_batch)
    image_tasks = (n_batch + images - 1) // images
    blocks, block_rows = _channel_blocks(image_tasks, cout_g)
    wm = w.reshape(c_out, k_size)
    wt = _filters_by_column(w, n_batch * oh_size * wp)
    for t in prange(image_tasks * blocks):
        _forward_rows_task(task, (np.int64(t), images, blocks, block_rows, x, wm, wt, b,
                                  y, kh_size, kw_size, pad_t, pad_l, dh, dw, groups,
                                  chunk, row_of, off_of, lo, hi))


@cpu_helper
def _task_geometry(x, y, groups, kh_size, kw_size, dw):
    """``(cin_g, cout_g, taps, Wp, OH * Wp, spare)`` of the band-row tasks, from
    ``x`` and ``y`` (or ``dy``): as :func:`_band_layout` gives them."""
    oh_size, ow_size = y.shape[2], y.shape[3]
    wp = ow_size + dw * (kw_size - 1)
    return (x.shape[1] // groups, y.shape[1] // groups, kh_size * kw_size, wp,
            oh_size * wp, (kw_size - 1) * dw)


@cpu_task(lambda f: (int64, int64, int64, int64, f[:, :, :, ::1], f[:, ::1], f[:, ::1],
                     f[::1], f[:, :, :, ::1], int64, int64, int64, int64, int64, int64,
                     int64, int64, int64[::1], int64[::1], f, f))
def _forward_rows_task(task, images, blocks, block_rows, x, wm, wt, b, y, kh_size,
                       kw_size, pad_t, pad_l, dh, dw, groups, chunk, row_of, off_of,
                       lo, hi):
    """Task ``task`` of :func:`_conv2d_forward_rows`: block ``task % blocks`` of
    output channels for the images from ``(task // blocks) * images``."""
    n_batch, c_out, oh_size, ow_size = y.shape
    cin_g, cout_g, taps, wp, span, spare = _task_geometry(x, y, groups, kh_size,
                                                          kw_size, dw)
    zero = np.int64(0)
    n0 = (task // blocks) * images
    r0 = (task % blocks) * block_rows
    rows = min(block_rows, cout_g - r0)
    count = min(images, n_batch - n0)
    cols = count * span
    band = np.empty((chunk * kh_size, images * span + spare), dtype=y.dtype)
    plane_buf = np.empty((oh_size + dh * (kh_size - 1)) * wp, dtype=y.dtype)
    acc = np.empty((rows, images * span), dtype=y.dtype)
    for g in range(groups):
        co0 = g * cout_g + r0
        _fill_rows(acc, b, co0, cols)
        for c0 in range(0, cin_g, chunk):
            c_count = min(chunk, cin_g - c0)
            _copy_band_rows(x, n0, count, g * cin_g + c0, c_count, kh_size, dh,
                            oh_size, pad_t, pad_l, wp, plane_buf, band)
            _accumulate_tall_first(acc, zero, rows, zero, wm, wt.T, co0, c0 * taps,
                                   band, zero, row_of, off_of, c_count * taps, zero,
                                   cols)
        for i in range(count):
            for co in range(rows):
                for oh in range(oh_size):
                    clamp_row(acc[co], i * span + oh * wp, y[n0 + i, co0 + co, oh],
                              zero, ow_size, lo, hi)


@cpu_helper
def _channel_blocks(image_tasks, cout_g):
    """``(blocks, rows)``: the output channels of a group cut into ``blocks``
    blocks of ``rows`` (a multiple of four; the last may be shorter) so that
    ``image_tasks`` groups of images make at least four tasks where the channels
    allow. On shapes alone; the cut never changes a sum (see
    :func:`_conv2d_forward_rows`)."""
    wanted = min((4 + image_tasks - 1) // max(image_tasks, 1), (cout_g + 3) // 4)
    if wanted <= 1:
        return 1, max(cout_g, 1)
    rows = ((cout_g + wanted - 1) // wanted + 3) // 4 * 4
    return (cout_g + rows - 1) // rows, rows


def _padded(x, pad_t, pad_l, hp, wp):
    """``x`` placed at ``(pad_t, pad_l)`` in zeros of height ``hp`` and width ``wp``
    (``x`` itself when that adds nothing), in a pooled buffer. One parallel pass
    (:func:`pad_constant`): NumPy's five slice assignments took 60 us on LeNet's
    (64,1,28,28), a row of 28 values at a time."""
    n, c, h, w = x.shape
    if (hp, wp) == (h, w):
        return x
    xp = _buffers.empty((n, c, hp, wp), x.dtype)
    pad_constant(x.reshape(n * c, h, w), xp.reshape(n * c, hp, wp), np.int64(pad_t),
                 np.int64(pad_l), x.dtype.type(0))
    return xp


def conv2d_forward(x, w, b, y, pad_t, pad_l, sh, sw, dh, dw, groups, clamp=None):
    """``y = conv(pad(x), w) + b``, limited to ``clamp``'s interval as it is stored
    (:mod:`fastcnn.kernels._clamp`: ReLU or ReLU6 in the epilogue; None: as is).

    Shape: x (N, C_in, H, W), w (C_out, C_in/groups, KH, KW), b (C_out,),
    y (N, C_out, OH, OW); ``x`` is read as if padded with ``pad_t`` rows of zeros
    on top and ``pad_l`` columns on the left, and with zeros wherever else a window
    passes its edge. Plain Python that picks the kernel (so a network compiles
    only the ones it runs): 3x3 stride-1 convolutions with enough channels go
    through Winograd (:func:`_uses_winograd`), which pads virtually; the others get
    a padded copy of ``x``. Stride-1 ones copy the rows of the padded input once
    per kernel row, several small images side by side in a task
    (:func:`_conv2d_forward_rows`), except kernels one column wide on images big
    enough to fill a tile, which run on shifted windows of the padded input
    directly (:func:`_conv2d_forward_shifted`: with one column there is no row to
    share between taps); strided ones copy patches
    (:func:`_conv2d_forward_im2col`). The three sum in the same order: the choice
    changes the time, not the bits. One stride-1 kernel for the rest keeps a
    network like LeNet-5 to one forward kernel to compile (about 2 s cold).

    Measured, 2 threads, float32 (ms, shifted -> rows): LeNet's (64,1,28,28)->6
    5x5 p2 0.114 -> 0.112, (64,3,32,32)->32 3x3 p1 0.83 -> 0.49, a 3x3 of
    dilation 2 on (32,32,32,32) 2.32 -> 1.96, 1x7 0.90 -> 0.79, 7x7 the same, 3x3
    groups 4 1.77 -> 1.89; but 7x1 0.71 -> 1.76 and 1x1 on (32,64,56,56)->64 4.09
    -> 4.29. Against the im2col path, (64,6,14,14)->16 5x5 (LeNet's second
    convolution) 0.61 -> 0.32 ms with the rows kernel.
    """
    n_batch, c_out, oh_size, ow_size = y.shape
    path = _cached_forward_path(x.shape, w.shape, y.shape, sh, sw, dh, dw, groups)
    lo, hi = bounds(clamp, y.dtype)
    if path == "depthwise_rows" and fits_rows(x.shape, w, y.shape, pad_t, pad_l):
        conv2d_depthwise_rows(x, w, b, y, pad_t, pad_l, lo, hi)
        return
    if path.startswith("depthwise"):
        conv2d_depthwise(x, w, b, y, pad_t, pad_l, sh, sw, dh, dw, lo, hi)
        return
    if path == "winograd":
        cin_g = w.shape[1]
        u = np.empty((36, c_out, cin_g), dtype=y.dtype)
        winograd_filters(w, u, False)
        plan = winograd_plan(n_batch, cin_g, c_out, oh_size, ow_size)
        winograd_conv3x3(x, u, b, y, pad_t, pad_l, *plan, lo, hi)
        return
    if path == "rows":  # reads x as if padded
        _conv2d_forward_rows(x, w, b, y, pad_t, pad_l, dh, dw, groups, lo, hi)
        return
    hp, wp = padded_hw(x.shape, y.shape, w.shape, pad_t, pad_l, sh, sw, dh, dw)
    xp = _padded(x, pad_t, pad_l, hp, wp)
    if path == "shifted":
        _conv2d_forward_shifted(xp, w, b, y, dh, dw, groups, lo, hi)
    else:
        _conv2d_forward_im2col(xp, w, b, y, sh, sw, dh, dw, groups, lo, hi)


def conv2d_backward_input(dy, w, dx, pad_t, pad_l, sh, sw, dh, dw, groups):
    """Gradient with respect to the input: ``dx`` is overwritten.

    Shape: dy (N, C_out, OH, OW), w (C_out, C_in/groups, KH, KW),
    dx (N, C_in, H, W); the padding is :func:`conv2d_forward`'s. Plain Python that
    picks the kernel: for a 3x3 stride-1 convolution with enough channels
    (:func:`_uses_winograd`), the gradient of the padded input is the full
    correlation of ``dy`` with the flipped filters, a 3x3 stride-1 convolution
    itself, done by Winograd with ``dy`` padded by 2 (virtually); reading it at
    ``(pad_t, pad_l)`` is the same convolution with ``dy`` padded by ``2 - pad_t``
    and ``2 - pad_l``, so ``dx`` comes without a padded copy where those are not
    negative. An unpadded 1x1 stride-1 convolution's gradient is the forward
    kernel's product of ``dy`` with the transposed filters, written straight into
    ``dx``. Otherwise the padded gradient is computed and cropped: from band
    rows for stride 1 (``_input_grad_rows.py``; the direct kernel where ``w``
    is not finite), by :func:`_conv2d_backward_input_direct` for strides, or by
    Winograd.

    Measured, 2 threads, float32 (ms, direct -> rows): LeNet-5's (64,6,14,14)->16
    5x5 0.65 -> 0.33, (64,6,12,12)->16 0.36 -> 0.22, (64,32,32,32)->32 5x5 p2
    40 -> 20, (64,3,32,32)->32 3x3 p1 1.64 -> 1.45.
    """
    n_batch, c_in, h, wd = dx.shape
    path = _input_grad_path(dx.shape, w.shape, sh, sw, dh, dw, groups)
    if path == "depthwise_phases":
        # Strided: phase by phase, each a stride-1 correlation of dy with that
        # phase's taps ((32,144,56,56) 3x3 s2: 30 -> 3 ms, docs/PERFORMANCE.md).
        conv2d_depthwise_input_grad_phases(dy, w, dx, pad_t, pad_l, sh, sw, dh, dw)
        return
    if path == "depthwise":
        flipped = flipped_depthwise_padding(dx.shape, dy.shape, w.shape, pad_t, pad_l,
                                            dh, dw)
        if flipped is not None:
            # One filter per channel: dx is the forward of dy with the filters
            # flipped (the forward's kernels, the rows one included: 4x4 planes
            # of a 7x7 filter 4.2 -> 0.9 ms, docs/PERFORMANCE.md).
            wf = np.ascontiguousarray(w[:, :, ::-1, ::-1])
            conv2d_forward(dy, wf, np.zeros(c_in, dtype=dx.dtype), dx, *flipped,
                           1, 1, dh, dw, groups)
            return
        conv2d_depthwise_input_grad(dy, w, dx, pad_t, pad_l, dh, dw)
        return
    if path == "pointwise" and (h, wd) == dy.shape[2:]:
        # dx = W^T @ dy per image: the forward's kernel on dy with the filters
        # transposed writes dx directly (the direct kernel zeroes dx and adds a
        # patch gradient into it); same bits, MobileNetV2's 1x1 layers 0.85-1.6x
        # faster, 52 -> 43 ms over all of them (docs/PERFORMANCE.md).
        wt = np.ascontiguousarray(w.reshape(w.shape[0], c_in).T).reshape(
            c_in, w.shape[0], 1, 1)
        conv2d_forward(dy, wt, np.zeros(c_in, dtype=dx.dtype), dx, 0, 0, 1, 1, 1, 1,
                       1)
        return
    if path == "pointwise":
        path = "rows"  # padded
    if path == "rows" and not np.isfinite(w).all():
        # An inf weight would meet the zeros the rows kernel lays out between
        # dy's rows (0 * inf): the direct kernel multiplies only real products.
        path = "direct"
    winograd = path == "winograd"
    if winograd and pad_t <= 2 and pad_l <= 2:
        _winograd_input_grad(dy, w, dx, 2 - pad_t, 2 - pad_l)
        return
    hp, wp = padded_hw(dx.shape, dy.shape, w.shape, pad_t, pad_l, sh, sw, dh, dw)
    dxp = dx if (hp, wp) == (h, wd) else _buffers.empty((n_batch, c_in, hp, wp),
                                                        dx.dtype)
    if winograd:
        _winograd_input_grad(dy, w, dxp, 2, 2)
    elif path == "rows":
        conv2d_backward_input_rows(dy, w, dxp, dh, dw, groups)
    else:
        _conv2d_backward_input_direct(dy, w, dxp, sh, sw, dh, dw, groups)
    if dxp is not dx:
        _cropped(dxp, dx, pad_t, pad_l)


#: From this many elements the crop of a padded gradient is a parallel kernel:
#: (32,64,58,58) -> 56x56 2.8 -> 1.8 ms; on LeNet-sized arrays NumPy's copy wins.
PARALLEL_CROP_ELEMENTS = 1 << 16


def _cropped(dxp, dx, pad_t, pad_l):
    """``dx`` = ``dxp`` without its padding (``pad_t`` rows on top, ``pad_l``
    columns on the left, the rest beyond ``dx``'s size)."""
    n_batch, c_in, h, wd = dx.shape
    if dx.size < PARALLEL_CROP_ELEMENTS or not dx.flags.c_contiguous:
        np.copyto(dx, dxp[:, :, pad_t : pad_t + h, pad_l : pad_l + wd])
        return
    pad_constant(dxp.reshape(n_batch * c_in, *dxp.shape[2:]),
                 dx.reshape(n_batch * c_in, h, wd), np.int64(-pad_t),
                 np.int64(-pad_l), dx.dtype.type(0))


def _winograd_input_grad(dy, w, dx, pad_t, pad_l):
    """``dx`` = the 3x3 stride-1 convolution of ``dy`` (read as if padded by
    ``pad_t``, ``pad_l``) with the flipped, transposed filters ``w``."""
    n_batch, c_in, h, wd = dx.shape
    u = np.empty((36, c_in, w.shape[0]), dtype=dx.dtype)
    winograd_filters(w, u, True)
    plan = winograd_plan(n_batch, w.shape[0], c_in, h, wd)
    zero_bias = np.zeros(c_in, dtype=dx.dtype)
    winograd_conv3x3(dy, u, zero_bias, dx, pad_t, pad_l, *plan,
                     *bounds(None, dx.dtype))


@cpu_kernel
def _conv2d_backward_input_direct(dy, w, dxp, sh, sw, dh, dw, groups):
    """:func:`conv2d_backward_input` as ``dP = W.T @ dy`` scattered back.

    Parallel over (image or group of images, group, chunk
    of input channels): their slices of ``dxp`` are disjoint. Each task builds
    ``dP = W.T @ dy`` for its channels a tile of positions at a time and scatters
    it back in a fixed order.
    """
    n_batch = dxp.shape[0]
    c_out, oh_size, ow_size = dy.shape[1], dy.shape[2], dy.shape[3]
    cin_g, kh_size, kw_size = w.shape[1], w.shape[2], w.shape[3]
    cout_g = c_out // groups
    taps = kh_size * kw_size
    k_size = cin_g * taps
    positions = oh_size * ow_size
    tile, chunk, images = _gemm_tiles(cout_g, positions, taps, cin_g, n_batch)
    chunks = (cin_g + chunk - 1) // chunk
    # W.T of each group, (groups, K, C_out/groups): the coefficients of dP's rows.
    wt = np.empty((groups, k_size, cout_g), dtype=w.dtype)
    wm = w.reshape(c_out, k_size)
    for g in range(groups):
        for co in range(cout_g):
            for k in range(k_size):
                wt[g, k, co] = wm[g * cout_g + co, k]
    dyv = dy.reshape(n_batch, c_out, positions)
    zero = np.int64(0)
    row_of, off_of = _plain_rows(cout_g)
    image_groups = (n_batch + images - 1) // images
    for task in prange(image_groups * groups * chunks):
        n0, g, c0, count, c_count = _input_grad_task(task, groups, chunks, images,
                                                     chunk, n_batch, cin_g)
        ci0 = g * cin_g + c0
        rows = c_count * taps
        for i in range(count):
            dxp[n0 + i, ci0 : ci0 + c_count] = 0
        dpatch = np.empty((chunk * taps, tile), dtype=dxp.dtype)
        if images == 1:
            grad = dyv[n0, g * cout_g : (g + 1) * cout_g]
            for p0 in range(0, positions, tile):
                width = min(tile, positions - p0)
                dpatch[:rows, :width] = 0
                _accumulate_tall_first(dpatch, zero, rows, zero, wt[g],
                                       wm[g * cout_g : (g + 1) * cout_g].T, c0 * taps,
                                       zero, grad, zero, row_of, off_of, cout_g, p0,
                                       width)
                _col2im_add(dpatch, dxp, n0, ci0, c_count, kh_size, kw_size, sh, sw,
                            dh, dw, ow_size, p0, width, zero)
        else:
            # Several whole images: their dy side by side, as the forward's patch.
            cols = count * positions
            grad = np.empty((cout_g, tile), dtype=dxp.dtype)
            _pack_images(dyv, n0, count, g * cout_g, grad)
            # Blocks of four rows written, not added into zeros (the same bits
            # without the zeroing); the last rows % 4 through _accumulate, as
            # the one-image path sums them (its one-row form has an order of
            # its own).
            whole = rows // 4 * 4
            _gemm_rows_store(dpatch, zero, whole, wt[g], c0 * taps, grad, cout_g, zero,
                             cols)
            dpatch[whole:rows, :cols] = 0
            _accumulate(dpatch, whole, rows, zero, wt[g], c0 * taps + whole, zero, grad,
                        zero, row_of, off_of, cout_g, zero, cols)
            for i in range(count):
                _col2im_add(dpatch, dxp, n0 + i, ci0, c_count, kh_size, kw_size, sh, sw,
                            dh, dw, ow_size, zero, positions, i * positions)


def conv2d_backward_weight(dy, x, dwt, pad_t, pad_l, sh, sw, dh, dw, groups):
    """Gradient with respect to the weight: ``dwt`` is overwritten.

    Shape: dy (N, C_out, OH, OW), x (N, C_in, H, W),
    dwt (C_out, C_in/groups, KH, KW); the padding is :func:`conv2d_forward`'s.
    Plain Python that picks the kernel: Winograd where the forward uses it
    (:func:`_uses_winograd`; it pads virtually); for stride 1 (under 96 output
    channels) dot products of ``dy`` and shifted windows of band rows, read
    from ``x`` as if padded (:func:`_conv2d_backward_weight_rows`); else, on a
    padded copy of ``x``, with many output channels (:func:`uses_weight_gemm`)
    one matrix product per image (:func:`conv2d_backward_weight_gemm`), or dot
    products of ``dy`` and patch rows (:func:`_conv2d_backward_weight_direct`).
    """
    _backward_weight(dy, x, dwt, None, pad_t, pad_l, sh, sw, dh, dw, groups)


def _backward_weight(dy, x, dwt, db, pad_t, pad_l, sh, sw, dh, dw, groups) -> bool:
    """:func:`conv2d_backward_weight`; where its kernel can, it also writes the
    bias gradient into ``db`` (None: no bias) and returns True (the rows kernel
    does, in the loop that adds its slots: one parallel region fewer)."""
    path = _weight_grad_path(x.shape, dwt.shape, dy.shape, sh, sw, dh, dw, groups)
    if path == "depthwise_rows" and padding_fits_rows(x.shape, dwt.shape[2],
                                                      dy.shape, pad_t, pad_l):
        conv2d_depthwise_rows_weight_grad(dy, x, dwt, pad_t, pad_l)
        return False
    if path.startswith("depthwise"):
        conv2d_depthwise_weight_grad(dy, x, dwt, pad_t, pad_l, sh, sw, dh, dw)
        return False
    if path == "winograd":
        n_batch, c_out, oh_size, ow_size = dy.shape
        band_rows, slots = winograd_weight_plan(n_batch, dwt.shape[1], c_out,
                                                oh_size, ow_size)
        winograd_weight_grad3x3(dy, x, dwt, pad_t, pad_l, band_rows, slots)
        return False
    def padded_x():
        return _padded(x, pad_t, pad_l, *padded_hw(x.shape, dy.shape, dwt.shape,
                                                   pad_t, pad_l, sh, sw, dh, dw))

    if path == "rows":
        finite = np.ones(dy.shape[0], dtype=np.bool_)
        bias = db if db is not None else np.empty(0, dtype=dwt.dtype)
        _conv2d_backward_weight_rows(dy, x, dwt, bias, pad_t, pad_l, dh, dw, groups,
                                     finite)
        if not finite.all():
            # An inf or NaN in x met the zeros past dy's rows: the direct kernel
            # multiplies only what each weight's window covers.
            _conv2d_backward_weight_direct(dy, padded_x(), dwt, sh, sw, dh, dw,
                                           groups)
        return db is not None
    xp = padded_x()
    if path == "gemm":
        conv2d_backward_weight_gemm(dy, xp, dwt, sh, sw, dh, dw, groups)
    else:
        _conv2d_backward_weight_direct(dy, xp, dwt, sh, sw, dh, dw, groups)
    return False


@cpu_kernel
def _conv2d_backward_weight_direct(dy, xp, dwt, sh, sw, dh, dw, groups):
    """:func:`conv2d_backward_weight` as dot products of ``dy`` and patch rows.

    Parallel over images (or groups of whole
    images, as the forward's tiles: :func:`_gemm_tiles`), each summing its own
    ``dy @ P.T`` into its own slot, as dot products of ``dy`` rows with patch rows
    (both contiguous over output positions, so the long sums vectorise), a tile of
    positions and a chunk of input channels at a time; then parallel over
    ``C_out``, adding the slots in order.
    """
    n_batch, c_out, oh_size, ow_size = dy.shape
    cin_g, kh_size, kw_size = dwt.shape[1], dwt.shape[2], dwt.shape[3]
    cout_g = c_out // groups
    taps = kh_size * kw_size
    k_size = cin_g * taps
    positions = oh_size * ow_size
    tile, chunk, images = _gemm_tiles(cout_g, positions, taps, cin_g, n_batch)
    dyv = dy.reshape(n_batch, c_out, positions)
    row_of, off_of = _plain_rows(chunk * taps)
    slots = (n_batch + images - 1) // images
    partial = np.empty((slots, c_out, k_size), dtype=dwt.dtype)
    for slot in prange(slots):
        # prange's index is unsigned; the helpers take signed ints, and one type
        # for them everywhere means they compile once, not once per signedness.
        s = np.int64(slot)
        n0 = s * images
        count = min(images, n_batch - n0)
        zero = np.int64(0)
        patch = np.empty((chunk * taps, tile), dtype=dwt.dtype)
        part = partial[s]
        part[:, :] = 0
        if images == 1:
            grad = dyv[n0]
            for g in range(groups):
                for p0 in range(0, positions, tile):
                    width = min(tile, positions - p0)
                    for c0 in range(0, cin_g, chunk):
                        c_count = min(chunk, cin_g - c0)
                        _im2col(xp, n0, g * cin_g + c0, c_count, kh_size, kw_size, sh,
                                sw, dh, dw, ow_size, p0, width, patch, zero)
                        _add_dots(part, g * cout_g, (g + 1) * cout_g, grad, zero, p0,
                                  patch, row_of, off_of, c_count * taps, c0 * taps,
                                  width)
        else:
            # Several whole images: their dy and patches side by side.
            cols = count * positions
            packed = np.empty((cout_g, tile), dtype=dwt.dtype)
            for g in range(groups):
                _pack_images(dyv, n0, count, g * cout_g, packed)
                for c0 in range(0, cin_g, chunk):
                    c_count = min(chunk, cin_g - c0)
                    for i in range(count):
                        _im2col(xp, n0 + i, g * cin_g + c0, c_count, kh_size, kw_size,
                                sh, sw, dh, dw, ow_size, zero, positions, patch,
                                i * positions)
                    _add_dots(part, g * cout_g, (g + 1) * cout_g, packed, g * cout_g,
                              zero, patch, row_of, off_of, c_count * taps, c0 * taps,
                              cols)
    dwm = dwt.reshape(c_out, k_size)
    for co in prange(c_out):
        _sum_slots(partial, np.int64(co), dwm[co])


#: Images per slot of :func:`_conv2d_backward_weight_rows` leave at least this
#: many slots: the slots are its parallel tasks, and five tasks on two threads
#: (LeNet's second convolution at batch 64 by the forward's tiles) leave one idle
#: a third of the time.
ROWS_MIN_SLOTS = 8

#: ... and, within that, take whole images up to this many columns (``images x OH
#: x Wp``) a slot rather than the forward's tiles (up to 512 columns): the 4x4
#: dot products of 140 columns run at 29-35 GFLOP/s on one thread, of 420 (three
#: of LeNet's 10x14 rows) at 55-65, of 1120 at 71-90, of 4096 at 78-93 (AVX-512
#: Zen 4). LeNet's second convolution, 2 threads: B64 0.41-0.66 ->
#: 0.32-0.37 ms, B256 1.58-2.11 -> 1.29-1.31 ms.
DOT_COLUMNS = 4096


@cpu_task(lambda f: (int64, int64, f[:, :, :, ::1], f[:, :, :, ::1], f[:, :, ::1],
                     boolean[::1], int64, int64, int64, int64, int64, int64, int64,
                     int64, int64[::1], int64[::1]))
def _weight_rows_slot(s, images, dy, x, partial, finite, kh_size, kw_size, pad_t,
                      pad_l, dh, dw, groups, chunk, row_of, off_of):
    """Slot ``s`` of :func:`_conv2d_backward_weight_rows`: the images from ``s *
    images`` summed into ``partial[s]``; ``finite[s]`` set False where the sums
    are not finite."""
    n_batch, c_out, oh_size, ow_size = dy.shape
    cin_g, cout_g, taps, wp, span, spare = _task_geometry(x, dy, groups, kh_size,
                                                          kw_size, dw)
    n0 = s * images
    count = min(images, n_batch - n0)
    zero = np.int64(0)
    band = np.empty((chunk * kh_size, images * span + spare), dtype=dy.dtype)
    plane_buf = np.empty((oh_size + dh * (kh_size - 1)) * wp, dtype=dy.dtype)
    grad = np.empty((cout_g, images * span), dtype=dy.dtype)
    part = partial[s]
    part[:, :] = 0
    for g in range(groups):
        _pitch_rows(dy, n0, count, g * cout_g, wp, zero, grad)
        for c0 in range(0, cin_g, chunk):
            c_count = min(chunk, cin_g - c0)
            _copy_band_rows(x, n0, count, g * cin_g + c0, c_count, kh_size, dh,
                            oh_size, pad_t, pad_l, wp, plane_buf, band)
            _add_dots(part, g * cout_g, (g + 1) * cout_g, grad, g * cout_g, zero,
                      band, row_of, off_of, c_count * taps, c0 * taps,
                      count * span)
    finite[s] = all_finite(part.reshape(c_out * part.shape[1]))


def _conv2d_backward_weight_rows(dy, x, dwt, db, pad_t, pad_l, dh, dw, groups, finite):
    """:func:`conv2d_backward_weight` for stride 1 from band rows, as the rows
    forward reads its input (:func:`_conv2d_forward_rows`): each (channel, kh)
    row of the padded input copied once, the ``KW`` taps as shifted windows of
    it, and ``dy`` laid out with the same pitch, zeros past each row's end
    (:func:`_pitch_rows`); the dot products of :func:`_add_dots` then run on the
    windows in place of im2col's patch rows (which copied the input ``KH*KW``
    times, ``OW`` values at a time: more than half the direct kernel's time on
    LeNet-5's shapes).

    Parallel over slots of whole images (at least :data:`ROWS_MIN_SLOTS` where
    the batch allows), each summing into its own slot, then over ``C_out``,
    adding the slots in order. The zeros of ``dy`` past each row's end meet
    input values no weight's window covers there: where one is inf or NaN
    (0 * inf is NaN), the slot's sums come out not finite and
    ``finite[slot]`` is set False, for the caller to compute the gradient by
    the direct kernel instead. ``x`` is read as if padded, as the rows forward
    reads it. With ``db`` of length ``C_out`` (not 0), the loop that adds the
    slots also writes the bias gradient, as :func:`conv2d_backward_bias` does
    (the same bits; one parallel region fewer). Shape: ``finite`` (N,), True on
    entry; ``db`` (C_out,) or (0,). Both loops run tasks
    (:func:`_weight_rows_slot`, :func:`_weight_rows_sum`; see ``_tasks.py``: a
    task compiles once, not in each of the modules a parallel loop is built
    from).
    """
    _weight_rows_kernel(_weight_rows_slot.address(dwt.dtype),
                        _weight_rows_sum.address(dwt.dtype), dy, x, dwt, db, pad_t,
                        pad_l, dh, dw, groups, finite)


@cpu_kernel
def _weight_rows_kernel(task, sum_task, dy, x, dwt, db, pad_t, pad_l, dh, dw, groups,
                        finite):
    """:func:`_conv2d_backward_weight_rows` with its tasks' addresses."""
    n_batch, c_out, oh_size, ow_size = dy.shape
    cin_g, kh_size, kw_size = dwt.shape[1], dwt.shape[2], dwt.shape[3]
    wp = ow_size + dw * (kw_size - 1)
    cout_g, taps, k_size, span, chunk, images, spare, row_of, off_of = _band_layout(
        c_out, cin_g, kh_size, kw_size, groups, oh_size, wp, dw, n_batch)
    images = max(min(max(images, DOT_COLUMNS // span),
                     (n_batch + ROWS_MIN_SLOTS - 1) // ROWS_MIN_SLOTS), 1)
    slots = (n_batch + images - 1) // images
    partial = np.empty((slots, c_out, k_size), dtype=dwt.dtype)
    for slot in prange(slots):
        _weight_rows_slot(task, (np.int64(slot), images, dy, x, partial, finite,
                                 kh_size, kw_size, pad_t, pad_l, dh, dw, groups,
                                 chunk, row_of, off_of))
    dwm = dwt.reshape(c_out, k_size)
    planes = dy.reshape(n_batch, c_out, oh_size * ow_size)
    for co in prange(c_out):
        _weight_rows_sum(sum_task, (np.int64(co), partial, dwm, planes, db))


@cpu_task(lambda f: (int64, f[:, :, ::1], f[:, ::1], f[:, :, ::1], f[::1]))
def _weight_rows_sum(co, partial, dwm, planes, db):
    """Output channel ``co`` of :func:`_conv2d_backward_weight_rows`: its slots
    added in order into ``dwm[co]``; with ``db`` of length ``C_out``, its bias
    gradient too."""
    _sum_slots(partial, co, dwm[co])
    if db.shape[0] == dwm.shape[0]:
        db[co] = _channel_total(planes, co)


@cpu_reduction
def _plane_total(row):
    """``sum(row)`` in the row's dtype, vectorised (reassociation lets LLVM keep
    one partial sum per vector lane; a serial sum waits on the add before it)."""
    acc = row.dtype.type(0)
    for s in range(row.shape[0]):
        acc += row[s]
    return acc


@cpu_helper
def _channel_total(planes, co):
    """``sum(planes[:, co])``: the planes summed in image order, each by
    :func:`_plane_total`. Shape: planes (N, C, P)."""
    acc = planes.dtype.type(0)
    for n in range(planes.shape[0]):
        acc += _plane_total(planes[n, co])
    return acc


@cpu_kernel
def conv2d_backward_bias(dy, db):
    """Gradient with respect to the bias: ``db[co] = sum(dy[:, co])``.

    Shape: dy (N, C_out, OH, OW), db (C_out,). Parallel over ``C_out``
    (:func:`_channel_total`).
    """
    n_batch, c_out, oh_size, ow_size = dy.shape
    planes = dy.reshape(n_batch, c_out, oh_size * ow_size)
    for co in prange(c_out):
        db[co] = _channel_total(planes, np.int64(co))


def conv2d_backward_params(dy, x, dwt, db, pad_t, pad_l, sh, sw, dh, dw, groups):
    """Gradients with respect to the weight and the bias: ``dwt`` and ``db`` are
    overwritten.

    Shape: dy (N, C_out, OH, OW), x (N, C_in, H, W),
    dwt (C_out, C_in/groups, KH, KW), db (C_out,); the padding is
    :func:`conv2d_forward`'s. Plain Python (no kernel of its own, so nothing more
    to compile): :func:`conv2d_backward_weight`, then :func:`conv2d_backward_bias`
    unless the weight's kernel wrote ``db`` too (the rows kernel does). The CUDA
    twin computes both in one launch.
    """
    if not _backward_weight(dy, x, dwt, db, pad_t, pad_l, sh, sw, dh, dw, groups):
        conv2d_backward_bias(dy, db)


@cpu_kernel
def conv2d_add_bias(b, y):
    """``y[:, c] += b[c]``: the bias of a transposed convolution, whose output comes
    from :func:`conv2d_backward_input` without one.

    Shape: b (C,), y (N, C, H, W). Parallel over ``N * C``.
    """
    n_batch, channels, h, w = y.shape
    planes = y.reshape(n_batch * channels, h * w)
    for task in prange(n_batch * channels):
        value = b[task % channels]
        for s in range(h * w):
            planes[task, s] += value
