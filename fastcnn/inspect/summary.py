"""The summary maths: per layer the output shape, parameters, MACs, bytes, the
*dense-equivalent* parameter count and the sharing ratio, and the receptive field's
size and jump (``Sequential.summary()`` prints :func:`summary_table`).

The dense-equivalent count
--------------------------
A layer that maps an input of ``prod(input_shape)`` numbers to an output of
``prod(output_shape)`` numbers would need ``prod(input_shape) * prod(output_shape)``
weights if every output were connected to every input by its own weight (biases are
not counted). A convolution needs far fewer because of *sparse connections* (an output
sees only a kernel-sized window) and *parameter sharing* (every position reuses the
same kernel). The sharing ratio is ``dense_equivalent / trainable parameters``. For
``Conv2D(6, 5)`` on a 3x32x32 input: 3*5*5*6 + 6 = 456 parameters against
3072 * 4704 = 14,450,688 dense-equivalent weights (31,690x); on 1x32x32: 156 against
1024 * 4704 = 4,816,896. It is reported for Conv2D and Dense only.

The receptive field's size and jump follow :mod:`fastcnn.inspect.receptive`.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..layers import (
    AdaptiveAvgPool2D,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    GlobalAvgPool2D,
    Layer,
)
from ._resolve import built_like, layers_of, model_input_shape
from .receptive import RFState, initial_rf, next_rf

DENSE_EQUIVALENT_NOTE = "\n".join(textwrap.fill(paragraph, 88) for paragraph in (
    "Dense-equiv. = prod(input shape) x prod(output shape): the weights (biases not "
    "counted) a fully connected layer between the same input and output sizes would "
    "need; shown for Conv2D and Dense. Sharing = dense-equiv. / trainable params. "
    "E.g. Conv2D(6, 5) on 3x32x32: 3072 x 4704 = 14,450,688 against 456 params.",
    "RF = receptive field, the input rows x cols that one output sees: rf_out = "
    "rf_in + dilation*(kernel-1)*jump_in. Jump = input pixels between neighbouring "
    "outputs: jump_out = jump_in*stride. Both start at 1; (all) = the whole image.",
    "MACs = multiply-accumulates (conv, dense, average pooling, batch norm); MACs "
    "and bytes are per sample, at the layer dtype.",
))


def _macs(layer: Layer, input_shape, output_shape, params: dict) -> int:
    out = math.prod(output_shape)
    if isinstance(layer, Conv2D):
        _, cin_g, kh, kw = params["weight"].shape
        return out * cin_g * kh * kw
    if isinstance(layer, Dense):
        return out * input_shape[0]
    if isinstance(layer, AvgPool2D):
        return out * math.prod(layer.kernel_size)
    if isinstance(layer, AdaptiveAvgPool2D):
        # Each output adds its bin; bins are separable, so per channel the total
        # is (sum of row-bin sizes) x (sum of column-bin sizes).
        (hs, he), (ws, we) = layer.bins(input_shape)
        return input_shape[0] * int(np.sum(he - hs)) * int(np.sum(we - ws))
    if isinstance(layer, GlobalAvgPool2D | BatchNorm1D | BatchNorm2D):
        return math.prod(input_shape)
    return 0


@dataclass(frozen=True)
class LayerStats:
    """One row of the summary. Counts and bytes are for one sample.

    ``dense_equivalent`` (Conv2D and Dense only, else None) is
    ``prod(input_shape) * prod(output_shape)``: weights only, no biases;
    ``sharing_ratio`` is ``dense_equivalent / trainable`` (None without weights).
    """

    index: int
    name: str
    type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    trainable: int
    non_trainable: int
    macs: int
    param_bytes: int
    activation_bytes: int
    dense_equivalent: int | None
    sharing_ratio: float | None
    rf: RFState

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable


def layer_stats(layer: Layer, input_shape: tuple[int, ...], dtype=None,
                rf: RFState | None = None, index: int = 0,
                image: tuple[int, int] | None = None) -> LayerStats:
    """The summary maths of one layer for a per-sample ``input_shape``.

    Parameters
    ----------
    layer : Layer
        Built or not (an unbuilt layer is counted on a built clone).
    input_shape : tuple of int
        Per-sample input shape of this layer.
    dtype : float32 or float64, optional
        For the byte counts; default the layer's dtype, else float32.
    rf : RFState, optional
        The receptive field of the layer's input (default: the layer is first, so
        :func:`initial_rf`).
    index : int
        Position in the model, for the row label.
    image : (int, int), optional
        The model input's (H, W), used once a field covers the whole image.

    Shape: input_shape (per sample) -> one :class:`LayerStats`.
    """
    input_shape = layer._check_shape(input_shape)
    if dtype is None:
        dtype = layer.dtype if layer.dtype is not None else np.float32
    itemsize = np.dtype(dtype).itemsize
    built = built_like(layer, input_shape, dtype)
    output_shape = built.output_shape
    trainable, non_trainable = built.count_params()
    dense_eq = ratio = None
    if isinstance(layer, Conv2D | Dense):
        dense_eq = math.prod(input_shape) * math.prod(output_shape)
        ratio = dense_eq / sum(p.size for p in built.params.values())
    if rf is None:
        rf = initial_rf(input_shape)
        image = input_shape[1:] if len(input_shape) == 3 else None
    return LayerStats(
        index=index, name=layer.name, type=type(layer).__name__,
        input_shape=input_shape, output_shape=output_shape,
        trainable=trainable, non_trainable=non_trainable,
        macs=_macs(layer, input_shape, output_shape, built.params),
        param_bytes=(trainable + non_trainable) * itemsize,
        activation_bytes=math.prod(output_shape) * itemsize,
        dense_equivalent=dense_eq, sharing_ratio=ratio,
        rf=next_rf(layer, input_shape, rf, image),
    )


def model_stats(model_or_layers, input_shape: tuple[int, ...] | None = None,
                dtype=None) -> list[LayerStats]:
    """:func:`layer_stats` of every layer, chaining shapes and receptive fields
    (along the graph for a :class:`fastcnn.Model`: a merge layer's field is the
    largest of its inputs').

    Shape: input_shape (per sample) -> one LayerStats per layer.
    """
    layers, model_shape = layers_of(model_or_layers)
    inbound = graph_inbound(model_or_layers)
    if inbound is None:
        inbound = [(i,) for i in range(len(layers))]
    shape = model_input_shape(layers, input_shape, model_shape) \
        if not layers[0].takes_many else model_shape
    shapes, fields = [shape], [initial_rf(shape)]
    image = shape[1:] if len(shape) == 3 else None
    rows = []
    for i, (layer, sources) in enumerate(zip(layers, inbound, strict=True)):
        if layer.takes_many:
            in_shape = tuple(shapes[k] for k in sources)
            rf = _joined_rf([fields[k] for k in sources])
        else:
            in_shape, rf = shapes[sources[0]], fields[sources[0]]
        row = layer_stats(layer, in_shape, dtype, rf, i, image)
        rows.append(row)
        shapes.append(row.output_shape)
        fields.append(row.rf)
    return rows


def graph_inbound(model) -> list[tuple[int, ...]] | None:
    """A graph model's ``inbound`` (per layer, the tensors it reads: 0 the input,
    ``k + 1`` layer k's output); None for a chain of layers."""
    return getattr(model, "inbound", None)


def _joined_rf(fields: list[RFState]) -> RFState:
    """The field of a merge layer's output: per axis the largest of its inputs'
    (what an output element may read through any branch)."""
    if any(f.size is None for f in fields):
        return RFState(None, None)
    size = tuple(max(f.size[a] for f in fields) for a in range(2))
    jumps = [f.jump for f in fields]
    jump = None if any(j is None for j in jumps) else tuple(
        max(j[a] for j in jumps) for a in range(2))
    return RFState(size, jump, any(f.whole for f in fields))


def totals(rows: list[LayerStats]) -> dict[str, Any]:
    """Column totals of :func:`model_stats` rows; "sharing_ratio" is the total
    dense-equivalent over the parameters of the Conv2D/Dense layers.

    Shape: no arrays.
    """
    dense = [r for r in rows if r.dense_equivalent is not None]
    dense_eq = sum(r.dense_equivalent for r in dense)
    dense_params = sum(r.trainable for r in dense)
    return {
        "trainable": sum(r.trainable for r in rows),
        "non_trainable": sum(r.non_trainable for r in rows),
        "macs": sum(r.macs for r in rows),
        "param_bytes": sum(r.param_bytes for r in rows),
        "activation_bytes": sum(r.activation_bytes for r in rows),
        "dense_equivalent": dense_eq if dense else None,
        "sharing_ratio": dense_eq / dense_params if dense_params else None,
    }


def _fmt_rf(rf: RFState) -> tuple[str, str]:
    if rf.size is None:
        return "-", "-"
    size = f"{rf.size[0]}x{rf.size[1]}" + (" (all)" if rf.whole else "")
    jump = "-" if rf.jump is None else f"{rf.jump[0]}x{rf.jump[1]}"
    return size, jump


def _n(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}x"
    return f"{value:,}"


def summary_table(model_or_layers, input_shape: tuple[int, ...] | None = None,
                  dtype=None) -> str:
    """The text table ``Sequential.summary()`` prints: one row per layer, the totals
    and a note with the dense-equivalent and receptive-field formulas.

    Shape: input_shape (per sample) -> str.
    """
    rows = model_stats(model_or_layers, input_shape, dtype)
    inbound = graph_inbound(model_or_layers)
    head = ["#", "Layer (type)", "Output shape", "Trainable", "Non-train.", "MACs",
            "Param bytes", "Out bytes", "Dense-equiv.", "Sharing", "RF", "Jump"]
    body = []
    for r in rows:
        size, jump = _fmt_rf(r.rf)
        label = f"{r.name} ({r.type})"
        if inbound is not None:  # a graph: say what each layer reads
            label += " <- " + ", ".join(
                "input" if k == 0 else rows[k - 1].name for k in inbound[r.index])
        body.append([str(r.index), label, str(r.output_shape),
                     _n(r.trainable), _n(r.non_trainable), _n(r.macs),
                     _n(r.param_bytes), _n(r.activation_bytes),
                     _n(r.dense_equivalent), _n(r.sharing_ratio), size, jump])
    t = totals(rows)
    body.append(["", "Total", "", _n(t["trainable"]), _n(t["non_trainable"]),
                 _n(t["macs"]), _n(t["param_bytes"]), _n(t["activation_bytes"]),
                 _n(t["dense_equivalent"]), _n(t["sharing_ratio"]),
                 *_fmt_rf(rows[-1].rf)])
    widths = [max(len(row[c]) for row in [head, *body]) for c in range(len(head))]
    left = {1, 2}

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    rule = "-" * len(line(head))
    first = rows[0]
    if dtype is None:
        dtype = layers_of(model_or_layers)[0][0].dtype
    dt = np.dtype(np.float32 if dtype is None else dtype)
    shape = first.input_shape
    if shape and isinstance(shape[0], tuple):  # a graph whose first layer merges
        shape = shape[0]
    lines = [f"Input: {shape} ({dt.name})", rule, line(head), rule]
    lines += [line(b) for b in body[:-1]]
    lines += [rule, line(body[-1]), rule, DENSE_EQUIVALENT_NOTE]
    return "\n".join(lines)
