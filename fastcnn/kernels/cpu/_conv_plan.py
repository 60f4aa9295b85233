"""Which kernels a convolution runs, and how its products are cut into tiles.

Plain Python on shapes (and :func:`_gemm_tiles`, which the kernels call too): the
public functions of ``conv.py`` dispatch by these rules, and ``fastcnn.warmup``
reads :func:`kernel_plan` to share the compiling out between processes so that two
processes do not compile one kernel twice.
"""

import numpy as np

from .._jit import cpu_helper
from ._depthwise import uses_depthwise
from ._depthwise_rows import prefers_rows, prefers_rows_weight_grad
from ._weight_gemm import uses_weight_gemm

#: Target size, in elements, of one patch tile (128 KiB of float32: it stays in L2).
TILE_ELEMENTS = 32768


@cpu_helper
def _gemm_tiles(c_out_g, positions, k_taps, c_in_g, n_batch):
    """Tile sizes of a product ``out (M x positions) += coef @ rows`` done in slices:
    ``(tile, chunk, images)``. ``tile`` is the output columns per task: a multiple
    of 16 in [64, 512] of one image's positions, or, when an image has fewer
    positions than that, ``images`` whole images side by side (leaving at least 4
    tasks). ``chunk`` is the input channels (``chunk * k_taps`` patch rows) per pass.

    Measured on this machine (one thread, float32): the 4-row accumulation below
    reaches 60-75 GFLOP/s when the ``M x tile`` output and the ``chunk x tile``
    patch each stay within 128 KiB and the rows are a few hundred long, against
    28 GFLOP/s for 64-long rows (a whole 576-row patch squeezed into 128 KiB).
    Several images per task: LeNet's second convolution (8x8 outputs) 20-30%
    faster, forward and dx.
    """
    tile = (TILE_ELEMENTS // max(c_out_g, 1)) // 16 * 16
    tile = min(max(tile, 64), 512)
    images = 1
    if positions <= tile:
        # Whole images per task, up to the tile's width, leaving at least 4 tasks.
        images = max(min(tile // positions, (n_batch + 3) // 4), 1)
        tile = positions * images
    else:
        # Equal tiles (rounded up to 16): no short last tile.
        tiles = (positions + tile - 1) // tile
        tile = ((positions + tiles - 1) // tiles + 15) // 16 * 16
    chunk = max((TILE_ELEMENTS // tile) // max(k_taps, 1), 1)
    if chunk >= 4:
        # A multiple of 4 channels gives a multiple of 4 patch rows, so no pass is
        # left with fewer than 4 rows (the patch may grow to 1.5 x TILE_ELEMENTS).
        # Measured: 32 -> 32 channels, 32x32, 3x3: 9% faster forward.
        chunk = (chunk + 2) // 4 * 4
    chunk = min(chunk, c_in_g)
    return tile, chunk, images


@cpu_helper
def _input_grad_task(task, groups, blocks, images, per_block, n_batch, cin_g):
    """What task ``task`` of an input-gradient kernel parallel over (group of
    ``images`` whole images, group, block of ``per_block`` input channels)
    computes: ``(n0, g, c0, count, c_count)``, its first image, group, first
    input channel of the group, and how many images and channels it has."""
    t = np.int64(task)
    n0 = (t // (groups * blocks)) * images
    g = (t // blocks) % groups
    c0 = (t % blocks) * per_block
    return n0, g, c0, min(images, n_batch - n0), min(per_block, cin_g - c0)


#: Winograd (``_winograd.py``) is used for 3x3 stride-1 convolutions whose input and
#: output both have at least this many channels: with fewer, its transforms cost
#: more than the multiplications it saves.
WINOGRAD_MIN_CHANNELS = 8


def _uses_winograd(w_shape, sh, sw, dh, dw, groups) -> bool:
    """Whether the convolution with filters of shape ``w_shape`` (and this stride,
    dilation and groups) runs through Winograd F(4x4, 3x3), forward and input
    gradient."""
    c_out, cin_g, kh, kw = w_shape
    return (kh == 3 and kw == 3 and sh == 1 and sw == 1 and dh == 1 and dw == 1
            and groups == 1 and min(c_out, cin_g) >= WINOGRAD_MIN_CHANNELS)


def _forward_path(x_shape, w_shape, y_shape, sh, sw, dh, dw, groups) -> str:
    """Which kernel :func:`conv2d_forward` runs: "depthwise_rows", "depthwise",
    "winograd",
    "shifted", "rows" or "im2col" (see there)."""
    if uses_depthwise(x_shape, w_shape, groups):
        if prefers_rows(x_shape, w_shape, y_shape, sh, sw, dh, dw):
            return "depthwise_rows"
        return "depthwise"
    if _uses_winograd(w_shape, sh, sw, dh, dw, groups):
        return "winograd"
    if sh != 1 or sw != 1:
        return "im2col"
    n_batch, c_out, oh_size, ow_size = y_shape
    images = _gemm_tiles.py_func(c_out // groups, oh_size * ow_size,
                                 w_shape[2] * w_shape[3], w_shape[1], n_batch)[2]
    return "shifted" if images == 1 and w_shape[3] == 1 else "rows"


def _is_pointwise(w_shape, sh, sw, groups) -> bool:
    """A 1x1, stride-1, ungrouped convolution (dilation means nothing at 1x1; the
    callers also need it unpadded): a matrix product per image."""
    return w_shape[2] == 1 and w_shape[3] == 1 and sh == 1 and sw == 1 and groups == 1


def _input_grad_path(x_shape, w_shape, sh, sw, dh, dw, groups) -> str:
    """Which kernel :func:`conv2d_backward_input` runs: "depthwise" (stride 1),
    "depthwise_phases" (strided depthwise), "winograd"
    (the forward's kernels), "pointwise" (the forward's kernels on ``dy`` with
    the transposed filters; unpadded 1x1 only, which the caller checks; padded
    ones take "rows"), "rows" (stride 1: band rows, ``_input_grad_rows.py``)
    or "direct" (strided)."""
    if uses_depthwise(x_shape, w_shape, groups):
        return "depthwise" if sh == 1 and sw == 1 else "depthwise_phases"
    if _uses_winograd(w_shape, sh, sw, dh, dw, groups):
        return "winograd"
    if _is_pointwise(w_shape, sh, sw, groups):
        return "pointwise"
    return "rows" if sh == 1 and sw == 1 else "direct"


def _weight_grad_path(x_shape, w_shape, y_shape, sh, sw, dh, dw, groups) -> str:
    """Which kernel :func:`conv2d_backward_weight` runs: "depthwise_rows",
    "depthwise" (any stride), "winograd", "gemm", "rows" (stride 1: band rows
    and shifted windows, or for 1x1 filters the input planes themselves) or
    "direct"."""
    if uses_depthwise(x_shape, w_shape, groups):
        if prefers_rows_weight_grad(x_shape, w_shape, y_shape, sh, sw, dh, dw):
            return "depthwise_rows"
        return "depthwise"
    if _uses_winograd(w_shape, sh, sw, dh, dw, groups):
        return "winograd"
    if uses_weight_gemm(w_shape[0] // groups, w_shape[1] * w_shape[2] * w_shape[3]):
        return "gemm"
    if sh == 1 and sw == 1:
        return "rows"
    return "direct"


def flipped_depthwise_padding(x_shape, y_shape, w_shape, pad_t, pad_l, dh, dw):
    """``(top, left)`` padding with which a stride-1 depthwise convolution's input
    gradient is the forward of ``dy`` with the flipped filters, or None where
    that does not apply: several filters per channel (``dx`` sums them), or a
    padding wider than the dilated filter (the flipped one would be negative)."""
    if w_shape[0] != x_shape[1]:
        return None
    reach_h, reach_w = (w_shape[2] - 1) * dh, (w_shape[3] - 1) * dw
    pad_b = y_shape[2] + reach_h - x_shape[2] - pad_t
    pad_r = y_shape[3] + reach_w - x_shape[3] - pad_l
    if max(pad_t, pad_b) > reach_h or max(pad_l, pad_r) > reach_w:
        return None
    return reach_h - pad_t, reach_w - pad_l


def kernel_plan(x_shape, w_shape, y_shape, stride, dilation, groups,
                input_grad=True) -> tuple[str, ...]:
    """The kernels a convolution's forward and backward run, as names: ``"forward:"``
    + :func:`_forward_path`'s choice, ``"input:"`` + :func:`_input_grad_path`'s
    (only with ``input_grad``), ``"weight:"`` + :func:`_weight_grad_path`'s, and
    ``"bias"`` (not after ``"weight:rows"``, which computes it); Winograd's
    forward and input gradient run the same kernels, both named ``"winograd"``.
    Plain Python on shapes; ``fastcnn.warmup`` shares the compiling out between
    processes by it, so two processes do not compile one kernel twice.
    """
    sh, sw = stride
    dh, dw = dilation
    forward = _forward_path(x_shape, w_shape, y_shape, sh, sw, dh, dw, groups)
    names = ["winograd" if forward == "winograd" else "forward:" + forward]
    if input_grad:
        path = _input_grad_path(x_shape, w_shape, sh, sw, dh, dw, groups)
        if path == "pointwise" and tuple(x_shape[2:]) != tuple(y_shape[2:]):
            path = "rows"  # padded: conv2d_backward_input takes the rows kernel
        if path == "pointwise":  # the forward's kernel, run on dy
            transposed = (w_shape[1], w_shape[0], 1, 1)
            path = "forward:" + _forward_path(y_shape, transposed, x_shape, 1, 1,
                                              1, 1, 1)
        if path == "depthwise" and w_shape[0] == x_shape[1]:
            # the forward's kernels on dy (where the padding allows, which the
            # shapes alone do not say; see flipped_depthwise_padding)
            path = "forward:" + _forward_path(y_shape, w_shape, x_shape, 1, 1, dh,
                                              dw, groups)
        names.append("winograd" if path == "winograd" else
                     path if path.startswith("forward:") else "input:" + path)
    weight = _weight_grad_path(x_shape, w_shape, y_shape, sh, sw, dh, dw, groups)
    names.append("weight:" + weight)
    if weight != "rows":  # the rows kernel writes the bias gradient itself
        names.append("bias")
    return tuple(dict.fromkeys(names))
