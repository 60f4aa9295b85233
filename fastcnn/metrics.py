"""Metrics reported by ``fit`` and ``evaluate``: accuracy and top-k accuracy (per
sample, or per position for (N, C, d1, ...) outputs), and binary accuracy.

A metric is called on one batch, ``metric(output, target) -> float`` (the batch
mean); ``fit`` and ``evaluate`` average the batch values weighted by batch size, so
an epoch's value is the mean over all its samples. Any callable with that signature
can be passed to ``compile(metrics=[...])``; its ``__name__`` names it in History.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def _check(op: str, output, target):
    if not isinstance(output, np.ndarray) or not isinstance(target, np.ndarray):
        raise TypeError(
            f"{op}: output and target must be numpy.ndarrays, got "
            f"{type(output).__name__} and {type(target).__name__}."
        )
    if output.shape[0] != target.shape[0]:
        raise ValueError(
            f"{op}: output has {output.shape[0]} samples but target has "
            f"{target.shape[0]}."
        )


class Metric:
    """Base class: a named function of one batch's ``(output, target)``."""

    name = "metric"

    def __call__(self, output: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _ignore_index_arg(op: str, value):
    if value is not None and not (isinstance(value, numbers.Integral)
                                  and not isinstance(value, bool)):
        raise TypeError(f"{op}: ignore_index must be an int or None, got {value!r}.")
    return None if value is None else int(value)


def _class_targets(op: str, output, target, ignore_index):
    """``(true, kept)`` per position of ``output`` (N, C, d1, ...): the true class
    (the label, or the arg-max of probability targets of the output's shape) and
    whether the position counts (its label is not ``ignore_index``)."""
    _check(op, output, target)
    if output.ndim < 2:
        raise ValueError(
            f"{op}: output must be at least 2-D, (N, C) or (N, C, d1, ...) class "
            f"scores, got shape {output.shape}."
        )
    if target.shape == output.shape:
        true = np.argmax(target, axis=1)
        return true, np.ones(true.shape, dtype=bool)
    want = (output.shape[0], *output.shape[2:])
    if target.size != math.prod(want):
        raise ValueError(
            f"{op}: target must hold one class index per position, shape {want}, "
            f"or probabilities of the output's shape {output.shape}; got shape "
            f"{target.shape}."
        )
    true = target.reshape(want)
    kept = (np.ones(want, dtype=bool) if ignore_index is None
            else true != ignore_index)
    return true, kept


def _fraction(hits, kept) -> float:
    """The fraction of kept positions that are hits; NaN when none is kept."""
    count = int(np.count_nonzero(kept))
    return float(np.count_nonzero(hits & kept) / count) if count else float("nan")


class Accuracy(Metric):
    """Fraction of positions whose arg-max class equals the true class.

    The true class is the integer label, or the arg-max of probability (one-hot,
    soft, mixup) targets of the output's shape. With per-position labels (a
    segmentation model's output (N, C, H, W) and labels (N, H, W)) every pixel
    counts once; those labelled ``ignore_index`` not at all (a batch with none
    kept gives NaN). ``compile`` passes the loss's ``ignore_index``.

    Parameters
    ----------
    ignore_index : int, optional
        The label of positions to leave out; None: every position counts.

    Shape: output (N, C, d1, ...) scores or logits, target (N, d1, ...) integer
    labels or (N, C, d1, ...) probabilities -> float.
    """

    name = "accuracy"

    def __init__(self, ignore_index: int | None = None):
        self.ignore_index = _ignore_index_arg("Accuracy", ignore_index)

    def __call__(self, output, target):
        true, kept = _class_targets("accuracy", output, target, self.ignore_index)
        return _fraction(np.argmax(output, axis=1) == true, kept)

    def get_config(self):
        return {"ignore_index": self.ignore_index}


class BinaryAccuracy(Metric):
    """Fraction of samples where ``output > threshold`` agrees with ``target > 0.5``.

    The default threshold 0 suits logits (the model's output before a sigmoid, as
    BCEWithLogits expects); use 0.5 for probabilities.

    Shape: output and target of one shape (or both with N elements) -> float.
    """

    name = "accuracy"

    def __init__(self, threshold: float = 0.0):
        if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool):
            raise TypeError(
                f"BinaryAccuracy: threshold must be a real number, got {threshold!r}."
            )
        self.threshold = float(threshold)

    def __call__(self, output, target):
        _check("binary_accuracy", output, target)
        pred = output.reshape(output.shape[0], -1) > self.threshold
        true = target.reshape(target.shape[0], -1) > 0.5
        if pred.shape != true.shape:
            raise ValueError(
                f"binary_accuracy: output shape {output.shape} does not match target "
                f"shape {target.shape}."
            )
        return float(np.mean(pred == true))

    def get_config(self):
        return {"threshold": self.threshold}


class TopKAccuracy(Metric):
    """Fraction of positions whose true class is among the ``k`` highest scores.

    Ties at the k-th score count as hits (the true class's score is compared with
    the k-th largest), so top-1 accuracy may exceed :class:`Accuracy` on exact
    ties. Targets and ``ignore_index`` as in :class:`Accuracy`.

    Shape: output (N, C, d1, ...), target (N, d1, ...) integer labels or
    (N, C, d1, ...) probabilities -> float.
    """

    def __init__(self, k: int = 5, ignore_index: int | None = None):
        if not isinstance(k, numbers.Integral) or isinstance(k, bool):
            raise TypeError(f"TopKAccuracy: k must be an int, got {k!r}.")
        if k < 1:
            raise ValueError(f"TopKAccuracy: k must be positive, got {k!r}.")
        self.k = int(k)
        self.ignore_index = _ignore_index_arg("TopKAccuracy", ignore_index)
        self.name = f"top{self.k}_accuracy"

    def __call__(self, output, target):
        true, kept = _class_targets(self.name, output, target, self.ignore_index)
        n_classes = output.shape[1]
        k = min(self.k, n_classes)
        kth = np.take(np.partition(output, n_classes - k, axis=1), n_classes - k,
                      axis=1)
        # A label outside [0, C) is never a hit (it indexes class 0 only so that it
        # indexes something), as it is never the arg-max for Accuracy.
        valid = (true >= 0) & (true < n_classes)
        index = np.where(valid, true, 0).astype(np.intp)
        scores = np.take_along_axis(output, np.expand_dims(index, 1), axis=1)
        return _fraction((np.squeeze(scores, 1) >= kth) & valid, kept)

    def get_config(self):
        return {"k": self.k, "ignore_index": self.ignore_index}


def accuracy(output: np.ndarray, target: np.ndarray) -> float:
    """Arg-max accuracy of one batch; see :class:`Accuracy`.

    Shape: output (N, C, d1, ...), target (N, d1, ...) or (N, C, d1, ...) -> float.
    """
    return Accuracy()(output, target)


def top_k_accuracy(output: np.ndarray, target: np.ndarray, k: int = 5) -> float:
    """Top-k accuracy of one batch; see :class:`TopKAccuracy`.

    Shape: output (N, C, d1, ...), target (N, d1, ...) or (N, C, d1, ...) -> float.
    """
    return TopKAccuracy(k)(output, target)


METRICS = {"Accuracy": Accuracy, "BinaryAccuracy": BinaryAccuracy,
           "TopKAccuracy": TopKAccuracy}


def get(identifier, binary: bool = False, ignore_index: int | None = None):
    """Resolve a metric given to ``compile``: a :class:`Metric`, a callable, or a name
    (``"accuracy"``/``"acc"``, ``"top_k_accuracy"`` (k=5), ``"top<k>_accuracy"``).

    ``binary=True`` (the loss is BCE-with-logits) makes ``"accuracy"`` mean
    :class:`BinaryAccuracy`, as Keras does. ``ignore_index`` (the loss's) goes to
    the class-accuracy metrics made from names.
    """
    if isinstance(identifier, Metric) or (
        callable(identifier) and not isinstance(identifier, str)
    ):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(
            f"metrics: each metric must be a name or a callable, got {identifier!r}."
        )
    name = identifier.lower()
    if name in ("accuracy", "acc"):
        return BinaryAccuracy() if binary else Accuracy(ignore_index)
    if name == "binary_accuracy":
        return BinaryAccuracy()
    if name == "top_k_accuracy":
        return TopKAccuracy(5, ignore_index)
    if name.startswith("top") and name.endswith("_accuracy"):
        digits = name[3:-len("_accuracy")]
        if digits.isdigit() and int(digits) > 0:
            return TopKAccuracy(int(digits), ignore_index)
    raise ValueError(
        f"metrics: unknown metric {identifier!r}; use 'accuracy', 'top_k_accuracy', "
        f"'top<k>_accuracy' or a callable(output, target) -> float."
    )


def batch_values(metrics, output, target) -> dict[str, float]:
    """Every metric of ``metrics`` on one batch, keyed by :func:`metric_name`."""
    return {metric_name(m): float(m(output, target)) for m in metrics}


def metric_name(metric) -> str:
    """The History key of a metric: its ``name`` or its ``__name__``."""
    return getattr(metric, "name", None) or getattr(metric, "__name__", "metric")
