"""2-D convolution (cross-correlation, as in PyTorch) and its three gradients.

Shared conventions
------------------
- ``xp`` is the input already zero-padded by the caller, shape
  ``(N, C_in, Hp, Wp)``; kernels never see padding, so every index is non-negative.
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
built whole: it is built a tile of output columns at a time, into a scratch buffer
of each parallel task small enough to stay in cache, and the products run with
contiguous inner loops that LLVM vectorises (four rows of ``P`` per pass, so each
load of an accumulator serves four multiply-adds).

Determinism
-----------
``prange`` runs over (image, tile) pairs for ``y`` and over (image, group) pairs for
``dx`` (their output slices are disjoint); ``dW`` sums per-image partial products
into a buffer with one slot per image, then adds the slots in image order. Every sum
therefore happens in an order fixed by the shapes alone: results are bitwise the
same for any thread count.
"""

import numpy as np
from numba import prange

from .._jit import cpu_helper, cpu_kernel, cpu_reduction

#: Target size, in elements, of one patch tile (128 KiB of float32: it stays in L2).
TILE_ELEMENTS = 32768


@cpu_helper
def _tile_width(k_size):
    """Output columns per tile: a multiple of 16 in [64, 512], so the inner loops are
    long enough to vectorise and the (k_size x tile) patch stays in cache."""
    width = (TILE_ELEMENTS // max(k_size, 1)) // 16 * 16
    return min(max(width, 64), 512)


@cpu_helper
def _im2col(xp, n, ci0, cin_g, kh_size, kw_size, sh, sw, dh, dw, ow_size, p0, count,
            patch):
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
                    dst = patch[k, j : j + seg]
                    if sw == 1:
                        row = src[ow + kw * dw : ow + kw * dw + seg]
                        for t in range(seg):
                            dst[t] = row[t]
                    else:
                        for t in range(seg):
                            dst[t] = src[(ow + t) * sw + kw * dw]
                    k += 1
        j += seg


@cpu_helper
def _col2im_add(dpatch, dxp, n, ci0, cin_g, kh_size, kw_size, sh, sw, dh, dw, ow_size,
                p0, count):
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
                    src = dpatch[k, j : j + seg]
                    if sw == 1:
                        out = dst[ow + kw * dw : ow + kw * dw + seg]
                        for t in range(seg):
                            out[t] += src[t]
                    else:
                        for t in range(seg):
                            dst[(ow + t) * sw + kw * dw] += src[t]
                    k += 1
        j += seg


@cpu_helper
def _accumulate_rows(dst, coef, rows, start, count):
    """``dst[:count] += sum_k coef[k] * rows[k, start:start + count]``, four rows per
    pass (one load and store of ``dst`` per four multiply-adds).

    Rows are sliced one at a time because a 1-D slice of a C-contiguous array stays
    contiguous for Numba (a 2-D column slice would not, and would not vectorise).
    """
    k_size = coef.shape[0]
    stop = start + count
    k = 0
    while k + 4 <= k_size:
        c0, c1, c2, c3 = coef[k], coef[k + 1], coef[k + 2], coef[k + 3]
        r0, r1 = rows[k, start:stop], rows[k + 1, start:stop]
        r2, r3 = rows[k + 2, start:stop], rows[k + 3, start:stop]
        for j in range(count):
            dst[j] += c0 * r0[j] + c1 * r1[j] + c2 * r2[j] + c3 * r3[j]
        k += 4
    while k < k_size:
        c0 = coef[k]
        r0 = rows[k, start:stop]
        for j in range(count):
            dst[j] += c0 * r0[j]
        k += 1


@cpu_helper
def _accumulate_rows_pair(dst0, dst1, coef0, coef1, rows, start, count):
    """:func:`_accumulate_rows` for two outputs that share ``rows``: each row loaded
    serves both, so a pass does eight multiply-adds per four row loads and two
    accumulator loads and stores (register blocking, 2 outputs x 4 rows)."""
    k_size = coef0.shape[0]
    stop = start + count
    k = 0
    while k + 4 <= k_size:
        a0, a1, a2, a3 = coef0[k], coef0[k + 1], coef0[k + 2], coef0[k + 3]
        b0, b1, b2, b3 = coef1[k], coef1[k + 1], coef1[k + 2], coef1[k + 3]
        r0, r1 = rows[k, start:stop], rows[k + 1, start:stop]
        r2, r3 = rows[k + 2, start:stop], rows[k + 3, start:stop]
        for j in range(count):
            v0, v1, v2, v3 = r0[j], r1[j], r2[j], r3[j]
            dst0[j] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
            dst1[j] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
        k += 4
    while k < k_size:
        a0, b0 = coef0[k], coef1[k]
        r0 = rows[k, start:stop]
        for j in range(count):
            dst0[j] += a0 * r0[j]
            dst1[j] += b0 * r0[j]
        k += 1


@cpu_kernel
def conv2d_forward(xp, w, b, y, sh, sw, dh, dw, groups):
    """``y = conv(xp, w) + b``.

    Shape: xp (N, C_in, Hp, Wp), w (C_out, C_in/groups, KH, KW), b (C_out,),
    y (N, C_out, OH, OW). Parallel over ``N * ceil(OH*OW / tile)`` output tiles.
    """
    n_batch, c_out, oh_size, ow_size = y.shape
    cin_g, kh_size, kw_size = w.shape[1], w.shape[2], w.shape[3]
    cout_g = c_out // groups
    k_size = cin_g * kh_size * kw_size
    positions = oh_size * ow_size
    tile = _tile_width(k_size)
    tiles = (positions + tile - 1) // tile
    wm = w.reshape(c_out, k_size)
    yv = y.reshape(n_batch, c_out, positions)
    for task in prange(n_batch * tiles):
        n = task // tiles
        p0 = (task % tiles) * tile
        count = min(tile, positions - p0)
        patch = np.empty((k_size, tile), dtype=y.dtype)
        # The patch starts at column 0. A literal 0 would be typed Literal[int] and
        # compile the row helpers a second time (dx passes a variable start).
        start = np.int64(0)
        for g in range(groups):
            _im2col(xp, n, g * cin_g, cin_g, kh_size, kw_size, sh, sw, dh, dw,
                    ow_size, p0, count, patch)
            for co in range(g * cout_g, (g + 1) * cout_g):
                yv[n, co, p0 : p0 + count] = b[co]
            co = g * cout_g
            while co + 2 <= (g + 1) * cout_g:
                _accumulate_rows_pair(yv[n, co, p0 : p0 + count],
                                      yv[n, co + 1, p0 : p0 + count], wm[co],
                                      wm[co + 1], patch, start, count)
                co += 2
            if co < (g + 1) * cout_g:
                _accumulate_rows(yv[n, co, p0 : p0 + count], wm[co], patch, start,
                                 count)


@cpu_kernel
def conv2d_backward_input(dy, w, dxp, sh, sw, dh, dw, groups):
    """Gradient with respect to the padded input: ``dxp`` is overwritten.

    Shape: dy (N, C_out, OH, OW), w (C_out, C_in/groups, KH, KW),
    dxp (N, C_in, Hp, Wp). Parallel over ``N * groups`` (disjoint input channels);
    each tile's ``dP = W.T @ dy`` is scattered back in a fixed order.
    """
    n_batch = dxp.shape[0]
    c_out, oh_size, ow_size = dy.shape[1], dy.shape[2], dy.shape[3]
    cin_g, kh_size, kw_size = w.shape[1], w.shape[2], w.shape[3]
    cout_g = c_out // groups
    k_size = cin_g * kh_size * kw_size
    positions = oh_size * ow_size
    tile = _tile_width(k_size)
    # W.T of each group, (groups, K, C_out/groups): rows of dP are contiguous sums.
    wt = np.empty((groups, k_size, cout_g), dtype=w.dtype)
    wm = w.reshape(c_out, k_size)
    for g in range(groups):
        for co in range(cout_g):
            for k in range(k_size):
                wt[g, k, co] = wm[g * cout_g + co, k]
    dyv = dy.reshape(n_batch, c_out, positions)
    for task in prange(n_batch * groups):
        n = task // groups
        g = task % groups
        ci0 = g * cin_g
        dxp[n, ci0 : ci0 + cin_g] = 0
        dpatch = np.empty((k_size, tile), dtype=dxp.dtype)
        grad = dyv[n, g * cout_g : (g + 1) * cout_g]
        for p0 in range(0, positions, tile):
            count = min(tile, positions - p0)
            dpatch[:, :count] = 0
            k = 0
            while k + 2 <= k_size:
                _accumulate_rows_pair(dpatch[k, :count], dpatch[k + 1, :count],
                                      wt[g, k], wt[g, k + 1], grad, p0, count)
                k += 2
            if k < k_size:
                _accumulate_rows(dpatch[k, :count], wt[g, k], grad, p0, count)
            _col2im_add(dpatch, dxp, n, ci0, cin_g, kh_size, kw_size, sh, sw, dh, dw,
                        ow_size, p0, count)


@cpu_reduction
def _dots_2x4(d0, d1, r0, r1, r2, r3, count):
    """The eight dot products of ``d0, d1`` with ``r0 .. r3`` over ``count`` elements,
    in one pass: each loaded element serves two or four multiply-adds, and the eight
    sums stay in vector registers (reassociation lets LLVM split each over lanes)."""
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = d0.dtype.type(0)
    for j in range(count):
        g0, g1 = d0[j], d1[j]
        v0, v1, v2, v3 = r0[j], r1[j], r2[j], r3[j]
        a00 += g0 * v0
        a01 += g0 * v1
        a02 += g0 * v2
        a03 += g0 * v3
        a10 += g1 * v0
        a11 += g1 * v1
        a12 += g1 * v2
        a13 += g1 * v3
    return a00, a01, a02, a03, a10, a11, a12, a13


@cpu_reduction
def _dot(d0, r0, count):
    """``sum(d0[:count] * r0[:count])``, vectorised (see :func:`_dots_2x4`)."""
    acc = d0.dtype.type(0)
    for j in range(count):
        acc += d0[j] * r0[j]
    return acc


@cpu_helper
def _add_dots(part, co, co_stop, dyv, n, p0, patch, count):
    """``part[co, k] += dot(dyv[n, co, p0:p0 + count], patch[k, :count])`` for every
    ``co`` in ``[co, co_stop)`` and every patch row ``k``: two output channels by four
    patch rows at a time. (Rows are sliced from the C-contiguous arrays one at a
    time, so Numba knows them contiguous and the dots vectorise.)"""
    k_size = patch.shape[0]
    while co + 2 <= co_stop:
        d0 = dyv[n, co, p0 : p0 + count]
        d1 = dyv[n, co + 1, p0 : p0 + count]
        k = 0
        while k + 4 <= k_size:
            a00, a01, a02, a03, a10, a11, a12, a13 = _dots_2x4(
                d0, d1, patch[k, :count], patch[k + 1, :count],
                patch[k + 2, :count], patch[k + 3, :count], count)
            part[co, k] += a00
            part[co, k + 1] += a01
            part[co, k + 2] += a02
            part[co, k + 3] += a03
            part[co + 1, k] += a10
            part[co + 1, k + 1] += a11
            part[co + 1, k + 2] += a12
            part[co + 1, k + 3] += a13
            k += 4
        while k < k_size:
            part[co, k] += _dot(d0, patch[k, :count], count)
            part[co + 1, k] += _dot(d1, patch[k, :count], count)
            k += 1
        co += 2
    if co < co_stop:
        d0 = dyv[n, co, p0 : p0 + count]
        for k in range(k_size):
            part[co, k] += _dot(d0, patch[k, :count], count)


@cpu_kernel
def conv2d_backward_weight(dy, xp, dwt, sh, sw, dh, dw, groups):
    """Gradient with respect to the weight: ``dwt`` is overwritten.

    Shape: dy (N, C_out, OH, OW), xp (N, C_in, Hp, Wp),
    dwt (C_out, C_in/groups, KH, KW). Parallel over images, each summing its own
    ``dy[n] @ P[n].T`` into its own slot, as dot products of ``dy`` rows with patch
    rows (both contiguous over output positions, so the long sums vectorise); then
    parallel over ``C_out``, adding the slots in image order.
    """
    n_batch, c_out, oh_size, ow_size = dy.shape
    cin_g, kh_size, kw_size = dwt.shape[1], dwt.shape[2], dwt.shape[3]
    cout_g = c_out // groups
    k_size = cin_g * kh_size * kw_size
    positions = oh_size * ow_size
    tile = _tile_width(k_size)
    dyv = dy.reshape(n_batch, c_out, positions)
    partial = np.empty((n_batch, c_out, k_size), dtype=dwt.dtype)
    for image in prange(n_batch):
        # prange's index is unsigned; the helpers take signed ints, and one type
        # for them everywhere means they compile once, not once per signedness.
        n = np.int64(image)
        patch = np.empty((k_size, tile), dtype=dwt.dtype)
        part = partial[n]
        part[:, :] = 0
        for g in range(groups):
            for p0 in range(0, positions, tile):
                count = min(tile, positions - p0)
                _im2col(xp, n, g * cin_g, cin_g, kh_size, kw_size, sh, sw, dh, dw,
                        ow_size, p0, count, patch)
                _add_dots(part, g * cout_g, (g + 1) * cout_g, dyv, n, p0, patch,
                          count)
    dwm = dwt.reshape(c_out, k_size)
    for co in prange(c_out):
        row = dwm[co]
        first = partial[0, co]
        for k in range(k_size):
            row[k] = first[k]
        for n in range(1, n_batch):
            src = partial[n, co]
            for k in range(k_size):
                row[k] += src[k]


@cpu_kernel
def conv2d_backward_bias(dy, db):
    """Gradient with respect to the bias: ``db[co] = sum(dy[:, co])``.

    Shape: dy (N, C_out, OH, OW), db (C_out,). Parallel over ``C_out``.
    """
    n_batch, c_out, oh_size, ow_size = dy.shape
    for co in prange(c_out):
        acc = db.dtype.type(0)
        for n in range(n_batch):
            for oh in range(oh_size):
                row = dy[n, co, oh]
                for ow in range(ow_size):
                    acc += row[ow]
        db[co] = acc
