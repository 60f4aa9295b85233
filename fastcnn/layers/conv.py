"""Conv2D: a learned 2-D convolution (``torch.nn.Conv2d``'s meaning and layout)."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from .. import initializers
from ..functional import _validate as v
from ..functional.conv import (
    conv2d_backward_trusted,
    conv2d_runner,
    conv2d_trusted,
    conv_geometry,
    same_padding,
)
from ._init import initial_bias, initial_weight
from .activation import ClampingKernel, Epilogue
from .base import Layer, Window, canonical_pair, keras_alias


class Conv2D(ClampingKernel, Layer):
    """2-D convolution over ``(C, H, W)`` samples; the input channels are inferred at
    build.

    Parameters
    ----------
    out_channels : int
        Number of filters; also accepted as ``filters`` (Keras's name).
    kernel_size : int or (int, int)
    stride, dilation : int or (int, int)
    padding : int, (int, int), "valid" or "same"
        "same" gives ``ceil(in / stride)`` outputs, padding the odd pixel at the
        bottom/right (with stride 1 that is PyTorch's ``dilation * (k - 1)`` in
        total; PyTorch refuses a larger stride, Keras pads as here).
    groups : int
        Must divide ``out_channels`` and the input channels.
    bias : bool
    kernel_initializer : str
        A name from :data:`fastcnn.initializers.INITIALIZERS`. "torch" (default) gives
        PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias; with any
        other the bias starts at zero, as in Keras.
    name : str, optional
    activation : str, optional
        Applied to the output (Keras's argument): "relu", "sigmoid", "tanh",
        "gelu", "silu" (or "swish"), "elu", "softplus", "hard_swish" (or
        "hardswish"), "hard_sigmoid" (or "hardsigmoid"), "relu6" or "mish", each
        with its defaults (see ``fastcnn.layers.activation.ACTIVATIONS``); None or
        "linear": none.

    ``params``: "weight" ``(out_channels, C/groups, KH, KW)`` and "bias"
    ``(out_channels,)``.

    Shape: (N, C, H, W) -> (N, out_channels, OH, OW),
    OH = (H + pad_top + pad_bottom - dilation*(KH-1) - 1) // stride + 1.
    """

    connectivity = "window"

    def __init__(self, out_channels: int | None = None, kernel_size=None, stride=1,
                 padding=0, dilation=1, groups: int = 1, bias: bool = True,
                 kernel_initializer: str = "torch", name: str | None = None, *,
                 filters: int | None = None, activation: str | None = None) -> None:
        super().__init__(name=name)
        op = self._op
        out_channels = keras_alias(op, "out_channels", out_channels, "filters", filters)
        if kernel_size is None:
            raise TypeError(f"{op}: missing kernel_size.")
        self.activation = None if activation == "linear" else activation
        self._epilogue = Epilogue(op, activation)
        self._act = self._epilogue.layer
        # 0 is allowed, as in torch.nn.Conv2d: an empty output.
        self.out_channels = v.non_negative_int(op, "out_channels", out_channels)
        self.kernel_size = v.pair(op, "kernel_size", kernel_size, minimum=1)
        self.stride = v.pair(op, "stride", stride, minimum=1)
        self.dilation = v.pair(op, "dilation", dilation, minimum=1)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(
                    f"{op}: padding must be an int, a pair of ints, 'valid' or 'same', "
                    f"got {padding!r}."
                )
            self.padding: str | tuple[int, int] = padding
        else:
            self.padding = v.pair(op, "padding", padding, minimum=0)
        self.groups = v.positive_int(op, "groups", groups)
        if self.out_channels % self.groups:
            raise ValueError(
                f"{op}: groups={self.groups} does not divide out_channels="
                f"{self.out_channels}."
            )
        self.use_bias = v.boolean(op, "bias", bias)
        initializers.get(kernel_initializer)
        self.kernel_initializer = kernel_initializer
        # The geometry for the built input shape, so forward and backward need not
        # re-validate; None where the op must see the input (an empty height or
        # width, which conv2d refuses at call time).
        self._geo = None

    def _config(self) -> dict[str, Any]:
        padding = self.padding
        return {
            "out_channels": self.out_channels,
            "kernel_size": canonical_pair(self.kernel_size),
            "stride": canonical_pair(self.stride),
            "padding": padding if isinstance(padding, str) else canonical_pair(padding),
            "dilation": canonical_pair(self.dilation),
            "groups": self.groups,
            "bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            **({} if self.activation is None else {"activation": self.activation}),
        }

    def _weight_shape(self, in_channels: int) -> tuple[int, int, int, int]:
        return (self.out_channels, in_channels // self.groups, *self.kernel_size)

    def _geometry(self, input_shape):
        return conv_geometry(
            self._op, (1, *input_shape), self._weight_shape(input_shape[0]),
            self.stride, self.padding, self.dilation, self.groups,
        )

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        input_shape = self._check_shape(input_shape, ndim=3)
        return (self.out_channels, *self._geometry(input_shape).out_hw)

    def window(self, input_shape=None) -> Window:
        if self.padding == "valid":
            before = (0, 0)
        elif self.padding == "same":
            shape = input_shape if input_shape is not None else self.input_shape
            if self.stride != (1, 1) and shape is None:
                raise ValueError(
                    f"{self._op}: padding='same' with stride {self.stride} depends on "
                    f"the input size; build the layer or pass input_shape.")
            pad_h, pad_w = same_padding(self.kernel_size, self.dilation, self.stride,
                                        None if shape is None else tuple(shape)[-2:])
            before = (pad_h[0], pad_w[0])
        else:
            before = self.padding
        return Window(self.kernel_size, self.stride, before, self.dilation)

    def state_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        self.compute_output_shape(input_shape)
        weight = self._weight_shape(int(input_shape[0]))
        if self.use_bias:
            return {"weight": weight, "bias": (weight[0],)}
        return {"weight": weight}

    def _build(self, input_shape, dtype, rng) -> None:
        self._geo = self._geometry(input_shape) if min(input_shape[1:]) > 0 else None
        shape = self._weight_shape(input_shape[0])
        self.params["weight"] = initial_weight(self.kernel_initializer, shape, rng,
                                               dtype)
        if self.use_bias:
            self.params["bias"] = initial_bias(self.kernel_initializer, shape, rng,
                                               dtype)

    def _forward(self, x, training):
        self._cache = x
        weight, bias = self.params["weight"], self.params.get("bias")
        fused = self._geo is not None and self._params_as_built()
        if fused:
            y = conv2d_trusted(x, weight, bias, self._geo, self._clamp_for_kernel())
        else:
            y = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation,
                         self.groups)
        self.applied_next_clamp = fused and self.next_clamp is not None
        return self._epilogue.after_kernel(y, training, fused)

    def _inference_runner(self, x_shape, next_clamp=None):
        chosen = self._runner_clamp(next_clamp)
        if self._geo is None or chosen is None or not self._params_as_built():
            return None
        run = conv2d_runner(x_shape, self.params["weight"], self.params.get("bias"),
                            self._geo, chosen[0])
        return None if run is None else (run, chosen[1])

    def _backward(self, dy, input_grad=True):
        return self._backward_conv(self._epilogue.grad(dy), input_grad)

    def _backward_conv(self, dy, input_grad=True):
        weight = self.params["weight"]
        if self._geo is not None and self._params_as_built():
            dx, dweight, dbias = conv2d_backward_trusted(
                dy, self._cache, weight, self._geo, input_grad,
                out=self._grad_targets(dy)
            )
        else:
            dx, dweight, dbias = F.conv2d_backward(
                dy, self._cache, weight, self.stride, self.padding, self.dilation,
                self.groups, input_grad=input_grad,
            )
        self._set_grad("weight", dweight)
        if self.use_bias:
            self._set_grad("bias", dbias)
        return dx

    def _backward_params(self, dy):
        self._backward(dy, input_grad=False)

    def _backward_input(self, dy):
        dy = self._epilogue.grad(dy)
        if self._geo is not None and self._params_as_built():
            return conv2d_backward_trusted(dy, self._cache, self.params["weight"],
                                           self._geo, param_grads=False)[0]
        return self._backward_conv(dy)
