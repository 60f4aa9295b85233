"""A small model zoo: LeNet-5, a VGG-style CNN, CIFAR-style ResNets and (from
:mod:`fastcnn.modern_models`) MobileNetV2, EfficientNet-lite0 and ConvNeXt, for
any input shape and class count.

Each returns a model built for ``input_shape`` (:class:`fastcnn.Sequential`, or a
graph :class:`fastcnn.Model` for the ResNet); compile and fit it as usual.
"""

from __future__ import annotations

from ._zoo_args import _input_shape, _num_classes
from .graph import Input, Model
from .layers import (
    Add,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    MaxPool2D,
    ReLU,
)
from .model import Sequential
from .modern_models import convnext, efficientnet_lite0, mobilenet_v2


def lenet5(input_shape=(1, 28, 28), num_classes: int = 10,
           dtype="float32") -> Sequential:
    """LeNet-5 with ReLU and max pooling (LeCun et al., 1998, as usually taught).

    conv 6@5x5 (padded to keep the size) - pool 2 - conv 16@5x5 - pool 2 -
    dense 120 - dense 84 - dense ``num_classes``. On inputs too small for a valid
    second 5x5 convolution (e.g. the 8x8 digits), that convolution is padded to keep
    its size, so the same architecture trains on them.

    Shape: input (N, *input_shape) -> logits (N, num_classes).
    """
    c, h, w = _input_shape("lenet5", input_shape)
    num_classes = _num_classes("lenet5", num_classes)
    if min(h, w) < 4:
        raise ValueError(f"lenet5: the input must be at least 4x4, got {h}x{w}.")
    # A valid 5x5 convolution then a 2x2 pool need a 10x10 map after the first pool.
    second_padding = 0 if min(h, w) // 2 >= 10 else 2
    layers = [
        Conv2D(6, 5, padding=2), ReLU(), MaxPool2D(2),
        Conv2D(16, 5, padding=second_padding), ReLU(), MaxPool2D(2),
        Flatten(),
        Dense(120), ReLU(),
        Dense(84), ReLU(),
        Dense(num_classes),
    ]
    return Sequential(layers, input_shape=(c, h, w), dtype=dtype)


def simple_cnn(input_shape=(3, 32, 32), num_classes: int = 10, width: int = 32,
               dropout: float = 0.25, dtype="float32") -> Sequential:
    """A small VGG-style CNN for CIFAR-sized images.

    Two blocks of (conv 3x3 - batch norm - ReLU - conv 3x3 - ReLU - max pool 2), with
    ``width`` and ``2 * width`` channels, then global average pooling, dropout and a
    dense classifier. Global pooling makes it work on any input of at least 4x4.

    Shape: input (N, *input_shape) -> logits (N, num_classes).
    """
    c, h, w = _input_shape("simple_cnn", input_shape)
    num_classes = _num_classes("simple_cnn", num_classes)
    if min(h, w) < 4:
        raise ValueError(f"simple_cnn: the input must be at least 4x4, got {h}x{w}.")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"simple_cnn: width must be a positive int, got {width!r}.")
    layers = []
    for channels in (width, 2 * width):
        layers += [
            Conv2D(channels, 3, padding=1, bias=False), BatchNorm2D(), ReLU(),
            Conv2D(channels, 3, padding=1), ReLU(),
            MaxPool2D(2),
        ]
    layers += [GlobalAvgPool2D(), Dropout(dropout), Dense(num_classes)]
    return Sequential(layers, input_shape=(c, h, w), dtype=dtype)


def _basic_block(x, channels: int, stride: int, name: str):
    """conv3x3(stride) - BN - ReLU - conv3x3 - BN, plus the shortcut, then ReLU.
    The shortcut is the input itself, or a 1x1 convolution with the block's
    stride and a batch norm where the shape changes (He et al.'s option B)."""
    h = Conv2D(channels, 3, stride=stride, padding=1, bias=False,
               name=f"{name}_conv1")(x)
    h = BatchNorm2D(name=f"{name}_bn1")(h)
    h = ReLU(name=f"{name}_relu1")(h)
    h = Conv2D(channels, 3, padding=1, bias=False, name=f"{name}_conv2")(h)
    h = BatchNorm2D(name=f"{name}_bn2")(h)
    shortcut = x
    if stride != 1 or x.shape[0] != channels:
        shortcut = Conv2D(channels, 1, stride=stride, bias=False,
                          name=f"{name}_proj")(x)
        shortcut = BatchNorm2D(name=f"{name}_proj_bn")(shortcut)
    return ReLU(name=f"{name}_relu2")(Add(name=f"{name}_add")([h, shortcut]))


def resnet(depth: int = 20, input_shape=(3, 32, 32), num_classes: int = 10,
           width: int = 16, dtype="float32") -> Model:
    """A CIFAR-style residual network (He et al., 2016, section 4.2).

    conv 3x3 (``width`` channels) - BN - ReLU, then three stages of
    ``(depth - 2) / 6`` basic blocks with ``width``, ``2 * width`` and
    ``4 * width`` channels (the second and third stages start with stride 2),
    global average pooling and a dense classifier: ResNet-20 (0.27 M parameters
    at width 16), -32, -44, -56, -110. A block whose shape changes has a
    projection shortcut (1x1 convolution with stride, then batch norm); the others
    add their input unchanged. Layers are named ``stage<s>_block<b>_...``, so the
    state dict reads like the network.

    Parameters
    ----------
    depth : int
        6n + 2 for n >= 1 (8, 14, 20, 32, 44, 56, 110).
    input_shape : (channels, height, width)
        At least 4x4 (two stride-2 stages and global pooling).
    num_classes : int
    width : int
        Channels of the first stage.
    dtype : "float32" or "float64"

    Shape: input (N, *input_shape) -> logits (N, num_classes).
    """
    c, h, w = _input_shape("resnet", input_shape)
    num_classes = _num_classes("resnet", num_classes)
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 8 \
            or (depth - 2) % 6:
        raise ValueError(f"resnet: depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, "
                         f"44, 56, 110), got {depth!r}.")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"resnet: width must be a positive int, got {width!r}.")
    if min(h, w) < 4:
        raise ValueError(f"resnet: the input must be at least 4x4, got {h}x{w}.")
    blocks = (depth - 2) // 6
    x = Input((c, h, w), name="image")
    y = Conv2D(width, 3, padding=1, bias=False, name="stem_conv")(x)
    y = ReLU(name="stem_relu")(BatchNorm2D(name="stem_bn")(y))
    for stage in range(3):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            y = _basic_block(y, width * 2**stage, stride,
                             f"stage{stage + 1}_block{block + 1}")
    y = GlobalAvgPool2D(name="pool")(y)
    y = Dense(num_classes, name="fc")(y)
    return Model(x, y, name=f"resnet{depth}", dtype=dtype)


MODELS = {"lenet5": lenet5, "simple_cnn": simple_cnn, "resnet": resnet,
          "mobilenet_v2": mobilenet_v2, "efficientnet_lite0": efficientnet_lite0,
          "convnext": convnext}


def get(name: str):
    """The model builder registered as ``name``."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(
            f"fastcnn.models: unknown model {name!r}; known models: "
            f"{', '.join(MODELS)}."
        ) from None
