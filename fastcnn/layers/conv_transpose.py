"""Conv2DTranspose (``torch.nn.ConvTranspose2d``'s meaning and layout) and
UpSampling2D: the layers that make feature maps larger."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend, initializers
from .. import functional as F
from ..functional import _validate as v
from ..functional.conv_transpose import (
    conv_transpose2d_backward_trusted,
    conv_transpose2d_trusted,
    conv_transpose_geometry,
)
from ._init import initial_weight
from .activation import activation_layer
from .base import Layer, Window, canonical_pair, keras_alias


class Conv2DTranspose(Layer):
    """Transposed 2-D convolution: each input pixel spreads a learned kernel over
    the output, ``stride`` pixels apart (a learned upsampling).

    Parameters
    ----------
    out_channels : int
        Also accepted as ``filters`` (Keras's name).
    kernel_size : int or (int, int)
    stride, padding, output_padding, dilation : int or (int, int)
        As ``torch.nn.ConvTranspose2d``: ``padding`` is cut from both sides of the
        full output, ``output_padding`` (smaller than the stride) adds
        rows/columns at the bottom/right.
        ``padding="valid"`` is 0; "same" is refused (say the padding).
    groups : int
    bias : bool
    kernel_initializer : str
        As :class:`Conv2D`; "torch" gives PyTorch's ConvTranspose2d initialisation
        (its fan-in is ``out_channels / groups * KH * KW``).
    name : str, optional
    activation : str, optional
        As :class:`Conv2D`.

    ``params``: "weight" ``(C, out_channels/groups, KH, KW)`` and "bias"
    ``(out_channels,)``.

    Shape: (N, C, H, W) -> (N, out_channels, OH, OW),
    OH = (H - 1)*stride - 2*padding + dilation*(KH - 1) + output_padding + 1.
    """

    # Each output reads a window of inputs, but strides divide rather than
    # multiply: the receptive-field maths treats it on its own.
    connectivity = "transposed"

    def __init__(self, out_channels: int | None = None, kernel_size=None, stride=1,
                 padding=0, output_padding=0, dilation=1, groups: int = 1,
                 bias: bool = True, kernel_initializer: str = "torch",
                 name: str | None = None, *, filters: int | None = None,
                 activation: str | None = None) -> None:
        super().__init__(name=name)
        op = self._op
        out_channels = keras_alias(op, "out_channels", out_channels, "filters", filters)
        if kernel_size is None:
            raise TypeError(f"{op}: missing kernel_size.")
        self.activation = None if activation == "linear" else activation
        self._act = activation_layer(op, activation)
        self.out_channels = v.positive_int(op, "out_channels", out_channels)
        self.kernel_size = v.pair(op, "kernel_size", kernel_size, minimum=1)
        self.stride = v.pair(op, "stride", stride, minimum=1)
        self.dilation = v.pair(op, "dilation", dilation, minimum=1)
        if padding == "valid":
            padding = 0
        if isinstance(padding, str):
            raise ValueError(f"{op}: padding must be an int, a pair of ints or "
                             f"'valid', got {padding!r} (give the padding in pixels).")
        self.padding = v.pair(op, "padding", padding, minimum=0)
        self.output_padding = v.pair(op, "output_padding", output_padding, minimum=0)
        if any(extra >= s for extra, s in zip(self.output_padding, self.stride,
                                              strict=True)):
            raise ValueError(f"{op}: output_padding {self.output_padding} must be "
                             f"smaller than the stride {self.stride}.")
        self.groups = v.positive_int(op, "groups", groups)
        if self.out_channels % self.groups:
            raise ValueError(f"{op}: groups={self.groups} does not divide "
                             f"out_channels={self.out_channels}.")
        self.use_bias = v.boolean(op, "bias", bias)
        initializers.get(kernel_initializer)
        self.kernel_initializer = kernel_initializer
        self._geo = None

    def _config(self) -> dict[str, Any]:
        return {
            "out_channels": self.out_channels,
            "kernel_size": canonical_pair(self.kernel_size),
            "stride": canonical_pair(self.stride),
            "padding": canonical_pair(self.padding),
            "output_padding": canonical_pair(self.output_padding),
            "dilation": canonical_pair(self.dilation),
            "groups": self.groups,
            "bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            **({} if self.activation is None else {"activation": self.activation}),
        }

    def _weight_shape(self, in_channels: int) -> tuple[int, int, int, int]:
        return (in_channels, self.out_channels // self.groups, *self.kernel_size)

    def _geometry(self, input_shape):
        return conv_transpose_geometry(
            self._op, (1, *input_shape), self._weight_shape(input_shape[0]),
            self.stride, self.padding, self.output_padding, self.dilation,
            self.groups)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        input_shape = self._check_shape(input_shape, ndim=3)
        if min(input_shape[1:]) == 0:
            raise ValueError(f"{self._op}: the input has zero height or width "
                             f"({input_shape}).")
        return self._geometry(input_shape)[1][1:]

    def window(self, input_shape=None) -> Window:
        """The geometry of the convolution this layer transposes (output to
        input): output ``o`` reads input ``i`` where ``o = i*stride - padding +
        t*dilation`` for a tap ``t``."""
        return Window(self.kernel_size, self.stride, self.padding, self.dilation)

    def state_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        self.compute_output_shape(input_shape)
        weight = self._weight_shape(int(input_shape[0]))
        if self.use_bias:
            return {"weight": weight, "bias": (self.out_channels,)}
        return {"weight": weight}

    def _build(self, input_shape, dtype, rng) -> None:
        if input_shape[0] % self.groups:
            raise ValueError(f"{self._op}: groups={self.groups} does not divide the "
                             f"{input_shape[0]} input channels.")
        self._geo = self._geometry(input_shape)[0]
        shape = self._weight_shape(input_shape[0])
        self.params["weight"] = initial_weight(self.kernel_initializer, shape, rng,
                                               dtype)
        if self.use_bias:
            fan_in, _ = initializers.fan_in_and_fan_out(shape)
            if self.kernel_initializer == "torch" and fan_in:
                bias = initializers.torch_bias((self.out_channels,), fan_in, rng,
                                               dtype)
            else:
                bias = np.zeros(self.out_channels, dtype=dtype)
            self.params["bias"] = bias

    def _forward(self, x, training):
        self._cache = x
        weight, bias = self.params["weight"], self.params.get("bias")
        if self._params_as_built():
            y = conv_transpose2d_trusted(x, weight, bias, self._geo,
                                         (x.shape[0], *self.output_shape))
        else:  # parameters replaced by hand: the public op says what is wrong
            y = F.conv_transpose2d(x, weight, bias, self.stride, self.padding,
                                   self.output_padding, self.groups, self.dilation)
        return y if self._act is None else self._act.forward(y, training)

    def _backward(self, dy, input_grad=True, param_grads=True):
        if self._act is not None:
            dy = self._act.backward(dy)
        if not self._params_as_built():
            F.conv_transpose2d_backward(dy, self._cache, self.params["weight"],
                                        self.stride, self.padding,
                                        self.output_padding, self.groups,
                                        self.dilation)  # raises what is wrong
        dx, dweight, dbias = conv_transpose2d_backward_trusted(
            dy, self._cache, self.params["weight"], self._geo, input_grad,
            param_grads)
        if param_grads:
            self._set_grad("weight", dweight)
            if self.use_bias:
                self._set_grad("bias", dbias)
        return dx

    def _backward_params(self, dy):
        self._backward(dy, input_grad=False)

    def _backward_input(self, dy):
        return self._backward(dy, param_grads=False)


class UpSampling2D(Layer):
    """Nearest-neighbour upsampling: each pixel repeated ``size`` times down and
    across (``torch.nn.Upsample(scale_factor=size, mode="nearest")``, Keras's
    ``UpSampling2D``). Its backward sums each block of the gradient.

    Parameters
    ----------
    size : int or (int, int)
    name : str, optional

    Shape: (N, C, H, W) -> (N, C, H*size_h, W*size_w).
    """

    connectivity = "transposed"

    def __init__(self, size=2, name: str | None = None) -> None:
        super().__init__(name=name)
        self.size = v.pair(self._op, "size", size, minimum=1)

    def _config(self) -> dict[str, Any]:
        return {"size": canonical_pair(self.size)}

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = self._check_shape(input_shape, ndim=3)
        return (c, h * self.size[0], w * self.size[1])

    def window(self, input_shape=None) -> Window:
        """As :meth:`Conv2DTranspose.window`: kernel and stride ``size``."""
        return Window(self.size, self.size, (0, 0), (1, 1))

    # As a transposed convolution: one all-ones size x size kernel per channel
    # (groups = channels) and stride size writes each pixel into its block; its
    # backward is the block sum. So it runs wherever the convolution kernels do.

    def _ones(self, x):
        channels = x.shape[1]
        ones = np.ones((channels, 1, *self.size), dtype=x.dtype)
        geo, _ = conv_transpose_geometry(self._op, x.shape, ones.shape, self.size, 0,
                                         0, 1, channels)
        return backend.device_of(x).move_in(ones), geo

    def _forward(self, x, training):
        self._cache = x.shape
        if x.size == 0:
            return backend.device_of(x).zeros((x.shape[0], *self.output_shape),
                                              x.dtype)
        ones, geo = self._ones(x)
        return conv_transpose2d_trusted(x, ones, None, geo,
                                        (x.shape[0], *self.output_shape))

    def _backward(self, dy):
        dev = backend.device_of(dy)
        if dy.size == 0:
            return dev.zeros(self._cache, dy.dtype)
        x_like = dev.empty(self._cache, dy.dtype)
        ones, geo = self._ones(x_like)
        return conv_transpose2d_backward_trusted(dy, x_like, ones, geo,
                                                 param_grads=False)[0]
