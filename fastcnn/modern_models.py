"""The zoo's modern networks, sized for 32x32 images: MobileNetV2, an
EfficientNet-lite0-style network and a small ConvNeXt, as graph models.

Each keeps its paper's block (inverted residual, MBConv with optional
squeeze-and-excitation, ConvNeXt block with layer scale) and stage plan; what
changes for small images is the stem's stride, and ``width_mult`` / ``depth_mult``
(or ``dims`` / ``depths``) scale the network down for CPUs. Listed in
:data:`fastcnn.models.MODELS`.
"""

from __future__ import annotations

import math

from ._zoo_args import _input_shape, _num_classes
from .graph import Input, Model
from .layers import (
    GELU,
    Add,
    BatchNorm2D,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    Dropout,
    GlobalAvgPool2D,
    LayerNorm,
    LayerNorm2D,
    Multiply,
    Reshape,
    Scale,
    Sigmoid,
)
from .layers.activation import activation_layer


def _check_shape(name: str, input_shape, minimum: int) -> tuple[int, int, int]:
    shape = _input_shape(name, input_shape)
    if min(shape[1:]) < minimum:
        raise ValueError(f"{name}: the input must be at least {minimum}x{minimum}, "
                         f"got {shape[1]}x{shape[2]}.")
    return shape


def _check_mult(name: str, arg: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: {arg} must be a positive number, got {value!r}.")
    return float(value)


def _divisible(value: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of ``divisor``, never down by more than 10%
    (torchvision's ``_make_divisible``)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _conv_bn(x, channels: int, kernel: int, stride: int, act: str | None, name: str,
             groups_depthwise: bool = False):
    """Convolution (or depthwise convolution) without bias, batch norm, activation."""
    if groups_depthwise:
        x = DepthwiseConv2D(kernel, stride=stride, padding=kernel // 2, bias=False,
                            name=f"{name}_dw")(x)
    else:
        x = Conv2D(channels, kernel, stride=stride, padding=kernel // 2, bias=False,
                   name=f"{name}_conv")(x)
    x = BatchNorm2D(name=f"{name}_bn")(x)
    if act is not None:
        layer = activation_layer("models", act)
        layer.name = f"{name}_act"
        x = layer(x)
    return x


# ---------------------------------------------------------------------- MobileNetV2

#: (expansion t, channels c, blocks n, first stride s) of Sandler et al. (2018),
#: table 2; the second stage's stride is 1 here (32x32 input, as for CIFAR).
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _inverted_residual(x, out_channels: int, stride: int, expansion: int,
                       kernel: int, act: str, name: str, se_ratio: float = 0.0):
    """Expand (1x1), depthwise (k x k, stride), optional squeeze-and-excitation,
    project (1x1, linear); plus the input where the shape is kept."""
    in_channels = x.shape[0]
    h = x
    if expansion != 1:
        h = _conv_bn(h, in_channels * expansion, 1, 1, act, f"{name}_expand")
    h = _conv_bn(h, 0, kernel, stride, act, f"{name}_depthwise",
                 groups_depthwise=True)
    if se_ratio > 0:
        h = _squeeze_excite(h, max(1, int(in_channels * se_ratio)), act, f"{name}_se")
    h = _conv_bn(h, out_channels, 1, 1, None, f"{name}_project")
    if stride == 1 and in_channels == out_channels:
        h = Add(name=f"{name}_add")([h, x])
    return h


def _squeeze_excite(x, squeeze: int, act: str, name: str):
    """Channel weights from the global average (Hu et al., 2018), multiplied in."""
    channels = x.shape[0]
    s = GlobalAvgPool2D(name=f"{name}_pool")(x)
    s = Dense(squeeze, activation=act, name=f"{name}_reduce")(s)
    s = Dense(channels, name=f"{name}_expand")(s)
    s = Sigmoid(name=f"{name}_gate")(s)
    s = Reshape((channels, 1, 1), name=f"{name}_reshape")(s)
    return Multiply(name=f"{name}_scale")([x, s])


def _head(x, features: int, num_classes: int, dropout: float, act: str):
    x = _conv_bn(x, features, 1, 1, act, "head")
    x = GlobalAvgPool2D(name="pool")(x)
    if dropout > 0:
        x = Dropout(dropout, name="dropout")(x)
    return Dense(num_classes, name="classifier")(x)


def mobilenet_v2(input_shape=(3, 32, 32), num_classes: int = 10,
                 width_mult: float = 1.0, depth_mult: float = 1.0,
                 dropout: float = 0.2, dtype="float32") -> Model:
    """MobileNetV2 (Sandler et al., 2018) for small images: inverted residual
    blocks of a 1x1 expansion, a 3x3 depthwise convolution and a linear 1x1
    projection, with ReLU6 and batch norm.

    Parameters
    ----------
    input_shape : (channels, height, width)
        At least 8x8 (three stride-2 stages); the stem keeps the resolution.
    num_classes : int
    width_mult : float
        Channels of every layer scaled (rounded to multiples of 8), the paper's
        width multiplier; the last 1x1 layer keeps at least 1280 channels only
        for ``width_mult >= 1``, as in the paper.
    depth_mult : float
        Blocks per stage scaled (rounded up).
    dropout : float
        Before the classifier.
    dtype : "float32" or "float64"

    Shape: input (N, *input_shape) -> logits (N, num_classes).
    """
    name = "mobilenet_v2"
    c, h, w = _check_shape(name, input_shape, 8)
    num_classes = _num_classes(name, num_classes)
    width_mult = _check_mult(name, "width_mult", width_mult)
    depth_mult = _check_mult(name, "depth_mult", depth_mult)
    x = Input((c, h, w), name="image")
    y = _conv_bn(x, _divisible(32 * width_mult), 3, 1, "relu6", "stem")
    for stage, (t, channels, blocks, stride) in enumerate(MOBILENET_V2_STAGES):
        out = _divisible(channels * width_mult)
        for block in range(math.ceil(blocks * depth_mult)):
            y = _inverted_residual(y, out, stride if block == 0 else 1, t, 3, "relu6",
                                   f"stage{stage + 1}_block{block + 1}")
    features = _divisible(1280 * max(1.0, width_mult))
    y = _head(y, features, num_classes, dropout, "relu6")
    return Model(x, y, name=name, dtype=dtype)


# ------------------------------------------------------------------ EfficientNet-lite

#: (expansion, kernel, first stride, channels, blocks) of EfficientNet-B0 (Tan &
#: Le, 2019, table 1); the first two strides are 1 here (32x32 input).
EFFICIENTNET_B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 1, 24, 2), (6, 5, 2, 40, 2),
                          (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
                          (6, 3, 1, 320, 1))


def efficientnet_lite0(input_shape=(3, 32, 32), num_classes: int = 10,
                       width_mult: float = 1.0, depth_mult: float = 1.0,
                       activation: str = "relu6", se_ratio: float = 0.0,
                       dropout: float = 0.2, dtype="float32") -> Model:
    """EfficientNet-lite0 (the EfficientNet-B0 plan as TensorFlow's "lite" models
    have it: ReLU6, no squeeze-and-excitation, stem and head not scaled) for small
    images; ``activation="silu"`` and ``se_ratio=0.25`` give B0's blocks.

    Parameters
    ----------
    input_shape : (channels, height, width)
        At least 8x8.
    num_classes : int
    width_mult, depth_mult : float
        Channels (rounded to multiples of 8) and blocks per stage (rounded up).
    activation : str
        Any name Conv2D's ``activation`` takes ("relu6", "silu", ...).
    se_ratio : float
        Squeeze-and-excitation width as a fraction of a block's input channels;
        0 for none.
    dropout : float
    dtype : "float32" or "float64"

    Shape: input (N, *input_shape) -> logits (N, num_classes).
    """
    name = "efficientnet_lite0"
    c, h, w = _check_shape(name, input_shape, 8)
    num_classes = _num_classes(name, num_classes)
    width_mult = _check_mult(name, "width_mult", width_mult)
    depth_mult = _check_mult(name, "depth_mult", depth_mult)
    activation_layer(name, activation)
    if isinstance(se_ratio, bool) or not isinstance(se_ratio, int | float) \
            or not 0 <= se_ratio <= 1:
        raise ValueError(f"{name}: se_ratio must be in [0, 1], got {se_ratio!r}.")
    x = Input((c, h, w), name="image")
    y = _conv_bn(x, 32, 3, 1, activation, "stem")
    for stage, (t, k, stride, channels, blocks) in enumerate(EFFICIENTNET_B0_STAGES):
        out = _divisible(channels * width_mult)
        for block in range(math.ceil(blocks * depth_mult)):
            y = _inverted_residual(y, out, stride if block == 0 else 1, t, k,
                                   activation, f"stage{stage + 1}_block{block + 1}",
                                   se_ratio)
    y = _head(y, 1280, num_classes, dropout, activation)
    return Model(x, y, name=name, dtype=dtype)


# ------------------------------------------------------------------------- ConvNeXt


def _convnext_block(x, layer_scale: float, name: str):
    """7x7 depthwise, channel LayerNorm, 1x1 to 4x, GELU, 1x1 back, layer scale,
    plus the input (Liu et al., 2022; stochastic depth left out)."""
    channels = x.shape[0]
    h = DepthwiseConv2D(7, padding=3, name=f"{name}_dw")(x)
    h = LayerNorm2D(name=f"{name}_norm")(h)
    h = Conv2D(4 * channels, 1, name=f"{name}_pw1")(h)
    h = GELU(name=f"{name}_gelu")(h)
    h = Conv2D(channels, 1, name=f"{name}_pw2")(h)
    if layer_scale > 0:
        h = Scale(layer_scale, name=f"{name}_scale")(h)
    return Add(name=f"{name}_add")([x, h])


def convnext(input_shape=(3, 32, 32), num_classes: int = 10,
             dims=(32, 64, 128, 256), depths=(2, 2, 2, 2),
             layer_scale: float = 1e-6, dtype="float32") -> Model:
    """A small ConvNeXt (Liu et al., 2022) for small images: a 2x2 stride-2
    "patchify" stem (4x4 stride 4 in the paper, for 224x224), stages of ConvNeXt
    blocks separated by a channel LayerNorm and a 2x2 stride-2 convolution, and a
    LayerNorm before the classifier.

    Parameters
    ----------
    input_shape : (channels, height, width)
        At least 2 * 2**(stages - 1) pixels a side (16 for four stages).
    num_classes : int
    dims : sequence of int
        Channels of each stage (ConvNeXt-T: 96, 192, 384, 768).
    depths : sequence of int
        Blocks of each stage (ConvNeXt-T: 3, 3, 9, 3); as many as ``dims``.
    layer_scale : float
        Initial value of each block's learnable per-channel scale; 0 for none.
    dtype : "float32" or "float64"

    Shape: input (N, *input_shape) -> logits (N, num_classes).
    """
    name = "convnext"
    dims, depths = tuple(dims), tuple(depths)
    if not dims or len(dims) != len(depths) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0
            for v in dims + depths):
        raise ValueError(f"{name}: dims and depths must be sequences of positive ints "
                         f"of the same length, got {dims!r} and {depths!r}.")
    c, h, w = _check_shape(name, input_shape, 2 ** len(dims))
    num_classes = _num_classes(name, num_classes)
    if isinstance(layer_scale, bool) or not isinstance(layer_scale, int | float) \
            or not math.isfinite(layer_scale) or layer_scale < 0:
        raise ValueError(f"{name}: layer_scale must be a number >= 0, got "
                         f"{layer_scale!r}.")
    x = Input((c, h, w), name="image")
    y = Conv2D(dims[0], 2, stride=2, name="stem_conv")(x)
    y = LayerNorm2D(name="stem_norm")(y)
    for stage, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
        if stage > 0:
            y = LayerNorm2D(name=f"down{stage}_norm")(y)
            y = Conv2D(dim, 2, stride=2, name=f"down{stage}_conv")(y)
        for block in range(depth):
            y = _convnext_block(y, float(layer_scale),
                                f"stage{stage + 1}_block{block + 1}")
    y = GlobalAvgPool2D(name="pool")(y)
    y = LayerNorm(dims[-1], eps=1e-6, name="head_norm")(y)
    y = Dense(num_classes, name="classifier")(y)
    return Model(x, y, name=name, dtype=dtype)
