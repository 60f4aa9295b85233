"""Symbolic tensors: what a graph model is written with, in Keras's functional style.

``x = fastcnn.Input((3, 32, 32))`` makes a tensor that holds no numbers, only a
per-sample shape; calling a layer on it (``h = Conv2D(16, 3)(x)``) records the call
and returns the layer's output tensor. :class:`fastcnn.Model` then walks these
records back from its output to its input to find the network.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._checks import is_int


class SymbolicTensor:
    """A placeholder for a batch flowing through a graph model.

    Attributes
    ----------
    shape : tuple of int
        The per-sample shape (without the batch axis).
    layer : Layer or None
        The layer whose output this is; None for an :func:`Input`.
    inputs : tuple of SymbolicTensor
        The tensors that layer was called on (empty for an input).
    name : str
    key : str
        The prefix of its layer's state-dict keys (the layer's name, or
        ``"<model>.<key>"`` for a layer of a model nested in another).

    Shape: no arrays.
    """

    def __init__(self, shape: tuple[int, ...], layer=None, inputs=(), name: str = "",
                 key: str = "") -> None:
        self.shape = tuple(shape)
        self.layer = layer
        self.inputs = tuple(inputs)
        self.name = name
        self.key = key

    def __repr__(self) -> str:
        made_by = "input" if self.layer is None else f"output of {self.layer.name!r}"
        return f"<SymbolicTensor shape=(None, {', '.join(map(str, self.shape))}) " \
               f"{made_by}>"


def Input(shape: Sequence[int], name: str = "input") -> SymbolicTensor:  # noqa: N802
    """The input of a graph model: a symbolic batch of per-sample ``shape``.

    Parameters
    ----------
    shape : sequence of int
        Per sample, without the batch axis, e.g. ``(3, 32, 32)``.
    name : str

    Shape: no arrays (a symbolic (N, *shape)).
    """
    if not isinstance(shape, list | tuple) or not shape or not all(
            is_int(s) and s > 0 for s in shape):
        raise TypeError(f"Input: shape must be a non-empty tuple of positive ints "
                        f"(per sample, without the batch axis), got {shape!r:.200}.")
    if not isinstance(name, str) or not name:
        raise TypeError(f"Input: name must be a non-empty str, got {name!r:.200}.")
    return SymbolicTensor(tuple(int(s) for s in shape), name=name)


def is_symbolic(value) -> bool:
    """Whether ``value`` is a symbolic tensor or a list/tuple holding one."""
    if isinstance(value, SymbolicTensor):
        return True
    return isinstance(value, list | tuple) and any(
        isinstance(item, SymbolicTensor) for item in value)


def connect(layer, inputs, key: str | None = None) -> SymbolicTensor:
    """Record ``layer`` called on the symbolic ``inputs`` (one tensor, or a list
    for a merge layer) and return its output tensor. The output shape comes from
    ``layer.compute_output_shape``, so a wrong shape fails here, when the network
    is written, not at the first batch."""
    many = isinstance(inputs, list | tuple)
    tensors = tuple(inputs) if many else (inputs,)
    for i, t in enumerate(tensors):
        if not isinstance(t, SymbolicTensor):
            raise TypeError(f"{layer._op}: called on a mix of symbolic tensors and "
                            f"{type(t).__name__} (input {i}); a graph is built from "
                            f"fastcnn.Input and the outputs of layers only.")
    if many != layer.takes_many:
        want = "a list of tensors" if layer.takes_many else "one tensor"
        raise TypeError(f"{layer._op}: takes {want}, got "
                        f"{'a list' if many else 'one tensor'}.")
    shapes = [t.shape for t in tensors]
    try:
        shape = layer.compute_output_shape(shapes if many else shapes[0])
    except (TypeError, ValueError) as error:
        raise type(error)(f"{error} (while connecting it to "
                          f"{', '.join(repr(t) for t in tensors)})") from None
    return SymbolicTensor(shape, layer=layer, inputs=tensors, name=layer.name,
                          key=layer.name if key is None else key)
