"""CUDA twins of :mod:`fastcnn.kernels.cpu.conv` (same conventions: the public
functions take the input unpadded with its top and left padding, weights in
PyTorch's layout; the kernels read a zero-padded copy ``xp``, so every index is
non-negative).

- Forward: a block computes a ``TILE_H x TILE_W`` tile of output pixels for
  ``CO_PER_THREAD`` output channels of one image and group. For each input channel it
  stages the input patch the tile reads and those channels' filter taps in shared
  memory, then every thread accumulates its pixel for all the channels from shared
  memory. Each output is ``b + sum`` over ``(ci, kh, kw)`` in the CPU's order. Where
  the patch would not fit in shared memory (very large strides or dilations), an
  untiled kernel with one thread per output runs instead.
- Input gradient: one thread per padded-input element gathers from the outputs its
  element fed (no atomics), summing over ``(co, kh, kw)`` in the CPU's order.
- Weight gradient: a shared-memory tiled product ``dW = dY · col(xp)^T`` over the
  ``P = N * OH * OW`` positions, split into ``splits`` chunks of P so that enough
  blocks run. A block accumulates a ``TILE x TILE`` tile of weights over its chunk in
  registers and writes it once to a partial buffer; a second kernel adds the
  partials in split order. No atomics: results are the same from run to run.
- Bias gradient: one block per output channel, a fixed-order block reduction, one
  write.
"""

import numpy as np
from numba import cuda

from .._clamp import bounds
from .._jit import cuda_kernel
from .._padding import padded_hw
from . import _launch, _layout
from ._device import block_sum, clamp, minimum, unravel4

#: Threads per block of the 1-D kernels (patched small by tests).
THREADS_PER_BLOCK = 256
#: Output rows and columns per forward block (the block is TILE_W x TILE_H threads).
TILE_H = 8
TILE_W = 16
#: Side of the square weight-gradient tile (the block is TILE x TILE threads).
TILE = 16
#: Weight-gradient blocks to aim for: P is split until about this many blocks run.
TARGET_BLOCKS = 1024
#: Output channels per forward thread: a compile-time constant (the size of the
#: per-thread accumulator array), so not meant to be patched.
CO_PER_THREAD = 4


# ------------------------------------------------------------------------- forward


@cuda_kernel
def _forward_tiled(xp, w, b, y, sh, sw, dh, dw, groups, lo, hi, patch_h, patch_w):
    n_batch, c_out, oh_size, ow_size = y.shape
    hp, wp = xp.shape[2], xp.shape[3]
    cin_g, kh_size, kw_size = w.shape[1], w.shape[2], w.shape[3]
    cout_g = c_out // groups
    chunks = (cout_g + CO_PER_THREAD - 1) // CO_PER_THREAD
    task = cuda.blockIdx.x
    chunk = task % chunks
    task //= chunks
    g = task % groups
    n = task // groups
    co0 = g * cout_g + chunk * CO_PER_THREAD
    n_co = minimum(CO_PER_THREAD, (g + 1) * cout_g - co0)

    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * cuda.blockDim.x + tx
    n_threads = cuda.blockDim.x * cuda.blockDim.y
    oh0 = cuda.blockIdx.y * cuda.blockDim.y
    ow0 = cuda.blockIdx.z * cuda.blockDim.x
    oh = oh0 + ty
    ow = ow0 + tx
    inside = oh < oh_size and ow < ow_size
    ih0 = oh0 * sh
    iw0 = ow0 * sw

    zero = y.dtype.type(0)
    n_taps = kh_size * kw_size
    n_patch = patch_h * patch_w
    n_weights = CO_PER_THREAD * n_taps
    smem = cuda.shared.array(0, dtype=y.dtype)
    acc = cuda.local.array(CO_PER_THREAD, dtype=y.dtype)
    for j in range(CO_PER_THREAD):
        acc[j] = b[co0 + j] if j < n_co else zero

    for cil in range(cin_g):
        ci = g * cin_g + cil
        cuda.syncthreads()  # the previous channel's reads are done
        for i in range(tid, n_patch, n_threads):
            ih = ih0 + i // patch_w
            iw = iw0 + i % patch_w
            smem[i] = xp[n, ci, ih, iw] if ih < hp and iw < wp else zero
        for i in range(tid, n_weights, n_threads):
            j = i // n_taps
            t = i % n_taps
            if j < n_co:
                smem[n_patch + i] = w[co0 + j, cil, t // kw_size, t % kw_size]
            else:
                smem[n_patch + i] = zero
        cuda.syncthreads()
        if inside:
            for kh in range(kh_size):
                row = (ty * sh + kh * dh) * patch_w + tx * sw
                for kw in range(kw_size):
                    xv = smem[row + kw * dw]
                    tap = n_patch + kh * kw_size + kw
                    for j in range(CO_PER_THREAD):
                        acc[j] += smem[tap + j * n_taps] * xv
    if inside:
        for j in range(n_co):
            y[n, co0 + j, oh, ow] = clamp(acc[j], lo, hi)


@cuda_kernel
def _forward_direct(xp, w, b, y, sh, sw, dh, dw, groups, lo, hi):
    i = cuda.grid(1)
    if i >= y.size:
        return
    n_batch, c_out, oh_size, ow_size = y.shape
    cin_g, kh_size, kw_size = w.shape[1], w.shape[2], w.shape[3]
    cout_g = c_out // groups
    n, co, oh, ow = unravel4(i, c_out, oh_size, ow_size)
    ci0 = (co // cout_g) * cin_g
    acc = b[co]
    for cil in range(cin_g):
        for kh in range(kh_size):
            for kw in range(kw_size):
                acc += w[co, cil, kh, kw] * xp[n, ci0 + cil, oh * sh + kh * dh,
                                              ow * sw + kw * dw]
    y[n, co, oh, ow] = clamp(acc, lo, hi)


def _padded(x, hw, pad_t, pad_l):
    """``x`` placed at ``(pad_t, pad_l)`` in zeros of height and width ``hw`` (a
    device buffer), or ``x`` itself when that adds nothing."""
    shape = (*x.shape[:2], *hw)
    if shape == tuple(x.shape):
        return x
    xp = _launch.scratch(shape, x.dtype)
    _layout.pad2d(x, xp, pad_t, pad_l)
    return xp


def conv2d_forward(x, w, b, y, pad_t, pad_l, sh, sw, dh, dw, groups, clamp=None):
    """``y = conv(pad(x), w) + b``, limited to ``clamp``'s interval as it is stored
    (see the CPU twin).

    Shape: x (N, C_in, H, W), w (C_out, C_in/groups, KH, KW), b (C_out,),
    y (N, C_out, OH, OW); padding as in the CPU twin. Grid: ``(N * groups *
    ceil(C_out/groups / CO_PER_THREAD), ceil(OH / TILE_H), ceil(OW / TILE_W))``
    blocks of ``TILE_W x TILE_H`` threads, on a padded copy of ``x``.
    """
    n_batch, c_out, oh_size, ow_size = y.shape
    if y.size == 0:
        return
    xp = _padded(x, padded_hw(x.shape, y.shape, w.shape, pad_t, pad_l, sh, sw, dh,
                              dw), pad_t, pad_l)
    kh_size, kw_size = w.shape[2], w.shape[3]
    tile_h = min(TILE_H, oh_size)
    tile_w = min(TILE_W, ow_size)
    patch_h = (tile_h - 1) * sh + (kh_size - 1) * dh + 1
    patch_w = (tile_w - 1) * sw + (kw_size - 1) * dw + 1
    n_shared = patch_h * patch_w + CO_PER_THREAD * kh_size * kw_size
    shared_bytes = n_shared * np.dtype(y.dtype).itemsize
    with _launch.staged(xp, w, b, y, out=(3,)) as (xp_d, w_d, b_d, y_d):
        args = (xp_d, w_d, b_d, y_d, sh, sw, dh, dw, groups,
                *bounds(clamp, y.dtype))
        if shared_bytes > _launch.MAX_SHARED_BYTES:
            tpb = THREADS_PER_BLOCK
            _launch.launch(_forward_direct, _launch.n_blocks(y.size, tpb), tpb, args)
            return
        chunks = _launch.n_blocks(c_out // groups, CO_PER_THREAD)
        grid = (n_batch * groups * chunks, _launch.n_blocks(oh_size, tile_h),
                _launch.n_blocks(ow_size, tile_w))
        _launch.launch(_forward_tiled, grid, (tile_w, tile_h),
                       (*args, patch_h, patch_w), shared_bytes)


# -------------------------------------------------------------------- input gradient


@cuda_kernel
def _backward_input(dy, w, dxp, sh, sw, dh, dw, groups):
    i = cuda.grid(1)
    if i >= dxp.size:
        return
    n_batch, c_in, hp, wp = dxp.shape
    c_out, oh_size, ow_size = dy.shape[1], dy.shape[2], dy.shape[3]
    cin_g, kh_size, kw_size = w.shape[1], w.shape[2], w.shape[3]
    cout_g = c_out // groups
    n, ci, ih, iw = unravel4(i, c_in, hp, wp)
    g = ci // cin_g
    cil = ci % cin_g
    acc = dxp.dtype.type(0)
    for co in range(g * cout_g, (g + 1) * cout_g):
        for kh in range(kh_size):
            rh = ih - kh * dh
            if rh < 0:
                break
            oh = rh // sh
            if oh * sh != rh or oh >= oh_size:
                continue
            for kw in range(kw_size):
                rw = iw - kw * dw
                if rw < 0:
                    break
                ow = rw // sw
                if ow * sw != rw or ow >= ow_size:
                    continue
                acc += w[co, cil, kh, kw] * dy[n, co, oh, ow]
    dxp[n, ci, ih, iw] = acc


def conv2d_backward_input(dy, w, dx, pad_t, pad_l, sh, sw, dh, dw, groups):
    """Gradient with respect to the input: ``dx`` is overwritten.

    Shape: dy (N, C_out, OH, OW), w (C_out, C_in/groups, KH, KW),
    dx (N, C_in, H, W); padding as in :func:`conv2d_forward`. Grid: one thread per
    element of the padded input's gradient, which is then cropped into ``dx``.
    """
    if dx.size == 0:
        return
    shape = (*dx.shape[:2],
             *padded_hw(dx.shape, dy.shape, w.shape, pad_t, pad_l, sh, sw, dh, dw))
    if shape == tuple(dx.shape):
        dxp = dx
    else:
        dxp = _launch.scratch(shape, dx.dtype)
    with _launch.staged(dy, w, dxp, out=(2,)) as (dy_d, w_d, dxp_d):
        tpb = THREADS_PER_BLOCK
        _launch.launch(_backward_input, _launch.n_blocks(dxp.size, tpb), tpb,
                       (dy_d, w_d, dxp_d, sh, sw, dh, dw, groups))
    if dxp is not dx:
        _layout.crop2d(dxp, dx, pad_t, pad_l)


# ------------------------------------------------------------------- weight gradient


@cuda_kernel
def _backward_weight_partial(dy, xp, part, sh, sw, dh, dw, groups, kh_size, kw_size,
                             splits, chunk):
    # part[s, co, k] = sum over the positions p of split s of
    # dy[n, co, oh, ow] * xp[n, ci, oh*sh + kh*dh, ow*sw + kw*dw], with the weight
    # index k = (cil, kh, kw) and p = (n, oh, ow) flattened in C order.
    n_batch, c_out, oh_size, ow_size = dy.shape
    c_k = part.shape[2]
    cin_g = c_k // (kh_size * kw_size)
    cout_g = c_out // groups
    tile = cuda.blockDim.x
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    k_tiles = (c_k + tile - 1) // tile
    task = cuda.blockIdx.x
    kt = task % k_tiles
    task //= k_tiles
    s = task % splits
    g = task // splits
    k0 = kt * tile
    m0 = cuda.blockIdx.y * tile
    p_begin = s * chunk
    p_end = minimum(p_begin + chunk, n_batch * oh_size * ow_size)
    stride = tile + 1  # padded rows, so that reads along a column hit distinct banks
    b_off = tile * stride
    smem = cuda.shared.array(0, dtype=part.dtype)
    zero = part.dtype.type(0)
    acc = zero
    for p0 in range(p_begin, p_end, tile):
        cuda.syncthreads()  # the previous step's reads are done
        p = p0 + tx
        ow = p % ow_size
        q = p // ow_size
        oh = q % oh_size
        n = q // oh_size
        m = m0 + ty
        val = zero
        if p < p_end and m < cout_g:
            val = dy[n, g * cout_g + m, oh, ow]
        smem[ty * stride + tx] = val
        k = k0 + ty
        val = zero
        if p < p_end and k < c_k:
            kw = k % kw_size
            r = k // kw_size
            kh = r % kh_size
            cil = r // kh_size
            val = xp[n, g * cin_g + cil, oh * sh + kh * dh, ow * sw + kw * dw]
        smem[b_off + ty * stride + tx] = val
        cuda.syncthreads()
        for j in range(minimum(tile, p_end - p0)):
            acc += smem[ty * stride + j] * smem[b_off + tx * stride + j]
    m = m0 + ty
    k = k0 + tx
    if m < cout_g and k < c_k:
        part[s, g * cout_g + m, k] = acc


@cuda_kernel
def _sum_splits(part, out):
    # out[i] = part[0, i] + part[1, i] + ... in split order.
    i = cuda.grid(1)
    if i >= out.size:
        return
    acc = part[0, i]
    for s in range(1, part.shape[0]):
        acc += part[s, i]
    out[i] = acc


def _weight_splits(n_pos: int, base_blocks: int, tile: int) -> int:
    """Chunks of the positions: enough for about TARGET_BLOCKS blocks, each chunk
    at least 8 tiles long. A pure function of the shapes, so runs repeat exactly."""
    want = _launch.n_blocks(TARGET_BLOCKS, base_blocks)
    most = max(1, n_pos // (8 * tile))
    return max(1, min(want, most))


def conv2d_backward_weight(dy, x, dwt, pad_t, pad_l, sh, sw, dh, dw, groups):
    """Gradient with respect to the weight: ``dwt`` is overwritten.

    Shape: dy (N, C_out, OH, OW), x (N, C_in, H, W),
    dwt (C_out, C_in/groups, KH, KW); padding as in :func:`conv2d_forward`.
    Grid: ``(groups * splits * ceil(K / TILE), ceil(C_out/groups / TILE))``
    blocks of ``TILE x TILE`` threads, with ``K = C_in/groups * KH * KW``; each
    weight is a sum over its split's positions in order, then over the splits in
    order.
    """
    if dwt.size == 0:
        return
    n_batch, c_out, oh_size, ow_size = dy.shape
    cin_g, kh_size, kw_size = dwt.shape[1], dwt.shape[2], dwt.shape[3]
    c_k = cin_g * kh_size * kw_size
    cout_g = c_out // groups
    n_pos = n_batch * oh_size * ow_size
    tile = TILE
    k_tiles = _launch.n_blocks(c_k, tile)
    m_tiles = _launch.n_blocks(cout_g, tile)
    splits = _weight_splits(n_pos, groups * k_tiles * m_tiles, tile)
    chunk = _launch.n_blocks(n_pos, splits)
    shared_bytes = 2 * tile * (tile + 1) * np.dtype(dwt.dtype).itemsize
    xp = _padded(x, padded_hw(x.shape, dy.shape, dwt.shape, pad_t, pad_l, sh, sw,
                              dh, dw), pad_t, pad_l)
    with _launch.staged(dy, xp, dwt, out=(2,)) as (dy_d, xp_d, dwt_d):
        flat = dwt_d.reshape(1, c_out, c_k)
        part = flat if splits == 1 else _launch.scratch((splits, c_out, c_k),
                                                        dwt.dtype)
        _launch.launch(
            _backward_weight_partial, (groups * splits * k_tiles, m_tiles),
            (tile, tile),
            (dy_d, xp_d, part, sh, sw, dh, dw, groups, kh_size, kw_size, splits,
             chunk),
            shared_bytes,
        )
        if splits > 1:
            tpb = THREADS_PER_BLOCK
            size = c_out * c_k
            _launch.launch(_sum_splits, _launch.n_blocks(size, tpb), tpb,
                           (part.reshape(splits, size), dwt_d.reshape(size)))


# --------------------------------------------------------------------- bias gradient


@cuda_kernel
def _backward_bias(dy, db):
    n_batch, c_out, oh_size, ow_size = dy.shape
    co = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    width = cuda.blockDim.x
    plane = oh_size * ow_size
    acc = db.dtype.type(0)
    for i in range(tid, n_batch * plane, width):
        r = i % plane
        acc += dy[i // plane, co, r // ow_size, r % ow_size]
    buf = cuda.shared.array(0, dtype=db.dtype)
    buf[tid] = acc
    total = block_sum(buf, tid, width)
    if tid == 0:
        db[co] = total


def conv2d_backward_bias(dy, db):
    """Gradient with respect to the bias: ``db[co] = sum(dy[:, co])``.

    Shape: dy (N, C_out, OH, OW), db (C_out,). Grid: one block per output channel,
    a fixed-order block reduction.
    """
    if db.size == 0:
        return
    tpb = _launch.pow2_floor(THREADS_PER_BLOCK)
    with _launch.staged(dy, db, out=(1,)) as (dy_d, db_d):
        _launch.launch(_backward_bias, db.shape[0], tpb, (dy_d, db_d),
                       tpb * np.dtype(db.dtype).itemsize)


# ------------------------------------------------------------------- bias addition


@cuda_kernel
def _add_bias(b, y):
    i = cuda.grid(1)
    n_batch, channels, h, w = y.shape
    if i < y.size:
        n, c, r, s = unravel4(i, channels, h, w)
        y[n, c, r, s] += b[c]


def conv2d_add_bias(b, y):
    """``y[:, c] += b[c]``.

    Shape: b (C,), y (N, C, H, W). Grid: one thread per element of y.
    """
    _launch.run_threads(_add_bias, y.size, THREADS_PER_BLOCK, (b, y))
