"""Losses and their gradients, with torch.nn.functional's argument meanings.

A loss with ``reduction="mean"`` or ``"sum"`` returns a Python float; ``"none"``
returns the per-sample (per-element, or for cross-entropy per-position) losses as an
array of the input's dtype. Each ``*_backward`` returns the gradient of the reduced
loss with respect to the input (for ``"none"``: of the sum of the per-sample
losses).

Empty inputs (no samples, or no elements) behave as in PyTorch: ``"mean"`` is NaN
(0 / 0), ``"sum"`` is 0.0, ``"none"`` is an empty array, and the gradient is an
empty array of the input's shape.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .. import backend
from .._checks import is_int
from . import _validate as v


def _reduce(losses: np.ndarray, reduction: str, denominator) -> float | np.ndarray:
    """Sum ``losses`` serially (same bits for any thread count) and divide for a
    mean; ``"none"`` returns ``losses`` unchanged."""
    if reduction == "none":
        return losses
    if losses.size == 0:
        total = losses.dtype.type(0)  # an empty sum; a mean of nothing is NaN
    else:
        dev = backend.device_of(losses)
        out = dev.empty(1, losses.dtype)
        dev.kernels("loss").sum_in_order(losses.ravel(), out)
        total = dev.to_host(out)[0]
    if reduction == "mean":
        # A zero denominator (every target's class weight 0) gives NaN, as in torch.
        with np.errstate(divide="ignore", invalid="ignore"):
            total = total / denominator
    return float(total)


def _scale(reduction: str, denominator, dtype: np.dtype, factor: float = 1.0):
    """The factor a gradient kernel multiplies by: ``factor / denominator`` for a
    mean, ``factor`` otherwise, in ``dtype``."""
    if reduction != "mean":
        return dtype.type(factor)
    with np.errstate(divide="ignore", invalid="ignore"):
        return dtype.type(factor) / denominator


# --------------------------------------------------------------------- cross_entropy


class _CrossEntropyCase(NamedTuple):
    """What the cross-entropy kernels need, from validated arguments."""

    logits: Any  # (N, C, S): a view of the caller's logits
    target: Any  # (N, S) int64 class indices, or (N, C, S) probabilities
    probabilities: bool
    weight: Any  # (C,)
    keep: Any  # 1 - label_smoothing, in the logits' dtype
    spread: Any  # label_smoothing / C, in the logits' dtype
    ignore_index: np.int64
    denominator: Any  # what a mean divides by, in the logits' dtype
    loss_shape: tuple  # the shape of reduction="none"'s result
    # One position per sample, no weights, smoothing or ignored label: the lean
    # cross_entropy_plain_* kernels give the same bits with less to compile.
    plain: bool = False


def _ignore_index_arg(op: str, value) -> int:
    if not is_int(value):
        raise TypeError(f"{op}: ignore_index must be an int, got {value!r}.")
    # Labels are compared as int64: a value beyond it could never match one.
    if not -(2**63) <= int(value) < 2**63:
        raise ValueError(
            f"{op}: ignore_index must fit in int64, got {value!r}."
        )
    return int(value)


def _holds_probabilities(op: str, labels, logits) -> bool:
    """Whether ``labels`` are class probabilities: PyTorch's rule, an array of the
    logits' shape (class indices have no class axis). Such an array of integers or
    bools is refused, as PyTorch does."""
    is_array = isinstance(labels, np.ndarray) or backend.is_device_array(labels)
    if not is_array or tuple(labels.shape) != tuple(logits.shape):
        return False
    if np.dtype(labels.dtype).kind != "f":
        raise TypeError(
            f"{op}: labels has the logits' shape {logits.shape}, which means class "
            f"probabilities, but dtype {labels.dtype}: pass float probabilities of "
            f"the logits' dtype (e.g. labels.astype({logits.dtype})), or class "
            f"indices without the class axis."
        )
    return True


def _cross_entropy_args(op, logits, labels, weight, reduction, label_smoothing,
                        ignore_index) -> _CrossEntropyCase:
    logits = v.float_array_1d_or_more(op, "logits", logits)
    reduction = v.reduction_arg(op, reduction)
    smoothing = v.real_number(op, "label_smoothing", label_smoothing, low=0, high=1)
    ignore_index = _ignore_index_arg(op, ignore_index)
    dtype = logits.dtype
    # An unbatched (C,) input is one sample, as in PyTorch. (tuple(): the CUDA
    # simulator's device-array shapes are not tuples.)
    shape = tuple(logits.shape) if logits.ndim > 1 else (1, *logits.shape)
    n, n_classes = shape[:2]
    positions = math.prod(shape[2:])
    loss_shape = (n, *shape[2:]) if logits.ndim > 1 else ()
    if weight is None:
        # Multiplying by 1 is exact: unweighted losses come out bit for bit the same.
        class_weight = np.ones(n_classes, dtype=dtype)
    else:
        class_weight = v.float_array(op, "weight", weight, ndim=1)
        v.same_dtype(op, "logits", logits, weight=class_weight)
        v.shape_is(op, "weight", class_weight, (n_classes,))
    keep = dtype.type(1.0 - smoothing)
    # No classes: nothing is spread.
    spread = dtype.type(smoothing / n_classes if n_classes else 0.0)
    logits3 = logits.reshape(n, n_classes, positions)
    if _holds_probabilities(op, labels, logits):
        if ignore_index >= 0:
            raise ValueError(
                f"{op}: ignore_index={ignore_index} applies to class indices, not to "
                f"class probabilities (labels of the logits' shape {logits.shape}); "
                f"PyTorch refuses it too. Leave ignore_index at its default."
            )
        target = v.float_array(op, "labels", labels)
        v.same_dtype(op, "logits", logits, labels=target)
        # PyTorch's mean over probabilities divides by the positions, N * d1 * ...,
        # whatever the class weights; with no classes it is NaN (0 / 0).
        denominator = dtype.type(n * positions if n_classes else 0)
        return _CrossEntropyCase(
            logits3, target.reshape(n, n_classes, positions), True, class_weight,
            keep, spread, np.int64(ignore_index), denominator, loss_shape)
    labels_dtype = getattr(labels, "dtype", None)
    if labels_dtype is not None and np.dtype(labels_dtype).kind == "f":
        raise TypeError(
            f"{op}: labels must have an integer dtype (class indices), got "
            f"{labels_dtype} with shape {tuple(labels.shape)}; class probabilities "
            f"must have the logits' shape {logits.shape}."
        )
    labels = v.labels_array(op, "labels", labels, loss_shape, n_classes,
                            ignore_index).reshape(n, positions)
    kept = labels[labels != ignore_index]
    if weight is None:
        denominator = dtype.type(kept.size)
    else:
        # torch's weighted mean divides by the sum of the kept targets' weights,
        # here summed in index order.
        out = np.zeros(1, dtype=dtype)
        picked = backend.to_host(class_weight)[kept]
        if picked.size:
            backend.device_of(picked).kernels("loss").sum_in_order(picked, out)
        denominator = out[0]
    plain = (weight is None and smoothing == 0 and positions == 1
             and kept.size == labels.size)
    return _CrossEntropyCase(logits3, labels, False, class_weight, keep, spread,
                             np.int64(ignore_index), denominator, loss_shape, plain)


def cross_entropy(logits: np.ndarray, labels: np.ndarray,
                  weight: np.ndarray | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0,
                  ignore_index: int = -100) -> float | np.ndarray:
    """Cross-entropy between softmax(logits) over axis 1 and class labels: class
    indices, or class probabilities, as in ``torch.nn.functional.cross_entropy``.

    Computed from the logits with the log-sum-exp shift, so logits of any finite
    size give a finite loss. With class indices ``t`` and label smoothing ``e``,
    the loss at a position is ``(1 - e) * w[t] * nll[t] + (e / C) * sum_c w[c] *
    nll[c]`` with ``nll = -log_softmax(logits)``; a position whose label equals
    ``ignore_index`` has loss 0 and no gradient and is left out of the mean. With
    probabilities ``q`` it is ``sum_c w[c] * q'[c] * nll[c]`` with ``q' = (1 - e) *
    q + e / C``.

    Parameters
    ----------
    logits : ndarray
        Unnormalised class scores, float32 or float64; classes on axis 1 (axis 0
        for one unbatched sample of shape (C,)).
    labels : ndarray
        Integer class indices in ``[0, C)`` (or equal to ``ignore_index``), one per
        position: the logits' shape without the class axis. Or class
        probabilities: floats of the logits' shape and dtype (their values are not
        checked, as in PyTorch). Bool arrays are refused.
    weight : ndarray, optional
        A weight per class, of logits' dtype.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` divides the sum by the sum of the kept targets' class weights
        (by their count without weights) for class indices, and by the number of
        positions ``N * d1 * ...`` for probabilities.
    label_smoothing : float
        In ``[0, 1]``.
    ignore_index : int
        The label that marks a position to ignore (class indices only; need not lie
        in ``[0, C)``). With probabilities it must be negative (it is unused), as
        PyTorch requires.

    Shape: logits (N, C, d1, ...), labels (N, d1, ...) or (N, C, d1, ...), weight
    (C,) -> float, or (N, d1, ...) for reduction="none"; logits (C,), labels () or
    (C,) -> float, or () for "none".
    """
    case = _cross_entropy_args("cross_entropy", logits, labels, weight, reduction,
                               label_smoothing, ignore_index)
    z = case.logits
    dev = backend.device_of(z, case.target, case.weight)
    n, n_classes, positions = z.shape
    if z.size == 0:
        # No positions, or no classes (every label then ignored): a sum of nothing.
        losses = dev.zeros((n, positions), z.dtype)
    else:
        losses = dev.empty((n, positions), z.dtype)
        k = dev.kernels("loss")
        if case.probabilities:
            k.cross_entropy_prob_forward(z, case.target, case.weight, case.keep,
                                         case.spread, losses)
        elif case.plain:
            k.cross_entropy_plain_forward(z.reshape(n, n_classes),
                                          case.target.reshape(n), losses.reshape(n))
        else:
            k.cross_entropy_forward(z, case.target, case.weight, case.keep,
                                    case.spread, case.ignore_index, losses)
    if reduction == "none":
        return losses.reshape(case.loss_shape)
    return _reduce(losses, reduction, case.denominator)


def cross_entropy_backward(logits: np.ndarray, labels: np.ndarray,
                           weight: np.ndarray | None = None, reduction: str = "mean",
                           label_smoothing: float = 0.0,
                           ignore_index: int = -100) -> np.ndarray:
    """Gradient of :func:`cross_entropy` with respect to the logits (zero at
    ignored positions).

    For ``reduction="none"`` it is the gradient of the sum of the per-position
    losses.

    Shape: logits (N, C, d1, ...) or (C,), labels as in :func:`cross_entropy`,
    weight (C,) -> dlogits of the logits' shape.
    """
    case = _cross_entropy_args("cross_entropy_backward", logits, labels, weight,
                               reduction, label_smoothing, ignore_index)
    z = case.logits
    dev = backend.device_of(z, case.target, case.weight)
    shape = tuple(logits.shape)
    if z.size == 0:
        return dev.zeros(shape, z.dtype)
    dlogits = dev.empty(z.shape, z.dtype)
    scale = _scale(reduction, case.denominator, z.dtype)
    k = dev.kernels("loss")
    if case.probabilities:
        k.cross_entropy_prob_backward(z, case.target, case.weight, case.keep,
                                      case.spread, scale, dlogits)
    elif case.plain:
        k.cross_entropy_plain_backward(z.reshape(z.shape[:2]),
                                       case.target.reshape(z.shape[0]), scale,
                                       dlogits.reshape(z.shape[:2]))
    else:
        k.cross_entropy_backward(z, case.target, case.weight, case.keep, case.spread,
                                 case.ignore_index, scale, dlogits)
    return dlogits.reshape(shape)


class DeferredLoss:
    """A reduced loss still on its device: ``float(loss)`` reads it (one copy) and
    divides for a mean exactly as :func:`_reduce` does. A training step asks for
    it once, after the optimizer's kernels are queued, so the GPU never waits for
    the host in the middle of a step."""

    __slots__ = ("_total", "_reduction", "_denominator", "_value")

    def __init__(self, total, reduction: str, denominator) -> None:
        self._total = total
        self._reduction = reduction
        self._denominator = denominator
        self._value = None

    def __float__(self) -> float:
        if self._value is None:
            total = backend.to_host(self._total)[0]
            if self._reduction == "mean":
                with np.errstate(divide="ignore", invalid="ignore"):
                    total = total / self._denominator
            self._value = float(total)
        return self._value


def cross_entropy_with_grad(logits, labels, weight=None, reduction: str = "mean",
                            label_smoothing: float = 0.0, ignore_index: int = -100):
    """``(cross_entropy(...), cross_entropy_backward(...))`` of the same arguments,
    the same bits, computed together: the common case (one position per sample,
    no weights, smoothing or ignored label) runs one kernel, and on a GPU the loss
    stays there until read. The loss is a :class:`DeferredLoss` (``float(loss)``
    reads it) in that case, a float in the others, and the array of losses for
    ``"none"``.

    Shape: as :func:`cross_entropy` and :func:`cross_entropy_backward`.
    """
    case = _cross_entropy_args("cross_entropy", logits, labels, weight, reduction,
                               label_smoothing, ignore_index)
    z = case.logits
    if not case.plain or z.size == 0 or reduction == "none":
        loss = cross_entropy(logits, labels, weight, reduction, label_smoothing,
                             ignore_index)
        return loss, cross_entropy_backward(logits, labels, weight, reduction,
                                            label_smoothing, ignore_index)
    n, n_classes = z.shape[:2]
    dev = backend.device_of(z)
    labels = dev.move_in(case.target.reshape(n))  # copied in once
    losses = dev.empty(n, z.dtype)
    total = dev.empty(1, z.dtype)
    dlogits = dev.empty((n, n_classes), z.dtype)
    dev.kernels("loss").cross_entropy_plain_forward_backward(
        z.reshape(n, n_classes), labels, _scale(reduction, case.denominator, z.dtype),
        losses, total, dlogits)
    return (DeferredLoss(total, reduction, case.denominator),
            dlogits.reshape(tuple(logits.shape)))


# -------------------------------------------------------------------------- mse_loss


def _mse_args(op, input, target, reduction):
    input = v.float_array_1d_or_more(op, "input", input)
    target = v.float_array(op, "target", target)
    v.same_dtype(op, "input", input, target=target)
    v.shape_is(op, "target", target, input.shape)
    reduction = v.reduction_arg(op, reduction)
    return input, target, reduction, input.dtype.type(input.size)


def mse_loss(input: np.ndarray, target: np.ndarray,
             reduction: str = "mean") -> float | np.ndarray:
    """Mean squared error ``(input - target) ** 2``, reduced.

    Parameters
    ----------
    input, target : ndarray
        Arrays of one shape and dtype (float32 or float64).
    reduction : {"mean", "sum", "none"}
        ``"mean"`` averages over every element.

    Shape: input (*), target (*) -> float, or (*) for reduction="none".
    """
    input, target, reduction, count = _mse_args("mse_loss", input, target, reduction)
    dev = backend.device_of(input, target)
    losses = dev.empty(input.shape, input.dtype)
    if input.size:
        dev.kernels("loss").mse_forward(
            input.ravel(), target.ravel(), losses.ravel()
        )
    return _reduce(losses, reduction, count)


def mse_loss_backward(input: np.ndarray, target: np.ndarray,
                      reduction: str = "mean") -> np.ndarray:
    """Gradient of :func:`mse_loss` with respect to ``input``:
    ``2 * (input - target)``, divided by the element count for a mean.

    Shape: input (*), target (*) -> dinput (*).
    """
    input, target, reduction, count = _mse_args(
        "mse_loss_backward", input, target, reduction
    )
    dev = backend.device_of(input, target)
    if input.size == 0:
        return dev.zeros(input.shape, input.dtype)
    dinput = dev.empty(input.shape, input.dtype)
    scale = _scale(reduction, count, input.dtype, factor=2.0)
    dev.kernels("loss").mse_backward(
        input.ravel(), target.ravel(), scale, dinput.ravel()
    )
    return dinput


# ---------------------------------------------------------- binary_cross_entropy...


def _broadcast_weight(op, name, value, input):
    """A weight broadcastable to input's shape, flat: (S,), or (1,) for one value."""
    if value is None:
        return np.ones(1, dtype=input.dtype)
    # Broadcast on the host (a device weight is copied back; the launchers copy the
    # flat result in again).
    array = backend.to_host(v.float_array(op, name, value))
    v.same_dtype(op, "input", input, **{name: array})
    try:
        full = np.broadcast_to(array, input.shape)
    except ValueError:
        raise ValueError(
            f"{op}: {name} with shape {array.shape} does not broadcast to input's "
            f"shape {input.shape}."
        ) from None
    if array.size == 1:
        return array.reshape(1)
    return np.ascontiguousarray(full).ravel()


def _bce_args(op, input, target, weight, reduction, pos_weight):
    input = v.float_array_1d_or_more(op, "input", input)
    target = v.float_array(op, "target", target)
    v.same_dtype(op, "input", input, target=target)
    v.shape_is(op, "target", target, input.shape)
    weight = _broadcast_weight(op, "weight", weight, input)
    pos_weight = _broadcast_weight(op, "pos_weight", pos_weight, input)
    reduction = v.reduction_arg(op, reduction)
    return input, target, weight, pos_weight, reduction, input.dtype.type(input.size)


def binary_cross_entropy_with_logits(
    input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
    reduction: str = "mean", pos_weight: np.ndarray | None = None,
) -> float | np.ndarray:
    """Binary cross-entropy between sigmoid(input) and targets in [0, 1].

    Computed from the logits without overflow as
    ``max(x, 0) - x * t + log1p(exp(-|x|))``; with ``pos_weight`` the positive term
    is scaled: ``(1 - t) * x + (1 + (pos_weight - 1) * t) * log(1 + exp(-x))``.

    Parameters
    ----------
    input : ndarray
        Logits, float32 or float64.
    target : ndarray
        Targets (probabilities) of input's shape and dtype.
    weight : ndarray, optional
        Rescales each element's loss; broadcast to input's shape.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` averages over every element.
    pos_weight : ndarray, optional
        Weight of the positive examples, broadcast to input's shape (so shape
        ``(C,)`` weighs the classes along the last axis).

    Shape: input (*), target (*) -> float, or (*) for reduction="none".
    """
    input, target, weight, pos_weight, reduction, count = _bce_args(
        "binary_cross_entropy_with_logits", input, target, weight, reduction,
        pos_weight,
    )
    dev = backend.device_of(input, target)
    losses = dev.empty(input.shape, input.dtype)
    if input.size:
        dev.kernels("loss").bce_with_logits_forward(
            input.ravel(), target.ravel(), weight, pos_weight, losses.ravel()
        )
    return _reduce(losses, reduction, count)


def binary_cross_entropy_with_logits_backward(
    input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
    reduction: str = "mean", pos_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Gradient of :func:`binary_cross_entropy_with_logits` with respect to input:
    ``weight * ((1 + (pos_weight - 1) * t) * sigmoid(x) - pos_weight * t)``,
    divided by the element count for a mean.

    Shape: input (*), target (*) -> dinput (*).
    """
    input, target, weight, pos_weight, reduction, count = _bce_args(
        "binary_cross_entropy_with_logits_backward", input, target, weight,
        reduction, pos_weight,
    )
    dev = backend.device_of(input, target)
    if input.size == 0:
        return dev.zeros(input.shape, input.dtype)
    dinput = dev.empty(input.shape, input.dtype)
    scale = _scale(reduction, count, input.dtype)
    dev.kernels("loss").bce_with_logits_backward(
        input.ravel(), target.ravel(), weight, pos_weight, scale, dinput.ravel()
    )
    return dinput
