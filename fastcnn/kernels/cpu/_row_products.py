"""Matrix products on rows picked by index arrays, and the row layouts they run on.

``dst[d, :] += coef[d, k0:k0 + K] @ R`` where row ``k`` of ``R`` is
``src[r0 + row_of[k], off_of[k]:]``: a patch's rows, or shifted windows of an
input plane or of band rows (the implicit patch of a stride-1 convolution).
The tall block reads its coefficients by column, from the transpose of a
C-contiguous matrix (see :func:`_accumulate_tall_first`). The
forward, input-gradient and weight-gradient kernels of ``conv.py`` and
``_input_grad_rows.py`` all run on these, so every output sums its rows in the
same order whichever kernel computes it.
"""

import numpy as np

from .._jit import cpu_helper
from ._gemm import (
    BLOCK_BYTES,
    PAIR_VECTORS,
    TALL_ROWS,
    VECTOR_BYTES,
    _accumulate_block_rows,
    _accumulate_pair_rows,
    _accumulate_tall_rows,
    _accumulate_tall_vector_rows,
    _accumulate_vector_rows,
)
from ._vector_rows import copy_row


@cpu_helper
def _row(src, r0, row_of, off_of, k, start, count):
    """Row ``k`` of the rows :func:`_accumulate_4` multiplies, ``count`` long from
    ``start``: ``src[r0 + row_of[k], off_of[k] + start:][:count]`` (a 1-D slice of a
    C-contiguous array, which Numba knows contiguous, so loops over it vectorise)."""
    s = start + off_of[k]
    return src[r0 + row_of[k], s : s + count]


@cpu_helper
def _accumulate_4(dst, d0, dst_start, coef, c0, k0, src, r0, row_of, off_of, n_rows,
                  start, count):
    """``dst[d0 + i, dst_start + j] += sum_k coef[c0 + i, k0 + k] * R[k, start + j]``
    for ``i < 4``, ``k < n_rows``, ``j < count``, where row ``k`` of ``R`` is
    ``src[r0 + row_of[k], off_of[k]:]``: a patch's rows (``row_of[k] = k``,
    ``off_of[k] = 0``), or shifted windows of an input plane (the implicit patch
    of a stride-1 convolution, see :func:`_conv2d_forward_shifted`).

    Whole blocks of columns go through the register-blocked micro-kernel
    (:func:`._gemm._accumulate_block_rows`), a remaining vector's width through its
    one-vector form, the rest through
    :func:`_accumulate_4_columns`; both add the rows in order of ``k``, one fused
    multiply-add each.
    """
    width = BLOCK_BYTES // dst.itemsize
    j0 = 0
    while j0 + width <= count:
        _accumulate_block_rows(dst, d0, dst_start + j0, coef, c0, k0, src, r0, row_of,
                               off_of, n_rows, start + j0)
        j0 += width
    if j0 + VECTOR_BYTES // dst.itemsize <= count:
        _accumulate_vector_rows(dst, d0, dst_start + j0, coef, c0, k0, src, r0,
                                row_of, off_of, n_rows, start + j0)
        j0 += VECTOR_BYTES // dst.itemsize
    if j0 < count:
        _accumulate_4_columns(dst, d0, dst_start + j0, coef, c0, k0, src, r0, row_of,
                              off_of, n_rows, start + j0, count - j0)


@cpu_helper
def _accumulate_tall(dst, d0, dst_start, coef, coef_t, c0, k0, src, r0, row_of,
                     off_of, n_rows, start, count):
    """:func:`_accumulate_4` for ``TALL_ROWS`` output rows: whole blocks of
    columns, then a vector's width, through the tall micro-kernel
    (:func:`._gemm._accumulate_tall_rows`) on ``coef_t`` (``coef`` by column, see
    :func:`_accumulate_tall_first`), the columns left four rows at a time on
    ``coef`` as :func:`_accumulate_4` does them (the same sums, in the same
    order)."""
    width = BLOCK_BYTES // dst.itemsize
    lanes = VECTOR_BYTES // dst.itemsize
    j0 = 0
    while j0 + width <= count:
        _accumulate_tall_rows(dst, d0, dst_start + j0, coef_t, c0, k0, src, r0,
                              row_of, off_of, n_rows, start + j0)
        j0 += width
    if j0 + lanes <= count:
        _accumulate_tall_vector_rows(dst, d0, dst_start + j0, coef_t, c0, k0, src, r0,
                                     row_of, off_of, n_rows, start + j0)
        j0 += lanes
    if j0 < count:
        for i in range(0, TALL_ROWS, 4):
            _accumulate_4_columns(dst, d0 + i, dst_start + j0, coef, c0 + i, k0, src,
                                  r0, row_of, off_of, n_rows, start + j0, count - j0)


@cpu_helper
def _accumulate_4_columns(dst, d0, dst_start, coef, c0, k0, src, r0, row_of, off_of,
                          n_rows, start, count):
    """:func:`_accumulate_4` one pass over the columns per row of ``R`` (rows are
    sliced one at a time: a 1-D slice of a C-contiguous array stays contiguous for
    Numba, so the loop over ``j`` vectorises)."""
    o0 = dst[d0, dst_start : dst_start + count]
    o1 = dst[d0 + 1, dst_start : dst_start + count]
    o2 = dst[d0 + 2, dst_start : dst_start + count]
    o3 = dst[d0 + 3, dst_start : dst_start + count]
    w0, w1, w2, w3 = coef[c0], coef[c0 + 1], coef[c0 + 2], coef[c0 + 3]
    for k in range(n_rows):
        q = k0 + k
        a0, b0, c_0, e0 = w0[q], w1[q], w2[q], w3[q]
        r = _row(src, r0, row_of, off_of, k, start, count)
        for j in range(count):
            v = r[j]
            o0[j] += a0 * v
            o1[j] += b0 * v
            o2[j] += c_0 * v
            o3[j] += e0 * v


@cpu_helper
def _accumulate_2(dst, d0, dst_start, coef, c0, k0, src, r0, row_of, off_of, n_rows,
                  start, count):
    """:func:`_accumulate_4` for two output rows: blocks of ``PAIR_VECTORS``
    vectors through :func:`._gemm._accumulate_pair_rows`, the rest one pass over
    the columns per row of ``R``; every output adds its rows in order, one fused
    multiply-add each, as the four-row forms do. The one-row form this
    replaces for these rows reads and writes its output row once per four
    source rows: LeNet-5's first convolution (6 output rows) forward 238 ->
    217 us at batch 64 (docs/PERFORMANCE.md)."""
    width = PAIR_VECTORS * VECTOR_BYTES // dst.itemsize
    j0 = 0
    while j0 + width <= count:
        _accumulate_pair_rows(dst, d0, dst_start + j0, coef, c0, k0, src, r0, row_of,
                              off_of, n_rows, start + j0)
        j0 += width
    if j0 < count:
        rest = count - j0
        o0 = dst[d0, dst_start + j0 : dst_start + count]
        o1 = dst[d0 + 1, dst_start + j0 : dst_start + count]
        w0, w1 = coef[c0], coef[c0 + 1]
        for k in range(n_rows):
            q = k0 + k
            a0, b0 = w0[q], w1[q]
            r = _row(src, r0, row_of, off_of, k, start + j0, rest)
            for j in range(rest):
                v = r[j]
                o0[j] += a0 * v
                o1[j] += b0 * v


@cpu_helper
def _accumulate_1(dst, d0, dst_start, coef, c0, k0, src, r0, row_of, off_of, n_rows,
                  start, count):
    """:func:`_accumulate_4` for one output row (the last ``M % 4``)."""
    o0 = dst[d0, dst_start : dst_start + count]
    w0 = coef[c0]
    k = np.int64(0)  # not a literal 0: _row would compile a second time for it
    while k + 4 <= n_rows:
        q = k0 + k
        a0, a1, a2, a3 = w0[q], w0[q + 1], w0[q + 2], w0[q + 3]
        r0_ = _row(src, r0, row_of, off_of, k, start, count)
        r1 = _row(src, r0, row_of, off_of, k + 1, start, count)
        r2 = _row(src, r0, row_of, off_of, k + 2, start, count)
        r3 = _row(src, r0, row_of, off_of, k + 3, start, count)
        for j in range(count):
            o0[j] += a0 * r0_[j] + a1 * r1[j] + a2 * r2[j] + a3 * r3[j]
        k += 4
    while k < n_rows:
        a0 = w0[k0 + k]
        r0_ = _row(src, r0, row_of, off_of, k, start, count)
        for j in range(count):
            o0[j] += a0 * r0_[j]
        k += 1


@cpu_helper
def _accumulate(dst, d0, d1, dst_start, coef, c0, k0, src, r0, row_of, off_of, n_rows,
                start, count):
    """``dst[d, dst_start:+count] += coef[c0 + d - d0, k0:k0 + n_rows] @
    R[:n_rows, start:+count]`` for every output row ``d`` in ``[d0, d1)``, four at a
    time, then two, then one, in a fixed order (``R`` as in
    :func:`_accumulate_4`)."""
    d = d0
    while d + 4 <= d1:
        _accumulate_4(dst, d, dst_start, coef, c0 + d - d0, k0, src, r0, row_of,
                      off_of, n_rows, start, count)
        d += 4
    if d + 2 <= d1:
        _accumulate_2(dst, d, dst_start, coef, c0 + d - d0, k0, src, r0, row_of,
                      off_of, n_rows, start, count)
        d += 2
    while d < d1:
        _accumulate_1(dst, d, dst_start, coef, c0 + d - d0, k0, src, r0, row_of,
                      off_of, n_rows, start, count)
        d += 1


@cpu_helper
def _accumulate_tall_first(dst, d0, d1, dst_start, coef, coef_t, c0, k0, src, r0,
                           row_of, off_of, n_rows, start, count):
    """:func:`_accumulate`, ``TALL_ROWS`` output rows at a time first where the
    tall block is taller than four (:func:`_accumulate_tall`), reading their
    coefficients from ``coef_t``, the same matrix as ``coef`` held by column (the
    F-contiguous transpose of a C-contiguous one: ``coef_t[i, k] == coef[i, k]``);
    the rows left by :func:`_accumulate` from ``coef``; an empty ``coef_t``
    leaves every row to :func:`_accumulate`. Every form but the one-row
    form adds its rows in order of ``k``, one fused multiply-add each, and only the
    last row of an odd count goes through that one, so the sums are
    :func:`_accumulate`'s bit for bit.

    With coefficients by row the tall block runs out of general registers (see
    :func:`._gemm._accumulate_block_rows`). The rest reads ``coef`` so that one
    compiled :func:`_accumulate` serves every kernel (a second one, for F, cost
    LeNet-5's cold start 2-3 s)."""
    d = d0
    if TALL_ROWS > 4 and coef_t.size > 0:
        while d + TALL_ROWS <= d1:
            _accumulate_tall(dst, d, dst_start, coef, coef_t, c0 + d - d0, k0, src,
                             r0, row_of, off_of, n_rows, start, count)
            d += TALL_ROWS
    if d < d1:
        _accumulate(dst, d, d1, dst_start, coef, c0 + d - d0, k0, src, r0, row_of,
                    off_of, n_rows, start, count)


#: Columns of a forward product (images x positions) from which the forward
#: kernels copy their filters by column for the tall block
#: (:func:`_filters_by_column`): the copy is one pass over the filters, the
#: product's columns passes over them, and from about this many the tall block
#: saves more than the copy costs.
BY_COLUMN_MIN_COLUMNS = 256


@cpu_helper
def _filters_by_column(w, columns):
    """``wt`` with ``wt.T[co, k] == w.reshape(C_out, K)[co, k]`` (K x C_out,
    C-contiguous, so ``wt.T`` is the F-contiguous ``coef_t`` of
    :func:`_accumulate_tall_first`), or an empty one where the product has fewer
    than :data:`BY_COLUMN_MIN_COLUMNS` columns or too few output channels for a
    tall block."""
    c_out = w.shape[0]
    k_size = w.size // c_out
    if columns < BY_COLUMN_MIN_COLUMNS or c_out < TALL_ROWS or TALL_ROWS <= 4:
        return np.empty((0, 0), dtype=w.dtype)
    wm = w.reshape(c_out, k_size)
    wt = np.empty((k_size, c_out), dtype=w.dtype)
    for k in range(k_size):
        row = wt[k]
        for co in range(c_out):
            row[co] = wm[co, k]
    return wt


@cpu_helper
def _plain_rows(n_rows):
    """``row_of`` and ``off_of`` for a patch held as rows: row ``k`` is row ``k``."""
    row_of = np.arange(n_rows)
    off_of = np.zeros(n_rows, dtype=np.int64)
    return row_of, off_of


@cpu_helper
def _tap_rows(chunk, kh_size, kw_size, channel_rows, kh_rows, kh_offset, dw):
    """``(row_of, off_of)`` of the stride-1 kernels: row ``k`` of a chunk (channel
    ``c = k // taps``, tap ``(kh, kw)``) reads source row ``c * channel_rows + kh *
    kh_rows`` from offset ``kh * kh_offset + kw * dw``: a plane's windows in the
    shifted kernel (1, 0, ``dh * Wp``), band rows in the rows kernel (``KH``, 1,
    0)."""
    taps = kh_size * kw_size
    row_of = np.empty(chunk * taps, dtype=np.int64)
    off_of = np.empty(chunk * taps, dtype=np.int64)
    for k in range(chunk * taps):
        tap = k % taps
        kh = tap // kw_size
        row_of[k] = (k // taps) * channel_rows + kh * kh_rows
        off_of[k] = kh * kh_offset + (tap % kw_size) * dw
    return row_of, off_of


@cpu_helper
def _pitch_rows(dy, n0, count, co0, wp, lead, out):
    """``out[c, lead + i*OH*Wp + oh*Wp + ow] = dy[n0 + i, co0 + c, oh, ow]`` for
    ``ow < OW``, and zero for ``OW <= ow < Wp`` and in the ``lead`` columns
    before: ``dy`` laid out as the band rows of ``conv.py``'s
    ``_copy_band_rows`` (one padded row's pitch per output row) for every row
    ``c`` of ``out``, ``count`` images side by side."""
    oh_size, ow_size = dy.shape[2], dy.shape[3]
    span = oh_size * wp
    zero = np.int64(0)
    for c in range(out.shape[0]):
        row = out[c]
        for t in range(lead):
            row[t] = 0
        for i in range(count):
            for oh in range(oh_size):
                start = lead + i * span + oh * wp
                copy_row(dy[n0 + i, co0 + c, oh], zero, row, start, ow_size)
                dst = row[start : start + wp]
                for t in range(ow_size, wp):
                    dst[t] = 0
