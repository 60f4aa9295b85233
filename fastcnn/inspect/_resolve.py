"""Turning what the inspect tools are given into a list of layers and an input shape.

Every tool takes a list of layers, a single layer, or any object with a ``.layers``
list (and optionally ``.input_shape``), such as :class:`fastcnn.Sequential`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..layers import Layer


def layers_of(obj) -> tuple[list[Layer], tuple[int, ...] | None]:
    """The layer list and the model input shape (if known) of whatever was given."""
    if isinstance(obj, Layer):
        return [obj], obj.input_shape
    if hasattr(obj, "layers"):
        layers = list(obj.layers)
        shape = getattr(obj, "input_shape", None)
    elif isinstance(obj, Sequence) and not isinstance(obj, str):
        layers, shape = list(obj), None
    else:
        raise TypeError(
            f"expected a Layer, a list of layers or a model with .layers, got "
            f"{type(obj).__name__}."
        )
    if not layers:
        raise ValueError("expected at least one layer, got an empty list.")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"layers[{i}] is not a Layer, got {type(layer).__name__}.")
    if shape is None:
        shape = layers[0].input_shape
    return layers, (tuple(shape) if shape is not None else None)


def model_input_shape(layers, given, model_shape) -> tuple[int, ...]:
    shape = given if given is not None else model_shape
    if shape is None:
        raise ValueError(
            "input_shape is unknown: the first layer is not built; pass input_shape "
            "(per sample, e.g. (1, 28, 28))."
        )
    return layers[0]._check_shape(shape)


def built_like(layer: Layer, input_shape, dtype) -> Layer:
    """``layer`` itself when built for ``input_shape``, else a built clone (for
    counting parameters without touching the caller's layer)."""
    if layer.built and layer.input_shape == tuple(input_shape):
        return layer
    clone = type(layer)(**layer.get_config())
    clone.trainable = layer.trainable
    clone.build(input_shape, dtype, np.random.default_rng(0))
    return clone
