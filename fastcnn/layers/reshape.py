"""Flatten: one feature axis per sample (``torch.nn.Flatten()``, C order)."""

from __future__ import annotations

import math

import numpy as np

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
        return (math.prod(self._check_shape(input_shape)),)

    def _forward(self, x, training):
        self._cache = x.shape
        # A copy, so that no later in-place update can reach the caller's array.
        return np.array(x.reshape(x.shape[0], -1), order="C")

    def _backward(self, dy):
        return np.array(dy.reshape(self._cache), order="C")
