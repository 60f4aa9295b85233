"""Fully connected (dense) layer ``y = x @ weight.T + bias`` and its three gradients.

Shared conventions
------------------
- ``x`` has shape ``(N, IN)``, ``y`` / ``dy`` have shape ``(N, OUT)``.
- ``w`` has PyTorch's layout ``(OUT, IN)``; the forward kernel takes its transpose
  ``wt`` ``(IN, OUT)`` (made contiguous by the caller) so that its inner loop runs
  along contiguous output rows and vectorises.

No kernel calls BLAS: BLAS may split a sum differently for different thread counts,
and its threads fight Numba's for the cores. Each kernel's ``prange`` runs over an
axis whose output slices are disjoint, and every sum is taken in a fixed serial order
inside one iteration, so results are bitwise the same for any thread count.
"""

from numba import prange

from .._jit import cpu_kernel

#: Outputs per forward task: small enough that one image (N = 1) still spreads over
#: several threads when OUT is large, big enough to amortise the loop over IN.
OUT_BLOCK = 128


@cpu_kernel
def linear_forward(x, wt, b, y):
    """``y[n, o] = b[o] + sum_k x[n, k] * wt[k, o]``, summed over ``k`` in order.

    Shape: x (N, IN), wt (IN, OUT), b (OUT,), y (N, OUT). Parallel over
    ``N * ceil(OUT / OUT_BLOCK)`` (one block of one output row each).
    """
    n_batch, c_out = y.shape
    c_in = x.shape[1]
    n_blocks = (c_out + OUT_BLOCK - 1) // OUT_BLOCK
    for task in prange(n_batch * n_blocks):
        n = task // n_blocks
        o0 = (task % n_blocks) * OUT_BLOCK
        o1 = min(o0 + OUT_BLOCK, c_out)
        dst = y[n, o0:o1]
        bias = b[o0:o1]
        for j in range(o1 - o0):
            dst[j] = bias[j]
        xrow = x[n]
        for k in range(c_in):
            xv = xrow[k]
            src = wt[k, o0:o1]
            for j in range(o1 - o0):
                dst[j] += xv * src[j]


@cpu_kernel
def linear_backward_input(dy, w, dx):
    """``dx[n, k] = sum_o dy[n, o] * w[o, k]``, summed over ``o`` in order.

    Shape: dy (N, OUT), w (OUT, IN), dx (N, IN). Parallel over ``N``.
    """
    n_batch, c_out = dy.shape
    c_in = dx.shape[1]
    for n in prange(n_batch):
        dst = dx[n]
        dst[:] = 0
        grow = dy[n]
        for o in range(c_out):
            gv = grow[o]
            src = w[o]
            for k in range(c_in):
                dst[k] += gv * src[k]


@cpu_kernel
def linear_backward_weight(dy, x, dw):
    """``dw[o, k] = sum_n dy[n, o] * x[n, k]``, summed over ``n`` in order.

    Shape: dy (N, OUT), x (N, IN), dw (OUT, IN). Parallel over ``OUT``.
    """
    n_batch, c_out = dy.shape
    c_in = x.shape[1]
    for o in prange(c_out):
        dst = dw[o]
        dst[:] = 0
        for n in range(n_batch):
            gv = dy[n, o]
            src = x[n]
            for k in range(c_in):
                dst[k] += gv * src[k]


@cpu_kernel
def linear_backward_bias(dy, db):
    """``db[o] = sum_n dy[n, o]``, summed over ``n`` in order.

    Shape: dy (N, OUT), db (OUT,). Parallel over ``OUT``.
    """
    n_batch, c_out = dy.shape
    for o in prange(c_out):
        acc = db.dtype.type(0)
        for n in range(n_batch):
            acc += dy[n, o]
        db[o] = acc
