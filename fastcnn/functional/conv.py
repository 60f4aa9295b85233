"""conv2d and its backward, with torch.nn.functional.conv2d's argument meanings."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import backend
from ..kernels._clamp import clamp_host
from . import _validate as v


class ConvGeometry(NamedTuple):
    """Validated hyper-parameters of one convolution; paddings are (before, after)."""

    stride: tuple[int, int]
    dilation: tuple[int, int]
    pad_h: tuple[int, int]
    pad_w: tuple[int, int]
    groups: int
    out_hw: tuple[int, int]


def same_padding(kernel_hw, dilation, stride=(1, 1),
                 in_hw=None) -> tuple[tuple[int, int], tuple[int, int]]:
    """``padding="same"`` as (before, after) pairs for height and width: the
    output has ``ceil(in / stride)`` positions, and the padding that takes is
    split with the odd pixel after (bottom/right), TensorFlow's rule. With stride
    1 that is PyTorch's: ``dilation * (k - 1)`` in total whatever the input size
    (``in_hw`` may then be None); a larger stride needs the input's (H, W)."""
    pads = []
    for axis, (k, d, s) in enumerate(zip(kernel_hw, dilation, stride, strict=True)):
        if s == 1:
            total = d * (k - 1)
        else:
            n = in_hw[axis]
            out = -(-n // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        pads.append((total // 2, total - total // 2))
    return pads[0], pads[1]


def _padding(op: str, padding, kernel_hw, dilation, stride, in_hw):
    """Resolve ``padding`` (int, pair, ``"valid"`` or ``"same"``) to two
    (before, after) pairs for an input of height and width ``in_hw``."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            # Stride 1: PyTorch's rule. PyTorch refuses a larger stride; Keras and
            # TensorFlow pad for ceil(in / stride) outputs, and so does fastcnn.
            return same_padding(kernel_hw, dilation, stride, in_hw)
        raise ValueError(
            f"{op}: padding must be an int, a pair of ints, 'valid' or 'same', got "
            f"{padding!r}."
        )
    ph, pw = v.pair(op, "padding", padding, minimum=0)
    return (ph, ph), (pw, pw)


def conv_geometry(op: str, x_shape, w_shape, stride, padding, dilation,
                  groups) -> ConvGeometry:
    """Validate a convolution's configuration against the shapes of x and weight."""
    stride = v.pair(op, "stride", stride, minimum=1)
    dilation = v.pair(op, "dilation", dilation, minimum=1)
    groups = v.positive_int(op, "groups", groups)
    c_in = x_shape[1]
    c_out, cin_g, kh, kw = w_shape
    if c_in % groups:
        raise ValueError(
            f"{op}: groups={groups} does not divide the {c_in} input channels of x."
        )
    if c_out % groups:
        raise ValueError(
            f"{op}: groups={groups} does not divide the {c_out} output channels of "
            f"weight."
        )
    if cin_g * groups != c_in:
        raise ValueError(
            f"{op}: weight has {cin_g} input channels per group but x has {c_in} "
            f"channels (groups={groups})."
        )
    if min(kh, kw) == 0:
        raise ValueError(
            f"{op}: weight has a zero-sized kernel (shape {tuple(w_shape)}); the "
            f"kernel height and width must be positive."
        )
    pad_h, pad_w = _padding(op, padding, (kh, kw), dilation, stride, x_shape[2:])
    out = []
    for size, k, d, s, p, axis in (
        (x_shape[2], kh, dilation[0], stride[0], pad_h, "height"),
        (x_shape[3], kw, dilation[1], stride[1], pad_w, "width"),
    ):
        padded = size + p[0] + p[1]
        span = d * (k - 1) + 1
        if span > padded:
            raise ValueError(
                f"{op}: the kernel's {axis} with dilation ({span}) is larger than the "
                f"padded input's {axis} ({padded}); x has shape {tuple(x_shape)}."
            )
        out.append((padded - span) // s + 1)
    return ConvGeometry(stride, dilation, pad_h, pad_w, groups, (out[0], out[1]))


def _check_inputs(op, x, weight):
    x = v.float_array(op, "x", x, ndim=4)
    weight = v.float_array(op, "weight", weight, ndim=4)
    v.same_dtype(op, "x", x, weight=weight)
    v.non_empty_axes(op, "x", x, (2, 3), "height or width (only the batch and "
                     "channel axes may be empty)")
    return x, weight


def _is_degenerate(x, weight) -> bool:
    """An empty batch, no output channels or no input channels per group: the
    result is known without a kernel, and a CUDA kernel must not be launched on a
    zero-sized grid."""
    return x.shape[0] == 0 or weight.shape[0] == 0 or weight.shape[1] == 0


def _bias_sum(dev, dy):
    """dbias = dy summed over the batch and the spatial axes (zeros if dy is
    empty)."""
    if dy.size == 0:
        return dev.zeros(dy.shape[1], dy.dtype)
    dbias = dev.empty(dy.shape[1], dy.dtype)
    dev.kernels("conv").conv2d_backward_bias(dy, dbias)
    return dbias


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
           stride=1, padding=0, dilation=1, groups: int = 1) -> np.ndarray:
    """2-D convolution (cross-correlation) over a batch of images.

    Parameters
    ----------
    x : ndarray
        Input images, float32 or float64.
    weight : ndarray
        Filters in PyTorch's layout.
    bias : ndarray, optional
        One value per output channel.
    stride, dilation : int or (int, int)
        Step between windows and between kernel taps.
    padding : int, (int, int), "valid" or "same"
        Zeros added on each side; "same" gives ceil(size / stride) outputs (with
        stride 1 PyTorch's rule; with a larger stride, which PyTorch refuses,
        TensorFlow's: the odd pixel of padding at the bottom/right).
    groups : int
        Input and output channels are split into this many independent groups
        (``groups == C_in`` is a depthwise convolution).

    Shape: x (N, C_in, H, W), weight (C_out, C_in/groups, KH, KW), bias (C_out,)
    -> (N, C_out, OH, OW) with OH = (H + pad_top + pad_bottom - dilation*(KH-1) - 1)
    // stride + 1.

    Notes
    -----
    N, C_in and C_out may be 0 (H and W may not, as in PyTorch): the result is
    empty, or, with no input channels, the bias broadcast (an empty sum). PyTorch
    agrees for N = 0; for C_out = 0 it raises and for C_in = 0 it returns a
    (N, 0, OH, OW) tensor, so there this follows the arithmetic instead.
    """
    op = "conv2d"
    x, weight = _check_inputs(op, x, weight)
    geo = conv_geometry(op, x.shape, weight.shape, stride, padding, dilation, groups)
    c_out = weight.shape[0]
    if bias is None:
        bias = np.zeros(c_out, dtype=x.dtype)
    else:
        bias = v.float_array(op, "bias", bias, ndim=1)
        v.same_dtype(op, "x", x, bias=bias)
        v.shape_is(op, "bias", bias, (c_out,))
    return conv2d_trusted(x, weight, bias, geo)


def conv2d_trusted(x, weight, bias, geo: ConvGeometry, clamp=None):
    """:func:`conv2d` on arguments that passed its checks (C-contiguous arrays of
    one float dtype, matching shapes, ``geo`` from :func:`conv_geometry` for these
    shapes); ``bias`` may be None. Checks nothing: layers call it with what they
    validated at build. ``clamp``: an interval of ``kernels._clamp.CLAMPS`` that the
    kernel limits the output to as it stores it (a fused ReLU or ReLU6)."""
    c_out = weight.shape[0]
    if bias is None:
        bias = np.zeros(c_out, dtype=x.dtype)
    shape = (x.shape[0], c_out, *geo.out_hw)
    dev = backend.device_of(x, weight, bias)
    if _is_degenerate(x, weight):
        # No input channels: every output is its bias (an empty sum).
        y = np.zeros(shape, x.dtype) + dev.to_host(bias)[:, None, None]
        return dev.move_in(clamp_host(y, clamp))
    y = dev.empty(shape, x.dtype)
    dev.kernels("conv").conv2d_forward(
        x, weight, bias, y, geo.pad_h[0], geo.pad_w[0], *geo.stride, *geo.dilation,
        geo.groups, clamp
    )
    return y


def conv2d_runner(x_shape, weight, bias, geo: ConvGeometry, clamp=None):
    """``run(x)``, :func:`conv2d_trusted` of these arguments for host (NumPy)
    inputs ``x`` of shape ``x_shape``, with what that decides on every call
    (device, output shape, degenerate case) decided here once: a model's
    prediction plan calls it. None where :func:`conv2d_trusted` would take
    another route (device arrays, no channels, an empty batch). ``weight`` and
    ``bias`` are read at each call (updates in place are seen)."""
    if bias is None:
        bias = np.zeros(weight.shape[0], dtype=weight.dtype)
    if (type(weight) is not np.ndarray or type(bias) is not np.ndarray
            or x_shape[0] == 0 or weight.shape[0] == 0 or weight.shape[1] == 0):
        return None
    dev = backend.device_of(weight, bias)
    forward = dev.kernels("conv").conv2d_forward
    shape, dtype = (x_shape[0], weight.shape[0], *geo.out_hw), weight.dtype
    args = (geo.pad_h[0], geo.pad_w[0], *geo.stride, *geo.dilation, geo.groups, clamp)
    empty = dev.empty

    def run(x):
        y = empty(shape, dtype)
        forward(x, weight, bias, y, *args)
        return y

    return run


def conv2d_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride=1,
                    padding=0, dilation=1, groups: int = 1, input_grad: bool = True):
    """Gradients of :func:`conv2d` with respect to x, weight and bias.

    Returns ``(dx, dweight, dbias)`` for the upstream gradient ``dy``. With
    ``input_grad=False`` dx is not computed and is None (a network's first layer:
    nothing needs the gradient of the images, and it costs as much as dweight).

    Shape: dy (N, C_out, OH, OW), x (N, C_in, H, W), weight (C_out, C_in/groups, KH,
    KW) -> dx (N, C_in, H, W), dweight like weight, dbias (C_out,).

    With N, C_in or C_out 0, dx and dweight are zeros (or empty) and dbias is dy
    summed, zeros for an empty batch.
    """
    op = "conv2d_backward"
    x, weight = _check_inputs(op, x, weight)
    dy = v.float_array(op, "dy", dy, ndim=4)
    v.same_dtype(op, "x", x, dy=dy)
    geo = conv_geometry(op, x.shape, weight.shape, stride, padding, dilation, groups)
    v.shape_is(op, "dy", dy, (x.shape[0], weight.shape[0], *geo.out_hw))
    if not isinstance(input_grad, bool | np.bool_):
        raise TypeError(f"{op}: input_grad must be a bool, got {input_grad!r}.")
    return conv2d_backward_trusted(dy, x, weight, geo, input_grad)


def conv2d_backward_trusted(dy, x, weight, geo: ConvGeometry, input_grad: bool = True,
                            param_grads: bool = True, out=None):
    """:func:`conv2d_backward` on arguments that passed its checks (see
    :func:`conv2d_trusted`); checks nothing. ``param_grads=False`` skips dweight
    and dbias (returned as None): a frozen layer needs only dx. ``out``: a
    ``(dweight, dbias)`` pair of arrays (the layer's gradients, beside dy, of the
    right shapes) the kernels write into instead of new ones."""
    dev = backend.device_of(dy, x, weight)
    k = dev.kernels("conv")
    if _is_degenerate(x, weight):
        # Nothing flows between x and y: dx and dweight are zeros (or empty).
        dx = dev.zeros(x.shape, x.dtype) if input_grad else None
        if not param_grads:
            return dx, None, None
        dweight = dev.zeros(weight.shape, weight.dtype)
        return dx, dweight, _bias_sum(dev, dy)
    args = (geo.pad_h[0], geo.pad_w[0], *geo.stride, *geo.dilation, geo.groups)
    dx = dweight = dbias = None
    if input_grad:
        dx = dev.empty(x.shape, x.dtype)
        k.conv2d_backward_input(dy, weight, dx, *args)
    if param_grads:
        dweight, dbias = out if out is not None else (
            dev.empty(weight.shape, weight.dtype), dev.empty(weight.shape[0], x.dtype))
        k.conv2d_backward_params(dy, x, dweight, dbias, *args)
    return dx, dweight, dbias
