"""The input gradient of a stride-1 convolution from band rows: the adjoint of
``conv.py``'s rows forward.

The rows forward copies, for each input channel ``c`` and kernel row ``kh``, the
padded rows its outputs read into one band row, and reads the ``KW`` taps as
shifts of it. Its adjoint: band row ``(c, kh)`` of the gradient is

    dband[(c, kh), q] = sum over (co, kw) of w[co, c, kh, kw] * dy_p[co, q - kw*dw]

where ``dy_p`` is ``dy`` laid out with the padded input's row pitch ``Wp`` (zeros
past each row's end and in ``(KW - 1) * dw`` columns before the first image: a
shift past a row's start lands on them), so it is one product with ``C_in * KH``
output rows and ``C_out * KW`` shifted source rows (:func:`._row_products._accumulate`);
then ``dxp[c, kh*dh + r, :] += dband[(c, kh), r*Wp:(r+1)*Wp]`` for every output
row ``r``, one contiguous add of ``OH * Wp`` values per band row. The direct kernel
(``conv.py``) multiplies ``W^T`` by ``dy`` with only ``C_out`` source rows (16 in
LeNet-5) and adds its patch gradient back ``OW`` values at a time.

Every ``dxp`` value is the sum over ``kh``, in order, of band values each summed
over ``(co, kw)`` in order: the split of the work into tasks changes no bits.
"""

import numpy as np
from numba import int64, prange

from .._jit import cpu_helper, cpu_kernel
from ._conv_plan import _gemm_tiles, _input_grad_task
from ._row_products import _accumulate_tall_first, _pitch_rows
from ._tasks import cpu_task

#: Target size, in elements, of a task's band gradient (256 KiB of float32): the
#: input channels of a task are cut into blocks that keep it in L2.
BAND_ELEMENTS = 65536


@cpu_helper
def _transposed_taps(w, groups):
    """``(wt, wt_by_column)``: ``wt[g, c*KH + kh, co*KW + kw] = w[g*C_out/groups +
    co, c, kh, kw]``, the coefficients of the band gradient's rows per group, and
    the same held by column (``wt_by_column[g].T`` equals ``wt[g]``, F-contiguous)
    for the tall block (see :func:`._row_products._accumulate_tall_first`)."""
    c_out, cin_g, kh_size, kw_size = w.shape
    cout_g = c_out // groups
    wt = np.empty((groups, cin_g * kh_size, cout_g * kw_size), dtype=w.dtype)
    wt_by_column = np.empty((groups, cout_g * kw_size, cin_g * kh_size),
                            dtype=w.dtype)
    for g in range(groups):
        for c in range(cin_g):
            for kh in range(kh_size):
                row = wt[g, c * kh_size + kh]
                for co in range(cout_g):
                    for kw in range(kw_size):
                        value = w[g * cout_g + co, c, kh, kw]
                        row[co * kw_size + kw] = value
                        wt_by_column[g, co * kw_size + kw, c * kh_size + kh] = value
    return wt, wt_by_column


@cpu_helper
def _channel_split(cin_g, kh_size, cols, other_tasks):
    """Input channels per task: few enough that a task's band gradient (``cols``
    columns per band row) stays near :data:`BAND_ELEMENTS`, and, where the
    images and groups make fewer than four tasks, few enough for four. A
    multiple of ``step`` channels, ``step * KH`` a multiple of four band rows, so
    every block of four rows the product sums together (and the last ``% 4``
    rows it sums one at a time, in another order) is the same as without the
    split: the same bits."""
    step = 1
    while (step * kh_size) % 4 != 0:
        step *= 2
    per_task = max(BAND_ELEMENTS // max(kh_size * cols, 1), 1)
    wanted = (4 + other_tasks - 1) // max(other_tasks, 1)
    per_task = min(per_task, max((cin_g + wanted - 1) // wanted, 1))
    per_task = max(per_task // step, 1) * step
    return min(per_task, cin_g)


def conv2d_backward_input_rows(dy, w, dxp, dh, dw, groups):
    """``dxp`` (the padded input's gradient, overwritten) of a stride-1
    convolution from band rows (see the module's docstring).

    Shape: dy (N, C_out, OH, OW), w (C_out, C_in/groups, KH, KW), dxp (N, C_in,
    Hp, Wp). Parallel over (group of whole images, group, block of input
    channels): their planes of ``dxp`` are disjoint. ``w`` must be finite: a
    zero of ``dy_p`` times an inf weight would be NaN where the gradient is not
    (the caller checks). The tasks run as :func:`_input_rows_task` (see
    ``_tasks.py``).
    """
    _input_rows_kernel(_input_rows_task.address(dxp.dtype), dy, w, dxp, dh, dw,
                       groups)


@cpu_kernel
def _input_rows_kernel(task, dy, w, dxp, dh, dw, groups):
    """:func:`conv2d_backward_input_rows` with the task's address."""
    n_batch, c_out, oh_size, ow_size = dy.shape
    cin_g, kh_size, kw_size = w.shape[1], w.shape[2], w.shape[3]
    wp = dxp.shape[3]
    cout_g = c_out // groups
    span = oh_size * wp
    lead = (kw_size - 1) * dw
    _, chunk, images = _gemm_tiles(cin_g * kh_size, span, kw_size, cout_g, n_batch)
    image_tasks = (n_batch + images - 1) // images
    per_task = _channel_split(cin_g, kh_size, images * span, image_tasks * groups)
    blocks = (cin_g + per_task - 1) // per_task
    wt, wt_by_column = _transposed_taps(w, groups)
    # Source row k of a chunk: output channel k // KW of dy_p, shifted back by kw.
    row_of = np.empty(chunk * kw_size, dtype=np.int64)
    off_of = np.empty(chunk * kw_size, dtype=np.int64)
    for k in range(chunk * kw_size):
        row_of[k] = k // kw_size
        off_of[k] = lead - (k % kw_size) * dw
    for t in prange(image_tasks * groups * blocks):
        _input_rows_task(task, (np.int64(t), images, blocks, per_task, chunk, kh_size,
                                kw_size, dy, wt, wt_by_column, dxp, dh, dw, groups,
                                row_of, off_of))


@cpu_task(lambda f: (int64, int64, int64, int64, int64, int64, int64, f[:, :, :, ::1],
                     f[:, :, ::1], f[:, :, ::1], f[:, :, :, ::1], int64, int64, int64,
                     int64[::1], int64[::1]))
def _input_rows_task(task, images, blocks, per_task, chunk, kh_size, kw_size, dy, wt,
                     wt_by_column, dxp, dh, dw, groups, row_of, off_of):
    """Task ``task`` of :func:`conv2d_backward_input_rows`: one (group of images,
    group, block of input channels)."""
    n_batch, c_out, oh_size, ow_size = dy.shape
    cin_g = dxp.shape[1] // groups
    wp = dxp.shape[3]
    cout_g = c_out // groups
    span = oh_size * wp
    lead = (kw_size - 1) * dw
    zero = np.int64(0)
    n0, g, c0, count, c_count = _input_grad_task(task, groups, blocks, images,
                                                 per_task, n_batch, cin_g)
    cols = count * span
    rows = c_count * kh_size
    grad = np.empty((cout_g, lead + images * span), dtype=dxp.dtype)
    _pitch_rows(dy, n0, count, g * cout_g, wp, lead, grad)
    band = np.empty((per_task * kh_size, images * span), dtype=dxp.dtype)
    band[:rows, :cols] = 0
    for o0 in range(0, cout_g, chunk):
        o_count = min(chunk, cout_g - o0)
        _accumulate_tall_first(band, zero, rows, zero, wt[g], wt_by_column[g].T,
                               c0 * kh_size, o0 * kw_size, grad, o0, row_of, off_of,
                               o_count * kw_size, zero, cols)
    # Planes taken flat by indexing, not one reshape each (see _copy_band_rows).
    planes = dxp.reshape(dxp.shape[0], dxp.shape[1], dxp.shape[2] * wp)
    for i in range(count):
        for c in range(c_count):
            plane = planes[n0 + i, g * cin_g + c0 + c]
            plane[:] = 0
            for kh in range(kh_size):
                dst = plane[kh * dh * wp : kh * dh * wp + span]
                src = band[c * kh_size + kh, i * span : (i + 1) * span]
                for j in range(span):
                    dst[j] += src[j]
