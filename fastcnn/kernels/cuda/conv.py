"""CUDA twins of :mod:`fastcnn.kernels.cpu.conv` (same conventions: the public
functions take the input unpadded with its top and left padding, weights in
PyTorch's layout). Every public launcher makes exactly one kernel launch.

The three products are implicit GEMMs: the im2col matrix is never built, and the
padding is never materialised (no padded copy, no pad or crop launch): a tap that
falls outside the image is a zero written into shared memory by the bounds check of
the tile load.

- Forward (:func:`_implicit_gemm_for`): ``y = W @ col(x)`` with M = output channels
  of a group, N = output pixels ``(n, oh, ow)`` flattened and K = ``(ci, kh, kw)``.
  A block of ``tile_m x tile_n`` threads (``TILE * TILE`` in all; more threads
  along N where a group has few output channels) computes an ``M x N`` tile of
  ``tile_m * MICRO x tile_n * MICRO`` outputs, each thread a ``MICRO x MICRO``
  block of them in registers (rows ``ty + i * tile_m``, columns ``tx + j * tile_n``:
  a warp's shared-memory reads are broadcasts or consecutive, its stores
  coalesced). K is walked a ``TILE``-deep slice at a time: the block stages the
  slice of the weights and of the implicit im2col matrix in shared memory, then
  every thread does ``MICRO * MICRO`` fused multiply-adds per step from registers.
  The addressing lives in small shared tables, not in registers (the accumulators
  need them): one of the block's columns (where each window starts in x, where its
  outputs go in y), built once with divisions, and one of the next slice's rows
  (each tap's offset in x and in w), written while the slice is staged by
  ``TILE`` threads from a ``(ci, kh, kw)`` counter advanced by a constant (a
  mixed-radix add): no division after the set-up, none at all in the multiply-add
  loop. Index arithmetic is 32-bit (every array has fewer than 2**31
  elements). Each output is its bias, plus the sum over K in ascending
  ``(ci, kh, kw)`` order (as on the CPU), clamped (a fused ReLU or ReLU6) as it is
  stored. A one-thread-per-output kernel remains for a tile that does not fit in
  shared memory (only with a patched, very large TILE); it reads x unpadded too.
- Input gradient: the same kernel, with ``dy`` as the image and the weights read
  transposed (M = input channels of a group, K = ``(co, kh, kw)``). With a stride
  ``s``, only the taps ``kh`` with ``ih + pad - kh * dil`` divisible by ``s`` reach
  ``dx[ih]``, and which ones depends only on ``ih mod s``; so the pixels of dx are
  split into ``sh * sw`` phases (a grid axis), and within one phase the valid taps
  are an arithmetic progression and ``oh`` a fixed offset from the pixel: again an
  implicit GEMM, with no multiply-add wasted on a tap that does not divide. Each
  element of dx is the sum over ``(co, kh, kw)`` in ascending order, as on the CPU.
- Weight and bias gradients (:func:`_weight_grad_for`): ``[dW | db] = dY @
  [col(x)^T | 1]`` over the ``P = N * OH * OW`` positions, the bias gradient being
  an extra column of ones of the im2col matrix (``acc + dy * 1`` is exact: the sum
  of dy). The blocks are ``TILE x TILE`` threads with ``MICRO x MICRO`` outputs
  each, stepping P a ``TILE``-wide slice at a time, with the same kind of tables:
  the block's weight columns (each tap's offset from its window), and the next
  slice's positions (from an ``(n, oh, ow)`` counter). Consecutive threads load
  consecutive positions: coalesced reads of dy and x. Each value is a sum over
  its chunk's positions in order, then over the chunks in order. P is split into
  ``splits`` chunks so that enough blocks run; each block
  stores its partial tile, and the last of a tile's blocks to finish (a
  ``threadfence`` and an atomic ticket per tile) adds the partials in split order
  and stores the result: one launch, no atomics on the data, the same bits from
  run to run. The tickets are a persistent buffer of zeros that every launch
  leaves zero again (:func:`_tile_counters`).
- Bias gradient on its own: one block per output channel, a fixed-order block
  reduction, one write.
"""

import functools

import numpy as np
from numba import cuda

from .._clamp import bounds
from .._jit import cuda_device, cuda_kernel
from . import _launch
from ._device import block_sum, clamp, minimum, unravel4

#: Threads per block of the 1-D kernels (patched small by tests).
THREADS_PER_BLOCK = 256
#: A matrix-product block has TILE * TILE threads and steps its summed axis a
#: TILE-deep slice at a time (patched small by tests; a power of two).
TILE = 16
#: Outputs per thread along each side of the product (a MICRO x MICRO block of
#: accumulators): a compile-time constant, the size of the per-thread register
#: arrays, so not meant to be patched. With TILE = 16, a block computes 64 x 64.
MICRO = 4
#: Weight-gradient blocks to aim for: P is split until about this many blocks run.
TARGET_BLOCKS = 1024

_I32_LIMIT = 2**31


# --------------------------------------------------------------- device helpers


@cuda_device
def _unravel3(k, n_mid, n_low):
    """``(hi, mid, low)`` with ``k = (hi * n_mid + mid) * n_low + low`` (divisions:
    for set-up, not for inner loops; ``n_mid, n_low >= 1``)."""
    low = np.int32(k % n_low)
    rest = np.int32(k // n_low)
    return np.int32(rest // n_mid), np.int32(rest % n_mid), low


@cuda_device
def _advance3(hi, mid, low, d_hi, d_mid, d_low, n_mid, n_low):
    """The mixed-radix counter ``(hi, mid, low)`` plus ``(d_hi, d_mid, d_low)``
    (an increment unravelled by :func:`_unravel3`, so ``d_mid < n_mid`` and
    ``d_low < n_low``): one carry per digit at most, no division."""
    low = np.int32(low + d_low)
    mid = np.int32(mid + d_mid)
    hi = np.int32(hi + d_hi)
    if low >= n_low:
        low = np.int32(low - n_low)
        mid = np.int32(mid + 1)
    if mid >= n_mid:
        mid = np.int32(mid - n_mid)
        hi = np.int32(hi + 1)
    return hi, mid, low


@cuda_device
def _gcd(a, b):
    while b != 0:
        a, b = b, np.int32(a % b)
    return a


@cuda_device
def _forward_axis(pad, stride, dilation, k_size, out_size):
    """One axis of the forward's window, as :func:`_input_grad_axis` describes
    it: every tap, ``src = p * stride - pad + t * dilation``, ``out = p``."""
    one = np.int32(1)
    return (np.int32(0), k_size, one, stride, np.int32(-pad), dilation, np.int32(0),
            one, out_size)


@cuda_device
def _input_grad_axis(r, pad, stride, dilation, k_size, size):
    """One axis of the input gradient's window for the pixels ``i = r + p *
    stride`` of dx (phase ``r``): ``(first, n_taps, tap_step, src_step, src_base,
    src_tap, out_base, out_step, n_out)``, meaning that tap ``t < n_taps`` is
    kernel index ``first + t * tap_step``, read from ``src = p * src_step +
    src_base + t * src_tap`` of dy, for ``n_out`` outputs ``out = out_base + p *
    out_step``. Tap ``k`` reaches ``i`` when ``i + pad - k * dilation`` is a
    multiple of the stride, i.e. ``k * dilation = r + pad (mod stride)``: the
    solutions step by ``stride / gcd`` from the first, and the row of dy they
    read moves by ``dilation / gcd`` per step."""
    g = _gcd(stride, dilation)
    tap_step = np.int32(stride // g)
    first = np.int32(-1)
    for k in range(minimum(tap_step, k_size)):  # k * dilation mod stride repeats
        if (r + pad - k * dilation) % stride == 0:
            first = np.int32(k)
            break
    n_taps = np.int32(0)
    base = np.int32(0)
    if first >= 0:
        n_taps = np.int32((k_size - first + tap_step - 1) // tap_step)
        base = np.int32((r + pad - first * dilation) // stride)  # exact
    else:
        first = np.int32(0)
    n_out = np.int32((size - r + stride - 1) // stride)  # r < stride: >= 0
    return (first, n_taps, tap_step, np.int32(1), base, np.int32(-(dilation // g)),
            r, stride, n_out)


@functools.cache
def _slice_product_for(tile_m, tile_n, a_stride, b_stride):
    """The multiply-adds of one staged slice, for the blocks of both kernels:
    ``acc[i, j] += a[t, ty + i * tile_m] * b[t, tx + j * tile_n]`` for the slice's
    first ``count`` rows ``t`` in order (slices stored row by row, rows
    ``a_stride`` and ``b_stride`` apart). Each step reads ``MICRO`` values of each
    slice into registers and does ``MICRO * MICRO`` fused multiply-adds; the
    offsets are unsigned (no negative-index wraparound) and advance one row per
    step. The sizes are compile-time constants; inlined into the kernel."""

    def product(a_s, b_s, acc, ty, tx, count):
        a_reg = cuda.local.array(MICRO, dtype=acc.dtype)
        b_reg = cuda.local.array(MICRO, dtype=acc.dtype)
        a_off = np.uint32(ty)
        b_off = np.uint32(tx)
        a_end = np.uint32(ty + count * a_stride)
        while a_off < a_end:
            for i in range(MICRO):
                a_reg[i] = a_s[np.uint32(a_off + i * tile_m)]
            for j in range(MICRO):
                b_reg[j] = b_s[np.uint32(b_off + j * tile_n)]
            for i in range(MICRO):
                for j in range(MICRO):
                    acc[i, j] += a_reg[i] * b_reg[j]
            a_off = np.uint32(a_off + a_stride)
            b_off = np.uint32(b_off + b_stride)

    return cuda_device(product)


# ------------------------------------------------------ forward and input gradient


@functools.cache
def _implicit_gemm_for(tile_m, tile_n, depth, input_grad):
    """The implicit-GEMM kernel for ``tile_m x tile_n`` threads and a
    ``depth``-deep summed slice: the forward (``input_grad`` False: the image is x,
    with a bias and a clamp) or the input gradient (the image is dy, the weights
    read transposed, one grid layer per phase). Sizes are compile-time constants
    (static shared memory, fixed offsets, unrolled loops); built on first use
    (tests patch TILE) and compiled per dtype on its first launch.

    Arguments: ``src`` and ``out`` (the image read and the one written, flat),
    ``w`` (flat), ``b`` (the bias; unread for the input gradient), ``geo``
    (:func:`_geometry`), ``lo, hi`` (the clamp). Grid: ``(ceil(N / (tile_n *
    MICRO)), ceil(M / (tile_m * MICRO)), groups * phases)``, block ``(tile_n,
    tile_m)``.

    The addressing lives in two small shared tables rather than in registers
    (which the accumulators need: a first version that kept it per thread used up
    to 151 registers in float64): one entry per column of the block (where its
    window starts in ``src``, where it goes in ``out``), written once, and one per
    row of the next K slice (the offset of its tap in ``src`` and in ``w``),
    written by ``depth`` threads from a ``(c, th, tw)`` counter.
    """
    threads = tile_m * tile_n
    assert depth % tile_m == 0 and threads % depth == 0 and depth <= threads
    rows = tile_m * MICRO  # output channels per block (M)
    cols = tile_n * MICRO  # output pixels per block (N)
    # The weight slice is stored (k, m) with rows padded to rows + 1, so that the
    # transposing stores (consecutive threads, consecutive k) hit distinct banks.
    a_stride = rows + 1
    a_size = depth * a_stride
    b_size = depth * cols
    lanes = threads // depth  # threads per k of the weight slice
    a_loads = (rows + lanes - 1) // lanes  # weights each thread stages per k
    b_rows = depth // tile_m  # slice rows of im2col values each thread stages
    col_passes = (cols + threads - 1) // threads
    product = _slice_product_for(tile_m, tile_n, a_stride, cols)

    def kernel(src, w, b, out, geo, lo, hi):
        (n_batch, src_h, src_w, out_h, out_w, groups, c_out, cin_g, kh_size,
         kw_size, pad_t, pad_l, sh, sw, dh, dw) = geo
        tx = np.int32(cuda.threadIdx.x)
        ty = np.int32(cuda.threadIdx.y)
        tid = np.int32(ty * tile_n + tx)
        cout_g = np.int32(c_out // groups)
        taps = np.int32(kh_size * kw_size)
        per_out = np.int32(cin_g * taps)  # weights of one output channel
        z = np.int32(cuda.blockIdx.z)
        if input_grad:
            # M = input channels, K = (co, kh, kw): w[co, m, kh, kw].
            m_size, n_c, a_m, a_c = cin_g, cout_g, taps, per_out
            g = np.int32(z // (sh * sw))
            phase = np.int32(z - g * sh * sw)
            (first_h, n_th, step_h, src_step_h, src_base_h, src_tap_h, out_base_h,
             out_step_h, n_ph) = _input_grad_axis(np.int32(phase // sw), pad_t, sh,
                                                  dh, kh_size, out_h)
            (first_w, n_tw, step_w, src_step_w, src_base_w, src_tap_w, out_base_w,
             out_step_w, n_pw) = _input_grad_axis(np.int32(phase % sw), pad_l, sw,
                                                  dw, kw_size, out_w)
        else:
            # M = output channels, K = (ci, kh, kw): w[m, ci, kh, kw].
            m_size, n_c, a_m, a_c = cout_g, cin_g, per_out, taps
            g = z
            (first_h, n_th, step_h, src_step_h, src_base_h, src_tap_h, out_base_h,
             out_step_h, n_ph) = _forward_axis(pad_t, sh, dh, kh_size, out_h)
            (first_w, n_tw, step_w, src_step_w, src_base_w, src_tap_w, out_base_w,
             out_step_w, n_pw) = _forward_axis(pad_l, sw, dw, kw_size, out_w)
        plane = np.int32(n_ph * n_pw)
        n_cols = np.int32(n_batch * plane)
        q0 = np.int32(cuda.blockIdx.x * cols)
        if q0 >= n_cols:
            return  # a phase with fewer pixels than the grid covers (whole block)
        m0 = np.int32(cuda.blockIdx.y * rows)
        k_size = np.int32(n_c * n_th * n_tw)
        src_hw = np.int32(src_h * src_w)
        zero = out.dtype.type(0)

        a_s = cuda.shared.array(a_size, dtype=out.dtype)
        b_s = cuda.shared.array(b_size, dtype=out.dtype)
        # Per column: src offset of the window's top-left (row, col), row, col, and
        # the out offset of channel 0 (-1: past the end, not stored).
        col_at = cuda.shared.array((4, cols), dtype=np.int32)
        # Per row of the slice (two slices, used in turn): src offset, row and
        # column offsets of the tap, and its offset in w.
        row_at = cuda.shared.array((2, 4, depth), dtype=np.int32)
        acc = cuda.local.array((MICRO, MICRO), dtype=out.dtype)

        for i in range(MICRO):
            m = m0 + ty + i * tile_m
            start = zero
            if not input_grad and m < m_size:
                start = b[np.uint32(g * m_size + m)]
            for j in range(MICRO):
                acc[i, j] = start
        # The column table, with divisions: once per block. Columns past the end
        # repeat the last one (loads stay in bounds; nothing is stored).
        for e in range(col_passes):
            c = np.int32(tid + e * threads)
            if c < cols:
                q = minimum(np.int32(q0 + c), np.int32(n_cols - 1))
                n = np.int32(q // plane)
                r = np.int32(q - n * plane)
                py = np.int32(r // n_pw)
                px = np.int32(r - py * n_pw)
                row = np.int32(py * src_step_h + src_base_h)
                col = np.int32(px * src_step_w + src_base_w)
                col_at[0, c] = np.int32((n * groups + g) * n_c * src_hw
                                        + row * src_w + col)
                col_at[1, c] = row
                col_at[2, c] = col
                at = np.int32((n * groups + g) * m_size * out_h * out_w
                              + (out_base_h + py * out_step_h) * out_w
                              + out_base_w + px * out_step_w)
                col_at[3, c] = at if q0 + c < n_cols else np.int32(-1)
        # The K walk: thread t < depth writes the table row of k = t + depth * s
        # for slice s, advancing a (c, th, tw) counter by depth (no division).
        n_th1 = n_th if n_th > 0 else np.int32(1)  # (a phase may have no taps)
        n_tw1 = n_tw if n_tw > 0 else np.int32(1)
        kc, kth, ktw = _unravel3(tid, n_th1, n_tw1)
        dc, dth, dtw = _unravel3(np.int32(depth), n_th1, n_tw1)
        w_at = np.int32(g * cout_g * per_out + first_h * kw_size + first_w)
        a_th = np.int32(step_h * kw_size)
        buf = np.int32(0)
        if tid < depth:
            _write_row(row_at, buf, tid, kc, kth, ktw, src_hw, src_tap_h, src_tap_w,
                       src_w, w_at, a_c, a_th, step_w)
        k_lane = np.int32(tid % depth)  # the weights this thread stages
        m_lane = np.int32(tid // depth)
        cuda.syncthreads()  # the tables are written (K may be empty: a phase)
        for k0 in range(0, k_size, depth):
            k_rest = np.int32(k_size - k0)
            if k_lane < k_rest:
                w_k = np.int32(row_at[buf, 3, k_lane] + m0 * a_m)
                for ll in range(a_loads):
                    m = np.int32(m_lane + ll * lanes)
                    if m < rows:
                        value = zero
                        if m0 + m < m_size:
                            value = w[np.uint32(w_k + m * a_m)]
                        a_s[np.uint32(k_lane * a_stride + m)] = value
            for s in range(b_rows):
                kk = np.int32(ty + s * tile_m)
                if kk < k_rest:
                    d_at = row_at[buf, 0, kk]
                    d_row = row_at[buf, 1, kk]
                    d_col = row_at[buf, 2, kk]
                    for j in range(MICRO):
                        c = np.int32(tx + j * tile_n)
                        row = np.int32(col_at[1, c] + d_row)
                        col = np.int32(col_at[2, c] + d_col)
                        value = zero
                        if 0 <= row < src_h and 0 <= col < src_w:
                            value = src[np.uint32(col_at[0, c] + d_at)]
                        b_s[np.uint32(kk * cols + c)] = value
            if tid < depth:  # the next slice's table
                kc, kth, ktw = _advance3(kc, kth, ktw, dc, dth, dtw, n_th1, n_tw1)
                _write_row(row_at, np.int32(1 - buf), tid, kc, kth, ktw, src_hw,
                           src_tap_h, src_tap_w, src_w, w_at, a_c, a_th, step_w)
            cuda.syncthreads()  # the slices and the next table are written
            # Only the slice's real rows: a padded row would add 0 * 0, which
            # turns an accumulated -0.0 into +0.0.
            product(a_s, b_s, acc, ty, tx, minimum(np.int32(depth), k_rest))
            buf = np.int32(1 - buf)
            cuda.syncthreads()  # every read of the slices is done before the next

        out_hw = np.int32(out_h * out_w)
        for j in range(MICRO):
            at = col_at[3, tx + j * tile_n]
            if at >= 0:
                for i in range(MICRO):
                    m = np.int32(m0 + ty + i * tile_m)
                    if m < m_size:
                        value = acc[i, j]
                        if not input_grad:
                            value = clamp(value, lo, hi)
                        out[np.uint32(at + m * out_hw)] = value

    return cuda_kernel(kernel)


@cuda_device
def _write_row(row_at, buf, t, c, th, tw, src_hw, src_tap_h, src_tap_w, src_w, w_at,
               a_c, a_th, a_tw):
    """Row ``t`` of slice table ``buf``: where tap ``(c, th, tw)`` of the window
    lies relative to its top-left in ``src`` (flat, rows, columns), and where its
    weight lies in ``w``."""
    d_row = np.int32(th * src_tap_h)
    d_col = np.int32(tw * src_tap_w)
    row_at[buf, 0, t] = np.int32(c * src_hw + d_row * src_w + d_col)
    row_at[buf, 1, t] = d_row
    row_at[buf, 2, t] = d_col
    row_at[buf, 3, t] = np.int32(w_at + c * a_c + th * a_th + tw * a_tw)


def _geometry(n_batch, src_hw, out_hw, w_shape, pad_t, pad_l, sh, sw, dh, dw,
              groups):
    """The kernels' int32 geometry tuple: ``(N, src_h, src_w, out_h, out_w,
    groups, C_out, C_in/groups, KH, KW, pad_t, pad_l, sh, sw, dh, dw)``."""
    values = (n_batch, *src_hw, *out_hw, groups, *w_shape, pad_t, pad_l, sh, sw, dh,
              dw)
    return tuple(np.int32(v) for v in values)


def _check_sizes(*arrays):
    """The kernels index in 32 bits: each array must have fewer than 2**31
    elements."""
    for a in arrays:
        if a.size >= _I32_LIMIT:
            raise ValueError(f"conv2d on CUDA: an array of shape {tuple(a.shape)} has "
                             f"2**31 elements or more (indices are 32-bit)")


def _block_shape(rows: int) -> tuple[int, int]:
    """``(tile_m, tile_n)``, threads along M and N with ``tile_m * tile_n = TILE**2``:
    as few along M as cover ``rows`` (a group's channels), but at least
    ``TILE / MICRO``, so that the N tile (and its shared memory) stays bounded."""
    tile_m = max(1, TILE // MICRO)
    while tile_m < TILE and tile_m * MICRO < rows:
        tile_m *= 2
    return tile_m, TILE * TILE // tile_m


def _gemm_shared_bytes(tile_m, tile_n, dtype) -> int:
    """Shared memory of :func:`_implicit_gemm_for`: the two slices, the column
    table and the two slice tables."""
    slices = TILE * (tile_m * MICRO + 1 + tile_n * MICRO) * np.dtype(dtype).itemsize
    return slices + 4 * (4 * tile_n * MICRO + 2 * 4 * TILE)


def _flat(*arrays):
    return tuple(a.reshape(a.size) for a in arrays)


@cuda_kernel
def _forward_direct(x, w, b, y, geo, lo, hi):
    # One thread per output, x read unpadded (bounds instead of padding).
    (n_batch, h, w_in, oh_size, ow_size, groups, c_out, cin_g, kh_size, kw_size,
     pad_t, pad_l, sh, sw, dh, dw) = geo
    i = cuda.grid(1)
    if i >= y.size:
        return
    n, co, oh, ow = unravel4(i, c_out, oh_size, ow_size)
    ci0 = (co // (c_out // groups)) * cin_g
    acc = b[co]
    for cil in range(cin_g):
        for kh in range(kh_size):
            ih = oh * sh - pad_t + kh * dh
            for kw in range(kw_size):
                iw = ow * sw - pad_l + kw * dw
                if 0 <= ih < h and 0 <= iw < w_in:
                    acc += w[co, cil, kh, kw] * x[n, ci0 + cil, ih, iw]
    y[n, co, oh, ow] = clamp(acc, lo, hi)


def conv2d_forward(x, w, b, y, pad_t, pad_l, sh, sw, dh, dw, groups, clamp=None):
    """``y = conv(pad(x), w) + b``, limited to ``clamp``'s interval as it is stored
    (see the CPU twin).

    Shape: x (N, C_in, H, W), w (C_out, C_in/groups, KH, KW), b (C_out,),
    y (N, C_out, OH, OW); padding as in the CPU twin. Grid: one launch of the
    implicit GEMM, ``(ceil(N*OH*OW / (tile_n*MICRO)), ceil(C_out/groups /
    (tile_m*MICRO)), groups)`` blocks of ``tile_n x tile_m`` threads (see
    :func:`_block_shape`), reading x unpadded.
    """
    n_batch, c_out, oh_size, ow_size = y.shape
    if y.size == 0:
        return
    _check_sizes(x, w, y)
    tile_m, tile_n = _block_shape(c_out // groups)
    geo = _geometry(n_batch, x.shape[2:], y.shape[2:], w.shape, pad_t, pad_l, sh, sw,
                    dh, dw, groups)
    with _launch.staged(x, w, b, y, out=(3,)) as (x_d, w_d, b_d, y_d):
        lo, hi = bounds(clamp, y.dtype)
        if _gemm_shared_bytes(tile_m, tile_n, y.dtype) > _launch.MAX_SHARED_BYTES:
            tpb = THREADS_PER_BLOCK
            _launch.launch(_forward_direct, _launch.n_blocks(y.size, tpb), tpb,
                           (x_d, w_d, b_d, y_d, geo, lo, hi))
            return
        x_f, w_f, y_f = _flat(x_d, w_d, y_d)
        grid = (_launch.n_blocks(n_batch * oh_size * ow_size, tile_n * MICRO),
                _launch.n_blocks(c_out // groups, tile_m * MICRO), groups)
        kernel = _implicit_gemm_for(tile_m, tile_n, TILE, False)
        _launch.launch(kernel, grid, (tile_n, tile_m), (x_f, w_f, b_d, y_f, geo, lo,
                                                        hi))


def conv2d_backward_input(dy, w, dx, pad_t, pad_l, sh, sw, dh, dw, groups):
    """Gradient with respect to the input: ``dx`` is overwritten.

    Shape: dy (N, C_out, OH, OW), w (C_out, C_in/groups, KH, KW),
    dx (N, C_in, H, W); padding as in :func:`conv2d_forward`. Grid: one launch of
    the implicit GEMM over dy and the transposed weights, ``(ceil(N *
    ceil(H/sh) * ceil(W/sw) / (tile_n*MICRO)), ceil(C_in/groups / (tile_m*MICRO)),
    groups * sh * sw)`` blocks (one grid layer per stride phase), writing dx
    directly.
    """
    if dx.size == 0:
        return
    _check_sizes(dy, w, dx)
    n_batch, c_in, h, w_in = dx.shape
    tile_m, tile_n = _block_shape(w.shape[1])
    geo = _geometry(n_batch, dy.shape[2:], dx.shape[2:], w.shape, pad_t, pad_l, sh,
                    sw, dh, dw, groups)
    lo, hi = bounds(None, dx.dtype)
    with _launch.staged(dy, w, dx, out=(2,)) as (dy_d, w_d, dx_d):
        dy_f, w_f, dx_f = _flat(dy_d, w_d, dx_d)
        phase_pixels = -(-h // sh) * -(-w_in // sw)  # phase (0, 0) has the most
        grid = (_launch.n_blocks(n_batch * phase_pixels, tile_n * MICRO),
                _launch.n_blocks(w.shape[1], tile_m * MICRO), groups * sh * sw)
        kernel = _implicit_gemm_for(tile_m, tile_n, TILE, True)
        # The bias argument is unread; any array of the dtype will do.
        _launch.launch(kernel, grid, (tile_n, tile_m), (dy_f, w_f, w_f, dx_f, geo,
                                                        lo, hi))


# ------------------------------------------------------- weight and bias gradients


@functools.cache
def _weight_grad_for(tile, depth, with_bias):
    """The weight-gradient kernel for ``tile x tile`` threads and a ``depth``-wide
    slice of positions; with ``with_bias``, ``[dW | db]`` (an extra column of
    ones). Built on first use (tests patch TILE), compiled per dtype.

    Arguments: ``dy``, ``x``, ``dwt`` (flat), ``db`` (unread without the bias),
    ``part`` (flat ``(splits, C_out, width)`` partial tiles, ``width = K + 1``
    with the bias, else ``K``), ``counters`` (int32 zeros, one per output tile),
    ``geo`` (:func:`_geometry`), ``splits`` and ``chunk`` (positions per split).
    Grid: ``(groups * splits * ceil(width / (tile*MICRO)), ceil(C_out/groups /
    (tile*MICRO)))``, block ``(tile, tile)``.

    As in :func:`_implicit_gemm_for`, the addressing lives in shared tables: one
    entry per weight column of the block (the tap's offset from the window's
    top-left), written once, and one per position of the next slice (where its
    window starts in x, where it is in dy), written by ``depth`` threads from an
    ``(n, oh, ow)`` counter.
    """
    threads = tile * tile
    assert threads % depth == 0 and depth <= threads
    span = tile * MICRO
    stride = span + 1  # slices stored (p, m) and (p, k), rows padded (banks)
    slice_size = depth * stride
    lanes = threads // depth  # threads per position of a slice
    loads = (span + lanes - 1) // lanes  # values each thread stages per position
    col_passes = (span + threads - 1) // threads
    product = _slice_product_for(tile, tile, stride, stride)

    def kernel(dy, x, dwt, db, part, counters, geo, splits, chunk):
        (n_batch, h, w_in, oh_size, ow_size, groups, c_out, cin_g, kh_size, kw_size,
         pad_t, pad_l, sh, sw, dh, dw) = geo
        tx = np.int32(cuda.threadIdx.x)
        ty = np.int32(cuda.threadIdx.y)
        tid = np.int32(ty * tile + tx)
        cout_g = np.int32(c_out // groups)
        c_k = np.int32(cin_g * kh_size * kw_size)
        width = np.int32(c_k + 1) if with_bias else c_k
        k_tiles = np.int32((width + span - 1) // span)
        task = np.int32(cuda.blockIdx.x)
        kt = np.int32(task % k_tiles)
        task = np.int32(task // k_tiles)
        s = np.int32(task % splits)
        g = np.int32(task // splits)
        mt = np.int32(cuda.blockIdx.y)
        m0 = np.int32(mt * span)
        k0 = np.int32(kt * span)
        ohw = np.int32(oh_size * ow_size)
        hw = np.int32(h * w_in)
        p_begin = np.int32(s * chunk)
        p_end = minimum(np.int32(p_begin + chunk), np.int32(n_batch * ohw))
        zero = dwt.dtype.type(0)
        one = dwt.dtype.type(1)

        a_s = cuda.shared.array(slice_size, dtype=dwt.dtype)
        b_s = cuda.shared.array(slice_size, dtype=dwt.dtype)
        # Per weight column: x offset of the tap from the window's top-left, its
        # row and column offsets, and what the column is (0: a tap, 1: the ones
        # column, 2: past the end).
        col_at = cuda.shared.array((4, span), dtype=np.int32)
        # Per position of the slice (two slices, used in turn): x offset of the
        # window's top-left (unpadded), its row and column, and dy's offset.
        pos_at = cuda.shared.array((2, 4, depth), dtype=np.int32)
        last = cuda.shared.array(1, dtype=np.int32)
        acc = cuda.local.array((MICRO, MICRO), dtype=dwt.dtype)
        for i in range(MICRO):
            for j in range(MICRO):
                acc[i, j] = zero

        # The column table, with divisions: once per block.
        for e in range(col_passes):
            c = np.int32(tid + e * threads)
            if c < span:
                k = np.int32(k0 + c)
                ci, kh, kw = _unravel3(minimum(k, np.int32(c_k - 1)), kh_size,
                                       kw_size)
                row = np.int32(kh * dh - pad_t)
                col = np.int32(kw * dw - pad_l)
                col_at[0, c] = np.int32((g * cin_g + ci) * hw + row * w_in + col)
                col_at[1, c] = row
                col_at[2, c] = col
                kind = np.int32(0)
                if k >= c_k:
                    kind = np.int32(1) if with_bias and k == c_k else np.int32(2)
                col_at[3, c] = kind
        # The position walk: thread t < depth writes the table row of position
        # p_begin + t + depth * step, advancing an (n, oh, ow) counter by depth.
        n_pos = np.int32(n_batch * ohw)
        n, oh, ow = _unravel3(minimum(np.int32(p_begin + tid), np.int32(n_pos - 1)),
                              oh_size, ow_size)
        dn, doh, dow = _unravel3(np.int32(depth), oh_size, ow_size)
        x_image = np.int32(groups * cin_g * hw)
        buf = np.int32(0)
        if tid < depth:
            _write_position(pos_at, buf, tid, n, oh, ow, x_image, w_in, c_out, ohw,
                            ow_size, sh, sw)
        lane = np.int32(tid % depth)  # the position this thread stages
        m_lane = np.int32(tid // depth)  # and its first row / column
        dy_g = np.int32((g * cout_g + m0) * ohw)
        cuda.syncthreads()  # the tables are written
        for p0 in range(p_begin, p_end, depth):
            p_rest = np.int32(p_end - p0)
            if lane < p_rest:
                at = np.int32(pos_at[buf, 3, lane] + dy_g)
                for ll in range(loads):
                    m = np.int32(m_lane + ll * lanes)
                    if m < span:
                        value = zero
                        if m0 + m < cout_g:
                            value = dy[np.uint32(at + m * ohw)]
                        a_s[np.uint32(lane * stride + m)] = value
                x_at = pos_at[buf, 0, lane]
                ih = pos_at[buf, 1, lane]
                iw = pos_at[buf, 2, lane]
                for ll in range(loads):
                    c = np.int32(m_lane + ll * lanes)
                    if c < span:
                        kind = col_at[3, c]
                        value = zero
                        if kind == 0:
                            row = np.int32(ih + col_at[1, c])
                            col = np.int32(iw + col_at[2, c])
                            if 0 <= row < h and 0 <= col < w_in:
                                value = x[np.uint32(x_at + col_at[0, c])]
                        elif kind == 1:
                            value = one
                        b_s[np.uint32(lane * stride + c)] = value
            if tid < depth:  # the next slice's table
                n, oh, ow = _advance3(n, oh, ow, dn, doh, dow, oh_size, ow_size)
                _write_position(pos_at, np.int32(1 - buf), tid, n, oh, ow, x_image,
                                w_in, c_out, ohw, ow_size, sh, sw)
            cuda.syncthreads()  # the slices and the next table are written
            # Only the slice's real positions (a padded one would add 0 * 0).
            product(a_s, b_s, acc, ty, tx, minimum(np.int32(depth), p_rest))
            buf = np.int32(1 - buf)
            cuda.syncthreads()  # every read of the slices is done before the next

        if splits == 1:
            for i in range(MICRO):
                m = np.int32(m0 + ty + i * tile)
                for j in range(MICRO):
                    _store_weight_grad(dwt, db, acc[i, j], np.int32(g * cout_g + m),
                                       np.int32(k0 + tx + j * tile), m < cout_g, c_k,
                                       width)
            return
        # Split: store this block's partial tile; the tile's last block to get
        # here adds all the partials in split order.
        for i in range(MICRO):
            m = np.int32(m0 + ty + i * tile)
            for j in range(MICRO):
                k = np.int32(k0 + tx + j * tile)
                if m < cout_g and k < width:
                    at = np.uint32((s * c_out + g * cout_g + m) * width + k)
                    part[at] = acc[i, j]
        cuda.threadfence()  # the partial is visible device-wide before the ticket
        cuda.syncthreads()
        ticket = np.int32((g * cuda.gridDim.y + mt) * k_tiles + kt)
        if tid == 0:
            last[0] = cuda.atomic.add(counters, ticket, np.int32(1)) == splits - 1
        cuda.syncthreads()
        if last[0] == 0:
            return
        cuda.threadfence()
        for i in range(MICRO):
            m = np.int32(m0 + ty + i * tile)
            for j in range(MICRO):
                k = np.int32(k0 + tx + j * tile)
                if m < cout_g and k < width:
                    at = np.int32((g * cout_g + m) * width + k)
                    total = part[np.uint32(at)]
                    for t in range(1, splits):
                        total += part[np.uint32(at + t * c_out * width)]
                    _store_weight_grad(dwt, db, total, np.int32(g * cout_g + m), k,
                                       m < cout_g, c_k, width)
        if tid == 0:
            counters[ticket] = 0  # zero again for the next launch

    return cuda_kernel(kernel)


@cuda_device
def _write_position(pos_at, buf, t, n, oh, ow, x_image, w_in, c_out, ohw, ow_size,
                    sh, sw):
    """Row ``t`` of position table ``buf`` for position ``(n, oh, ow)``: the top-left
    of its window in x (flat, before the padding: tap offsets include it), its row
    and column, and its offset in dy (channel 0)."""
    ih = np.int32(oh * sh)
    iw = np.int32(ow * sw)
    pos_at[buf, 0, t] = np.int32(n * x_image + ih * w_in + iw)
    pos_at[buf, 1, t] = ih
    pos_at[buf, 2, t] = iw
    pos_at[buf, 3, t] = np.int32(n * c_out * ohw + oh * ow_size + ow)


@cuda_device
def _store_weight_grad(dwt, db, value, co, k, valid, c_k, width):
    """``value`` to ``dwt[co, k]``, or to ``db[co]`` for the ones column."""
    if valid:
        if k < c_k:
            dwt[np.uint32(co * c_k + k)] = value
        elif k < width:
            db[np.uint32(co)] = value


def _weight_splits(n_pos: int, base_blocks: int, tile: int) -> int:
    """Chunks of the positions: enough for about TARGET_BLOCKS blocks, each chunk
    at least 8 tiles long. A pure function of the shapes, so runs repeat exactly."""
    want = _launch.n_blocks(TARGET_BLOCKS, base_blocks)
    most = max(1, n_pos // (8 * tile))
    return max(1, min(want, most))


#: Per CUDA context, int32 zeros for the weight gradient's tickets, grown on
#: demand: every launch leaves them zero again, so they are zeroed only when made.
_COUNTERS: dict = {}


def _tile_counters(count: int):
    """At least ``count`` int32 zeros on the device, kept between launches (a
    scratch buffer holds whatever its last user left, and zeroing one would cost
    a launch or a copy per call). Made once per context, outside the memory
    pool."""
    if _launch.RECORDER is not None:
        return np.zeros(count, np.int32)
    context = cuda.current_context()
    # The simulator makes a new context object per call but has one device.
    key = context if hasattr(context, "handle") else None
    counters = _COUNTERS.get(key)
    if counters is None or counters.size < count:
        # Not from the memory pool: this buffer is never idle, never handed out.
        counters = cuda.to_device(np.zeros(max(count, 1024), np.int32))
        _COUNTERS[key] = counters
    return counters


def _weight_grad(dy, x, dwt, db, pad_t, pad_l, sh, sw, dh, dw, groups):
    """One launch of :func:`_weight_grad_for` for dwt, and for db unless None."""
    _check_sizes(dy, x, dwt)
    n_batch, c_out, oh_size, ow_size = dy.shape
    cin_g, kh_size, kw_size = dwt.shape[1], dwt.shape[2], dwt.shape[3]
    width = cin_g * kh_size * kw_size + (db is not None)
    cout_g = c_out // groups
    n_pos = n_batch * oh_size * ow_size
    tile = TILE
    span = tile * MICRO
    k_tiles = _launch.n_blocks(width, span)
    m_tiles = _launch.n_blocks(cout_g, span)
    splits = _weight_splits(n_pos, groups * k_tiles * m_tiles, tile)
    chunk = _launch.n_blocks(n_pos, splits)
    splits = _launch.n_blocks(n_pos, chunk)  # no empty chunk at the end
    if splits * c_out * width >= _I32_LIMIT:
        splits = 1
        chunk = n_pos
    geo = _geometry(n_batch, x.shape[2:], dy.shape[2:], dwt.shape, pad_t, pad_l, sh,
                    sw, dh, dw, groups)
    arrays = (dy, x, dwt) if db is None else (dy, x, dwt, db)
    with _launch.staged(*arrays, out=tuple(range(2, len(arrays)))) as device:
        dy_f, x_f, dwt_f = _flat(*device[:3])
        db_d = dwt_f if db is None else device[3]
        part = dwt_f
        if splits > 1:
            part = _launch.scratch(splits * c_out * width, dwt.dtype)
        counters = _tile_counters(groups * m_tiles * k_tiles)
        kernel = _weight_grad_for(tile, tile, db is not None)
        _launch.launch(kernel, (groups * splits * k_tiles, m_tiles), (tile, tile),
                       (dy_f, x_f, dwt_f, db_d, part, counters, geo, np.int32(splits),
                        np.int32(chunk)))


def conv2d_backward_weight(dy, x, dwt, pad_t, pad_l, sh, sw, dh, dw, groups):
    """Gradient with respect to the weight: ``dwt`` is overwritten.

    Shape: dy (N, C_out, OH, OW), x (N, C_in, H, W),
    dwt (C_out, C_in/groups, KH, KW); padding as in :func:`conv2d_forward`.
    Grid: one launch, ``(groups * splits * ceil(K / (TILE*MICRO)),
    ceil(C_out/groups / (TILE*MICRO)))`` blocks of ``TILE x TILE`` threads, with
    ``K = C_in/groups * KH * KW``, reading x unpadded; each weight is a sum over
    its split's positions in order, then over the splits in order.
    """
    if dwt.size == 0:
        return
    _weight_grad(dy, x, dwt, None, pad_t, pad_l, sh, sw, dh, dw, groups)


def conv2d_backward_params(dy, x, dwt, db, pad_t, pad_l, sh, sw, dh, dw, groups):
    """Gradients with respect to the weight and the bias (``db[co] =
    sum(dy[:, co])``): ``dwt`` and ``db`` are overwritten, in one launch.

    Shape: dy (N, C_out, OH, OW), x (N, C_in, H, W),
    dwt (C_out, C_in/groups, KH, KW), db (C_out,); padding as in
    :func:`conv2d_forward`. Grid: as :func:`conv2d_backward_weight`, with one more
    column, of ones, whose results are db (``K + 1`` columns): each value is a
    sum over its split's positions in order, then over the splits in order.
    """
    if db.size == 0:
        return
    if dwt.size == 0:  # no input channels: only the bias has a gradient
        conv2d_backward_bias(dy, db)
        return
    _weight_grad(dy, x, dwt, db, pad_t, pad_l, sh, sw, dh, dw, groups)


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
