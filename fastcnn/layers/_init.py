"""Initial weights and biases of the layers with a weight (Dense, Conv2D), zero
widths included."""

from __future__ import annotations

import numpy as np

from .. import initializers


def initial_weight(initializer: str, shape: tuple[int, ...], rng: np.random.Generator,
                   dtype) -> np.ndarray:
    """A weight of ``shape`` drawn by the named initialiser; zeros (an empty array)
    where a size is 0, since the initialisers divide by the fans and PyTorch's
    initialisation of an empty tensor is a no-op.

    Shape: shape -> array of that shape.
    """
    if 0 in shape:
        return np.zeros(shape, dtype=dtype)
    return initializers.get(initializer)(shape, rng, dtype)


def initial_bias(initializer: str, weight_shape: tuple[int, ...],
                 rng: np.random.Generator, dtype) -> np.ndarray:
    """The bias that goes with a weight of ``weight_shape``: PyTorch's
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for "torch", zeros for any other
    initialiser (as in Keras) and for fan_in 0 (PyTorch's bound is 0 there).

    Shape: weight_shape (out, in, ...) -> (out,).
    """
    fan_in, _ = initializers.fan_in_and_fan_out(weight_shape)
    if initializer != "torch" or fan_in == 0:
        return np.zeros(weight_shape[0], dtype=dtype)
    return initializers.torch_bias((weight_shape[0],), fan_in, rng, dtype)
