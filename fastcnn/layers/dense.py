"""Dense: a fully connected layer (``torch.nn.Linear``'s meaning and layout)."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from .. import initializers
from ..functional import _validate as v
from ..functional.linear import (
    linear_backward_trusted,
    linear_runner,
    linear_trusted,
)
from ._init import initial_bias, initial_weight
from .activation import ClampingKernel, Epilogue
from .base import Layer, keras_alias


class Dense(ClampingKernel, Layer):
    """``y = x @ weight.T + bias`` over ``(F,)`` samples; ``F`` is inferred at build.

    Parameters
    ----------
    out_features : int
        Also accepted as ``units`` (Keras's name).
    bias : bool
    kernel_initializer : str
        A name from :data:`fastcnn.initializers.INITIALIZERS`. "torch" (default) gives
        PyTorch's U(-1/sqrt(in), 1/sqrt(in)) for weight and bias; with any other the
        bias starts at zero, as in Keras.
    name : str, optional
    activation : str, optional
        Applied to the output (Keras's argument): "relu", "sigmoid", "tanh",
        "gelu", "silu" (or "swish"), "elu", "softplus", "hard_swish" (or
        "hardswish"), "hard_sigmoid" (or "hardsigmoid"), "relu6" or "mish", each
        with its defaults (see ``fastcnn.layers.activation.ACTIVATIONS``); None or
        "linear": none.

    ``params``: "weight" ``(out_features, F)`` and "bias" ``(out_features,)``.

    Shape: (N, F) -> (N, out_features). Put a Flatten before it for images.
    """

    connectivity = "global"

    def __init__(self, out_features: int | None = None, bias: bool = True,
                 kernel_initializer: str = "torch", name: str | None = None, *,
                 units: int | None = None, activation: str | None = None) -> None:
        super().__init__(name=name)
        out_features = keras_alias(self._op, "out_features", out_features, "units",
                                   units)
        # 0 is allowed, as in torch.nn.Linear: an empty output.
        self.out_features = v.non_negative_int(self._op, "out_features",
                                               out_features)
        self.activation = None if activation == "linear" else activation
        self._epilogue = Epilogue(self._op, activation)
        self._act = self._epilogue.layer
        self.use_bias = v.boolean(self._op, "bias", bias)
        initializers.get(kernel_initializer)
        self.kernel_initializer = kernel_initializer

    def _config(self) -> dict[str, Any]:
        config = {"out_features": self.out_features, "bias": self.use_bias,
                  "kernel_initializer": self.kernel_initializer}
        if self.activation is not None:
            config["activation"] = self.activation
        return config

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = self._check_shape(input_shape)
        if len(shape) != 1:
            raise ValueError(
                f"{self._op}: expects a 1-D per-sample input (features,), got "
                f"input_shape {shape}; put a Flatten() or GlobalAvgPool2D() before it."
            )
        return (self.out_features,)

    def state_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        shape = self.compute_output_shape(input_shape)
        weight = (self.out_features, int(input_shape[0]))
        if self.use_bias:
            return {"weight": weight, "bias": shape}
        return {"weight": weight}

    def _build(self, input_shape, dtype, rng) -> None:
        shape = (self.out_features, input_shape[0])
        self.params["weight"] = initial_weight(self.kernel_initializer, shape, rng,
                                               dtype)
        if self.use_bias:
            self.params["bias"] = initial_bias(self.kernel_initializer, shape, rng,
                                               dtype)

    def _forward(self, x, training):
        self._cache = x
        weight, bias = self.params["weight"], self.params.get("bias")
        fused = self._params_as_built()
        if fused:
            y = linear_trusted(x, weight, bias, self._clamp_for_kernel())
        else:
            y = F.linear(x, weight, bias)
        self.applied_next_clamp = fused and self.next_clamp is not None
        return self._epilogue.after_kernel(y, training, fused)

    def _inference_runner(self, x_shape, next_clamp=None):
        chosen = self._runner_clamp(next_clamp)
        if chosen is None or not self._params_as_built():
            return None
        run = linear_runner(x_shape, self.params["weight"], self.params.get("bias"),
                            chosen[0])
        return None if run is None else (run, chosen[1])

    def _backward(self, dy):
        return self._backward_affine(self._epilogue.grad(dy))

    def _backward_affine(self, dy):
        weight = self.params["weight"]
        if self._params_as_built():
            dx, dweight, dbias = linear_backward_trusted(
                dy, self._cache, weight, out=self._grad_targets(dy))
        else:
            dx, dweight, dbias = F.linear_backward(dy, self._cache, weight)
        self._set_grad("weight", dweight)
        if self.use_bias:
            self._set_grad("bias", dbias)
        return dx

    def _backward_input(self, dy):
        dy = self._epilogue.grad(dy)
        if self._params_as_built():
            return linear_backward_trusted(dy, self._cache, self.params["weight"],
                                           param_grads=False)[0]
        return self._backward_affine(dy)

