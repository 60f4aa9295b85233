"""Depthwise and depthwise-separable convolutions (Keras's ``DepthwiseConv2D`` and
``SeparableConv2D``), with weights in PyTorch's grouped layout."""

from __future__ import annotations

from typing import Any

from ..functional import _validate as v
from ..functional.conv import conv_geometry
from .base import Layer, canonical_pair, keras_alias
from .conv import Conv2D


class DepthwiseConv2D(Conv2D):
    """A depthwise convolution: each input channel convolved with
    ``depth_multiplier`` filters of its own (``groups`` = the input channels,
    inferred at build).

    Parameters
    ----------
    kernel_size : int or (int, int)
    depth_multiplier : int
        Filters per input channel; the output has ``C * depth_multiplier``
        channels, channel ``c * depth_multiplier + m`` from input channel ``c``.
    stride, dilation : int or (int, int)
    padding : int, (int, int), "valid" or "same"
        As :class:`Conv2D`.
    bias : bool
    kernel_initializer : str
    name : str, optional
    activation : str, optional
        As :class:`Conv2D`.

    ``params``: "weight" ``(C * depth_multiplier, 1, KH, KW)`` and "bias"
    ``(C * depth_multiplier,)``: ``torch.nn.Conv2d(C, C * depth_multiplier,
    kernel_size, groups=C)``'s state dict.

    Shape: (N, C, H, W) -> (N, C * depth_multiplier, OH, OW), OH as
    :class:`Conv2D`.
    """

    def __init__(self, kernel_size=None, depth_multiplier: int = 1, stride=1,
                 padding=0, dilation=1, bias: bool = True,
                 kernel_initializer: str = "torch", name: str | None = None, *,
                 activation: str | None = None) -> None:
        super().__init__(0, kernel_size, stride, padding, dilation, 1, bias,
                         kernel_initializer, name, activation=activation)
        self.depth_multiplier = v.positive_int(self._op, "depth_multiplier",
                                               depth_multiplier)

    def _config(self) -> dict[str, Any]:
        config = super()._config()
        del config["out_channels"], config["groups"]
        return {"kernel_size": config.pop("kernel_size"),
                "depth_multiplier": self.depth_multiplier, **config}

    def _weight_shape(self, in_channels: int) -> tuple[int, int, int, int]:
        return (in_channels * self.depth_multiplier, 1, *self.kernel_size)

    def _geometry(self, input_shape):
        c = int(input_shape[0])
        return conv_geometry(self._op, (1, *input_shape), self._weight_shape(c),
                             self.stride, self.padding, self.dilation, max(c, 1))

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        input_shape = self._check_shape(input_shape, ndim=3)
        return (input_shape[0] * self.depth_multiplier,
                *self._geometry(input_shape).out_hw)

    def _build(self, input_shape, dtype, rng) -> None:
        self.groups = max(int(input_shape[0]), 1)
        self.out_channels = int(input_shape[0]) * self.depth_multiplier
        super()._build(input_shape, dtype, rng)


class SeparableConv2D(Layer):
    """A depthwise convolution followed by a 1x1 convolution that mixes the
    channels (Keras's ``SeparableConv2D``): ``k*k*C*m + C*m*filters`` weights
    where a full convolution has ``k*k*C*filters``.

    Parameters
    ----------
    out_channels : int
        Output channels of the pointwise step; also accepted as ``filters``.
    kernel_size : int or (int, int)
    depth_multiplier : int
        Depthwise filters per input channel.
    stride, padding, dilation :
        Of the depthwise step, as :class:`Conv2D`.
    bias : bool
        A bias on the output (after the pointwise step; the depthwise step has
        none, as in Keras).
    kernel_initializer : str
    name : str, optional
    activation : str, optional
        Applied to the output, as :class:`Conv2D`.

    ``params``: "depthwise_weight" ``(C * m, 1, KH, KW)``, "pointwise_weight"
    ``(out_channels, C * m, 1, 1)`` and "bias" ``(out_channels,)``: in PyTorch,
    ``Conv2d(C, C*m, k, groups=C, bias=False)`` then ``Conv2d(C*m, out_channels, 1)``.

    Shape: (N, C, H, W) -> (N, out_channels, OH, OW), OH as :class:`Conv2D`.
    """

    connectivity = "window"

    def __init__(self, out_channels: int | None = None, kernel_size=None,
                 depth_multiplier: int = 1, stride=1, padding=0, dilation=1,
                 bias: bool = True, kernel_initializer: str = "torch",
                 name: str | None = None, *, filters: int | None = None,
                 activation: str | None = None) -> None:
        super().__init__(name=name)
        op = self._op
        out_channels = keras_alias(op, "out_channels", out_channels, "filters", filters)
        self.out_channels = v.non_negative_int(op, "out_channels", out_channels)
        self._depthwise = DepthwiseConv2D(kernel_size, depth_multiplier, stride,
                                          padding, dilation, False,
                                          kernel_initializer, name=f"{self.name}_dw")
        self._pointwise = Conv2D(self.out_channels, 1, bias=bias,
                                 kernel_initializer=kernel_initializer,
                                 name=f"{self.name}_pw", activation=activation)
        self.kernel_size = self._depthwise.kernel_size
        self.depth_multiplier = self._depthwise.depth_multiplier
        self.stride = self._depthwise.stride
        self.padding = self._depthwise.padding
        self.dilation = self._depthwise.dilation
        self.use_bias = self._pointwise.use_bias
        self.kernel_initializer = kernel_initializer
        self.activation = self._pointwise.activation
        self._act = self._pointwise._act

    def _config(self) -> dict[str, Any]:
        padding = self.padding
        return {
            "out_channels": self.out_channels,
            "kernel_size": canonical_pair(self.kernel_size),
            "depth_multiplier": self.depth_multiplier,
            "stride": canonical_pair(self.stride),
            "padding": padding if isinstance(padding, str) else canonical_pair(padding),
            "dilation": canonical_pair(self.dilation),
            "bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            **({} if self.activation is None else {"activation": self.activation}),
        }

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        mid = self._depthwise.compute_output_shape(input_shape)
        return self._pointwise.compute_output_shape(mid)

    def window(self, input_shape=None):
        return self._depthwise.window(input_shape)

    def state_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        mid = self._depthwise.compute_output_shape(input_shape)
        shapes = {"depthwise_weight": self._depthwise.state_shapes(input_shape)[
            "weight"]}
        for key, shape in self._pointwise.state_shapes(mid).items():
            shapes["pointwise_weight" if key == "weight" else key] = shape
        return shapes

    def _build(self, input_shape, dtype, rng) -> None:
        dw, pw = self._depthwise, self._pointwise
        dw.build(input_shape, dtype, rng)
        pw.build(dw.output_shape, dtype, rng)
        self.params["depthwise_weight"] = dw.params["weight"]
        self.params["pointwise_weight"] = pw.params["weight"]
        if self.use_bias:
            self.params["bias"] = pw.params["bias"]

    def _sync(self) -> None:
        """Hand this layer's parameters to the two inner convolutions (each checks
        them against what it was built with, as any Conv2D does)."""
        self._depthwise.params["weight"] = self.params["depthwise_weight"]
        self._pointwise.params["weight"] = self.params["pointwise_weight"]
        if self.use_bias:
            self._pointwise.params["bias"] = self.params["bias"]

    def _forward(self, x, training):
        self._sync()
        self._cache = x  # the inner layers keep what their backward needs
        mid = self._depthwise._forward(x, training)
        return self._pointwise._forward(mid, training)

    def _backward(self, dy, input_grad=True):
        self._sync()
        dmid = self._pointwise._backward(dy)
        self._set_grad("pointwise_weight", self._pointwise.grads["weight"])
        if self.use_bias:
            self._set_grad("bias", self._pointwise.grads["bias"])
        dx = self._depthwise._backward(dmid, input_grad)
        self._set_grad("depthwise_weight", self._depthwise.grads["weight"])
        return dx

    def _backward_params(self, dy):
        self._backward(dy, input_grad=False)

