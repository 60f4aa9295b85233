"""gradcheck: every analytic gradient of a network against float64 central
differences, on a float64 copy that leaves the caller's layers untouched."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import functional as F
from ..layers import Layer
from ..layers.graph import backward_graph, forward_graph
from ._resolve import layers_of


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
        elif isinstance(value, Layer):  # an inner layer (a Dense's activation)
            setattr(clone, key, _float64_copy(value))
    clone.params = {k: np.array(p, dtype=np.float64) for k, p in layer.params.items()}
    clone.buffers = {k: np.array(b, dtype=np.float64)
                     for k, b in layer.buffers.items()}
    clone.grads = {k: np.zeros_like(p) for k, p in clone.params.items()}
    # Every parameter's gradient is checked, a frozen layer's too.
    clone.trainable = True
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


class _Float64Net:
    """float64 copies of the layers (built from ``input_shape`` where the originals
    are not), rewound to the same buffers and RNG states before every pass, so that
    each numeric difference sees one function of the perturbed entry."""

    def __init__(self, layers: list[Layer], input_shape, seed: int, training: bool,
                 inbound=None):
        self.inbound = inbound
        build_rng = np.random.default_rng(seed)
        self.layers = []
        for layer in layers:
            c = _float64_copy(layer)
            if not c.built:
                c.build(input_shape, np.float64, build_rng)
            self.layers.append(c)
            input_shape = c.output_shape
        self.training = training
        self._state = _snapshot(self.layers)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.rewind()
        if self.inbound is not None:
            return forward_graph(self.layers, self.inbound, x, self.training)
        out = x
        for c in self.layers:
            out = c.forward(out, training=self.training)
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        if self.inbound is not None:
            return backward_graph(self.layers, self.inbound, grad)
        for c in reversed(self.layers):
            grad = c.backward(grad)
        return grad

    def rewind(self) -> None:
        _restore(self.layers, self._state)


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


def _objective(y, loss, output_shape, rng):
    """``(label, f)`` with ``f(output) -> (J, dJ/doutput)``; without targets
    ``J = sum(output * dy)`` for a random ``dy`` drawn from ``rng``."""
    if y is not None:
        return _loss_fn(loss, y)
    dy = rng.standard_normal(output_shape)

    def objective(o):
        return float(np.sum(o * dy)), dy

    return "sum(output * dy)", objective


def _check_tensor(target, loss_at, rng, eps: float, rtol: float, atol: float,
                  max_entries: int) -> GradcheckRow:
    """Central differences of ``loss_at()`` on up to ``max_entries`` entries of one
    tensor (perturbed in place, then restored) against its analytic gradient."""
    layer, name, key, array, analytic = target
    flat, aflat = array.reshape(-1), analytic.reshape(-1)
    if flat.size <= max_entries:
        picks = np.arange(flat.size)
    else:
        picks = np.sort(rng.choice(flat.size, size=max_entries, replace=False))
    floor = atol / rtol
    abs_err = rel_err = 0.0
    for p in picks:
        old = flat[p]
        flat[p] = old + eps
        up = loss_at()
        flat[p] = old - eps
        down = loss_at()
        flat[p] = old
        numeric = (up - down) / (2 * eps)
        a = float(aflat[p])
        err = abs(a - numeric)
        abs_err = max(abs_err, err)
        # NaN compares False, so fail it explicitly.
        rel = err / max(abs(a), abs(numeric), floor)
        rel_err = max(rel_err, rel) if np.isfinite(rel) else np.inf
    return GradcheckRow(layer, name, key, tuple(array.shape), len(picks), abs_err,
                        rel_err, bool(rel_err <= rtol))


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
    model_or_layer : Layer, list of Layer, or a model (Sequential or graph Model)
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
    layers, _ = layers_of(model_or_layer)
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiu" or x.ndim < 2:
        raise TypeError(
            f"gradcheck: x must be a real numpy.ndarray with a batch axis, got "
            f"{type(x).__name__} {getattr(x, 'shape', '')}."
        )
    x64 = np.array(x, dtype=np.float64)
    net = _Float64Net(layers, x64.shape[1:], seed, training,
                      getattr(model_or_layer, "inbound", None))
    rng = np.random.default_rng(seed)
    out = net(x64)
    label, objective = _objective(y, loss, out.shape, rng)
    x_grad = net.backward(objective(out)[1])
    targets = [(i, c.name, k, p, c.grads[k].copy())
               for i, c in enumerate(net.layers) for k, p in c.params.items()]
    targets.append((-1, "(input)", "x", x64, x_grad))

    def loss_at() -> float:
        return objective(net(x64))[0]

    rows = [_check_tensor(t, loss_at, rng, eps, rtol, atol, max_entries)
            for t in targets]
    net.rewind()
    return GradcheckReport(rows, eps, rtol, atol, label, training)
