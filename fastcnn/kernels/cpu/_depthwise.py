"""Depthwise convolution (``groups == C_in``, one input channel per filter) and its
gradients, plane by plane.

A depthwise filter has no channel sum to turn into a matrix product: each output
plane is ``KH * KW`` scaled copies of one padded input plane, shifted and added.
Done row by row, that is ``KH * KW`` short loops per output row (28 or 56 floats,
less than one unrolled vector loop), which is why the general grouped kernels run
it slowly. Here the padded plane is laid out flat with rows ``wq`` wide, and the
output is computed in that layout too, one flat loop of ``OH * wq`` elements per
kernel row (the ``wq - OW`` extra columns of each output row are computed and
dropped): every tap is then one long contiguous multiply-add, and a kernel row's
``KW`` taps are added in one pass over the output (one load and store of it per
``KW`` multiply-adds).

A stride ``s`` is turned into stride 1 by splitting the padded plane into its
``sh * sw`` phases (rows ``a, a + sh, ...`` and columns ``b, b + sw, ...``): tap
``(kh, kw)`` of output ``(oh, ow)`` reads phase ``(kh*dh % sh, kw*dw % sw)`` at
``(oh + kh*dh // sh, ow + kw*dw // sw)``. The weight gradient reads the same
phases (any stride). The input gradient of a strided one is computed phase by
phase too (:func:`depthwise_backward_input_phases`): phase ``(a, b)`` of the
padded input's gradient is a stride-1 correlation of ``dy`` with the taps of that
phase only.

Buffers (per parallel task, in L1/L2): the phases of one padded input plane, each
``hq`` rows of ``wq`` plus one row of zeros, so that every flat read stays inside
(see :func:`depthwise_layout`).

Determinism: ``prange`` runs over chunks of ``(n, ci)`` planes for ``y`` and ``dx``
(disjoint outputs) and over output channels for ``dw`` (each sums its images in
order), so results are bitwise the same for any thread count.

Non-finite values: the flat layout multiplies the zero columns of a gradient row
by the input values that follow it in memory, which would carry an inf or NaN
input into weight gradients it does not touch in a direct sum (0 * inf = NaN);
where an image's weight-gradient sums come out not finite, they are summed again
over each output row's own columns only (as the naive reference); finite sums
cannot have met one.
"""

import numpy as np
from numba import prange

from .._jit import cpu_helper, cpu_kernel, cpu_reduction
from ._clamp import _clamp

#: Planes per parallel task: a task allocates its buffers once.
PLANES_PER_TASK = 8


def depthwise_layout(oh, ow, kh, kw, sh, sw, dh, dw):
    """``(hq, wq, plane)``: rows and row width of each stride phase of the padded
    input as the kernels lay it out, and the elements one phase takes (``hq * wq``
    and a row of zeros, so reads that run past a row's end stay inside)."""
    hq = oh + (kh - 1) * dh // sh
    wq = ow + (kw - 1) * dw // sw
    return hq, wq, hq * wq + wq


def tap_offsets(kh, kw, sh, sw, dh, dw, wq, plane):
    """Start, in the phase buffer, of each tap's input window (row-major taps)."""
    offs = np.empty(kh * kw, dtype=np.int64)
    for r in range(kh):
        for c in range(kw):
            phase = (r * dh % sh) * sw + c * dw % sw
            offs[r * kw + c] = phase * plane + (r * dh // sh) * wq + c * dw // sw
    return offs


def uses_depthwise(x_shape, w_shape, groups) -> bool:
    """Whether a convolution is depthwise (one input channel per group)."""
    return groups > 1 and groups == x_shape[1] and w_shape[1] == 1


@cpu_helper
def _zero(buf, start, count):
    # Slice first: ``buf[start + j]`` would not vectorise (the index might be
    # negative, so each store checks it), and a scalar loop costs more than the
    # taps on small planes.
    row = buf[start:start + count]
    for j in range(count):
        row[j] = 0


@cpu_reduction
def all_finite(values):
    """Whether a 1-D array holds no inf and no NaN (``v - v`` is 0 exactly for
    the finite ones)."""
    ok = True
    for j in range(values.shape[0]):
        ok &= values[j] - values[j] == 0
    return ok


@cpu_helper
def _fill_phase(src, buf, start, a, b, hq, wq, pad_t, pad_l, sh, sw):
    """Phase ``(a, b)`` of ``src`` zero-padded by ``pad_t`` rows on top and
    ``pad_l`` columns on the left, into ``buf[start:]`` as ``hq`` rows of ``wq``
    and a row of zeros."""
    h, w = src.shape
    j_lo = min(wq, max(0, -((b - pad_l) // sw)))
    j_hi = max(j_lo, min(wq, (w - 1 + pad_l - b) // sw + 1))
    for i in range(hq):
        row = start + i * wq
        r = i * sh + a - pad_t
        if r < 0 or r >= h or j_hi == j_lo:
            _zero(buf, row, wq)
            continue
        _zero(buf, row, j_lo)
        srow = src[r, j_lo * sw + b - pad_l:]
        dst = buf[row + j_lo: row + j_hi]
        for j in range(j_hi - j_lo):
            dst[j] = srow[j * sw]
        _zero(buf, row + j_hi, wq - j_hi)
    _zero(buf, start + hq * wq, wq)


@cpu_helper
def _add_taps(acc, buf, offs, wts, length):
    """``acc[:length] += sum_t wts[t] * buf[offs[t] + q]`` over one kernel row of
    taps, added one by one in tap order; the common widths 3, 5 and 7 in one pass
    over ``acc``. Sums start from zeros (never from a first product), so that an
    output's bits do not depend on which kernel row comes first:
    :mod:`._depthwise_rows` skips the padding rows and gives the same bits."""
    n_taps = offs.shape[0]
    if n_taps == 3:
        s0 = buf[offs[0]:offs[0] + length]
        s1 = buf[offs[1]:offs[1] + length]
        s2 = buf[offs[2]:offs[2] + length]
        w0, w1, w2 = wts[0], wts[1], wts[2]
        for q in range(length):
            acc[q] = acc[q] + w0 * s0[q] + w1 * s1[q] + w2 * s2[q]
    elif n_taps == 5:
        s0 = buf[offs[0]:offs[0] + length]
        s1 = buf[offs[1]:offs[1] + length]
        s2 = buf[offs[2]:offs[2] + length]
        s3 = buf[offs[3]:offs[3] + length]
        s4 = buf[offs[4]:offs[4] + length]
        w0, w1, w2, w3, w4 = wts[0], wts[1], wts[2], wts[3], wts[4]
        for q in range(length):
            acc[q] = (acc[q] + w0 * s0[q] + w1 * s1[q] + w2 * s2[q]
                      + w3 * s3[q] + w4 * s4[q])
    elif n_taps == 7:
        s0 = buf[offs[0]:offs[0] + length]
        s1 = buf[offs[1]:offs[1] + length]
        s2 = buf[offs[2]:offs[2] + length]
        s3 = buf[offs[3]:offs[3] + length]
        s4 = buf[offs[4]:offs[4] + length]
        s5 = buf[offs[5]:offs[5] + length]
        s6 = buf[offs[6]:offs[6] + length]
        w0, w1, w2, w3 = wts[0], wts[1], wts[2], wts[3]
        w4, w5, w6 = wts[4], wts[5], wts[6]
        for q in range(length):
            acc[q] = (acc[q] + w0 * s0[q] + w1 * s1[q] + w2 * s2[q] + w3 * s3[q]
                      + w4 * s4[q] + w5 * s5[q] + w6 * s6[q])
    else:
        for t in range(n_taps):
            src = buf[offs[t]:offs[t] + length]
            wv = wts[t]
            for q in range(length):
                acc[q] += wv * src[q]


@cpu_kernel
def depthwise_forward(x, w, b, y, offs, pad_t, pad_l, sh, sw, hq, wq, lo, hi):
    """``y = depthwise_conv(pad(x), w) + b``, limited to ``[lo, hi]``
    (:func:`._clamp._clamp`).

    Shape: x (N, C, H, W), w (C*M, 1, KH, KW), b (C*M,), y (N, C*M, OH, OW);
    ``offs`` (KH*KW,) from :func:`tap_offsets`, ``hq, wq`` from
    :func:`depthwise_layout`. Parallel over chunks of ``N * C`` input planes.
    """
    n_batch, c_in, h, wd = x.shape
    c_out, _, kh_size, kw_size = w.shape
    mult = c_out // c_in
    oh_size, ow_size = y.shape[2], y.shape[3]
    plane = hq * wq + wq
    length = oh_size * wq
    tasks = n_batch * c_in
    n_chunks = (tasks + PLANES_PER_TASK - 1) // PLANES_PER_TASK
    for chunk in prange(n_chunks):
        buf = np.empty(sh * sw * plane, dtype=x.dtype)
        acc = np.empty(length, dtype=y.dtype)
        first_task = chunk * PLANES_PER_TASK
        for task in range(first_task, min(tasks, first_task + PLANES_PER_TASK)):
            n = task // c_in
            ci = task % c_in
            for a in range(sh):
                for bb in range(sw):
                    _fill_phase(x[n, ci], buf, (a * sw + bb) * plane, a, bb, hq, wq,
                                pad_t, pad_l, sh, sw)
            for m in range(mult):
                co = ci * mult + m
                _zero(acc, np.int64(0), length)
                for r in range(kh_size):
                    _add_taps(acc, buf, offs[r * kw_size:(r + 1) * kw_size],
                              w[co, 0, r], length)
                bias = b[co]
                for i in range(oh_size):
                    src = acc[i * wq:i * wq + ow_size]
                    dst = y[n, co, i]
                    for j in range(ow_size):
                        dst[j] = _clamp(src[j] + bias, lo, hi)


@cpu_helper
def _fill_rows(src, buf, start, wq, before, after):
    """``src`` (rows of ``ow``) into ``buf[start:]`` as rows ``wq`` wide (zeros
    after each row), with ``before`` zeros ahead and ``after`` behind."""
    oh_size, ow_size = src.shape
    _zero(buf, start, before)
    for i in range(oh_size):
        row = start + before + i * wq
        dst = buf[row:row + ow_size]
        srow = src[i]
        for j in range(ow_size):
            dst[j] = srow[j]
        _zero(buf, row + ow_size, wq - ow_size)
    _zero(buf, start + before + oh_size * wq, after)


@cpu_kernel
def depthwise_backward_input(dy, w, dx, offs, pad_t, pad_l, hq, wq):
    """Gradient with respect to the input of a stride-1 depthwise convolution:
    ``dx`` is overwritten.

    The padded input's gradient is the correlation of ``dy`` with the flipped
    filters: ``dxp[i, j] = sum w[kh, kw] * dy[i - kh*dh, j - kw*dw]``, computed in
    the flat layout over ``dy`` rows ``wq`` wide behind ``front`` zeros; only the
    rows of ``x`` are computed. ``offs`` (KH*KW,): where each tap reads, for the
    first computed element, ``front + pad_t * wq - kh*dh*wq - kw*dw``.

    Shape: dy (N, C*M, OH, OW), w (C*M, 1, KH, KW), dx (N, C, H, W).
    Parallel over chunks of ``N * C`` planes (a plane sums its ``M`` filters in
    order).
    """
    n_batch, c_in, h, wd = dx.shape
    c_out, _, kh_size, kw_size = w.shape
    mult = c_out // c_in
    oh_size = dy.shape[2]
    front = offs[0] - pad_t * wq
    buf_len = front + hq * wq + wq
    length = h * wq
    tasks = n_batch * c_in
    n_chunks = (tasks + PLANES_PER_TASK - 1) // PLANES_PER_TASK
    for chunk in prange(n_chunks):
        buf = np.empty(buf_len, dtype=dy.dtype)
        acc = np.empty(length, dtype=dx.dtype)
        first_task = chunk * PLANES_PER_TASK
        for task in range(first_task, min(tasks, first_task + PLANES_PER_TASK)):
            n = task // c_in
            ci = task % c_in
            _zero(acc, np.int64(0), length)
            for m in range(mult):
                co = ci * mult + m
                _fill_rows(dy[n, co], buf, 0, wq, front,
                           buf_len - front - oh_size * wq)
                for r in range(kh_size):
                    _add_taps(acc, buf, offs[r * kw_size:(r + 1) * kw_size],
                              w[co, 0, r], length)
            for i in range(h):
                src = acc[i * wq + pad_l:i * wq + pad_l + wd]
                dst = dx[n, ci, i]
                for j in range(wd):
                    dst[j] = src[j]


@cpu_kernel
def depthwise_backward_input_phases(dy, w, dx, pad_t, pad_l, sh, sw, dh, dw, pitch,
                                    front, rows_max, buf_len):
    """Gradient with respect to the input of a strided depthwise convolution:
    ``dx`` is overwritten.

    Row ``r = i*sh + a`` and column ``c = j*sw + b`` of the padded input take
    gradient only from the taps of phase ``(a, b)`` (``kh*dh % sh == a``,
    ``kw*dw % sw == b``): ``dxp[r, c] = sum w[kh, kw] * dy[i - kh*dh // sh,
    j - kw*dw // sw]``, a stride-1 correlation. ``dy`` is laid out flat in rows
    ``pitch`` wide (``OW`` and zeros) behind ``front`` zeros and ahead of zero
    rows, so each tap of a phase is one contiguous multiply-add over the phase's
    rows (:func:`_add_taps`, taps in order); the phase is then scattered into
    ``dx``, columns past the computed ones (input no window reaches) as zeros.

    Shape: dy (N, C*M, OH, OW), w (C*M, 1, KH, KW), dx (N, C, H, W); ``pitch``,
    ``front``, ``rows_max`` and ``buf_len`` from :func:`conv2d_depthwise_input_grad`.
    Parallel over chunks of ``N * C`` planes (a plane sums its ``M`` filters in
    order, each into every phase).
    """
    n_batch, c_in, h, wd = dx.shape
    c_out, _, kh_size, kw_size = w.shape
    mult = c_out // c_in
    oh_size = dy.shape[2]
    phases = sh * sw
    span = rows_max * pitch
    tasks = n_batch * c_in
    n_chunks = (tasks + PLANES_PER_TASK - 1) // PLANES_PER_TASK
    for chunk in prange(n_chunks):
        buf = np.empty(buf_len, dtype=dy.dtype)
        acc = np.empty(phases * span, dtype=dx.dtype)
        offs = np.empty(kh_size * kw_size, dtype=np.int64)
        wts = np.empty(kh_size * kw_size, dtype=dx.dtype)
        first_task = chunk * PLANES_PER_TASK
        for task in range(first_task, min(tasks, first_task + PLANES_PER_TASK)):
            n = task // c_in
            ci = task % c_in
            _zero(acc, np.int64(0), phases * span)
            for m in range(mult):
                co = ci * mult + m
                _fill_rows(dy[n, co], buf, 0, pitch, front,
                           buf_len - front - oh_size * pitch)
                for a in range(sh):
                    i_lo = (pad_t - a + sh - 1) // sh if pad_t > a else 0
                    rows = (pad_t + h - 1 - a) // sh + 1 - i_lo
                    for b in range(sw):
                        n_taps = 0
                        for kh in range(kh_size):
                            if kh * dh % sh != a:
                                continue
                            for kw in range(kw_size):
                                if kw * dw % sw != b:
                                    continue
                                offs[n_taps] = (front + (i_lo - kh * dh // sh) * pitch
                                                - kw * dw // sw)
                                wts[n_taps] = w[co, 0, kh, kw]
                                n_taps += 1
                        if rows > 0 and n_taps > 0:
                            start = (a * sw + b) * span
                            _add_taps(acc[start:start + rows * pitch], buf,
                                      offs[:n_taps], wts[:n_taps], rows * pitch)
            for r in range(h):
                a = (r + pad_t) % sh
                i_lo = (pad_t - a + sh - 1) // sh if pad_t > a else 0
                row = (r + pad_t) // sh - i_lo
                dst = dx[n, ci, r]
                for b in range(sw):
                    # Columns c0, c0 + sw, ... of this row are phase b's from j0 on;
                    # past the computed ones (no window reaches them) zeros.
                    j0 = (pad_l - b + sw - 1) // sw if pad_l > b else 0
                    c0 = j0 * sw + b - pad_l
                    count = (wd - c0 + sw - 1) // sw if wd > c0 else 0
                    valid = max(min(count, pitch - j0), 0)
                    base = (a * sw + b) * span + row * pitch + j0
                    src = acc[base:base + valid]
                    out = dst[c0:]
                    for t in range(valid):
                        out[t * sw] = src[t]
                    for t in range(valid, count):
                        out[t * sw] = 0


@cpu_reduction
def _tap_dots(g, buf, offs, length, out, o0):
    """``out[o0 + t] += sum_q g[q] * buf[offs[t] + q]`` for one kernel row of taps
    (widths 3, 5 and 7 in one pass over ``g``)."""
    n_taps = offs.shape[0]
    z = g.dtype.type(0)
    if n_taps == 3:
        s0 = buf[offs[0]:offs[0] + length]
        s1 = buf[offs[1]:offs[1] + length]
        s2 = buf[offs[2]:offs[2] + length]
        a0 = a1 = a2 = z
        for q in range(length):
            gq = g[q]
            a0 += gq * s0[q]
            a1 += gq * s1[q]
            a2 += gq * s2[q]
        out[o0] += a0
        out[o0 + 1] += a1
        out[o0 + 2] += a2
    elif n_taps == 5:
        s0 = buf[offs[0]:offs[0] + length]
        s1 = buf[offs[1]:offs[1] + length]
        s2 = buf[offs[2]:offs[2] + length]
        s3 = buf[offs[3]:offs[3] + length]
        s4 = buf[offs[4]:offs[4] + length]
        a0 = a1 = a2 = a3 = a4 = z
        for q in range(length):
            gq = g[q]
            a0 += gq * s0[q]
            a1 += gq * s1[q]
            a2 += gq * s2[q]
            a3 += gq * s3[q]
            a4 += gq * s4[q]
        out[o0] += a0
        out[o0 + 1] += a1
        out[o0 + 2] += a2
        out[o0 + 3] += a3
        out[o0 + 4] += a4
    elif n_taps == 7:
        s0 = buf[offs[0]:offs[0] + length]
        s1 = buf[offs[1]:offs[1] + length]
        s2 = buf[offs[2]:offs[2] + length]
        s3 = buf[offs[3]:offs[3] + length]
        s4 = buf[offs[4]:offs[4] + length]
        s5 = buf[offs[5]:offs[5] + length]
        s6 = buf[offs[6]:offs[6] + length]
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = z
        for q in range(length):
            gq = g[q]
            a0 += gq * s0[q]
            a1 += gq * s1[q]
            a2 += gq * s2[q]
            a3 += gq * s3[q]
            a4 += gq * s4[q]
            a5 += gq * s5[q]
            a6 += gq * s6[q]
        out[o0] += a0
        out[o0 + 1] += a1
        out[o0 + 2] += a2
        out[o0 + 3] += a3
        out[o0 + 4] += a4
        out[o0 + 5] += a5
        out[o0 + 6] += a6
    else:
        for t in range(n_taps):
            src = buf[offs[t]:offs[t] + length]
            a = z
            for q in range(length):
                a += g[q] * src[q]
            out[o0 + t] += a


@cpu_kernel
def depthwise_backward_weight(dy, x, dwt, offs, pad_t, pad_l, sh, sw, hq, wq):
    """Gradient with respect to the weight of a depthwise convolution: ``dwt`` is
    overwritten. ``dwt[co, 0, kh, kw]`` is the sum over images of the dot product
    of ``dy[n, co]`` (rows ``wq`` wide, zeros after each) with the stride phase of
    the padded input plane that tap ``(kh, kw)`` reads, from where it reads it on;
    the per-image sums are added in image order, in float64.

    Shape: dy (N, C*M, OH, OW), x (N, C, H, W), dwt (C*M, 1, KH, KW); ``offs``
    and ``hq, wq`` as for :func:`depthwise_forward` (same stride).
    Parallel over the ``C*M`` filters.
    """
    n_batch, c_in, h, wd = x.shape
    c_out, _, kh_size, kw_size = dwt.shape
    mult = c_out // c_in
    oh_size = dy.shape[2]
    plane = hq * wq + wq
    length = oh_size * wq
    for co in prange(c_out):
        ci = co // mult
        buf = np.empty(sh * sw * plane, dtype=x.dtype)
        g = np.empty(length, dtype=dy.dtype)
        sums = np.zeros(kh_size * kw_size, dtype=np.float64)
        part = np.empty(kh_size * kw_size, dtype=dy.dtype)
        for n in range(n_batch):
            for a in range(sh):
                for bb in range(sw):
                    _fill_phase(x[n, ci], buf, (a * sw + bb) * plane, a, bb, hq, wq,
                                pad_t, pad_l, sh, sw)
            _fill_rows(dy[n, co], g, np.int64(0), wq, np.int64(0), np.int64(0))
            _zero(part, np.int64(0), kh_size * kw_size)
            for r in range(kh_size):
                _tap_dots(g, buf, offs[r * kw_size:(r + 1) * kw_size], length, part,
                          r * kw_size)
            if not all_finite(part):
                # An inf or NaN in x (or an overflow): the zero columns of g may
                # have met it (0 * inf = NaN). Again over each output row's own
                # columns only, as the naive reference sums.
                _zero(part, np.int64(0), kh_size * kw_size)
                for i in range(oh_size):
                    for r in range(kh_size):
                        _tap_dots(g[i * wq:], buf[i * wq:],
                                  offs[r * kw_size:(r + 1) * kw_size], dy.shape[3],
                                  part, r * kw_size)
            for t in range(kh_size * kw_size):
                sums[t] += part[t]
        for r in range(kh_size):
            for c in range(kw_size):
                dwt[co, 0, r, c] = sums[r * kw_size + c]


def conv2d_depthwise(x, w, b, y, pad_t, pad_l, sh, sw, dh, dw, lo, hi):
    """:func:`depthwise_forward` with its layout worked out (see
    ``conv.conv2d_forward`` for the arguments)."""
    kh, kw = w.shape[2], w.shape[3]
    hq, wq, plane = depthwise_layout(y.shape[2], y.shape[3], kh, kw, sh, sw, dh, dw)
    offs = tap_offsets(kh, kw, sh, sw, dh, dw, wq, plane)
    depthwise_forward(x, w, b, y, offs, pad_t, pad_l, sh, sw, hq, wq, lo, hi)


def conv2d_depthwise_input_grad_phases(dy, w, dx, pad_t, pad_l, sh, sw, dh, dw):
    """:func:`depthwise_backward_input_phases` (any stride) with its layout
    worked out."""
    kh, kw = w.shape[2], w.shape[3]
    oh, ow = dy.shape[2], dy.shape[3]
    reach_h, reach_w = (kh - 1) * dh // sh, (kw - 1) * dw // sw
    pitch = ow + reach_w
    front = reach_h * pitch + reach_w
    # Every phase row a plane of x can fall in, and zero rows below dy for the
    # reads of rows past its last (input no window reaches) and one more for the
    # flat reads that run past a row's end.
    rows_max = (pad_t + dx.shape[2] - 1) // sh + 1
    below = max(rows_max - oh, 0) + 1
    buf_len = front + (oh + below) * pitch
    depthwise_backward_input_phases(dy, w, dx, pad_t, pad_l, sh, sw, dh, dw, pitch,
                                    front, rows_max, buf_len)


def conv2d_depthwise_input_grad(dy, w, dx, pad_t, pad_l, dh, dw):
    """:func:`depthwise_backward_input` (stride 1) with its layout worked out."""
    kh, kw = w.shape[2], w.shape[3]
    hq, wq, _ = depthwise_layout(dy.shape[2], dy.shape[3], kh, kw, 1, 1, dh, dw)
    front = (kh - 1) * dh * wq + (kw - 1) * dw
    offs = np.empty(kh * kw, dtype=np.int64)
    for r in range(kh):
        for c in range(kw):
            offs[r * kw + c] = front + pad_t * wq - r * dh * wq - c * dw
    depthwise_backward_input(dy, w, dx, offs, pad_t, pad_l, hq, wq)


def conv2d_depthwise_weight_grad(dy, x, dwt, pad_t, pad_l, sh, sw, dh, dw):
    """:func:`depthwise_backward_weight` with its layout worked out."""
    kh, kw = dwt.shape[2], dwt.shape[3]
    hq, wq, plane = depthwise_layout(dy.shape[2], dy.shape[3], kh, kw, sh, sw, dh,
                                     dw)
    offs = tap_offsets(kh, kw, sh, sw, dh, dw, wq, plane)
    depthwise_backward_weight(dy, x, dwt, offs, pad_t, pad_l, sh, sw, hq, wq)
