"""Receptive fields: the size and jump the summary reports per layer, and the exact
input window behind one output position.

Per spatial axis, starting from ``rf = jump = 1`` at the input: a window layer of
kernel ``k``, stride ``s``, dilation ``d`` gives ``rf_out = rf_in + d*(k-1)*jump_in``
and ``jump_out = jump_in * s`` (jump: input pixels between neighbouring outputs).
Elementwise layers pass both through; global pooling acts as a window over the whole
map, adaptive pooling as one where its bins are even (else as its largest bin and
largest step, so that size and jump are upper bounds from there on); after a Dense
the field is the whole image. The size is the theoretical one (it
may exceed the image); :func:`receptive_field` gives exact, clipped windows. Receptive
fields describe inference: in training, BatchNorm's batch statistics mix positions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..layers import GlobalAvgPool2D, Layer, Softmax
from ._resolve import layers_of, model_input_shape

# ------------------------------------------------------- size and jump, layer by layer


class RFState(NamedTuple):
    """The receptive field of one element of a layer's output, per axis (h, w).

    ``size`` is None when the model input is not an image; ``jump`` is None once the
    output is no longer a grid (after Flatten, global pooling or Dense); ``whole``
    marks a field that covers the whole image (after Dense).
    """

    size: tuple[int, int] | None
    jump: tuple[int, int] | None
    whole: bool = False


def initial_rf(input_shape: tuple[int, ...]) -> RFState:
    """The receptive field of an input element: itself (None for non-images)."""
    if len(input_shape) == 3:
        return RFState((1, 1), (1, 1))
    return RFState(None, None)


def next_rf(layer: Layer, input_shape, rf: RFState, image) -> RFState:
    """The field of ``layer``'s output given ``rf``, that of its input; ``image``,
    the model input's (H, W), is the field once it covers the whole image."""
    if rf.size is None:
        return rf
    kind = layer.connectivity
    if kind == "adaptive" and rf.jump is not None and layer.window(input_shape) is None:
        # Uneven bins (two sizes, starts stepping unevenly): the largest bin and
        # the largest step, so that size and jump stay upper bounds downstream.
        (hs, he), (ws, we) = layer.bins(input_shape)
        widest = (int(np.max(he - hs, initial=1)), int(np.max(we - ws, initial=1)))
        steps = (int(np.max(np.diff(hs), initial=1)),
                 int(np.max(np.diff(ws), initial=1)))
        size = tuple(r + (b - 1) * j for r, b, j in
                     zip(rf.size, widest, rf.jump, strict=True))
        return RFState(size, tuple(j * s for j, s in zip(rf.jump, steps,
                                                          strict=True)))
    if kind in ("window", "adaptive") and rf.jump is not None:
        win = layer.window(input_shape)
        size = tuple(r + d * (k - 1) * j for r, k, d, j in
                     zip(rf.size, win.kernel, win.dilation, rf.jump, strict=True))
        jump = tuple(j * s for j, s in zip(rf.jump, win.stride, strict=True))
        return RFState(size, jump)
    if isinstance(layer, GlobalAvgPool2D) and rf.jump is not None:
        h, w = input_shape[1:]
        size = (rf.size[0] + (h - 1) * rf.jump[0], rf.size[1] + (w - 1) * rf.jump[1])
        return RFState(size, None)
    if isinstance(layer, Softmax) and len(input_shape) == 3 and rf.jump is not None:
        axis = layer.axis(input_shape)
        if axis in (2, 3):  # a softmax along a spatial axis reads that whole axis
            size, n = list(rf.size), input_shape[axis - 1]
            size[axis - 2] += (n - 1) * rf.jump[axis - 2]
            return RFState((size[0], size[1]), rf.jump)
        return rf
    if kind == "global" or (isinstance(layer, Softmax) and len(input_shape) == 1):
        return RFState(image, None, whole=True)
    if kind == "reshape":
        return RFState(rf.size, None, rf.whole)
    if kind == "transposed":
        # Upsampling divides the jump: not a whole number of input pixels, so
        # the size/jump summary stops here (receptive_field still traces it).
        return RFState(None, None)
    return rf


# ------------------------------------------------------------ exact input windows


def _input_positions(layer: Layer, in_shape, out_shape, need):
    """The input positions ``need`` (output positions of ``layer``) depend on.

    ``need`` is ("grid", rows, cols) with sorted int arrays for image tensors,
    ("flat", index) for one feature of a 1-D tensor, or ("all",).
    """
    if need[0] == "all":
        return need
    if len(in_shape) == 1:  # 1-D in, 1-D out
        if layer.connectivity in ("global", "window") or isinstance(layer, Softmax):
            return ("all",)
        return need
    h, w = in_shape[1:]
    if len(out_shape) == 1:  # image in, features out
        if layer.connectivity == "reshape":
            _, i, j = np.unravel_index(need[1], in_shape)
            return ("grid", np.array([i]), np.array([j]))
        return ("all",)
    _, rows, cols = need
    if layer.connectivity == "window":
        win = layer.window(in_shape)
        out = []
        for idx, k, s, p, d, n in zip((rows, cols), win.kernel, win.stride,
                                      win.padding, win.dilation, (h, w), strict=True):
            taps = (idx[:, None] * s - p + np.arange(k)[None, :] * d).ravel()
            out.append(np.unique(taps[(taps >= 0) & (taps < n)]))
        return ("grid", out[0], out[1])
    if layer.connectivity == "adaptive":
        out = []
        for idx, (starts, stops) in zip((rows, cols), layer.bins(in_shape),
                                        strict=True):
            taps = [np.arange(starts[i], stops[i]) for i in idx]
            out.append(np.unique(np.concatenate(taps)) if taps else idx[:0])
        return ("grid", out[0], out[1])
    if layer.connectivity == "transposed":
        win = layer.window(in_shape)
        out = []
        for idx, k, s, p, d, n in zip((rows, cols), win.kernel, win.stride,
                                      win.padding, win.dilation, (h, w), strict=True):
            # Output o reads input i where o = i*s - p + t*d for a tap t.
            numer = idx[:, None] + p - np.arange(k)[None, :] * d
            hits = numer[(numer % s == 0)] // s
            out.append(np.unique(hits[(hits >= 0) & (hits < n)]))
        return ("grid", out[0], out[1])
    if isinstance(layer, Softmax) and layer.axis(in_shape) in (2, 3):
        if layer.axis(in_shape) == 2:
            return ("grid", np.arange(h), cols)
        return ("grid", rows, np.arange(w))
    if layer.connectivity == "global":
        return ("all",)
    return need


def _span(idx: np.ndarray) -> tuple[int, int]:
    return int(idx.min()), int(idx.max()) + 1


def receptive_field(model_or_layers, layer: int, position,
                    input_shape: tuple[int, ...] | None = None
                    ) -> tuple[tuple[int, int], tuple[int, int]]:
    """The input window that feeds one output position of a layer.

    Parameters
    ----------
    model_or_layers : Sequential, list of Layer or Layer
        Built layers (or pass ``input_shape``).
    layer : int
        Index of the layer whose output is asked about (negative counts from the end).
    position : (int, int) or int
        ``(i, j)`` in that layer's output map; for a 1-D output, a feature index.
    input_shape : tuple of int, optional
        Per-sample ``(C, H, W)`` model input; default the model's.

    Returns
    -------
    ((row_start, row_stop), (col_start, col_stop))
        Half-open, in input coordinates, clipped to the input: the bounding box of
        every input pixel whose value can change that output (padding is not input).
        Stride, padding and dilation are accounted for; with dilation the pixels
        inside the box that feed it may have gaps. An output that reads only
        padding gives empty ranges ``(0, 0)``.

    Examples
    --------
    A 3x3 convolution over a 6x6 image: output (0, 0) reads rows 0-2 and columns
    0-2, 9 of the 36 inputs: ``receptive_field([conv], 0, (0, 0)) == ((0, 3), (0,
    3))``.

    Shape: input (C, H, W) -> two (start, stop) pairs.
    """
    if getattr(model_or_layers, "inbound", None) is not None:
        raise TypeError(
            "receptive_field: traces a chain of layers (a Sequential, a list of "
            "layers); for a graph Model pass the chain you ask about, e.g. "
            "[model.layers[i] for i in path], with input_shape; summary() gives "
            "every layer's field size.")
    layers, model_shape = layers_of(model_or_layers)
    shape = model_input_shape(layers, input_shape, model_shape)
    if len(shape) != 3:
        raise ValueError(
            f"receptive_field: the model input must be an image (C, H, W), got "
            f"input_shape {shape}."
        )
    if not isinstance(layer, int | np.integer) or isinstance(layer, bool):
        raise TypeError(f"receptive_field: layer must be an int index, got {layer!r}.")
    if not -len(layers) <= layer < len(layers):
        raise ValueError(
            f"receptive_field: layer must index one of the {len(layers)} layers, got "
            f"{layer}."
        )
    last = int(layer) % len(layers)
    shapes = [shape]
    for lay in layers[: last + 1]:
        shapes.append(lay.compute_output_shape(shapes[-1]))
    out_shape = shapes[-1]
    need = _position(out_shape, position)
    for i in range(last, -1, -1):
        need = _input_positions(layers[i], shapes[i], shapes[i + 1], need)
    h, w = shape[1:]
    if need[0] == "all":
        return (0, h), (0, w)
    if need[1].size == 0 or need[2].size == 0:
        return (0, 0), (0, 0)
    return _span(need[1]), _span(need[2])


def _position(out_shape, position):
    if len(out_shape) == 3:
        ok = (isinstance(position, tuple | list) and len(position) == 2
              and all(isinstance(p, int | np.integer) for p in position))
        if not ok:
            raise TypeError(
                f"receptive_field: position must be a pair (i, j) for an output of "
                f"shape {out_shape}, got {position!r}."
            )
        i, j = (int(p) for p in position)
        if not (0 <= i < out_shape[1] and 0 <= j < out_shape[2]):
            raise ValueError(
                f"receptive_field: position {(i, j)} lies outside the "
                f"{out_shape[1]}x{out_shape[2]} output map."
            )
        return ("grid", np.array([i]), np.array([j]))
    if isinstance(position, tuple | list) and len(position) == 1:
        position = position[0]
    if not isinstance(position, int | np.integer) or isinstance(position, bool):
        raise TypeError(
            f"receptive_field: position must be a feature index for an output of "
            f"shape {out_shape}, got {position!r}."
        )
    if len(out_shape) != 1 or not 0 <= position < out_shape[0]:
        raise ValueError(
            f"receptive_field: position {position} is not a feature of an output of "
            f"shape {out_shape}."
        )
    return ("flat", int(position))
