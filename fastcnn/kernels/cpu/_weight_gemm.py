"""The weight gradient of a direct convolution as one matrix product per image.

``dW (C_out x K) = sum over images of dy_n (C_out x P) @ R_n (P x K)``, where row
``p`` of ``R_n`` holds the ``K = C_in/groups * KH * KW`` input values that output
position ``p`` reads (the transposed im2col patch). Taken a tile of positions at a
time, this is :func:`._gemm._gemm_4` with long contiguous rows of length ``K``: each
loaded value of ``R`` serves four output channels and the output rows stay in L1.
The dot-product form in ``conv.py`` (rows of ``dy`` times patch rows, long sums
over positions) is better when ``K`` or ``C_out`` is small: the rule that picks
one is :func:`uses_weight_gemm`.

Determinism: the images are split into :data:`WEIGHT_SLOTS` runs (a number fixed by
the batch size alone), each summed into its own slot in image and tile order, then
the slots are added in order: the same bits for any thread count.
"""

import numpy as np
from numba import prange

from .._jit import cpu_helper, cpu_kernel
from ._gemm import _gemm_rows

#: Target size, in elements, of a tile of ``R`` (rows of K values): 256 KiB of
#: float32, well inside L2, reused by every group of four output channels.
ROW_TILE_ELEMENTS = 65536

#: The matrix-product form is used from this many output channels per group and
#: this many patch values per position (its row length). Measured, 2 threads,
#: against the dot-product form: (32,128,28,28)->256 3x3 s2 3.7x faster,
#: (32,256,14,14)->512 5.6x, (32,64,56,56)->128 3x3 s2 1.8x and 1x1 s2 1.3x; with 64
#: output channels equal, with 32 or fewer 0.5-0.85x.
MIN_GEMM_CHANNELS = 96
MIN_GEMM_K = 64

#: Partial sums of the weight gradient, each over a fixed run of images: enough to
#: balance a few threads, few enough that they stay small next to the activations.
WEIGHT_SLOTS = 8


def uses_weight_gemm(c_out_g: int, k_size: int) -> bool:
    """Whether :func:`conv2d_backward_weight_gemm` computes the weight gradient of
    a non-Winograd convolution with ``c_out_g`` output channels per group and
    ``k_size`` input values per output position."""
    return c_out_g >= MIN_GEMM_CHANNELS and k_size >= MIN_GEMM_K


@cpu_helper
def _tap_offsets(cin_g, kh_size, kw_size, dh, dw, hp, wp):
    """``offset[k]``: where tap ``k = (ci * KH + kh) * KW + kw`` of output position
    (0, 0) reads in one group's padded planes taken flat; position ``(oh, ow)``
    reads at ``offset[k] + oh*sh*Wp + ow*sw``."""
    offset = np.empty(cin_g * kh_size * kw_size, dtype=np.int64)
    k = 0
    for ci in range(cin_g):
        for kh in range(kh_size):
            for kw in range(kw_size):
                offset[k] = (ci * hp + kh * dh) * wp + kw * dw
                k += 1
    return offset


@cpu_helper
def _im2row(planes, offset, sh, sw, wp, ow_size, p0, count, rows):
    """``rows[j, k] = planes[offset[k] + oh*sh*Wp + ow*sw]`` for the ``count``
    output positions ``p = p0 + j`` (``oh, ow = divmod(p, OW)``): the transposed
    im2col patch, gathered from one group's padded planes taken flat
    (``planes``) with the offsets of :func:`_tap_offsets`. One flat gather per
    row, rather than a loop nest over channel, kernel row and column, is what
    makes the copy fast (docs/PERFORMANCE.md)."""
    for j in range(count):
        oh = (p0 + j) // ow_size
        at = oh * sh * wp + (p0 + j - oh * ow_size) * sw
        row = rows[j]
        for k in range(offset.shape[0]):
            row[k] = planes[offset[k] + at]


@cpu_helper
def _sum_slots(partial, co, out):
    """``out = partial[0, co] + partial[1, co] + ...`` in slot order (the last step
    of a weight gradient summed in slots; ``out`` is row ``co`` of it)."""
    first = partial[0, co]
    for k in range(out.shape[0]):
        out[k] = first[k]
    for s in range(1, partial.shape[0]):
        src = partial[s, co]
        for k in range(out.shape[0]):
            out[k] += src[k]


@cpu_kernel
def conv2d_backward_weight_gemm(dy, xp, dwt, sh, sw, dh, dw, groups):
    """The weight gradient (``dwt`` overwritten) as ``dy_n @ R_n`` summed over images.

    Shape: dy (N, C_out, OH, OW), xp (N, C_in, Hp, Wp) padded,
    dwt (C_out, C_in/groups, KH, KW). Parallel over :data:`WEIGHT_SLOTS` runs of
    images, each into its own slot of partial sums; then parallel over C_out,
    adding the slots in order.
    """
    n_batch, c_out, oh_size, ow_size = dy.shape
    cin_g, kh_size, kw_size = dwt.shape[1], dwt.shape[2], dwt.shape[3]
    cout_g = c_out // groups
    k_size = cin_g * kh_size * kw_size
    positions = oh_size * ow_size
    tile = min(max(ROW_TILE_ELEMENTS // k_size // 4 * 4, 4), positions)
    dyv = dy.reshape(n_batch, c_out, positions)
    slots = max(min(n_batch, WEIGHT_SLOTS), 1)
    partial = np.empty((slots, c_out, k_size), dtype=dwt.dtype)
    zero = np.int64(0)
    hp, wp = xp.shape[2], xp.shape[3]
    offset = _tap_offsets(cin_g, kh_size, kw_size, dh, dw, hp, wp)
    group_size = cin_g * hp * wp
    for slot in prange(slots):
        s = np.int64(slot)
        rows = np.empty((tile, k_size), dtype=dwt.dtype)
        grad = np.empty((cout_g, tile), dtype=dwt.dtype)
        part = partial[s]
        part[:, :] = 0
        for n in range(s * n_batch // slots, (s + 1) * n_batch // slots):
            for g in range(groups):
                c0 = g * cout_g
                planes = xp[n].reshape(-1)[g * group_size : (g + 1) * group_size]
                for p0 in range(0, positions, tile):
                    width = min(tile, positions - p0)
                    _im2row(planes, offset, sh, sw, wp, ow_size, p0, width, rows)
                    # dy's tile as its own contiguous block: the product's coefficients.
                    for c in range(cout_g):
                        src = dyv[n, c0 + c, p0 : p0 + width]
                        dst = grad[c]
                        for j in range(width):
                            dst[j] = src[j]
                    _gemm_rows(part, c0, c0 + cout_g, grad, 0, rows, width, zero,
                               k_size)
    dwm = dwt.reshape(c_out, k_size)
    for co in prange(c_out):
        _sum_slots(partial, np.int64(co), dwm[co])
