"""Looking inside a network: the summary maths, receptive fields and gradcheck.

- :func:`layer_stats` / :func:`model_stats` / :func:`summary_table`: per layer the
  output shape, parameters, MACs, bytes, the *dense-equivalent* parameter count and
  the sharing ratio, and the receptive field's size and jump
  (``Sequential.summary()`` prints :func:`summary_table`).
- :func:`receptive_field`: the input window that feeds one output position.
- :func:`gradcheck`: every analytic gradient against float64 central differences.

Every function takes a list of layers, a single layer, or any object with a
``.layers`` list (and optionally ``.input_shape``), such as :class:`fastcnn.Sequential`.

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

Receptive field and jump
------------------------
Per spatial axis, starting from ``rf = jump = 1`` at the input: a window layer of
kernel ``k``, stride ``s``, dilation ``d`` gives ``rf_out = rf_in + d*(k-1)*jump_in``
and ``jump_out = jump_in * s`` (jump: input pixels between neighbouring outputs).
Elementwise layers pass both through; global pooling acts as a window over the whole
map; after a Dense the field is the whole image. The size is the theoretical one (it
may exceed the image); :func:`receptive_field` gives exact, clipped windows. Receptive
fields describe inference: in training, BatchNorm's batch statistics mix positions.
"""

from __future__ import annotations

import copy
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from . import functional as F
from .layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    GlobalAvgPool2D,
    Layer,
    Softmax,
)

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


# ----------------------------------------------------------------- layer resolution


def _layers_of(obj) -> tuple[list[Layer], tuple[int, ...] | None]:
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


def _input_shape(layers, given, model_shape) -> tuple[int, ...]:
    shape = given if given is not None else model_shape
    if shape is None:
        raise ValueError(
            "input_shape is unknown: the first layer is not built; pass input_shape "
            "(per sample, e.g. (1, 28, 28))."
        )
    return layers[0]._check_shape(shape)


def _built_like(layer: Layer, input_shape, dtype) -> Layer:
    """``layer`` itself when built for ``input_shape``, else a built clone (for
    counting parameters without touching the caller's layer)."""
    if layer.built and layer.input_shape == tuple(input_shape):
        return layer
    clone = type(layer)(**layer.get_config())
    clone.build(input_shape, dtype, np.random.default_rng(0))
    return clone


# ------------------------------------------------------------------- summary maths


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


def _next_rf(layer: Layer, input_shape, rf: RFState, image) -> RFState:
    if rf.size is None:
        return rf
    kind = layer.connectivity
    if kind == "window" and rf.jump is not None:
        win = layer.window()
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
    return rf


def _macs(layer: Layer, input_shape, output_shape, params: dict) -> int:
    out = math.prod(output_shape)
    if isinstance(layer, Conv2D):
        _, cin_g, kh, kw = params["weight"].shape
        return out * cin_g * kh * kw
    if isinstance(layer, Dense):
        return out * input_shape[0]
    if isinstance(layer, AvgPool2D):
        return out * math.prod(layer.kernel_size)
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
    built = _built_like(layer, input_shape, dtype)
    output_shape = built.output_shape
    trainable, non_trainable = built.count_params()
    dense_eq = ratio = None
    if isinstance(layer, Conv2D | Dense):
        dense_eq = math.prod(input_shape) * math.prod(output_shape)
        ratio = dense_eq / trainable
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
        rf=_next_rf(layer, input_shape, rf, image),
    )


def model_stats(model_or_layers, input_shape: tuple[int, ...] | None = None,
                dtype=None) -> list[LayerStats]:
    """:func:`layer_stats` of every layer, chaining shapes and receptive fields.

    Shape: input_shape (per sample) -> one LayerStats per layer.
    """
    layers, model_shape = _layers_of(model_or_layers)
    shape = _input_shape(layers, input_shape, model_shape)
    rf = initial_rf(shape)
    image = shape[1:] if len(shape) == 3 else None
    rows = []
    for i, layer in enumerate(layers):
        row = layer_stats(layer, shape, dtype, rf, i, image)
        rows.append(row)
        shape, rf = row.output_shape, row.rf
    return rows


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
    head = ["#", "Layer (type)", "Output shape", "Trainable", "Non-train.", "MACs",
            "Param bytes", "Out bytes", "Dense-equiv.", "Sharing", "RF", "Jump"]
    body = []
    for r in rows:
        size, jump = _fmt_rf(r.rf)
        body.append([str(r.index), f"{r.name} ({r.type})", str(r.output_shape),
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
        dtype = _layers_of(model_or_layers)[0][0].dtype
    dt = np.dtype(np.float32 if dtype is None else dtype)
    lines = [f"Input: {first.input_shape} ({dt.name})", rule, line(head), rule]
    lines += [line(b) for b in body[:-1]]
    lines += [rule, line(body[-1]), rule, DENSE_EQUIVALENT_NOTE]
    return "\n".join(lines)


# --------------------------------------------------------------- receptive fields


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
        win = layer.window()
        out = []
        for idx, k, s, p, d, n in zip((rows, cols), win.kernel, win.stride,
                                      win.padding, win.dilation, (h, w), strict=True):
            taps = (idx[:, None] * s - p + np.arange(k)[None, :] * d).ravel()
            out.append(np.unique(taps[(taps >= 0) & (taps < n)]))
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
    layers, model_shape = _layers_of(model_or_layers)
    shape = _input_shape(layers, input_shape, model_shape)
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


# ------------------------------------------------------------------------ gradcheck


@dataclass(frozen=True)
class GradcheckRow:
    """One checked tensor: ``layer`` is -1 for the model input ``x``."""

    layer: int
    name: str
    tensor: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float
    passed: bool


@dataclass
class GradcheckReport:
    """The result of :func:`gradcheck`: one row per tensor, ``passed`` overall.

    The relative error of an entry is ``|a - n| / max(|a|, |n|, atol / rtol)`` for
    analytic ``a`` and numeric ``n``; a tensor passes when its largest is <= rtol
    (equivalently ``|a - n| <= max(rtol * max(|a|, |n|), atol)``).
    """

    rows: list[GradcheckRow]
    eps: float
    rtol: float
    atol: float
    loss: str
    training: bool
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def max_rel_error(self) -> float:
        return max((r.max_rel_error for r in self.rows), default=0.0)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        head = ["layer", "name", "tensor", "shape", "checked", "max abs err",
                "max rel err", "ok"]
        body = [[str(r.layer) if r.layer >= 0 else "-", r.name, r.tensor,
                 str(r.shape), f"{r.checked}", f"{r.max_abs_error:.2e}",
                 f"{r.max_rel_error:.2e}", "yes" if r.passed else "NO"]
                for r in self.rows]
        widths = [max(len(row[c]) for row in [head, *body]) for c in range(len(head))]
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"gradcheck {verdict}: max relative error {self.max_rel_error:.2e} "
            f"(rtol {self.rtol:g}, atol {self.atol:g}); float64 central differences, "
            f"eps {self.eps:g}, loss {self.loss}, training={self.training}",
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                  .rstrip() for row in [head, *body]]
        lines += self.notes
        return "\n".join(lines)


def _float64_copy(layer: Layer) -> Layer:
    """A float64 copy that shares no array and no RNG with ``layer``."""
    clone = copy.copy(layer)
    for key, value in vars(layer).items():
        if isinstance(value, np.random.Generator):
            setattr(clone, key, copy.deepcopy(value))
    clone.params = {k: np.array(p, dtype=np.float64) for k, p in layer.params.items()}
    clone.buffers = {k: np.array(b, dtype=np.float64)
                     for k, b in layer.buffers.items()}
    clone.grads = {k: np.zeros_like(p) for k, p in clone.params.items()}
    if layer.built:
        clone.dtype = np.dtype(np.float64)
    clone._cache = None
    return clone


def _snapshot(layers: list[Layer]):
    """Everything a forward pass may change: buffers and RNG states (Dropout)."""
    return [({k: b.copy() for k, b in layer.buffers.items()},
             {k: copy.deepcopy(g.bit_generator.state) for k, g in vars(layer).items()
              if isinstance(g, np.random.Generator)})
            for layer in layers]


def _restore(layers: list[Layer], snapshot) -> None:
    for layer, (buffers, states) in zip(layers, snapshot, strict=True):
        for k, b in buffers.items():
            np.copyto(layer.buffers[k], b)
        for k, state in states.items():
            getattr(layer, k).bit_generator.state = copy.deepcopy(state)


_NAMED_LOSSES = {
    "cross_entropy": ("cross_entropy", "cross_entropy_backward"),
    "mse": ("mse_loss", "mse_loss_backward"),
    "binary_cross_entropy_with_logits": (
        "binary_cross_entropy_with_logits",
        "binary_cross_entropy_with_logits_backward",
    ),
}


def _loss_fn(loss, y) -> tuple[str, Callable[[np.ndarray], tuple[float, np.ndarray]]]:
    """``(label, f)`` with ``f(output) -> (J, dJ/doutput)``."""
    if isinstance(loss, str):
        if loss not in _NAMED_LOSSES:
            raise ValueError(
                f"gradcheck: loss must be one of {sorted(_NAMED_LOSSES)} or a "
                f"callable, got {loss!r}."
            )
        forward, backward = (getattr(F, n) for n in _NAMED_LOSSES[loss])
        target = np.asarray(y) if loss == "cross_entropy" else np.asarray(
            y, dtype=np.float64)

        def named(out):
            t = target
            if loss != "cross_entropy" and t.shape != out.shape and t.size == out.size:
                t = t.reshape(out.shape)  # (N,) targets for an (N, 1) output
            return float(forward(out, t)), backward(out, t)

        return loss, named
    if hasattr(loss, "backward") and callable(loss):
        def with_backward(out):
            return float(loss(out, y)), np.asarray(loss.backward(out, y))

        return getattr(loss, "name", type(loss).__name__), with_backward
    if callable(loss):
        def plain(out):
            value, grad = loss(out, y)
            return float(value), np.asarray(grad, dtype=np.float64)

        return getattr(loss, "__name__", "callable"), plain
    raise TypeError(f"gradcheck: loss must be a str or a callable, got {loss!r}.")


def gradcheck(model_or_layer, x: np.ndarray, y: np.ndarray | None = None,
              loss: str | Callable = "cross_entropy", eps: float = 1e-6,
              rtol: float = 1e-4, atol: float = 1e-8, max_entries: int = 30,
              training: bool = True, seed: int = 0) -> GradcheckReport:
    """Compare every analytic gradient with float64 central differences.

    A float64 copy of the layers is checked (the caller's layers, RNGs and running
    statistics are untouched). For each parameter tensor and for the input ``x``,
    up to ``max_entries`` random entries are perturbed by ``+-eps`` and
    ``(J(+) - J(-)) / (2 eps)`` is compared with the gradient from ``backward``.

    Parameters
    ----------
    model_or_layer : Layer, list of Layer, or a model with ``.layers``
        Unbuilt layers are built (on the copy) from ``x``'s shape.
    x : ndarray
        A small input batch.
    y : ndarray, optional
        Targets. None: the loss is ``sum(output * dy)`` for a fixed random ``dy``.
    loss : str or callable
        "cross_entropy" (integer labels), "mse", "binary_cross_entropy_with_logits";
        a loss object with ``loss(out, y) -> J`` and ``loss.backward(out, y)``
        (as in :mod:`fastcnn.losses`); or ``f(out, y) -> (J, dJ/dout)``.
    eps, rtol, atol : float
        Step and tolerances (see :class:`GradcheckReport`).
    max_entries : int
        Entries checked per tensor (all, for smaller tensors).
    training : bool
        Forward mode. True checks BatchNorm through the batch statistics; Dropout
        then keeps one mask throughout (its RNG is rewound before each pass).
    seed : int
        Selects ``dy`` and the checked entries.

    Returns
    -------
    GradcheckReport
        ``print(report)`` shows the per-layer table; ``report.passed`` the verdict.

    Shape: x (N, *input_shape), y (N,) labels or like the output.
    """
    layers, _ = _layers_of(model_or_layer)
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiu" or x.ndim < 2:
        raise TypeError(
            f"gradcheck: x must be a real numpy.ndarray with a batch axis, got "
            f"{type(x).__name__} {getattr(x, 'shape', '')}."
        )
    x64 = np.array(x, dtype=np.float64)
    build_rng = np.random.default_rng(seed)
    shape = x64.shape[1:]
    copies = []
    for layer in layers:
        c = _float64_copy(layer)
        if not c.built:
            c.build(shape, np.float64, build_rng)
        copies.append(c)
        shape = c.output_shape
    state = _snapshot(copies)
    rng = np.random.default_rng(seed)

    def run(inp):
        _restore(copies, state)
        out = inp
        for c in copies:
            out = c.forward(out, training=training)
        return out

    out = run(x64)
    if y is None:
        dy = rng.standard_normal(out.shape)
        label = "sum(output * dy)"

        def objective(o):
            return float(np.sum(o * dy)), dy
    else:
        label, objective = _loss_fn(loss, y)
    _, grad = objective(out)
    for c in reversed(copies):
        grad = c.backward(grad)
    targets = [(i, c.name, k, p, c.grads[k].copy())
               for i, c in enumerate(copies) for k, p in c.params.items()]
    targets.append((-1, "(input)", "x", x64, grad))

    floor = atol / rtol
    rows = []
    for i, name, key, array, analytic in targets:
        flat, aflat = array.reshape(-1), analytic.reshape(-1)
        if flat.size <= max_entries:
            picks = np.arange(flat.size)
        else:
            picks = np.sort(rng.choice(flat.size, size=max_entries, replace=False))
        abs_err = rel_err = 0.0
        for p in picks:
            old = flat[p]
            flat[p] = old + eps
            up = objective(run(x64))[0]
            flat[p] = old - eps
            down = objective(run(x64))[0]
            flat[p] = old
            numeric = (up - down) / (2 * eps)
            a = float(aflat[p])
            err = abs(a - numeric)
            abs_err = max(abs_err, err)
            # NaN compares False, so fail it explicitly.
            rel = err / max(abs(a), abs(numeric), floor)
            rel_err = max(rel_err, rel) if np.isfinite(rel) else np.inf
        rows.append(GradcheckRow(i, name, key, tuple(array.shape), len(picks),
                                 abs_err, rel_err, bool(rel_err <= rtol)))
    _restore(copies, state)
    return GradcheckReport(rows, eps, rtol, atol, label, training)
