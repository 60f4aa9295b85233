"""CUDA twins of :mod:`fastcnn.kernels.cpu.dense` (same conventions: ``w`` is
``(OUT, IN)``, the forward takes its contiguous transpose ``wt``).

The three products run one shared-memory tiled matrix product: a block computes a
``TILE x TILE`` tile of the result, one element per thread, stepping through the
summed axis a tile at a time with both operands' tiles in shared memory. Each element
is summed over that axis in ascending order, starting from the bias or from zero,
exactly as the CPU kernels do. The bias gradient runs one thread per output feature,
summing over the batch in order.
"""

import numpy as np
from numba import cuda

from .._clamp import bounds
from .._jit import cuda_kernel
from . import _launch
from ._device import clamp, minimum

#: Threads per block of the 1-D kernel (patched small by tests).
THREADS_PER_BLOCK = 256
#: Side of the square tile of the matrix products (TILE x TILE threads per block).
TILE = 16


@cuda_kernel
def _matmul(a, b, bias, c, a_transposed, has_bias, lo, hi):
    # c[i, j] = (bias[j] or 0) + sum_t A[i, t] * b[t, j] over t ascending, where
    # A = a, or a.T when a_transposed (a is then (T, I)).
    rows, cols = c.shape
    depth = b.shape[0]
    tile = cuda.blockDim.x
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    i0 = cuda.blockIdx.y * tile
    j0 = cuda.blockIdx.x * tile
    stride = tile + 1  # padded rows: transposed stores and column reads spread banks
    b_off = tile * stride
    smem = cuda.shared.array(0, dtype=c.dtype)
    zero = c.dtype.type(0)
    i = i0 + ty
    j = j0 + tx
    acc = zero
    if has_bias and j < cols:
        acc = bias[j]
    for t0 in range(0, depth, tile):
        cuda.syncthreads()  # the previous step's reads are done
        if a_transposed:
            # a[t0 + ty, i0 + tx] (coalesced along i) goes to A-tile (tx, ty).
            t = t0 + ty
            ii = i0 + tx
            smem[tx * stride + ty] = a[t, ii] if t < depth and ii < rows else zero
        else:
            t = t0 + tx
            smem[ty * stride + tx] = a[i, t] if t < depth and i < rows else zero
        t = t0 + ty
        smem[b_off + ty * stride + tx] = b[t, j] if t < depth and j < cols else zero
        cuda.syncthreads()
        for u in range(minimum(tile, depth - t0)):
            acc += smem[ty * stride + u] * smem[b_off + u * stride + tx]
    if i < rows and j < cols:
        c[i, j] = clamp(acc, lo, hi)


def _product(a, b, bias, c, a_transposed, has_bias, clamp_to=None):
    rows, cols = c.shape
    tile = TILE
    grid = (_launch.n_blocks(cols, tile), _launch.n_blocks(rows, tile))
    shared_bytes = 2 * tile * (tile + 1) * np.dtype(c.dtype).itemsize
    _launch.launch(_matmul, grid, (tile, tile),
                   (a, b, bias, c, a_transposed, has_bias,
                    *bounds(clamp_to, c.dtype)), shared_bytes)


def linear_forward(x, wt, b, y, clamp=None):
    """``y[n, o] = b[o] + sum_k x[n, k] * wt[k, o]``, summed over ``k`` in order,
    limited to ``clamp``'s interval as it is stored (see the CPU twin).

    Shape: x (N, IN), wt (IN, OUT), b (OUT,), y (N, OUT). Grid: TILE x TILE tiles of
    ``y``.
    """
    if y.size == 0:
        return
    with _launch.staged(x, wt, b, y, out=(3,)) as (x_d, wt_d, b_d, y_d):
        _product(x_d, wt_d, b_d, y_d, False, True, clamp)


def linear_backward_input(dy, w, dx):
    """``dx[n, k] = sum_o dy[n, o] * w[o, k]``, summed over ``o`` in order.

    Shape: dy (N, OUT), w (OUT, IN), dx (N, IN). Grid: TILE x TILE tiles of ``dx``.
    """
    if dx.size == 0:
        return
    with _launch.staged(dy, w, dx, out=(2,)) as (dy_d, w_d, dx_d):
        # The bias argument is unused (has_bias False); any array of c's dtype does.
        _product(dy_d, w_d, dx_d[0], dx_d, False, False)


def linear_backward_weight(dy, x, dw):
    """``dw[o, k] = sum_n dy[n, o] * x[n, k]``, summed over ``n`` in order.

    Shape: dy (N, OUT), x (N, IN), dw (OUT, IN). Grid: TILE x TILE tiles of ``dw``.
    """
    if dw.size == 0:
        return
    with _launch.staged(dy, x, dw, out=(2,)) as (dy_d, x_d, dw_d):
        _product(dy_d, x_d, dw_d[0], dw_d, True, False)


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
