"""Validated ops on NumPy arrays, with torch.nn.functional's argument meanings.

Every op has a ``*_backward`` twin that returns the gradients of its inputs for an
upstream gradient ``dy``. This module validates; the kernels behind it do not.

Each op checks its arguments once and then calls a trusted inner path in its module
(``conv2d_trusted``, ``max_pool2d_trusted``, ``linear_trusted``,
``elementwise_trusted``, ...), which checks nothing and asks
:func:`fastcnn.backend.device_of` once where to run. The layers call the trusted
paths directly with what they validated at build (their geometry included); those
are not part of the public API.
"""

from .activation import (
    elu,
    elu_backward,
    gelu,
    gelu_backward,
    hardsigmoid,
    hardsigmoid_backward,
    hardswish,
    hardswish_backward,
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    log_softmax_backward,
    mish,
    mish_backward,
    relu,
    relu6,
    relu6_backward,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    silu,
    silu_backward,
    softmax,
    softmax_backward,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)
from .adaptive_pool import adaptive_avg_pool2d, adaptive_avg_pool2d_backward
from .conv import conv2d, conv2d_backward
from .conv_transpose import conv_transpose2d, conv_transpose2d_backward
from .dropout import dropout, dropout2d, dropout2d_backward, dropout_backward
from .layer_norm import (
    group_norm,
    group_norm_backward,
    layer_norm,
    layer_norm2d,
    layer_norm2d_backward,
    layer_norm_backward,
)
from .linear import linear, linear_backward
from .loss import (
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_with_grad,
    mse_loss,
    mse_loss_backward,
)
from .merge import (
    add,
    concatenate,
    concatenate_backward,
    multiply,
    multiply_backward,
)
from .norm import batch_norm, batch_norm_backward
from .pad import pad, pad_backward
from .pool import (
    avg_pool2d,
    avg_pool2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)
from .scale import channel_scale, channel_scale_backward
from .unpool import max_unpool2d, max_unpool2d_backward

__all__ = [
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "add",
    "concatenate",
    "concatenate_backward",
    "multiply",
    "multiply_backward",
    "pad",
    "pad_backward",
    "channel_scale",
    "channel_scale_backward",
    "linear",
    "linear_backward",
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "gelu",
    "gelu_backward",
    "silu",
    "silu_backward",
    "elu",
    "elu_backward",
    "softplus",
    "softplus_backward",
    "hardswish",
    "hardswish_backward",
    "hardsigmoid",
    "hardsigmoid_backward",
    "relu6",
    "relu6_backward",
    "mish",
    "mish_backward",
    "softmax",
    "softmax_backward",
    "log_softmax",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
    "mse_loss",
    "mse_loss_backward",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
    "dropout",
    "dropout_backward",
    "dropout2d",
    "dropout2d_backward",
    "batch_norm",
    "batch_norm_backward",
    "layer_norm",
    "layer_norm_backward",
    "group_norm",
    "group_norm_backward",
    "layer_norm2d",
    "layer_norm2d_backward",
    "conv2d",
    "conv2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
]
