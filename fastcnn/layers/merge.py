"""Layers that join several tensors of a graph model: ``Add`` (a residual
connection), ``Concatenate`` (Inception- and DenseNet-style branches) and
``Multiply`` (the gate of a squeeze-and-excitation block)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from .._checks import is_int
from ..functional import _validate as v
from ..functional.merge import (
    add_trusted,
    broadcast_shape,
    concatenate_backward_trusted,
    concatenate_trusted,
    multiply_backward_trusted,
    multiply_trusted,
)
from .base import Layer, _c_contiguous_input


class Merge(Layer):
    """Base of the layers called on a list of tensors (in a :class:`fastcnn.Model`).

    ``input_shape`` is the tuple of the inputs' per-sample shapes; ``forward``
    takes a list of batches and ``backward`` returns a list of gradients, one per
    input. Subclasses implement ``compute_output_shape`` (of the list),
    ``_forward`` (of the list) and ``_backward`` (returning the list).

    Shape: [(N, *s_1), (N, *s_2), ...] -> (N, *output_shape).
    """

    takes_many = True

    def _check_shape(self, input_shape, ndim=None):
        ok = isinstance(input_shape, list | tuple) and len(input_shape) >= 2 and all(
            isinstance(s, list | tuple) for s in input_shape)
        if not ok:
            raise TypeError(f"{self._op}: input_shape must be a list of at least two "
                            f"per-sample shapes (one per input), got "
                            f"{input_shape!r:.200}.")
        return tuple(super(Merge, self)._check_shape(s, ndim) for s in input_shape)

    def forward(self, xs, training: bool = False):
        """Join a list of batches; builds the layer from them on first use.

        Shape: [(N, *s_1), (N, *s_2), ...] -> (N, *output_shape).
        """
        if not isinstance(xs, list | tuple) or len(xs) < 2:
            raise TypeError(f"{self._op}: takes a list of at least two batches, got "
                            f"{type(xs).__name__}.")
        checked = []
        for i, x in enumerate(xs):
            x = v.float_array(self._op, f"x[{i}]", x)
            if x.ndim < 2:
                raise ValueError(f"{self._op}: x[{i}] must have a batch axis and at "
                                 f"least one more, got shape {x.shape}.")
            checked.append(x)
        for i, x in enumerate(checked[1:], start=1):
            v.same_dtype(self._op, "x[0]", checked[0], **{f"x[{i}]": x})
            if x.shape[0] != checked[0].shape[0]:
                raise ValueError(f"{self._op}: x[{i}] has {x.shape[0]} samples but "
                                 f"x[0] has {checked[0].shape[0]}.")
        if not isinstance(training, bool):
            raise TypeError(f"{self._op}: training must be a bool, got {training!r}.")
        shapes = tuple(x.shape[1:] for x in checked)
        if not self.built:
            self.build(shapes, checked[0].dtype)
        if shapes != self.input_shape:
            raise ValueError(f"{self._op}: the inputs have per-sample shapes "
                             f"{list(shapes)} but the layer was built for "
                             f"{list(self.input_shape)}.")
        backend.device_of(*checked)  # one device for all, or a clear error
        y = self._forward(checked, bool(training))
        self._dy_shape, self._dy_dtype = y.shape, y.dtype
        self._cache = True
        return y

    def backward(self, dy, input_grad: bool = True):
        """The gradient of every input, as a list (None with ``input_grad=False``:
        a merge layer has no parameters).

        Shape: dy (N, *output_shape) -> [dx_1 (N, *s_1), dx_2 (N, *s_2), ...].
        """
        if self._cache is None:
            raise RuntimeError(f"{self._op}: backward called before forward; run "
                               f"forward(xs) first.")
        if not (isinstance(dy, np.ndarray) or backend.is_device_array(dy)):
            raise TypeError(f"{self._op}: dy must be a numpy.ndarray or a CUDA device "
                            f"array, got {type(dy).__name__}.")
        if dy.shape != self._dy_shape or dy.dtype != self._dy_dtype:
            raise ValueError(f"{self._op}: dy must have the shape and dtype of the "
                             f"last forward output ({self._dy_shape}, "
                             f"{self._dy_dtype}), got {dy.shape}, {dy.dtype}.")
        if not input_grad:
            return None
        return self._backward(_c_contiguous_input(self._op, "dy", dy))


class Add(Merge):
    """The elementwise sum of its inputs, which must have one shape: the join of a
    residual connection (``Add()([h, x])``). Each input's gradient is ``dy``.

    Parameters
    ----------
    name : str, optional

    Shape: [(N, *s), (N, *s), ...] -> (N, *s).
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)

    def compute_output_shape(self, input_shape):
        shapes = self._check_shape(input_shape)
        for i, shape in enumerate(shapes[1:], start=1):
            if shape != shapes[0]:
                raise ValueError(f"{self._op}: input {i} has per-sample shape {shape} "
                                 f"but input 0 has {shapes[0]}; Add sums tensors of "
                                 f"one shape.")
        return shapes[0]

    def _forward(self, xs, training):
        y = xs[0]
        for x in xs[1:]:
            y = add_trusted(y, x)
        return y

    def _backward(self, dy):
        # The same array for every input: the model never writes into a gradient
        # it is handed, it sums them into new arrays.
        return [dy] * len(self.input_shape)


class Concatenate(Merge):
    """Its inputs joined along ``axis`` (``torch.cat``): by default the channel
    axis of NCHW batches, so two branches of 16 and 32 channels give 48.

    Parameters
    ----------
    axis : int
        The axis of the batch joined along, counting the batch axis as 0 (torch's
        ``dim``); negative counts from the end. Default 1, the channels.
    name : str, optional

    Shape: [(N, C_1, H, W), (N, C_2, H, W), ...] -> (N, C_1 + C_2 + ..., H, W).
    """

    def __init__(self, axis: int = 1, name: str | None = None) -> None:
        super().__init__(name=name)
        if not is_int(axis) or axis == 0:
            raise ValueError(f"{self._op}: axis must be a non-zero int (0 is the "
                             f"batch axis), got {axis!r}.")
        self.axis = int(axis)

    def _config(self) -> dict[str, Any]:
        return {"axis": self.axis}

    def _sample_axis(self, ndim: int) -> int:
        """The joined axis within a per-sample shape of ``ndim`` axes."""
        axis = self.axis - 1 if self.axis > 0 else self.axis + ndim
        if not 0 <= axis < ndim:
            raise ValueError(f"{self._op}: axis {self.axis} does not exist in inputs "
                             f"of per-sample shape with {ndim} axes (batch axis "
                             f"not counted).")
        return axis

    def compute_output_shape(self, input_shape):
        shapes = self._check_shape(input_shape)
        ndim = len(shapes[0])
        axis = self._sample_axis(ndim)
        for i, shape in enumerate(shapes[1:], start=1):
            if len(shape) != ndim or any(
                    a != b for k, (a, b) in enumerate(zip(shape, shapes[0],
                                                          strict=True)) if k != axis):
                raise ValueError(f"{self._op}: input {i} has per-sample shape {shape} "
                                 f"but input 0 has {shapes[0]}; they may differ on "
                                 f"axis {self.axis} only.")
        out = list(shapes[0])
        out[axis] = sum(shape[axis] for shape in shapes)
        return tuple(out)

    def _forward(self, xs, training):
        return concatenate_trusted(xs, self._sample_axis(xs[0].ndim - 1) + 1)

    def _backward(self, dy):
        axis = self._sample_axis(dy.ndim - 1)
        return concatenate_backward_trusted(
            dy, [shape[axis] for shape in self.input_shape], axis + 1)


class Multiply(Merge):
    """The elementwise product of its inputs, broadcasting axes of size 1 (as
    Keras's ``Multiply`` and ``torch.mul``): the join of a squeeze-and-excitation
    block, ``Multiply()([x, s])`` with ``x`` of per-sample shape ``(C, H, W)`` and
    the channel gates ``s`` of ``(C, 1, 1)``. Each input's gradient is ``dy`` times
    the other inputs, summed over the axes it was broadcast along.

    The per-sample shapes must have one number of axes, each equal or 1 (reshape a
    ``(C,)`` gate to ``(C, 1, 1)`` with :class:`Reshape` first).

    Parameters
    ----------
    name : str, optional

    Shape: [(N, *s_1), (N, *s_2), ...] -> (N, *broadcast(s_1, s_2, ...)).
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self._inputs: list | None = None

    def compute_output_shape(self, input_shape):
        shapes = self._check_shape(input_shape)
        for i, shape in enumerate(shapes[1:], start=1):
            if len(shape) != len(shapes[0]):
                raise ValueError(
                    f"{self._op}: input {i} has per-sample shape {shape} but input 0 "
                    f"has {shapes[0]}; Multiply takes shapes of one number of axes, "
                    f"each equal or 1 (reshape the gate to (C, 1, 1) first).")
        return broadcast_shape(self._op, shapes,
                               [f"input {i}" for i in range(len(shapes))])

    def _forward(self, xs, training):
        self._inputs = xs
        return multiply_trusted(xs)

    def _backward(self, dy):
        return multiply_backward_trusted(dy, self._inputs)
