"""CUDA twins of :mod:`fastcnn.kernels.cpu.dense` (same conventions: ``w`` is
``(OUT, IN)``; :func:`linear_forward` takes its contiguous transpose ``wt``, while
:func:`linear_forward_untransposed` reads ``w`` as it is).

Every product runs one register-blocked tiled matrix product, ``_matmul``
(specialised per tile size and operand layout by ``_matmul_for``):

- A block of ``TILE x TILE`` threads computes a ``SPAN x SPAN`` tile of the result
  (``SPAN = TILE * MICRO``: 64 x 64 with 256 threads by default), each thread a
  ``MICRO x MICRO`` block of it in registers: rows ``ty + p * TILE`` and columns
  ``tx + q * TILE`` of the tile. Strided rather than contiguous blocks, so that a
  warp's shared-memory reads are consecutive words or one broadcast word (no bank
  conflicts) and its stores to the result are coalesced.
- The summed axis is stepped a ``TILE``-wide slice at a time: the block stages the
  ``SPAN x TILE`` slice of each operand in shared memory (``MICRO`` loads per
  thread per operand, consecutive threads reading consecutive addresses in every
  operand layout), then each thread reads ``MICRO`` values of each operand per step
  of the slice and does ``MICRO * MICRO`` fused multiply-adds from registers.
- Either operand may be read transposed (``a`` as ``(T, I)``, ``b`` as ``(J, T)``),
  so no launcher transposes an array first; the bias and the clamp (a fused ReLU or
  ReLU6, :mod:`fastcnn.kernels._clamp`) are applied in the epilogue, as the result
  is stored.
- No division anywhere, and no index arithmetic in the inner loop beyond one
  unsigned offset per operand advancing a row per step: every shared-memory read
  is that offset plus a constant (``p * TILE``). 32-bit index arithmetic is not
  expressible in Numba, which types every integer operation as 64-bit (``int32 +
  int32`` is ``int64``); unsigned offsets at least drop the negative-index
  wraparound that signed ones cost on every read.

Each element is its bias (or zero) plus the sum over the summed axis in ascending
order, as on the CPU. :func:`linear_backward_params` gets the bias gradient from the
same product: ``db = dy^T @ ones`` is an extra column of ones after the last column
of ``x``, stored to ``db`` instead of ``dw`` (an exact sum: ``acc + dy * 1``), so
both parameter gradients take one launch. That column costs a column of blocks of
its own only where ``IN`` is a multiple of ``SPAN``. :func:`linear_backward_bias`
on its own runs one thread per output feature, summing over the batch in order.
"""

import functools

import numpy as np
from numba import cuda

from .._clamp import bounds
from .._jit import cuda_kernel
from . import _launch
from ._device import clamp, minimum

#: Threads per block of the 1-D kernel (patched small by tests).
THREADS_PER_BLOCK = 256
#: Threads along each side of a matrix-product block (TILE x TILE threads), and the
#: width of the slice of the summed axis staged per step (patched small by tests:
#: the launcher builds the kernel for the value it finds, see ``_matmul_for``).
TILE = 16
#: Outputs per thread along each side (a MICRO x MICRO block of accumulators): a
#: compile-time constant, the size of the per-thread register arrays, so not meant to
#: be patched. With TILE = 16, a block computes a 64 x 64 tile.
MICRO = 4


@functools.cache
def _matmul_for(tile, a_transposed, b_transposed, has_bias, ones_column):
    """The product kernel for ``TILE = tile`` and one operand layout.

    The arguments are compile-time constants of the kernel: the tile fixes the
    shared-memory slices and the offsets of every shared-memory read, and the layout
    flags leave only the loads the layout uses (ptxas for sm_90: one kernel with
    run-time flags took 121 registers in float32 and 140 in float64, one block of
    256 threads per SM in float64; specialised, 66-72 and 94-114). Each launcher
    uses one layout, so a training step compiles three of these per dtype, as many
    kernels as the transpose, product and bias kernels they replace. Built on first
    use (tests patch TILE) and compiled per dtype on its first launch.

    ``c[i, j] = (bias[j] or 0) + sum_t A[i, t] * B[t, j]`` over ``t`` ascending,
    clamped to ``[lo, hi]`` as it is stored, where A is ``a``, or ``a.T`` with
    ``a_transposed`` (``a`` is then ``(T, I)``), and B is ``b``, or ``b.T`` with
    ``b_transposed`` (``b`` is then ``(J, T)``). With ``ones_column``, B has one
    more column, of ones, whose results go to ``extra[i]``. ``bias`` (without
    ``has_bias``) and ``extra`` (without ``ones_column``) are not read.
    """
    span = tile * MICRO
    # Slices are stored (t, row) with rows padded by two elements, for the
    # transposing stores of a t-contiguous operand (thread (tx, ty) stores at row
    # tx, column ty + const): a warp is two rows of 16 threads, which then hit
    # float32 banks 2 * tx + ty + const, all different.
    stride = span + 2
    slice_size = tile * stride  # a literal for shared.array

    def _matmul(a, b, bias, c, extra, lo, hi):
        rows = c.shape[0]
        cols = c.shape[1]
        depth = b.shape[1] if b_transposed else b.shape[0]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        # Row tiles along x (grid x allows 2^31 - 1 blocks, y only 65535): the
        # rows are the batch in the forward, the axis that can be long.
        i0 = cuda.blockIdx.x * span
        j0 = cuda.blockIdx.y * span
        a_slice = cuda.shared.array(slice_size, dtype=c.dtype)
        b_slice = cuda.shared.array(slice_size, dtype=c.dtype)
        zero = c.dtype.type(0)
        one = c.dtype.type(1)
        # Constant sizes and indices (the loops over MICRO unroll): registers.
        acc = cuda.local.array((MICRO, MICRO), dtype=c.dtype)
        a_reg = cuda.local.array(MICRO, dtype=c.dtype)
        b_reg = cuda.local.array(MICRO, dtype=c.dtype)
        for q in range(MICRO):
            j = j0 + tx + q * tile
            start = bias[j] if has_bias and j < cols else zero
            for p in range(MICRO):
                acc[p, q] = start

        for t0 in range(0, depth, tile):
            # Stage the slice: each thread loads MICRO elements of each operand,
            # along the operand's contiguous axis with tx, so that a warp's reads
            # coalesce. Outside the operands: zeros (never added, see below).
            if a_transposed:  # a[t, i]: contiguous along i
                t = t0 + ty
                for p in range(MICRO):
                    i = i0 + tx + p * tile
                    value = a[t, i] if t < depth and i < rows else zero
                    a_slice[ty * stride + tx + p * tile] = value
            else:  # a[i, t]: contiguous along t
                t = t0 + tx
                for p in range(MICRO):
                    i = i0 + ty + p * tile
                    value = a[i, t] if t < depth and i < rows else zero
                    a_slice[tx * stride + ty + p * tile] = value
            if b_transposed:  # b[j, t]: contiguous along t
                t = t0 + tx
                for q in range(MICRO):
                    j = j0 + ty + q * tile
                    value = zero
                    if t < depth:
                        if j < cols:
                            value = b[j, t]
                        elif ones_column and j == cols:
                            value = one
                    b_slice[tx * stride + ty + q * tile] = value
            else:  # b[t, j]: contiguous along j
                t = t0 + ty
                for q in range(MICRO):
                    j = j0 + tx + q * tile
                    value = zero
                    if t < depth:
                        if j < cols:
                            value = b[t, j]
                        elif ones_column and j == cols:
                            value = one
                    b_slice[ty * stride + tx + q * tile] = value
            cuda.syncthreads()
            # Only the slice's real steps: a padded step would add 0 * 0, which
            # turns an accumulated -0.0 into +0.0. Unsigned offsets (no
            # negative-index wraparound) that advance one row per step, so every
            # read is a fixed offset from one of two per-thread positions.
            a_at = np.uint64(ty)
            b_at = np.uint64(tx)
            a_end = a_at + np.uint64(minimum(tile, depth - t0) * stride)
            while a_at < a_end:
                for p in range(MICRO):
                    a_reg[p] = a_slice[a_at + np.uint64(p * tile)]
                for q in range(MICRO):
                    b_reg[q] = b_slice[b_at + np.uint64(q * tile)]
                for p in range(MICRO):
                    for q in range(MICRO):
                        acc[p, q] += a_reg[p] * b_reg[q]
                a_at += np.uint64(stride)
                b_at += np.uint64(stride)
            cuda.syncthreads()  # every read of the slice is done before the next

        # The epilogue: clamp (a fused ReLU or ReLU6) as each result is stored.
        for p in range(MICRO):
            i = i0 + ty + p * tile
            if i < rows:
                for q in range(MICRO):
                    j = j0 + tx + q * tile
                    if j < cols:
                        c[i, j] = clamp(acc[p, q], lo, hi)
                    elif ones_column and j == cols:
                        extra[i] = clamp(acc[p, q], lo, hi)

    return cuda_kernel(_matmul)


def _product(a, b, c, *, bias=None, extra=None, a_transposed=False,
             b_transposed=False, clamp_to=None):
    """One launch of the product kernel for ``c`` (and ``extra``, the ones
    column's results, where given). ``c`` has at least one row."""
    rows, cols = c.shape
    if extra is not None:
        cols += 1
    tile = TILE
    span = tile * MICRO
    grid = (_launch.n_blocks(rows, span), _launch.n_blocks(cols, span))
    kernel = _matmul_for(tile, a_transposed, b_transposed, bias is not None,
                         extra is not None)
    # Arguments the layout leaves unread still need an array of their type.
    dummy = c[0]
    args = (a, b, dummy if bias is None else bias, c,
            dummy if extra is None else extra, *bounds(clamp_to, c.dtype))
    _launch.launch(kernel, grid, (tile, tile), args)


def linear_forward(x, wt, b, y, clamp=None):
    """``y[n, o] = b[o] + sum_k x[n, k] * wt[k, o]``, summed over ``k`` in order,
    limited to ``clamp``'s interval as it is stored (see the CPU twin).

    Shape: x (N, IN), wt (IN, OUT), b (OUT,), y (N, OUT). Grid: SPAN x SPAN tiles
    of ``y``, one launch.
    """
    if y.size == 0:
        return
    with _launch.staged(x, wt, b, y, out=(3,)) as (x_d, wt_d, b_d, y_d):
        _product(x_d, wt_d, y_d, bias=b_d, clamp_to=clamp)


def linear_forward_untransposed(x, w, b, y, clamp=None):
    """``y[n, o] = b[o] + sum_k x[n, k] * w[o, k]``, summed over ``k`` in order,
    limited to ``clamp``'s interval as it is stored: :func:`linear_forward` on
    ``w`` in PyTorch's layout, read transposed by the kernel (no transpose
    launch).

    Shape: x (N, IN), w (OUT, IN), b (OUT,), y (N, OUT). Grid: SPAN x SPAN tiles
    of ``y``, one launch.
    """
    if y.size == 0:
        return
    with _launch.staged(x, w, b, y, out=(3,)) as (x_d, w_d, b_d, y_d):
        _product(x_d, w_d, y_d, bias=b_d, b_transposed=True, clamp_to=clamp)


def linear_backward_input(dy, w, dx):
    """``dx[n, k] = sum_o dy[n, o] * w[o, k]``, summed over ``o`` in order.

    Shape: dy (N, OUT), w (OUT, IN), dx (N, IN). Grid: SPAN x SPAN tiles of ``dx``.
    """
    if dx.size == 0:
        return
    with _launch.staged(dy, w, dx, out=(2,)) as (dy_d, w_d, dx_d):
        _product(dy_d, w_d, dx_d)


def linear_backward_weight(dy, x, dw):
    """``dw[o, k] = sum_n dy[n, o] * x[n, k]``, summed over ``n`` in order.

    Shape: dy (N, OUT), x (N, IN), dw (OUT, IN). Grid: SPAN x SPAN tiles of ``dw``.
    """
    if dw.size == 0:
        return
    with _launch.staged(dy, x, dw, out=(2,)) as (dy_d, x_d, dw_d):
        _product(dy_d, x_d, dw_d, a_transposed=True)


def linear_backward_params(dy, x, dw, db):
    """``dw[o, k] = sum_n dy[n, o] * x[n, k]`` and ``db[o] = sum_n dy[n, o]``, both
    summed over ``n`` in order, in one launch: ``db`` is the product's extra column
    of ones (bitwise :func:`linear_backward_bias`).

    Shape: dy (N, OUT), x (N, IN), dw (OUT, IN), db (OUT,). Grid: SPAN x SPAN tiles
    of ``[dw | db]`` (OUT, IN + 1).
    """
    if db.size == 0:
        return
    with _launch.staged(dy, x, dw, db, out=(2, 3)) as (dy_d, x_d, dw_d, db_d):
        _product(dy_d, x_d, dw_d, extra=db_d, a_transposed=True)


@cuda_kernel
def _bias_grad(dy, db):
    o = cuda.grid(1)
    if o >= db.size:
        return
    acc = db.dtype.type(0)
    for n in range(dy.shape[0]):
        acc += dy[n, o]
    db[o] = acc


def linear_backward_bias(dy, db):
    """``db[o] = sum_n dy[n, o]``, summed over ``n`` in order.

    Shape: dy (N, OUT), db (OUT,). Grid: one thread per output feature.
    """
    if db.size == 0:
        return
    with _launch.staged(dy, db, out=(1,)) as (dy_d, db_d):
        tpb = THREADS_PER_BLOCK
        _launch.launch(_bias_grad, _launch.n_blocks(db.size, tpb), tpb, (dy_d, db_d))
