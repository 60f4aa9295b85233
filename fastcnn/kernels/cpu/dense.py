"""Fully connected (dense) layer ``y = x @ weight.T + bias`` and its three gradients.

Shared conventions
------------------
- ``x`` has shape ``(N, IN)``, ``y`` / ``dy`` have shape ``(N, OUT)``.
- ``w`` has PyTorch's layout ``(OUT, IN)``. The layers' forward,
  :func:`linear_forward_untransposed`, reads it as it is: each output is a dot
  product of an ``x`` row with a ``w`` row, both contiguous. :func:`linear_forward`
  takes the transpose ``wt`` ``(IN, OUT)`` for a caller that holds one (its inner
  loop runs along contiguous output rows).
- :func:`linear_backward_params` (weight and bias gradients together) is a plain
  function over the kernels here, twin of a CUDA launcher that saves a launch.

No kernel calls BLAS: BLAS may split a sum differently for different thread counts,
and its threads fight Numba's for the cores. Each kernel's ``prange`` runs over an
axis whose output slices are disjoint, and every sum is taken in an order fixed by
the code and the shapes inside one iteration, so results are bitwise the same for
any thread count.
"""

import numpy as np
from numba import boolean, int64, prange

from .._clamp import bounds
from .._jit import cpu_helper, cpu_kernel
from ._clamp import _clamp
from ._dots import _dots_4x4
from ._gemm import _gemm_rows
from ._tasks import cpu_task

#: Output columns per task: a multiple of the micro-kernel's blocks, wide enough to
#: amortise a pass over the source rows, narrow enough that a batch of one still
#: spreads a wide layer over the threads.
COLUMN_BLOCK = 128


@cpu_helper
def _tasks(rows, cols):
    """``(row groups, column blocks)`` of a product with ``rows x cols`` outputs:
    groups of four rows (the micro-kernel's) by :data:`COLUMN_BLOCK` columns. The
    split depends on the shapes alone, never on the thread count."""
    return (rows + 3) // 4, (cols + COLUMN_BLOCK - 1) // COLUMN_BLOCK


@cpu_helper
def _span(task, blocks, rows, cols):
    """Rows ``[r0, r1)`` and columns ``[j0, j1)`` of task number ``task``."""
    r0 = (task // blocks) * 4
    j0 = (task % blocks) * COLUMN_BLOCK
    return r0, min(r0 + 4, rows), j0, min(j0 + COLUMN_BLOCK, cols)


def linear_forward(x, wt, b, y, clamp=None):
    """``y[n, o] = b[o] + sum_k x[n, k] * wt[k, o]``, summed over ``k`` in order,
    limited to ``clamp``'s interval as it is stored (:mod:`fastcnn.kernels._clamp`:
    ReLU or ReLU6 in the epilogue; None: as is).

    Shape: x (N, IN), wt (IN, OUT), b (OUT,), y (N, OUT), all C-contiguous.
    Parallel over four rows of ``y`` by :data:`COLUMN_BLOCK` columns, each
    through the register-blocked micro-kernel (``_gemm.py``).
    """
    _linear_forward(x, wt, b, y, *bounds(clamp, y.dtype))


def linear_forward_untransposed(x, w, b, y, clamp=None):
    """``y[n, o] = b[o] + sum_k x[n, k] * w[o, k]``: :func:`linear_forward` on ``w``
    in PyTorch's layout, limited to ``clamp``'s interval as it is stored (None: as
    is). No transpose is made: a contiguous copy of ``w.T`` cost more than the
    product (15 us of a 400 -> 120 layer's 20 us at batch 1; docs/PERFORMANCE.md).

    Shape: x (N, IN), w (OUT, IN), b (OUT,), y (N, OUT), all C-contiguous.
    Parallel over four rows of ``y`` by :data:`DOT_BLOCK` outputs
    (:func:`_linear_forward_dots`).
    """
    _linear_forward_dots(x, w, b, y, *bounds(clamp, y.dtype))


#: Outputs per task of :func:`_linear_forward_dots`: four blocks of the 4x4 dot
#: products, so that a batch of one still spreads a 64-wide layer over the threads.
DOT_BLOCK = 16


def _linear_forward_dots(x, w, b, y, lo, hi):
    """Each ``y[n, o]`` as one dot product of the rows ``x[n]`` and ``w[o]``, sixteen
    at a time (four rows by four outputs: eight loaded vectors serve sixteen
    multiply-adds, :func:`_dots_4x4`), each sum split over the vector lanes in an
    order fixed by ``IN``. A short last block repeats its last row or output in
    the unused slots, so every output comes from the same machine code in the same
    order: a sample's outputs do not depend on the batch around it, nor an
    output's on the outputs beside it. The tasks run as
    :func:`_forward_dots_task` (see ``_tasks.py``)."""
    _forward_dots_kernel(_forward_dots_task.address(y.dtype), x, w, b, y, lo, hi)


@cpu_kernel
def _forward_dots_kernel(task, x, w, b, y, lo, hi):
    """:func:`_linear_forward_dots` with the task's address."""
    n_batch, c_out = y.shape
    clamps = lo > -np.inf or hi < np.inf
    groups = (n_batch + 3) // 4
    blocks = (c_out + DOT_BLOCK - 1) // DOT_BLOCK
    for t in prange(groups * blocks):
        _forward_dots_task(task, (np.int64(t), blocks, x, w, b, y, lo, hi, clamps))


@cpu_task(lambda f: (int64, int64, f[:, ::1], f[:, ::1], f[::1], f[:, ::1], f, f,
                     boolean))
def _forward_dots_task(t, blocks, x, w, b, y, lo, hi, clamps):
    """Task ``t`` of :func:`_linear_forward_dots`: four rows by
    :data:`DOT_BLOCK` outputs."""
    n_batch, c_out = y.shape
    c_in = x.shape[1]
    n0 = (t // blocks) * 4
    rows = min(4, n_batch - n0)
    o_stop = min((t % blocks) * DOT_BLOCK + DOT_BLOCK, c_out)
    x0, x1 = x[n0], x[n0 + min(1, rows - 1)]
    x2, x3 = x[n0 + min(2, rows - 1)], x[n0 + min(3, rows - 1)]
    for o in range((t % blocks) * DOT_BLOCK, o_stop, 4):
        outs = min(4, o_stop - o)
        sums = _dots_4x4(x0, x1, x2, x3, w[o], w[o + min(1, outs - 1)],
                         w[o + min(2, outs - 1)], w[o + min(3, outs - 1)], c_in)
        for i in range(rows):
            for j in range(outs):
                value = b[o + j] + sums[4 * i + j]
                y[n0 + i, o + j] = _clamp(value, lo, hi) if clamps else value


@cpu_kernel
def _linear_forward(x, wt, b, y, lo, hi):
    n_batch, c_out = y.shape
    clamps = lo > -np.inf or hi < np.inf
    c_in = x.shape[1]
    groups, blocks = _tasks(n_batch, c_out)
    for task in prange(groups * blocks):
        n0, n1, j0, j1 = _span(np.int64(task), blocks, n_batch, c_out)
        bias = b[j0:j1]
        for n in range(n0, n1):
            dst = y[n, j0:j1]
            for j in range(j1 - j0):
                dst[j] = bias[j]
        _gemm_rows(y, n0, n1, x, n0, wt, c_in, j0, j1)
        if clamps:
            # The task's block is still in cache: no pass of its own.
            for n in range(n0, n1):
                dst = y[n, j0:j1]
                for j in range(j1 - j0):
                    dst[j] = _clamp(dst[j], lo, hi)


def linear_backward_input(dy, w, dx):
    """``dx[n, k] = sum_o dy[n, o] * w[o, k]``, summed over ``o`` in order.

    Shape: dy (N, OUT), w (OUT, IN), dx (N, IN), all C-contiguous. Parallel as
    :func:`linear_forward`, over the blocks of ``dx`` (tasks of
    :func:`_input_task`, see ``_tasks.py``).
    """
    _input_kernel(_input_task.address(dx.dtype), dy, w, dx)


@cpu_kernel
def _input_kernel(task, dy, w, dx):
    """:func:`linear_backward_input` with the task's address."""
    groups, blocks = _tasks(dy.shape[0], dx.shape[1])
    for t in prange(groups * blocks):
        _input_task(task, (np.int64(t), blocks, dy, w, dx))


@cpu_task(lambda f: (int64, int64, f[:, ::1], f[:, ::1], f[:, ::1]))
def _input_task(t, blocks, dy, w, dx):
    """Task ``t`` of :func:`linear_backward_input`: four rows of ``dx`` by
    :data:`COLUMN_BLOCK` columns."""
    n_batch, c_out = dy.shape
    c_in = dx.shape[1]
    n0, n1, j0, j1 = _span(t, blocks, n_batch, c_in)
    for n in range(n0, n1):
        dst = dx[n, j0:j1]
        for j in range(j1 - j0):
            dst[j] = 0
    _gemm_rows(dx, n0, n1, dy, n0, w, c_out, j0, j1)


def linear_backward_weight(dy, x, dw):
    """``dw[o, k] = sum_n dy[n, o] * x[n, k]``, summed over ``n`` in order.

    Shape: dy (N, OUT), x (N, IN), dw (OUT, IN), all C-contiguous. Parallel as
    :func:`linear_forward`, over the blocks of ``dw``
    (:func:`_linear_backward_weight`).
    """
    _linear_backward_weight(dy, x, dw, np.empty(0, dtype=dw.dtype))


def _linear_backward_weight(dy, x, dw, db):
    """:func:`linear_backward_weight`; with ``db`` of length ``OUT`` (not 0) also
    ``db[o] = sum_n dy[n, o]`` in order, as :func:`linear_backward_bias` sums
    (the same bits), by the tasks of the first column block: one parallel
    region fewer. Each task (:func:`_weight_task`, see ``_tasks.py``) copies
    its four columns of ``dy`` into rows (the product's coefficients).
    """
    _weight_kernel(_weight_task.address(dw.dtype), dy, x, dw, db)


@cpu_kernel
def _weight_kernel(task, dy, x, dw, db):
    """:func:`_linear_backward_weight` with the task's address."""
    groups, blocks = _tasks(dy.shape[1], x.shape[1])
    for t in prange(groups * blocks):
        _weight_task(task, (np.int64(t), blocks, dy, x, dw, db))


@cpu_task(lambda f: (int64, int64, f[:, ::1], f[:, ::1], f[:, ::1], f[::1]))
def _weight_task(t, blocks, dy, x, dw, db):
    """Task ``t`` of :func:`_linear_backward_weight`: four rows of ``dw`` by
    :data:`COLUMN_BLOCK` columns."""
    n_batch, c_out = dy.shape
    c_in = x.shape[1]
    with_bias = db.shape[0] == c_out
    o0, o1, j0, j1 = _span(t, blocks, c_out, c_in)
    coef = np.empty((4, n_batch), dtype=dw.dtype)
    for o in range(o0, o1):
        row = coef[o - o0]
        for n in range(n_batch):
            row[n] = dy[n, o]
        if with_bias and j0 == 0:
            acc = db.dtype.type(0)
            for n in range(n_batch):
                acc += row[n]
            db[o] = acc
        dst = dw[o, j0:j1]
        for j in range(j1 - j0):
            dst[j] = 0
    _gemm_rows(dw, o0, o1, coef, np.int64(0), x, n_batch, j0, j1)


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


def linear_backward_params(dy, x, dw, db):
    """``dw[o, k] = sum_n dy[n, o] * x[n, k]`` and ``db[o] = sum_n dy[n, o]``, both
    summed over ``n`` in order, in one kernel (:func:`_linear_backward_weight`;
    ``db`` bitwise :func:`linear_backward_bias`'s; the CUDA twin also computes
    both in one launch).

    Shape: dy (N, OUT), x (N, IN), dw (OUT, IN), db (OUT,), all C-contiguous.
    """
    _linear_backward_weight(dy, x, dw, db)
