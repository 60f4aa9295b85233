"""Flatten: one feature axis per sample (``torch.nn.Flatten()``, C order)."""

from __future__ import annotations

import math

from .. import backend
from ..functional import _validate as v
from .base import Layer


class Flatten(Layer):
    """Flatten every per-sample axis into one, in C order (as ``torch.flatten(x,
    1)``), so a Dense after it sees PyTorch's feature order.

    Parameters
    ----------
    name : str, optional

    Shape: (N, d1, d2, ...) -> (N, d1*d2*...).
    """

    connectivity = "reshape"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        size = math.prod(self._check_shape(input_shape))
        if size > v.MAX_SIZE:
            raise ValueError(
                f"{self._op}: input_shape {tuple(input_shape)} flattens to {size} "
                f"features, more than 2**31 - 1."
            )
        return (size,)

    def _forward(self, x, training):
        self._cache = x.shape
        # A copy, so that no later in-place update can reach the caller's array
        # (made where the array lives: a device array stays on the device).
        # The width spelled out: reshape(0, -1) is ambiguous for an empty batch.
        width = math.prod(x.shape[1:])
        dev = backend.device_of(x)
        return dev.copy(dev.contiguous(x).reshape(x.shape[0], width))

    def _backward(self, dy):
        dev = backend.device_of(dy)
        return dev.copy(dev.contiguous(dy).reshape(self._cache))
