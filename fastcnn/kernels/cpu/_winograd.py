"""Winograd F(4x4, 3x3): 3x3 stride-1 convolutions with 4x fewer multiplications.

Lavin & Gray (2016). An output tile of 4x4 pixels is computed from a 6x6 input
tile ``d`` and the 3x3 filter ``g`` as ``A^T [(G g G^T) * (B^T d B)] A``: the 36
element-wise products replace the 144 multiply-adds of the direct sum. Summed over
input channels, the products of one of the 36 elements ``e`` are a matrix product,
``M[e] = U[e] @ V[e]`` with ``U[e]`` (C_out x C_in, the transformed filters) and
``V[e]`` (C_in x tiles, the transformed input), so the work is 36 small GEMMs plus
the input and output transforms.

Layout and blocking
-------------------
A task takes a band of consecutive tile rows (flat over image and tile row). For
one input channel, the first transform step (``B^T d``, down the columns) reads
the six input rows of each tile row straight from ``x`` and writes its result for
every tile row of the band side by side in one scratch row (``wb = 4 * (ntw + 1)``
columns per tile row: the tiles' columns plus one spare tile); the second
(``... B``, across) splits that row by column position in the tile (``4f + m``) and
is one long contiguous loop that vectorises. The spare tile of each tile row is
computed and dropped; it keeps column ``f`` of ``V`` equal to
``tile_row * (ntw + 1) + tw`` so that no loop needs an index table. The band holds
about :data:`BAND_COLUMNS` tiles, so ``V`` and ``M`` stay in L2 and the GEMM rows
are long enough to vectorise.

Padding is virtual: rows and columns outside the input read as zero, so the input
gradient (a full correlation of ``dy``) needs no padded copy of ``dy``. Columns
outside the input are zeros that the scratch row holds from its allocation on
(nothing writes there); only a tile row that reaches past the top or bottom of the
input copies its rows, with zero rows, into a small ``edge`` buffer.

Speed notes (measured, see docs/PERFORMANCE.md): the transform loops index with
unsigned column numbers and make no array views per row; a helper called per row
with array arguments, a view per row, or a select between ``x`` and zero inside
the loop each cost more than the arithmetic (the select also changes which
products LLVM fuses into FMAs, hence the bits).

Numerics: the transforms multiply by up to 8 and divide by up to 24, so the result
carries a few more roundings than the direct sum: the error bound is in
docs/NUMERICS.md. Each output is computed by one task in an order fixed by the
shapes, so results are bitwise the same for any thread count.
"""

import numba
import numpy as np
from numba import boolean, int64, prange

from .._jit import cpu_helper, cpu_kernel
from ._clamp import _clamp
from ._gemm import _gemm_rows, _gemm_rows_store
from ._tasks import cpu_task

#: Tiles per task (the GEMM's row length): long enough for the vector loops, small
#: enough that V (36 x C_in x tiles) stays in L2 for 64 channels.
BAND_COLUMNS = 128

#: Bands a convolution is split into at the least (when it has that many tile rows).
MIN_BANDS = 16

#: Partial sums of the weight gradient (one per slot, summed in order at the end):
#: enough slots to balance a few threads, a number fixed by the shapes alone.
WEIGHT_SLOTS = 8

#: Bytes of M (36 x output channels x tiles) a task keeps at once; output channels
#: are taken in chunks that fit.
M_BYTES = 512 * 1024


def winograd_filters(w, u, flip):
    """The transformed filters ``u[e] = (G g G^T)[e]``, computed in float64.

    Shape: w (C_out, C_in, 3, 3). With ``flip`` false, ``u`` is (36, C_out, C_in)
    and ``g = w[co, ci]`` (the forward); with ``flip`` true, ``u`` is
    (36, C_in, C_out) and ``g = w[co, ci, ::-1, ::-1]`` (the input gradient, a
    forward convolution of ``dy`` with the flipped, transposed filters). Parallel
    over C_out (disjoint slices of ``u``), one task each
    (:func:`_filters_of`, see ``_tasks.py``).
    """
    _filters_kernel(_filters_of.address(u.dtype), w, u, bool(flip))


@cpu_kernel
def _filters_kernel(task, w, u, flip):
    """:func:`winograd_filters` with the task's address."""
    for co in prange(w.shape[0]):
        _filters_of(task, (np.int64(co), w, u, flip))


@cpu_helper
def _g_times(g0, g1, g2, t0, t1, t2, t3, t4, t5):
    """``(t0..t5) = G (g0, g1, g2)``, element by element over the rows: G of
    F(4x4,3x3), the step the filter transform takes once along each axis."""
    for ci in range(g0.shape[0]):
        t0[ci] = g0[ci] / 4
        t1[ci] = -(g0[ci] + g1[ci] + g2[ci]) / 6
        t2[ci] = -(g0[ci] - g1[ci] + g2[ci]) / 6
        t3[ci] = g0[ci] / 24 + g1[ci] / 12 + g2[ci] / 6
        t4[ci] = g0[ci] / 24 - g1[ci] / 12 + g2[ci] / 6
        t5[ci] = g2[ci]


@cpu_task(lambda f: (int64, f[:, :, :, ::1], f[:, :, ::1], boolean))
def _filters_of(co, w, u, flip):
    """The transformed filters of output channel ``co`` (see
    :func:`winograd_filters`)."""
    c_in = w.shape[1]
    # Vectorised over input channels: row k of g, t and r holds one element of
    # every channel's 3x3, 6x3 and 6x6 matrix (same expressions, same bits).
    g = np.empty((9, c_in))
    t = np.empty((18, c_in))
    r = np.empty((36, c_in))
    for i in range(3):
        for j in range(3):
            gij = g[3 * i + j]
            for ci in range(c_in):
                if flip:
                    gij[ci] = w[co, ci, 2 - i, 2 - j]
                else:
                    gij[ci] = w[co, ci, i, j]
    for k in range(3):  # G g: column k of g, one row of t each
        _g_times(g[k], g[3 + k], g[6 + k], t[k], t[3 + k], t[6 + k], t[9 + k],
                 t[12 + k], t[15 + k])
    for a in range(6):  # (G g) G^T: row a of t, one row of r each
        _g_times(t[3 * a], t[3 * a + 1], t[3 * a + 2], r[6 * a], r[6 * a + 1],
                 r[6 * a + 2], r[6 * a + 3], r[6 * a + 4], r[6 * a + 5])
    for e in range(36):
        re = r[e]
        if flip:
            for ci in range(c_in):
                u[e, ci, co] = re[ci]
        else:
            ue = u[e, co]
            for ci in range(c_in):
                ue[ci] = re[ci]


@cpu_helper
def _input_band(x, ci, r0, rows, nth, ntw, pad_t, pad_l, edge, tv, ph, v):
    """``v[e, ci, f]``: the transformed input tiles of channel ``ci`` for the tile
    rows ``r0 .. r0 + rows - 1`` (flat over (image, tile row)), with
    ``f = local tile row * (ntw + 1) + tw``.

    Scratch: ``tv`` (6, rows * wb), whose columns outside ``x`` (the first ``pad_l``
    and those past the image of every tile row) must hold zeros: they are never
    written here; ``ph`` (4, rows * (ntw + 1) + 1); ``edge`` (1, 1, 6, >= W).
    """
    two, four, five = v.dtype.type(2), v.dtype.type(4), v.dtype.type(5)
    h = x.shape[2]
    wb = 4 * (ntw + 1)
    count = min(x.shape[3], wb - pad_l)
    # B^T d down every column, read straight from the rows of x. No array views
    # are made per row (each costs a reference count update), and the column
    # index is unsigned (no negative-index check), so the loop vectorises. A tile
    # row that reaches past the top or bottom of x reads a copy of its rows with
    # zeros in ``edge`` instead (a zero select in the loop would change which
    # products LLVM fuses, and the bits).
    n = r0 // nth
    t = r0 - n * nth
    for rl in range(rows):
        row0 = 4 * t - pad_t
        lo = np.uint64(rl * wb + pad_l)
        if row0 >= 0 and row0 + 6 <= h:
            src, sn, sc, sr = x, n, ci, row0
        else:
            for i in range(6):
                dst = edge[0, 0, i]
                if 0 <= row0 + i < h:
                    for c in range(count):
                        dst[c] = x[n, ci, row0 + i, np.uint64(c)]
                else:
                    for c in range(count):
                        dst[c] = 0
            src, sn, sc, sr = edge, 0, 0, 0
        for c in range(count):
            cu = np.uint64(c)
            d0 = src[sn, sc, sr, cu]
            d1 = src[sn, sc, sr + 1, cu]
            d2 = src[sn, sc, sr + 2, cu]
            d3 = src[sn, sc, sr + 3, cu]
            d4 = src[sn, sc, sr + 4, cu]
            d5 = src[sn, sc, sr + 5, cu]
            k = lo + cu
            tv[0, k] = four * d0 - five * d2 + d4
            tv[1, k] = d3 + d4 - four * (d1 + d2)
            tv[2, k] = four * (d1 - d2) - d3 + d4
            tv[3, k] = two * (d3 - d1) - d2 + d4
            tv[4, k] = two * (d1 - d3) - d2 + d4
            tv[5, k] = four * d1 - five * d3 + d5
        t += 1
        if t == nth:
            t = 0
            n += 1
    # ... B across: split each row by column position in the tile, then combine.
    cols = rows * (ntw + 1)
    p0, p1, p2, p3 = ph[0], ph[1], ph[2], ph[3]
    p0[cols] = 0
    p1[cols] = 0
    q4 = p0[1 : cols + 1]
    q5 = p1[1 : cols + 1]
    for a in range(6):
        ta = tv[a]
        for f in range(cols):
            p0[f] = ta[4 * f]
            p1[f] = ta[4 * f + 1]
            p2[f] = ta[4 * f + 2]
            p3[f] = ta[4 * f + 3]
        v0 = v[6 * a, ci, :cols]
        v1 = v[6 * a + 1, ci, :cols]
        v2 = v[6 * a + 2, ci, :cols]
        v3 = v[6 * a + 3, ci, :cols]
        v4 = v[6 * a + 4, ci, :cols]
        v5 = v[6 * a + 5, ci, :cols]
        for f in range(cols):
            d0, d1, d2, d3, d4, d5 = p0[f], p1[f], p2[f], p3[f], q4[f], q5[f]
            v0[f] = four * d0 - five * d2 + d4
            v1[f] = d3 + d4 - four * (d1 + d2)
            v2[f] = four * (d1 - d2) - d3 + d4
            v3[f] = two * (d3 - d1) - d2 + d4
            v4[f] = two * (d1 - d3) - d2 + d4
            v5[f] = four * d1 - five * d3 + d5


@cpu_helper
def _output_band(m, mco, co, r0, rows, nth, ntw, bias, y, tmp, out, lo, hi):
    """``y[n, co]``'s rows of the band's tiles from ``m[:, mco, :]`` (columns as in
    :func:`_input_band`), plus the bias, limited to ``[lo, hi]``
    (:func:`._clamp._clamp`). Scratch: ``tmp`` (6, rows * wb), ``out``
    (4, rows * wb)."""
    oh_size, ow_size = y.shape[2], y.shape[3]
    two, four, eight = y.dtype.type(2), y.dtype.type(4), y.dtype.type(8)
    cols = rows * (ntw + 1)
    # [...] A across each of the six rows of a tile, interleaved back into columns.
    for a in range(6):
        m0 = m[6 * a, mco, :cols]
        m1 = m[6 * a + 1, mco, :cols]
        m2 = m[6 * a + 2, mco, :cols]
        m3 = m[6 * a + 3, mco, :cols]
        m4 = m[6 * a + 4, mco, :cols]
        m5 = m[6 * a + 5, mco, :cols]
        ta = tmp[a]
        for f in range(cols):
            s12 = m1[f] + m2[f]
            d12 = m1[f] - m2[f]
            s34 = m3[f] + m4[f]
            d34 = m3[f] - m4[f]
            ta[4 * f] = m0[f] + s12 + s34
            ta[4 * f + 1] = d12 + two * d34
            ta[4 * f + 2] = s12 + four * s34
            ta[4 * f + 3] = d12 + eight * d34 + m5[f]
    # A^T [...] down every column.
    t0, t1, t2, t3, t4, t5 = tmp[0], tmp[1], tmp[2], tmp[3], tmp[4], tmp[5]
    o0, o1, o2, o3 = out[0], out[1], out[2], out[3]
    bv = bias[co]
    for c in range(4 * cols):
        s12 = t1[c] + t2[c]
        d12 = t1[c] - t2[c]
        s34 = t3[c] + t4[c]
        d34 = t3[c] - t4[c]
        o0[c] = bv + t0[c] + s12 + s34
        o1[c] = bv + d12 + two * d34
        o2[c] = bv + s12 + four * s34
        o3[c] = bv + d12 + eight * d34 + t5[c]
    wb = 4 * (ntw + 1)
    count = min(wb, ow_size)
    for rl in range(rows):
        r = r0 + rl
        n = r // nth
        oh0 = 4 * (r - n * nth)
        for i in range(min(4, oh_size - oh0)):
            dst = y[n, co, oh0 + i, :count]
            src = out[i, rl * wb : rl * wb + count]
            for c in range(count):
                dst[c] = _clamp(src[c], lo, hi)


def winograd_conv3x3(x, u, b, y, pad_t, pad_l, band_rows, co_chunk, workers, lo,
                     hi):
    """``y = conv3x3(x, w) + b`` (stride 1), ``u`` the transformed filters.

    Shape: x (N, C_in, H, W), u (36, C_out, C_in) from :func:`winograd_filters`,
    b (C_out,), y (N, C_out, OH, OW), where
    ``y[n, co, oh, ow] = b[co] + sum x[n, ci, oh + kh - pad_t, ow + kw - pad_l]
    * w[co, ci, kh, kw]`` with zeros outside ``x``, limited to ``[lo, hi]`` as it
    is stored (:func:`._clamp._clamp`). Parallel over bands of
    ``band_rows`` tile rows (disjoint rows of ``y``), a run of bands for each of
    ``workers`` (a task each: :func:`_conv_worker`, see ``_tasks.py``); output
    channels are taken ``co_chunk`` at a time.
    """
    _conv3x3_kernel(_conv_worker.address(y.dtype), x, u, b, y, pad_t, pad_l,
                    band_rows, co_chunk, workers, lo, hi)


@cpu_kernel
def _conv3x3_kernel(task, x, u, b, y, pad_t, pad_l, band_rows, co_chunk, workers, lo,
                    hi):
    """:func:`winograd_conv3x3` with the task's address."""
    total_rows = x.shape[0] * ((y.shape[2] + 3) // 4)
    tasks = (total_rows + band_rows - 1) // band_rows
    workers = min(workers, tasks)
    for worker in prange(workers):
        _conv_worker(task, (np.int64(worker), workers, x, u, b, y, pad_t, pad_l,
                            band_rows, co_chunk, lo, hi))


@cpu_task(lambda f: (int64, int64, f[:, :, :, ::1], f[:, :, ::1], f[::1],
                     f[:, :, :, ::1], int64, int64, int64, int64, f, f))
def _conv_worker(worker, workers, x, u, b, y, pad_t, pad_l, band_rows, co_chunk, lo,
                 hi):
    """Worker ``worker`` of ``workers`` of :func:`winograd_conv3x3`: its run of
    bands."""
    n_batch, c_in = x.shape[0], x.shape[1]
    c_out, oh_size, ow_size = y.shape[1], y.shape[2], y.shape[3]
    nth = (oh_size + 3) // 4
    ntw = (ow_size + 3) // 4
    wb = 4 * (ntw + 1)
    total_rows = n_batch * nth
    tasks = (total_rows + band_rows - 1) // band_rows
    width = (band_rows * (ntw + 1) + 15) // 16 * 16
    zero = np.int64(0)
    # Scratch is allocated once per worker, not per band: fresh megabyte-sized
    # arrays would pay page faults on every call. A worker takes a fixed run of
    # bands; each band's result does not depend on which worker computes it.
    # Zeroed so the columns past a band's tiles hold numbers, not garbage.
    v = np.zeros((36, c_in, width), dtype=y.dtype)
    m = np.empty((36, co_chunk, width), dtype=y.dtype)
    # Zeroed once: the columns of tv outside x are never written.
    edge = np.zeros((1, 1, 6, x.shape[3]), dtype=y.dtype)
    tv = np.zeros((6, band_rows * wb), dtype=y.dtype)
    tmp = np.empty((6, band_rows * wb), dtype=y.dtype)
    ph = np.empty((4, band_rows * (ntw + 1) + 1), dtype=y.dtype)
    out = np.empty((4, band_rows * wb), dtype=y.dtype)
    # Balanced runs: workers differ by at most one band (prange hands each
    # thread a contiguous block of workers, so uneven runs idle a thread).
    first = worker * tasks // workers
    for task in range(first, (worker + 1) * tasks // workers):
        r0 = task * band_rows
        rows = min(band_rows, total_rows - r0)
        count = (rows * (ntw + 1) + 15) // 16 * 16
        for ci in range(c_in):
            _input_band(x, ci, r0, rows, nth, ntw, pad_t, pad_l, edge, tv, ph, v)
        for c0 in range(0, c_out, co_chunk):
            c_count = min(co_chunk, c_out - c0)
            for e in range(36):
                # M[e] = U[e] @ V[e], written without zeroing M first.
                _gemm_rows_store(m[e], zero, c_count, u[e], c0, v[e], c_in, zero,
                                 count)
            for co in range(c_count):
                _output_band(m, co, c0 + co, r0, rows, nth, ntw, b, y, tmp, out,
                             lo, hi)


def winograd_plan(n_batch, c_in, c_out, oh_size, ow_size):
    """``(band_rows, co_chunk, workers)`` for :func:`winograd_conv3x3`: bands of
    about :data:`BAND_COLUMNS` tiles (fewer when that would leave under
    :data:`MIN_BANDS` bands), output-channel chunks (a multiple of 4) whose M fits in
    :data:`M_BYTES`, and four runs of bands per thread (the results do not depend
    on the split)."""
    nth = (oh_size + 3) // 4
    ntw = (ow_size + 3) // 4
    band_rows = max(BAND_COLUMNS // (ntw + 1), 1)
    # At least MIN_BANDS bands where there are enough tile rows, so the threads
    # share the work evenly even when bands are few (small images).
    band_rows = max(min(band_rows, n_batch * nth // MIN_BANDS), 1)
    width = (band_rows * (ntw + 1) + 15) // 16 * 16
    co_chunk = max(M_BYTES // (36 * 4 * width) // 4 * 4, 4)
    return band_rows, min(co_chunk, c_out), 4 * numba.get_num_threads()


@cpu_helper
def _grad_band(dy, co, r0, rows, nth, ntw, edge, tv, ph, z):
    """``z[e, co, f]``: the transformed output-gradient tiles ``A dy_T A^T`` of
    channel ``co`` for the band's tiles (columns as in :func:`_input_band`; outside
    ``dy`` is zero, so the spare tile of each row adds nothing). Scratch as there:
    the columns of ``tv`` past ``dy``'s width must hold zeros."""
    two, four, eight = z.dtype.type(2), z.dtype.type(4), z.dtype.type(8)
    oh_size = dy.shape[2]
    wb = 4 * (ntw + 1)
    count = min(dy.shape[3], wb)
    # A d down every column (A is 6x4: the transpose of the output transform),
    # read straight from dy as in _input_band.
    n = r0 // nth
    t = r0 - n * nth
    for rl in range(rows):
        row0 = 4 * t
        lo = np.uint64(rl * wb)
        if row0 + 4 <= oh_size:
            src, sn, sc, sr = dy, n, co, row0
        else:
            for i in range(4):
                dst = edge[0, 0, i]
                if row0 + i < oh_size:
                    for c in range(count):
                        dst[c] = dy[n, co, row0 + i, np.uint64(c)]
                else:
                    for c in range(count):
                        dst[c] = 0
            src, sn, sc, sr = edge, 0, 0, 0
        for c in range(count):
            cu = np.uint64(c)
            d0 = src[sn, sc, sr, cu]
            d1 = src[sn, sc, sr + 1, cu]
            d2 = src[sn, sc, sr + 2, cu]
            d3 = src[sn, sc, sr + 3, cu]
            s02 = d0 + d2
            s13 = d1 + d3
            e02 = d0 + four * d2
            e13 = two * d1 + eight * d3
            k = lo + cu
            tv[0, k] = d0
            tv[1, k] = s02 + s13
            tv[2, k] = s02 - s13
            tv[3, k] = e02 + e13
            tv[4, k] = e02 - e13
            tv[5, k] = d3
        t += 1
        if t == nth:
            t = 0
            n += 1
    # ... A^T across.
    cols = rows * (ntw + 1)
    p0, p1, p2, p3 = ph[0], ph[1], ph[2], ph[3]
    for a in range(6):
        ta = tv[a]
        for f in range(cols):
            p0[f] = ta[4 * f]
            p1[f] = ta[4 * f + 1]
            p2[f] = ta[4 * f + 2]
            p3[f] = ta[4 * f + 3]
        z0 = z[6 * a, co, :cols]
        z1 = z[6 * a + 1, co, :cols]
        z2 = z[6 * a + 2, co, :cols]
        z3 = z[6 * a + 3, co, :cols]
        z4 = z[6 * a + 4, co, :cols]
        z5 = z[6 * a + 5, co, :cols]
        for f in range(cols):
            d0, d1, d2, d3 = p0[f], p1[f], p2[f], p3[f]
            s02 = d0 + d2
            s13 = d1 + d3
            e02 = d0 + four * d2
            e13 = two * d1 + eight * d3
            z0[f] = d0
            z1[f] = s02 + s13
            z2[f] = s02 - s13
            z3[f] = e02 + e13
            z4[f] = e02 - e13
            z5[f] = d3


def winograd_weight_grad3x3(dy, x, dwt, pad_t, pad_l, band_rows, slots):
    """Gradient of :func:`winograd_conv3x3` with respect to the 3x3 filters:
    ``dwt = G^T [sum over tiles (A dy_T A^T) * (B^T x_T B)] G``, overwritten.

    Shape: dy (N, C_out, OH, OW), x (N, C_in, H, W) (read with the same virtual
    padding as the forward), dwt (C_out, C_in, 3, 3). The sum over tiles is 36
    products ``Z[e] @ V[e].T`` per band. Parallel over
    ``slots`` (a number fixed by the shapes), each summing a fixed run of bands
    into its own partial sum; then parallel over C_out, adding the slots in order
    and transforming back in float64. Results do not depend on the thread count.
    The second loop runs tasks (:func:`_weight_channel`, see ``_tasks.py``); the
    first stays in the kernel: in a task of its own it ran 8-10% slower on
    (64,32,16,16)->64, compare_torch's shape 4 (``_tasks.py``).
    """
    _weight_grad_kernel(_weight_channel.address(dwt.dtype), dy, x, dwt, pad_t,
                        pad_l, band_rows, slots)


@cpu_kernel
def _weight_grad_kernel(channel_task, dy, x, dwt, pad_t, pad_l, band_rows, slots):
    """:func:`winograd_weight_grad3x3` with its task's address."""

    n_batch, c_in = x.shape[0], x.shape[1]
    c_out, oh_size, ow_size = dy.shape[1], dy.shape[2], dy.shape[3]
    nth = (oh_size + 3) // 4
    ntw = (ow_size + 3) // 4
    wb = 4 * (ntw + 1)
    total_rows = n_batch * nth
    bands = (total_rows + band_rows - 1) // band_rows
    width = band_rows * (ntw + 1)
    partial = np.empty((slots, 36, c_out, c_in), dtype=dwt.dtype)
    zero = np.int64(0)
    for slot in prange(slots):
        s = np.int64(slot)
        ps = partial[s]
        for e in range(36):
            pe = ps[e]
            for co in range(c_out):
                row = pe[co]
                for ci in range(c_in):
                    row[ci] = 0
        # Not zeroed: the products read only the first ``cols`` columns of v
        # and z, which every band writes.
        v = np.empty((36, c_in, width), dtype=dwt.dtype)
        vt = np.empty((width, c_in), dtype=dwt.dtype)
        z = np.empty((36, c_out, width), dtype=dwt.dtype)
        # Zeroed once: the columns of tv and tg outside x and dy are never written.
        edge = np.zeros((1, 1, 6, max(x.shape[3], ow_size)), dtype=dwt.dtype)
        tv = np.zeros((6, band_rows * wb), dtype=dwt.dtype)
        tg = np.zeros((6, band_rows * wb), dtype=dwt.dtype)
        ph = np.empty((4, band_rows * (ntw + 1) + 1), dtype=dwt.dtype)
        for band in range(s * bands // slots, (s + 1) * bands // slots):
            r0 = band * band_rows
            rows = min(band_rows, total_rows - r0)
            cols = rows * (ntw + 1)
            for ci in range(c_in):
                _input_band(x, ci, r0, rows, nth, ntw, pad_t, pad_l, edge, tv, ph, v)
            for co in range(c_out):
                _grad_band(dy, co, r0, rows, nth, ntw, edge, tg, ph, z)
            for e in range(36):
                # M[e] += Z[e] @ V[e].T as rows of M times rows of V.T: the long
                # contiguous loops run over input channels.
                ve = v[e]
                for f in range(cols):
                    row = vt[f]
                    for ci in range(c_in):
                        row[ci] = ve[ci, f]
                me = partial[s, e]
                _gemm_rows(me, zero, c_out, z[e], zero, vt, cols, zero, c_in)
    for co in prange(c_out):
        _weight_channel(channel_task, (np.int64(co), partial, dwt))


@cpu_task(lambda f: (int64, f[:, :, :, ::1], f[:, :, :, ::1]))
def _weight_channel(co, partial, dwt):
    """Output channel ``co`` of :func:`winograd_weight_grad3x3`: the slots added
    and transformed back."""
    slots, c_in = partial.shape[0], partial.shape[3]
    # Vectorised over input channels: the partial sums of one (e, co) are a
    # contiguous row. Each element is summed over the slots in order, in float64,
    # and transformed by the same expressions as one element at a time.
    m = np.empty((36, c_in))
    t = np.empty((18, c_in))
    for e in range(36):
        me = m[e]
        for ci in range(c_in):
            me[ci] = 0.0
        for s in range(slots):
            pe = partial[s, e, co]
            for ci in range(c_in):
                me[ci] += pe[ci]
    # G^T m G: rows first (3 x 6), then columns.
    for b in range(6):
        m0, m1, m2 = m[b], m[6 + b], m[12 + b]
        m3, m4, m5 = m[18 + b], m[24 + b], m[30 + b]
        t0, t1, t2 = t[b], t[6 + b], t[12 + b]
        for ci in range(c_in):
            t0[ci] = m0[ci] / 4 - (m1[ci] + m2[ci]) / 6 + (m3[ci] + m4[ci]) / 24
            t1[ci] = (m2[ci] - m1[ci]) / 6 + (m3[ci] - m4[ci]) / 12
            t2[ci] = (m3[ci] + m4[ci]) / 6 - (m1[ci] + m2[ci]) / 6 + m5[ci]
    for k in range(3):
        m0, m1, m2 = t[6 * k], t[6 * k + 1], t[6 * k + 2]
        m3, m4, m5 = t[6 * k + 3], t[6 * k + 4], t[6 * k + 5]
        for ci in range(c_in):
            dwt[co, ci, k, 0] = m0[ci] / 4 - (m1[ci] + m2[ci]) / 6 \
                + (m3[ci] + m4[ci]) / 24
            dwt[co, ci, k, 1] = (m2[ci] - m1[ci]) / 6 + (m3[ci] - m4[ci]) / 12
            dwt[co, ci, k, 2] = (m3[ci] + m4[ci]) / 6 - (m1[ci] + m2[ci]) / 6 \
                + m5[ci]


def winograd_weight_plan(n_batch, c_in, c_out, oh_size, ow_size):
    """``(band_rows, slots)`` for :func:`winograd_weight_grad3x3`: bands as the
    forward's, and up to :data:`WEIGHT_SLOTS` slots (fewer when the partial sums
    would pass 64 MiB)."""
    band_rows = winograd_plan(n_batch, c_in, c_out, oh_size, ow_size)[0]
    bands = (n_batch * ((oh_size + 3) // 4) + band_rows - 1) // band_rows
    slot_bytes = 36 * c_in * c_out * 8
    slots = max(min(WEIGHT_SLOTS, bands, (64 << 20) // slot_bytes), 1)
    return band_rows, slots
