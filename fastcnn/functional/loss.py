"""Losses and their gradients, with torch.nn.functional's argument meanings.

A loss with ``reduction="mean"`` or ``"sum"`` returns a Python float; ``"none"``
returns the per-sample (per-element) losses as an array of the input's dtype. Each
``*_backward`` returns the gradient of the reduced loss with respect to the input
(for ``"none"``: of the sum of the per-sample losses).

Empty inputs (no samples, or no elements) behave as in PyTorch: ``"mean"`` is NaN
(0 / 0), ``"sum"`` is 0.0, ``"none"`` is an empty array, and the gradient is an
empty array of the input's shape.
"""

from __future__ import annotations

import numpy as np

from .. import backend
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


def _cross_entropy_args(op, logits, labels, weight, reduction, label_smoothing):
    logits = v.float_array(op, "logits", logits, ndim=2)
    n, n_classes = logits.shape
    labels = v.labels_array(op, "labels", labels, n, n_classes)
    dtype = logits.dtype
    if weight is None:
        # Multiplying by 1 is exact: unweighted losses come out bit for bit the same.
        class_weight = np.ones(n_classes, dtype=dtype)
        denominator = dtype.type(n)
    else:
        class_weight = v.float_array(op, "weight", weight, ndim=1)
        v.same_dtype(op, "logits", logits, weight=class_weight)
        v.shape_is(op, "weight", class_weight, (n_classes,))
        # torch's weighted mean divides by the sum of the targets' weights.
        out = np.zeros(1, dtype=dtype)
        picked = backend.to_host(class_weight)[labels]
        if picked.size:
            backend.device_of(picked).kernels("loss").sum_in_order(picked, out)
        denominator = out[0]
    reduction = v.reduction_arg(op, reduction)
    smoothing = v.real_number(op, "label_smoothing", label_smoothing, low=0, high=1)
    keep = dtype.type(1.0 - smoothing)
    # No classes (and so, validated above, no samples): nothing is spread.
    spread = dtype.type(smoothing / n_classes if n_classes else 0.0)
    return logits, labels, class_weight, reduction, keep, spread, denominator


def cross_entropy(logits: np.ndarray, labels: np.ndarray,
                  weight: np.ndarray | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> float | np.ndarray:
    """Cross-entropy between softmax(logits) and integer class labels.

    Computed from the logits with the log-sum-exp shift, so logits of any finite
    size give a finite loss. With label smoothing ``e`` the target is
    ``(1 - e) * onehot + e / C``; class weights scale each class's term, as in
    PyTorch: sample ``i``'s loss is ``(1 - e) * w[t_i] * nll_i[t_i] +
    (e / C) * sum_c w[c] * nll_i[c]`` with ``nll_i = -log_softmax(logits_i)``.

    Parameters
    ----------
    logits : ndarray
        Unnormalised class scores, float32 or float64.
    labels : ndarray
        Integer class indices in ``[0, C)`` (bool and float arrays are refused).
    weight : ndarray, optional
        A weight per class, of logits' dtype.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` divides the sum by the sum of the targets' class weights (by N
        without weights).
    label_smoothing : float
        In ``[0, 1]``.

    Shape: logits (N, C), labels (N,), weight (C,) -> float, or (N,) for
    reduction="none".
    """
    logits, labels, weight, reduction, keep, spread, denominator = _cross_entropy_args(
        "cross_entropy", logits, labels, weight, reduction, label_smoothing
    )
    dev = backend.device_of(logits, weight)
    losses = dev.empty(logits.shape[0], logits.dtype)
    if logits.shape[0]:
        dev.kernels("loss").cross_entropy_forward(
            logits, labels, weight, keep, spread, losses
        )
    return _reduce(losses, reduction, denominator)


def cross_entropy_backward(logits: np.ndarray, labels: np.ndarray,
                           weight: np.ndarray | None = None, reduction: str = "mean",
                           label_smoothing: float = 0.0) -> np.ndarray:
    """Gradient of :func:`cross_entropy` with respect to the logits.

    For ``reduction="none"`` it is the gradient of the sum of the per-sample losses.

    Shape: logits (N, C), labels (N,), weight (C,) -> dlogits (N, C).
    """
    logits, labels, weight, reduction, keep, spread, denominator = _cross_entropy_args(
        "cross_entropy_backward", logits, labels, weight, reduction, label_smoothing
    )
    dev = backend.device_of(logits, weight)
    if logits.size == 0:
        return dev.zeros(logits.shape, logits.dtype)
    dlogits = dev.empty(logits.shape, logits.dtype)
    scale = _scale(reduction, denominator, logits.dtype)
    dev.kernels("loss").cross_entropy_backward(
        logits, labels, weight, keep, spread, scale, dlogits
    )
    return dlogits


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
