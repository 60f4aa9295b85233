"""Scale: a learnable multiplier per channel, ConvNeXt's layer scale
(``gamma * x``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional import _validate as v
from ..functional import scale as F
from .base import Layer


class Scale(Layer):
    """Multiply every channel by a learnable ``weight[c]`` (ConvNeXt's layer scale,
    ``gamma[:, None, None] * x``; CaiT and timm's ``LayerScale``), initialised to
    ``init_value`` (ConvNeXt uses 1e-6).

    ``C`` is the first per-sample axis: ``(C, H, W)`` maps and ``(C,)`` feature
    vectors both work.

    Parameters
    ----------
    init_value : float
        The initial value of every entry of ``weight``.
    name : str, optional

    Shape: (N, C, *) -> (N, C, *); weight (C,).
    """

    def __init__(self, init_value: float = 1.0, name: str | None = None) -> None:
        super().__init__(name=name)
        self.init_value = v.real_number(self._op, "init_value", init_value)

    def _config(self) -> dict[str, Any]:
        return {"init_value": self.init_value}

    def state_shapes(self, input_shape):
        shape = self.compute_output_shape(input_shape)
        return {"weight": (shape[0],)}

    def _build(self, input_shape, dtype, rng) -> None:
        self.params["weight"] = np.full(input_shape[0], self.init_value, dtype=dtype)

    def _forward(self, x, training):
        self._cache = x
        weight = self.params["weight"]
        if self._params_as_built():
            return F.channel_scale_trusted(x, weight)
        return F.channel_scale(x, weight)

    def _backward(self, dy):
        weight = self.params["weight"]
        if self._params_as_built():
            dx, dweight = F.channel_scale_backward_trusted(dy, self._cache, weight)
        else:
            dx, dweight = F.channel_scale_backward(dy, self._cache, weight)
        self._set_grad("weight", dweight)
        return dx

    def _backward_input(self, dy):
        if self._params_as_built():
            return F.channel_scale_backward_trusted(dy, self._cache,
                                                    self.params["weight"],
                                                    param_grads=False)[0]
        return self._backward(dy)
