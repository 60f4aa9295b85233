"""Layers: the building blocks of :class:`fastcnn.Sequential`.

Every class follows the contract of :class:`fastcnn.layers.Layer`. :data:`LAYERS` maps
each class name to its class; :func:`get` is the only way deserialisation finds a
layer type (never an import by path).
"""

from __future__ import annotations

from .. import _registry
from .activation import (
    ELU,
    GELU,
    Hardsigmoid,
    Hardswish,
    LeakyReLU,
    Mish,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from .base import Layer, Window
from .conv import Conv2D
from .conv_transpose import Conv2DTranspose, UpSampling2D
from .dense import Dense
from .depthwise import DepthwiseConv2D, SeparableConv2D
from .dropout import Dropout, SpatialDropout2D
from .layer_norm import GroupNorm, LayerNorm, LayerNorm2D
from .merge import Add, Concatenate, Merge, Multiply
from .norm import BatchNorm1D, BatchNorm2D
from .padding import ZeroPadding2D
from .pool import AdaptiveAvgPool2D, AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .reshape import Flatten, Reshape
from .scale import Scale

LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (
        Conv2D,
        DepthwiseConv2D,
        SeparableConv2D,
        MaxPool2D,
        AvgPool2D,
        GlobalAvgPool2D,
        AdaptiveAvgPool2D,
        Dense,
        Flatten,
        Reshape,
        ReLU,
        LeakyReLU,
        Sigmoid,
        Tanh,
        Softmax,
        GELU,
        SiLU,
        ELU,
        Softplus,
        Hardswish,
        Hardsigmoid,
        ReLU6,
        Mish,
        Dropout,
        SpatialDropout2D,
        BatchNorm2D,
        BatchNorm1D,
        LayerNorm,
        GroupNorm,
        LayerNorm2D,
        Add,
        Concatenate,
        Multiply,
        ZeroPadding2D,
        Scale,
        Conv2DTranspose,
        UpSampling2D,
    )
}


#: The layer types fastcnn itself defines: :func:`register` never replaces these.
BUILTIN_LAYERS = frozenset(LAYERS)


def register(cls: type[Layer]) -> type[Layer]:
    """Make a custom :class:`Layer` subclass known by its class name, so that
    ``load_model`` and ``Sequential.from_config`` rebuild it (they look layer types
    up here only, never import them by name). Usable as a decorator::

        @fastcnn.layers.register
        class Gain(fastcnn.layers.Layer):
            ...

    Registering a class again under the same name (a notebook cell run twice)
    replaces the old one; a built-in layer's name cannot be taken.

    Raises
    ------
    TypeError
        ``cls`` is not a subclass of :class:`Layer`.
    ValueError
        Its name is that of a built-in layer.

    Shape: no arrays.
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)) or cls is Layer:
        raise TypeError(f"fastcnn.layers.register: expects a subclass of "
                        f"fastcnn.layers.Layer, got {cls!r:.200}.")
    name = cls.__name__
    if name in BUILTIN_LAYERS and LAYERS[name] is not cls:
        raise ValueError(f"fastcnn.layers.register: {name!r} is a built-in layer "
                         f"type; give the custom layer another class name.")
    LAYERS[name] = cls
    return cls


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


__all__ = ["BUILTIN_LAYERS", "LAYERS", "Layer", "Window", "from_config", "get",
           "Merge", "register", *LAYERS]
