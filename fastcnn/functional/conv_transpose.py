"""Transposed 2-D convolution (``torch.nn.functional.conv_transpose2d``): the
gradient of a convolution with respect to its input, used as a layer that
upsamples (decoders, U-Nets, GAN generators).

Written through the convolution kernels: the forward of ``conv_transpose2d(x, w)``
is ``conv2d_backward``'s input gradient with ``x`` in the place of ``dy``; its
input gradient is the forward convolution of ``dy`` with ``w``, and its weight
gradient is the convolution's weight gradient with the roles of ``x`` and ``dy``
swapped. So every fast path of the convolution (Winograd for 3x3 stride 1, the
GEMM micro-kernel) serves it as well, on the CPU and the GPU.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from . import _validate as v
from .conv import ConvGeometry, _bias_sum, _check_inputs, conv_geometry


def conv_transpose_geometry(op: str, x_shape, w_shape, stride, padding,
                            output_padding, dilation, groups):
    """``(geo, out_shape)``: the geometry of the convolution this transposes (from
    the output back to ``x``) and the output's shape, after checking everything
    as PyTorch does."""
    stride = v.pair(op, "stride", stride, minimum=1)
    dilation = v.pair(op, "dilation", dilation, minimum=1)
    padding = v.pair(op, "padding", padding, minimum=0)
    output_padding = v.pair(op, "output_padding", output_padding, minimum=0)
    groups = v.positive_int(op, "groups", groups)
    n, c_in, h, w = x_shape
    if w_shape[0] != c_in:
        raise ValueError(f"{op}: weight has {w_shape[0]} input channels (its first "
                         f"axis) but x has {c_in}.")
    if c_in % groups:
        raise ValueError(f"{op}: groups={groups} does not divide the {c_in} input "
                         f"channels of x.")
    for axis, extra, s in zip(("height", "width"), output_padding, stride,
                              strict=True):
        # PyTorch allows up to the dilation too; rows past the stride are then
        # reached by no input (only the bias), a case refused here.
        if extra >= s:
            raise ValueError(f"{op}: output_padding {extra} ({axis}) must be smaller "
                             f"than the stride ({s}).")
    out_hw = tuple((size - 1) * s - 2 * p + d * (k - 1) + extra + 1
                   for size, s, p, d, k, extra in zip(
                       (h, w), stride, padding, dilation, w_shape[2:],
                       output_padding, strict=True))
    if min(out_hw) <= 0:
        raise ValueError(f"{op}: the output would have size {out_hw} for x of shape "
                         f"{tuple(x_shape)}: too much padding.")
    out_shape = (n, w_shape[1] * groups, *out_hw)
    geo = conv_geometry(op, out_shape, w_shape, stride, padding, dilation, groups)
    assert geo.out_hw == (h, w), (geo.out_hw, (h, w))
    return geo, out_shape


def conv_transpose2d(x: np.ndarray, weight: np.ndarray,
                     bias: np.ndarray | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> np.ndarray:
    """Transposed convolution, with ``torch.nn.functional.conv_transpose2d``'s
    arguments in its order.

    Parameters
    ----------
    x : ndarray
    weight : ndarray
        ``(C_in, C_out/groups, KH, KW)``: PyTorch's ConvTranspose2d layout.
    bias : ndarray, optional
        ``(C_out,)``.
    stride, padding, output_padding, dilation : int or (int, int)
        ``padding`` is removed from both sides of the full output;
        ``output_padding`` (smaller than the stride) adds rows/columns at the
        bottom/right, to pick one of the sizes a strided convolution maps to the
        same input size.
    groups : int

    Shape: x (N, C_in, H, W) -> (N, C_out, OH, OW) with
    OH = (H - 1)*stride - 2*padding + dilation*(KH - 1) + output_padding + 1.
    """
    op = "conv_transpose2d"
    x, weight = _check_inputs(op, x, weight)
    geo, out_shape = conv_transpose_geometry(op, x.shape, weight.shape, stride,
                                             padding, output_padding, dilation,
                                             groups)
    if bias is not None:
        bias = v.float_array(op, "bias", bias, ndim=1)
        v.same_dtype(op, "x", x, bias=bias)
        v.shape_is(op, "bias", bias, (out_shape[1],))
    return conv_transpose2d_trusted(x, weight, bias, geo, out_shape)


def _degenerate(x, weight) -> bool:
    return x.shape[0] == 0 or weight.shape[0] == 0 or weight.shape[1] == 0


def conv_transpose2d_trusted(x, weight, bias, geo: ConvGeometry, out_shape):
    """:func:`conv_transpose2d` on checked arguments (``geo``, ``out_shape`` from
    :func:`conv_transpose_geometry`); checks nothing."""
    dev = backend.device_of(x, weight)
    k = dev.kernels("conv")
    if _degenerate(x, weight):
        y = dev.zeros(out_shape, x.dtype)
    else:
        y = dev.empty(out_shape, x.dtype)
        k.conv2d_backward_input(x, weight, y, geo.pad_h[0], geo.pad_w[0],
                                *geo.stride, *geo.dilation, geo.groups)
    if bias is not None and y.size:
        k.conv2d_add_bias(bias, y)
    return y


def conv_transpose2d_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray,
                              stride=1, padding=0, output_padding=0,
                              groups: int = 1, dilation=1, input_grad: bool = True):
    """Gradients of :func:`conv_transpose2d`: ``(dx, dweight, dbias)``; dx is None
    with ``input_grad=False``.

    Shape: dy (N, C_out, OH, OW), x (N, C_in, H, W), weight (C_in, C_out/groups,
    KH, KW) -> dx like x, dweight like weight, dbias (C_out,).
    """
    op = "conv_transpose2d_backward"
    x, weight = _check_inputs(op, x, weight)
    dy = v.float_array(op, "dy", dy, ndim=4)
    v.same_dtype(op, "x", x, dy=dy)
    geo, out_shape = conv_transpose_geometry(op, x.shape, weight.shape, stride,
                                             padding, output_padding, dilation,
                                             groups)
    v.shape_is(op, "dy", dy, out_shape)
    if not isinstance(input_grad, bool | np.bool_):
        raise TypeError(f"{op}: input_grad must be a bool, got {input_grad!r}.")
    return conv_transpose2d_backward_trusted(dy, x, weight, geo, bool(input_grad))


def conv_transpose2d_backward_trusted(dy, x, weight, geo: ConvGeometry,
                                      input_grad: bool = True,
                                      param_grads: bool = True):
    """:func:`conv_transpose2d_backward` on checked arguments; ``param_grads=False``
    skips dweight and dbias (None)."""
    dev = backend.device_of(dy, x, weight)
    k = dev.kernels("conv")
    args = (geo.pad_h[0], geo.pad_w[0], *geo.stride, *geo.dilation, geo.groups)
    degenerate = _degenerate(x, weight)
    dx = dweight = dbias = None
    if input_grad:
        if degenerate:
            dx = dev.zeros(x.shape, x.dtype)
        else:
            dx = dev.empty(x.shape, x.dtype)
            k.conv2d_forward(dy, weight, dev.zeros(weight.shape[0], x.dtype), dx,
                             *args)
    if param_grads:
        if degenerate:
            dweight = dev.zeros(weight.shape, weight.dtype)
        else:
            dweight = dev.empty(weight.shape, weight.dtype)
            k.conv2d_backward_weight(x, dy, dweight, *args)
        dbias = _bias_sum(dev, dy)
    return dx, dweight, dbias
