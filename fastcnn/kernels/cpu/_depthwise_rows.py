"""Depthwise forward for stride 1 with square 3x3, 5x5 and 7x7 filters: several
images of one channel side by side, four output rows per pass over an input row.

:mod:`._depthwise` adds one kernel row of taps to one output row per pass: a
vector of outputs costs ``KW`` loads of the input (shifted by one column each, so
all but one of them straddle two cache lines) for ``KW`` multiply-adds, and on
AVX-512 those loads, not the arithmetic, set the pace (about 45% of the FMA peak
for a 7x7 filter). Here each input row is loaded once per shift and used for four
output rows: for ``KH = 7``, data row ``a`` of the input adds to output rows
``a - pad_t .. a - pad_t + 6`` through kernel rows ``6 .. 0``, four of those rows
per pass (:func:`_quad_taps7`), so every loaded vector serves four multiply-adds
(85-90% of the peak in a loop by itself).

Rows long enough for that need more than one image: ``images`` planes of channel
``c`` sit side by side in one buffer, each ``pitch = W + gap`` columns apart with
``gap >= max(pad_l, pad_r)`` zero columns between them, which are also each
image's left and right padding. The padding rows are never stored or read (they
add nothing): only the ``H`` data rows are, and an output row ``o`` sums the data
rows ``o - pad_t .. o - pad_t + KH - 1`` that exist, in increasing order, each one
kernel row of ``KW`` taps in column order, as :mod:`._depthwise` sums them.

The ``KH`` output rows a data row adds to live in a ring of row buffers: after data
row ``a`` the output row that starts at it is complete, is written out (bias added,
clamped) and its buffer cleared for the row ``KH`` below. A pass always updates
four buffers; rows past ``KH`` go to spare buffers with zero weights.

Determinism: ``prange`` runs over chunks of (output channel, image group) tasks,
whose outputs are disjoint; each output's sum has the order above whatever the
group, so the bits depend neither on the thread count nor on the batch size.

Non-finite weights: a zero padding row that is skipped would have given
``0 * inf = NaN``; :func:`fits_rows` leaves such filters to :mod:`._depthwise`,
which multiplies the padding as the naive reference does. Non-finite inputs: the
weight gradient's zero columns between images would carry them into weights they
do not touch, so a filter whose sums come out not finite is summed again image by
image (:func:`_exact_weight_sums`); finite sums cannot have met one.
"""

import numpy as np
from numba import prange

from .._jit import cpu_helper, cpu_kernel, cpu_reduction
from ._clamp import _clamp
from ._depthwise import _add_taps, _tap_dots, _zero, all_finite

#: Columns a pass should cover (images side by side until a row is this wide):
#: measured, 2 threads and one, float32, 32 images: 512 against 256 is 3-12%
#: faster on 4x4 to 56x56 planes (fewer calls per output, fewer vector
#: remainders), and four or more tasks per thread remain.
ROW_TARGET = 512

#: Tasks per parallel chunk (a chunk allocates its buffers once).
TASKS_PER_CHUNK = 4

#: Vector lanes a row is rounded up to, so no pass ends in a scalar remainder.
LANES = 16


#: Fewer columns than this per pass (one small image at batch 1, say) run faster
#: through :mod:`._depthwise`: measured, 2 threads, float32, on 4x4 to 56x56
#: planes with 3x3, 5x5 and 7x7 filters (docs/PERFORMANCE.md).
MIN_COLUMNS = 64


def _pads(x_hw, y_hw, k, pad_t, pad_l):
    """``(top, bottom, left, right)`` padding of a stride-1 convolution."""
    return (pad_t, y_hw[0] + k - 1 - x_hw[0] - pad_t,
            pad_l, y_hw[1] + k - 1 - x_hw[1] - pad_l)


def prefers_rows(x_shape, w_shape, y_shape, sh, sw, dh, dw) -> bool:
    """Whether a depthwise convolution of these shapes goes to
    :func:`depthwise_rows_forward` (plain Python on shapes, for the kernel plan):
    stride 1, no dilation, a square 3x3, 5x5 or 7x7 filter, a padding each side
    could keep within ``K - 1``, and rows of at least :data:`MIN_COLUMNS`
    columns. :func:`fits_rows` checks the rest when it runs."""
    k = w_shape[2]
    if w_shape[3] != k or k not in (3, 5, 7) or (sh, sw, dh, dw) != (1, 1, 1, 1):
        return False
    extra = [y_shape[d] + k - 1 - x_shape[d] for d in (2, 3)]
    if not all(0 <= e <= 2 * (k - 1) for e in extra):
        return False
    pitch = x_shape[3] + (extra[1] + 1) // 2
    return x_shape[0] * pitch >= MIN_COLUMNS


def padding_fits_rows(x_shape, k, y_shape, pad_t, pad_l) -> bool:
    """Each padding at most ``K - 1``: a wider one leaves output rows that read no
    data row, which the row kernels never visit."""
    pads = _pads(x_shape[2:], y_shape[2:], k, pad_t, pad_l)
    return max(pads) <= k - 1 and min(pads) >= 0


def fits_rows(x_shape, w, y_shape, pad_t, pad_l) -> bool:
    """What :func:`depthwise_rows_forward` needs beyond :func:`prefers_rows`:
    :func:`padding_fits_rows`, and finite weights (skipped padding rows would have
    given ``0 * inf = NaN``)."""
    return (padding_fits_rows(x_shape, w.shape[2], y_shape, pad_t, pad_l)
            and bool(np.isfinite(w).all()))


def prefers_rows_weight_grad(x_shape, w_shape, y_shape, sh, sw, dh, dw) -> bool:
    """Whether the weight gradient goes to :func:`depthwise_rows_weight_grad`:
    where the forward goes side by side (:func:`prefers_rows`). Measured, 2
    threads, float32, 32 images, plane kernel -> rows: 56x56 3x3 6.7 -> 5.5 ms,
    28x28 7x7 5.9 -> 4.1 ms, 4x4 7x7 4.4 -> 0.64 ms."""
    return prefers_rows(x_shape, w_shape, y_shape, sh, sw, dh, dw)


def rows_layout(n_batch, width, pad_l, pad_r):
    """``(images, pitch, length)``: images side by side per task, the columns from
    one image's start to the next, and the columns a pass computes (a multiple
    of :data:`LANES`)."""
    pitch = width + max(pad_l, pad_r)
    groups = max(1, -(-n_batch * pitch // ROW_TARGET))
    images = -(-n_batch // groups)
    length = -(-images * pitch // LANES) * LANES
    return images, pitch, length


@cpu_helper
def _quad_taps3(a0, a1, a2, a3, x, w, r0, length):
    """``a_j[q] += sum_k w[r0 - j, k] * x[q + k]`` for ``j = 0..3``, 3 taps."""
    p0, p1, p2 = w[r0, 0], w[r0, 1], w[r0, 2]
    q0, q1, q2 = w[r0 - 1, 0], w[r0 - 1, 1], w[r0 - 1, 2]
    s0, s1, s2 = w[r0 - 2, 0], w[r0 - 2, 1], w[r0 - 2, 2]
    t0, t1, t2 = w[r0 - 3, 0], w[r0 - 3, 1], w[r0 - 3, 2]
    for q in range(length):
        x0 = x[q]
        x1 = x[q + 1]
        x2 = x[q + 2]
        a0[q] = a0[q] + p0 * x0 + p1 * x1 + p2 * x2
        a1[q] = a1[q] + q0 * x0 + q1 * x1 + q2 * x2
        a2[q] = a2[q] + s0 * x0 + s1 * x1 + s2 * x2
        a3[q] = a3[q] + t0 * x0 + t1 * x1 + t2 * x2


@cpu_helper
def _quad_taps5(a0, a1, a2, a3, x, w, r0, length):
    """:func:`_quad_taps3` with 5 taps."""
    p0, p1, p2, p3, p4 = w[r0, 0], w[r0, 1], w[r0, 2], w[r0, 3], w[r0, 4]
    q0, q1, q2, q3, q4 = (w[r0 - 1, 0], w[r0 - 1, 1], w[r0 - 1, 2], w[r0 - 1, 3],
                          w[r0 - 1, 4])
    s0, s1, s2, s3, s4 = (w[r0 - 2, 0], w[r0 - 2, 1], w[r0 - 2, 2], w[r0 - 2, 3],
                          w[r0 - 2, 4])
    t0, t1, t2, t3, t4 = (w[r0 - 3, 0], w[r0 - 3, 1], w[r0 - 3, 2], w[r0 - 3, 3],
                          w[r0 - 3, 4])
    for q in range(length):
        x0 = x[q]
        x1 = x[q + 1]
        x2 = x[q + 2]
        x3 = x[q + 3]
        x4 = x[q + 4]
        a0[q] = a0[q] + p0 * x0 + p1 * x1 + p2 * x2 + p3 * x3 + p4 * x4
        a1[q] = a1[q] + q0 * x0 + q1 * x1 + q2 * x2 + q3 * x3 + q4 * x4
        a2[q] = a2[q] + s0 * x0 + s1 * x1 + s2 * x2 + s3 * x3 + s4 * x4
        a3[q] = a3[q] + t0 * x0 + t1 * x1 + t2 * x2 + t3 * x3 + t4 * x4


@cpu_helper
def _quad_taps7(a0, a1, a2, a3, x, w, r0, length):
    """:func:`_quad_taps3` with 7 taps."""
    p0, p1, p2, p3 = w[r0, 0], w[r0, 1], w[r0, 2], w[r0, 3]
    p4, p5, p6 = w[r0, 4], w[r0, 5], w[r0, 6]
    q0, q1, q2, q3 = w[r0 - 1, 0], w[r0 - 1, 1], w[r0 - 1, 2], w[r0 - 1, 3]
    q4, q5, q6 = w[r0 - 1, 4], w[r0 - 1, 5], w[r0 - 1, 6]
    s0, s1, s2, s3 = w[r0 - 2, 0], w[r0 - 2, 1], w[r0 - 2, 2], w[r0 - 2, 3]
    s4, s5, s6 = w[r0 - 2, 4], w[r0 - 2, 5], w[r0 - 2, 6]
    t0, t1, t2, t3 = w[r0 - 3, 0], w[r0 - 3, 1], w[r0 - 3, 2], w[r0 - 3, 3]
    t4, t5, t6 = w[r0 - 3, 4], w[r0 - 3, 5], w[r0 - 3, 6]
    for q in range(length):
        x0 = x[q]
        x1 = x[q + 1]
        x2 = x[q + 2]
        x3 = x[q + 3]
        x4 = x[q + 4]
        x5 = x[q + 5]
        x6 = x[q + 6]
        a0[q] = (a0[q] + p0 * x0 + p1 * x1 + p2 * x2 + p3 * x3 + p4 * x4 + p5 * x5
                 + p6 * x6)
        a1[q] = (a1[q] + q0 * x0 + q1 * x1 + q2 * x2 + q3 * x3 + q4 * x4 + q5 * x5
                 + q6 * x6)
        a2[q] = (a2[q] + s0 * x0 + s1 * x1 + s2 * x2 + s3 * x3 + s4 * x4 + s5 * x5
                 + s6 * x6)
        a3[q] = (a3[q] + t0 * x0 + t1 * x1 + t2 * x2 + t3 * x3 + t4 * x4 + t5 * x5
                 + t6 * x6)


@cpu_helper
def _slot(a, j, k, ld):
    """Start of the ring buffer of the output row ``j`` below data row ``a``
    (the spare buffers, which take the padded passes' extra rows, past ``k``)."""
    return ((a + j) % k if j < k else j) * ld


@cpu_kernel
def depthwise_rows_forward(x, w, b, y, pad_t, pad_l, images, pitch, length, lo, hi):
    """``y = depthwise_conv(pad(x), w) + b``, limited to ``[lo, hi]``, stride 1,
    square ``K`` in (3, 5, 7); see the module docstring.

    Shape: x (N, C, H, W), w (C*M, 1, K, K), b (C*M,), y (N, C*M, OH, OW); the
    padding ``pad_t`` rows on top, ``pad_l`` columns on the left, the rest implied
    by ``y``'s shape, each at most ``K - 1``; ``images, pitch, length`` from
    :func:`rows_layout`. Parallel over chunks of (output channel, image group).
    """
    n_batch, c_in, h, wd = x.shape
    c_out, _, k, _ = w.shape
    mult = c_out // c_in
    oh_size, ow_size = y.shape[2], y.shape[3]
    # Output rows per data row: full passes of four, then the rest: one row by
    # itself, or two or three in a pass of four with spare rows.
    full = k // 4
    rest = k % 4
    spare = 4 - rest if rest >= 2 else 0
    passes = full + (1 if rest >= 2 else 0)
    ld = length + LANES
    top = k - 1 - pad_t
    n_groups = (n_batch + images - 1) // images
    tasks = c_out * n_groups
    n_chunks = (tasks + TASKS_PER_CHUNK - 1) // TASKS_PER_CHUNK
    for chunk in prange(n_chunks):
        # Data rows ``ld`` apart; the columns between images are written once
        # (zeros) and never again, the ones past the last image may keep an
        # earlier group's data, which no output this group writes reads.
        buf = np.zeros(h * ld + LANES, dtype=x.dtype)
        ring = np.zeros((k + spare) * ld, dtype=y.dtype)
        wpad = np.zeros((k + spare, k), dtype=w.dtype)
        offs = np.arange(k)
        first_task = chunk * TASKS_PER_CHUNK
        for task in range(first_task, min(tasks, first_task + TASKS_PER_CHUNK)):
            co = task // n_groups
            n0 = (task % n_groups) * images
            n_img = min(images, n_batch - n0)
            ci = co // mult
            for r in range(k):
                for c in range(k):
                    wpad[r + spare, c] = w[co, 0, r, c]
            for p in range(n_img):
                plane = x[n0 + p, ci]
                for i in range(h):
                    src = plane[i]
                    dst = buf[i * ld + p * pitch + pad_l:]
                    for j in range(wd):
                        dst[j] = src[j]
            _zero(ring, np.int64(0), (k + spare) * ld)
            bias = b[co]
            for a in range(h + k - 1):
                if a < h:
                    xr = buf[a * ld:]
                    for g in range(passes):
                        s0 = _slot(a, 4 * g, k, ld)
                        s1 = _slot(a, 4 * g + 1, k, ld)
                        s2 = _slot(a, 4 * g + 2, k, ld)
                        s3 = _slot(a, 4 * g + 3, k, ld)
                        r0 = k - 1 - 4 * g + spare
                        a0 = ring[s0:s0 + ld]
                        a1 = ring[s1:s1 + ld]
                        a2 = ring[s2:s2 + ld]
                        a3 = ring[s3:s3 + ld]
                        if k == 7:
                            _quad_taps7(a0, a1, a2, a3, xr, wpad, r0, length)
                        elif k == 5:
                            _quad_taps5(a0, a1, a2, a3, xr, wpad, r0, length)
                        else:
                            _quad_taps3(a0, a1, a2, a3, xr, wpad, r0, length)
                    if rest == 1:
                        s0 = _slot(a, k - 1, k, ld)
                        _add_taps(ring[s0:s0 + ld], xr, offs, wpad[0], length)
                o = a - top
                slot = (a % k) * ld
                if 0 <= o < oh_size:
                    for p in range(n_img):
                        src = ring[slot + p * pitch:]
                        dst = y[n0 + p, co, o]
                        for j in range(ow_size):
                            dst[j] = _clamp(src[j] + bias, lo, hi)
                _zero(ring, slot, ld)


def conv2d_depthwise_rows(x, w, b, y, pad_t, pad_l, lo, hi):
    """:func:`depthwise_rows_forward` with its layout worked out."""
    _, _, pad_b, pad_r = _pads(x.shape[2:], y.shape[2:], w.shape[2], pad_t, pad_l)
    images, pitch, length = rows_layout(x.shape[0], x.shape[3], pad_l, pad_r)
    depthwise_rows_forward(x, w, b, y, pad_t, pad_l, images, pitch, length, lo, hi)


@cpu_helper
def _fill_side_by_side(src, buf, ld, pitch, col0, n0, n_img, ch):
    """Rows of planes ``src[n0 + p, ch]`` (``p < n_img``) into ``buf``, row ``i``
    at ``i * ld``, image ``p`` from column ``p * pitch + col0``."""
    h, wd = src.shape[2], src.shape[3]
    for p in range(n_img):
        plane = src[n0 + p, ch]
        for i in range(h):
            row = plane[i]
            dst = buf[i * ld + p * pitch + col0:]
            for j in range(wd):
                dst[j] = row[j]


@cpu_reduction
def _pair_dots3(g0, g1, x, length, out):
    """``out[t] = sum_q g0[q] * x[q + t]`` and ``out[3 + t] = sum_q g1[q] *
    x[q + t]`` for the 3 taps ``t``: two rows of ``dy`` against one input row,
    each loaded input vector used twice."""
    z = g0.dtype.type(0)
    a0 = a1 = a2 = b0 = b1 = b2 = z
    for q in range(length):
        u = g0[q]
        v = g1[q]
        x0 = x[q]
        x1 = x[q + 1]
        x2 = x[q + 2]
        a0 += u * x0
        a1 += u * x1
        a2 += u * x2
        b0 += v * x0
        b1 += v * x1
        b2 += v * x2
    out[0], out[1], out[2] = a0, a1, a2
    out[3], out[4], out[5] = b0, b1, b2


@cpu_reduction
def _pair_dots5(g0, g1, x, length, out):
    """:func:`_pair_dots3` with 5 taps."""
    z = g0.dtype.type(0)
    a0 = a1 = a2 = a3 = a4 = b0 = b1 = b2 = b3 = b4 = z
    for q in range(length):
        u = g0[q]
        v = g1[q]
        x0 = x[q]
        x1 = x[q + 1]
        x2 = x[q + 2]
        x3 = x[q + 3]
        x4 = x[q + 4]
        a0 += u * x0
        a1 += u * x1
        a2 += u * x2
        a3 += u * x3
        a4 += u * x4
        b0 += v * x0
        b1 += v * x1
        b2 += v * x2
        b3 += v * x3
        b4 += v * x4
    out[0], out[1], out[2], out[3], out[4] = a0, a1, a2, a3, a4
    out[5], out[6], out[7], out[8], out[9] = b0, b1, b2, b3, b4


@cpu_reduction
def _pair_dots7(g0, g1, x, length, out):
    """:func:`_pair_dots3` with 7 taps."""
    z = g0.dtype.type(0)
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = z
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = z
    for q in range(length):
        u = g0[q]
        v = g1[q]
        x0 = x[q]
        x1 = x[q + 1]
        x2 = x[q + 2]
        x3 = x[q + 3]
        x4 = x[q + 4]
        x5 = x[q + 5]
        x6 = x[q + 6]
        a0 += u * x0
        a1 += u * x1
        a2 += u * x2
        a3 += u * x3
        a4 += u * x4
        a5 += u * x5
        a6 += u * x6
        b0 += v * x0
        b1 += v * x1
        b2 += v * x2
        b3 += v * x3
        b4 += v * x4
        b5 += v * x5
        b6 += v * x6
    out[0], out[1], out[2], out[3] = a0, a1, a2, a3
    out[4], out[5], out[6] = a4, a5, a6
    out[7], out[8], out[9], out[10] = b0, b1, b2, b3
    out[11], out[12], out[13] = b4, b5, b6


@cpu_helper
def _zero_f64(values):
    for j in range(values.shape[0]):
        values[j] = 0.0


@cpu_helper
def _exact_weight_sums(gbuf, xbuf, sums, part, offs, k, ld, pitch, pad_t, n_img, h,
                       oh_size, ow_size):
    """:func:`depthwise_rows_weight_grad`'s sums for a group whose input holds an
    inf or NaN: each dot over one image's own output columns only, so that the
    zero columns of ``dy`` between images never meet it (0 * inf = NaN would reach
    weights the value does not touch)."""
    for a in range(h):
        xr = xbuf[a * ld:]
        for kh in range(k):
            o = a + pad_t - kh
            if o < 0 or o >= oh_size:
                continue
            g = gbuf[(o + k) * ld:]
            _zero(part, np.int64(0), k)
            for p in range(n_img):
                _tap_dots(g[p * pitch:], xr[p * pitch:], offs, ow_size, part,
                          np.int64(0))
            for kw in range(k):
                sums[kh * k + kw] += part[kw]


@cpu_kernel
def depthwise_rows_weight_grad(dy, x, dwt, pad_t, pad_l, images, pitch, length):
    """Gradient with respect to the weight of a stride-1 depthwise convolution
    with a square ``K`` filter in (3, 5, 7), ``dwt`` overwritten:
    ``dwt[co, 0, kh, kw]`` sums, over the data rows ``a`` of ``x``, the dot
    product of ``dy``'s row ``o = a + pad_t - kh`` with ``x``'s row ``a`` shifted
    by ``kw``, a group of images side by side at a time (layout as
    :func:`depthwise_rows_forward`; ``dy``'s rows on the same columns, zeros
    between images, and ``K`` rows of zeros above and below, so that the two
    rows ``o`` and ``o - 1`` of a pass (kernel rows ``kh`` and ``kh + 1``) may
    lie outside ``dy``). Each dot is summed in float32 (reassociated, in an order
    fixed by the shapes), the dots in float64 in the order (group, a, kh).

    Shape: dy (N, C*M, OH, OW), x (N, C, H, W), dwt (C*M, 1, K, K). Parallel over
    the ``C*M`` filters.
    """
    n_batch, c_in, h, wd = x.shape
    c_out, _, k, _ = dwt.shape
    mult = c_out // c_in
    oh_size = dy.shape[2]
    ld = length + LANES
    n_groups = (n_batch + images - 1) // images
    for co in prange(c_out):
        ci = co // mult
        xbuf = np.zeros(h * ld + LANES, dtype=x.dtype)
        gbuf = np.zeros((oh_size + 2 * k) * ld + LANES, dtype=dy.dtype)
        sums = np.zeros(k * k, dtype=np.float64)
        part = np.empty(2 * k, dtype=dy.dtype)
        offs = np.arange(k)
        for grp in range(n_groups):
            n0 = grp * images
            n_img = min(images, n_batch - n0)
            if n_img < images:
                # A short last group: no earlier group's values past its images.
                _zero(xbuf, np.int64(0), xbuf.shape[0])
                _zero(gbuf, np.int64(0), gbuf.shape[0])
            _fill_side_by_side(x, xbuf, ld, pitch, pad_l, n0, n_img, ci)
            _fill_side_by_side(dy, gbuf[k * ld:], ld, pitch, np.int64(0), n0, n_img,
                               co)
            for a in range(h):
                xr = xbuf[a * ld:]
                for kh in range(0, k, 2):
                    o = a + pad_t - kh
                    if o < 0 or o > oh_size:  # neither o nor o - 1 is a row of dy
                        continue
                    g0 = gbuf[(o + k) * ld:]
                    g1 = gbuf[(o + k - 1) * ld:]
                    if k == 7:
                        _pair_dots7(g0, g1, xr, length, part)
                    elif k == 5:
                        _pair_dots5(g0, g1, xr, length, part)
                    else:
                        _pair_dots3(g0, g1, xr, length, part)
                    for kw in range(k):
                        sums[kh * k + kw] += part[kw]
                        if kh + 1 < k:
                            sums[(kh + 1) * k + kw] += part[k + kw]
        if not all_finite(sums):
            # An inf or NaN in x (or an overflow): the zero columns of dy may have
            # met it. Again, image by image over their own columns.
            _zero_f64(sums)
            for grp in range(n_groups):
                n0 = grp * images
                n_img = min(images, n_batch - n0)
                _zero(xbuf, np.int64(0), xbuf.shape[0])
                _zero(gbuf, np.int64(0), gbuf.shape[0])
                _fill_side_by_side(x, xbuf, ld, pitch, pad_l, n0, n_img, ci)
                _fill_side_by_side(dy, gbuf[k * ld:], ld, pitch, np.int64(0), n0,
                                   n_img, co)
                _exact_weight_sums(gbuf, xbuf, sums, part, offs, k, ld, pitch, pad_t,
                                   n_img, h, oh_size, dy.shape[3])
        for kh in range(k):
            for kw in range(k):
                dwt[co, 0, kh, kw] = sums[kh * k + kw]


def conv2d_depthwise_rows_weight_grad(dy, x, dwt, pad_t, pad_l):
    """:func:`depthwise_rows_weight_grad` with its layout worked out."""
    _, _, pad_b, pad_r = _pads(x.shape[2:], dy.shape[2:], dwt.shape[2], pad_t, pad_l)
    images, pitch, length = rows_layout(x.shape[0], x.shape[3], pad_l, pad_r)
    depthwise_rows_weight_grad(dy, x, dwt, pad_t, pad_l, images, pitch, length)
