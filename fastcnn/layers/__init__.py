"""Layers: the building blocks of :class:`fastcnn.Sequential`.

Every class follows the contract of :class:`fastcnn.layers.Layer`. :data:`LAYERS` maps
each class name to its class; :func:`get` is the only way deserialisation finds a
layer type (never an import by path).
"""

from __future__ import annotations

from .. import _registry
from .activation import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer, Window
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .norm import BatchNorm1D, BatchNorm2D
from .pool import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .reshape import Flatten

LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (
        Conv2D,
        MaxPool2D,
        AvgPool2D,
        GlobalAvgPool2D,
        Dense,
        Flatten,
        ReLU,
        LeakyReLU,
        Sigmoid,
        Tanh,
        Softmax,
        Dropout,
        BatchNorm2D,
        BatchNorm1D,
    )
}


def get(name: str) -> type[Layer]:
    """The layer class registered as ``name`` (a class name such as "Conv2D").

    Raises
    ------
    ValueError
        ``name`` is not a registered layer type; the message lists the known ones.

    Shape: no arrays.
    """
    try:
        return LAYERS[name]
    except (KeyError, TypeError):
        known = ", ".join(LAYERS)
        raise ValueError(
            f"fastcnn.layers.get: unknown layer type {name!r}; known types: {known}."
        ) from None


def from_config(entry, label: str = "fastcnn.layers.from_config: the entry") -> Layer:
    """A new (unbuilt) layer from ``{"class_name": ..., "config": {...}}``, the form
    ``Sequential.get_config()`` writes (with ``"trainable": False`` for a frozen
    layer). The entry may come from an untrusted file: the
    type is looked up in :data:`LAYERS` only (never imported by name), and a bad
    entry or bad arguments give one ``ValueError`` whose message starts with
    ``label``.

    Raises
    ------
    ValueError
        ``entry`` is not such a dict, names an unknown type, or its arguments are
        unknown or invalid for that layer.

    Shape: no arrays.
    """
    layer = _registry.build(LAYERS, entry, label)
    trainable = entry.get("trainable", True)
    if not isinstance(trainable, bool):
        raise ValueError(f"{label} ({entry['class_name']}) has a 'trainable' that is "
                         f"not a bool: {trainable!r:.200}.")
    layer.trainable = trainable
    return layer


__all__ = ["LAYERS", "Layer", "Window", "from_config", "get", *LAYERS]
