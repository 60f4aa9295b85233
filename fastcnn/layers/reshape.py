"""Flatten (one feature axis per sample, ``torch.nn.Flatten()``) and Reshape (any
per-sample shape), both in C order."""

from __future__ import annotations

import math

from .. import backend
from .._checks import is_int
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
        # The width spelled out: reshape(0, -1) is ambiguous for an empty batch.
        return _reshaped(x, (x.shape[0], math.prod(x.shape[1:])))

    def _inference_runner(self, x_shape, next_clamp=None):
        # A view: the plan's input is a layer's fresh output or the caller's x,
        # which no later layer writes into (predict copies a view it returns).
        features = math.prod(x_shape[1:])
        return (lambda x: x.reshape(x.shape[0], features)), False

    def _backward(self, dy):
        return _reshaped(dy, self._cache)


def _reshaped(array, shape):
    """``array`` in ``shape``. On the host a copy, so that no later in-place update
    (a loss scaling its gradient rows) can reach the caller's array; a CUDA device
    array is viewed, not copied: nothing updates a device activation in place, and
    a copy would be a launch of its own in every step."""
    dev = backend.device_of(array)
    if dev.name == "cuda":
        return array.reshape(shape)
    return dev.copy(dev.contiguous(array).reshape(shape))


class Reshape(Layer):
    """Give each sample the shape ``target_shape``, in C order (Keras's
    ``Reshape``; ``x.reshape(N, *target_shape)`` in PyTorch).

    Parameters
    ----------
    target_shape : tuple of int
        The per-sample shape (no batch axis); one entry may be -1, inferred from
        the others.
    name : str, optional

    Shape: (N, *input_shape) -> (N, *target_shape), same number of elements.
    """

    # Elements keep their C order but change position: for receptive-field maths
    # every output may read any input.
    connectivity = "global"

    def __init__(self, target_shape, name: str | None = None) -> None:
        super().__init__(name=name)
        op = self._op
        if not isinstance(target_shape, list | tuple) or not target_shape or any(
                not is_int(d) or (d < 1 and d != -1) for d in target_shape):
            raise ValueError(f"{op}: target_shape must be a non-empty tuple of "
                             f"positive ints (one may be -1), got "
                             f"{target_shape!r:.200}.")
        if sum(d == -1 for d in target_shape) > 1:
            raise ValueError(f"{op}: target_shape may hold -1 once, got "
                             f"{tuple(target_shape)}.")
        self.target_shape = tuple(int(d) for d in target_shape)

    def _config(self):
        return {"target_shape": list(self.target_shape)}

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        size = math.prod(self._check_shape(input_shape))
        known = math.prod(d for d in self.target_shape if d != -1)
        shape = self.target_shape
        if -1 in shape:
            if size % known:
                raise ValueError(
                    f"{self._op}: cannot reshape input_shape {tuple(input_shape)} "
                    f"({size} elements) to {shape}.")
            shape = tuple(size // known if d == -1 else d for d in shape)
        elif known != size:
            raise ValueError(
                f"{self._op}: cannot reshape input_shape {tuple(input_shape)} "
                f"({size} elements) to {shape} ({known} elements).")
        return shape

    def _forward(self, x, training):
        self._cache = x.shape
        shape = self.compute_output_shape(x.shape[1:])
        dev = backend.device_of(x)
        # A copy, as Flatten makes: no later in-place update reaches the caller.
        return dev.copy(dev.contiguous(x).reshape(x.shape[0], *shape))

    def _backward(self, dy):
        dev = backend.device_of(dy)
        return dev.copy(dev.contiguous(dy).reshape(self._cache))
