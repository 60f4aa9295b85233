"""Metrics reported by ``fit`` and ``evaluate``: accuracy and top-k accuracy.

A metric is called on one batch, ``metric(output, target) -> float`` (the batch
mean); ``fit`` and ``evaluate`` average the batch values weighted by batch size, so
an epoch's value is the mean over all its samples. Any callable with that signature
can be passed to ``compile(metrics=[...])``; its ``__name__`` names it in History.
"""

from __future__ import annotations

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


class Accuracy(Metric):
    """Fraction of samples whose arg-max class equals the integer label.

    Shape: output (N, C) scores or logits, target (N,) integer labels -> float.
    """

    name = "accuracy"

    def __call__(self, output, target):
        _check("accuracy", output, target)
        if output.ndim != 2:
            raise ValueError(
                f"accuracy: output must be 2-D (N, C) class scores, got shape "
                f"{output.shape}."
            )
        return float(np.mean(np.argmax(output, axis=1) == target.reshape(-1)))


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
    """Fraction of samples whose label is among the ``k`` highest scores.

    Ties at the k-th score count as hits (the label's score is compared with the
    k-th largest), so top-1 accuracy may exceed :class:`Accuracy` on exact ties.

    Shape: output (N, C), target (N,) integer labels -> float.
    """

    def __init__(self, k: int = 5):
        if not isinstance(k, numbers.Integral) or isinstance(k, bool):
            raise TypeError(f"TopKAccuracy: k must be an int, got {k!r}.")
        if k < 1:
            raise ValueError(f"TopKAccuracy: k must be positive, got {k!r}.")
        self.k = int(k)
        self.name = f"top{self.k}_accuracy"

    def __call__(self, output, target):
        _check(self.name, output, target)
        if output.ndim != 2:
            raise ValueError(
                f"{self.name}: output must be 2-D (N, C) class scores, got shape "
                f"{output.shape}."
            )
        k = min(self.k, output.shape[1])
        kth = np.partition(output, output.shape[1] - k, axis=1)[:, output.shape[1] - k]
        label = target.reshape(-1).astype(np.intp)
        scores = output[np.arange(output.shape[0]), label]
        return float(np.mean(scores >= kth))

    def get_config(self):
        return {"k": self.k}


def accuracy(output: np.ndarray, target: np.ndarray) -> float:
    """Arg-max accuracy of one batch; see :class:`Accuracy`.

    Shape: output (N, C), target (N,) -> float.
    """
    return Accuracy()(output, target)


def top_k_accuracy(output: np.ndarray, target: np.ndarray, k: int = 5) -> float:
    """Top-k accuracy of one batch; see :class:`TopKAccuracy`.

    Shape: output (N, C), target (N,) -> float.
    """
    return TopKAccuracy(k)(output, target)


METRICS = {"Accuracy": Accuracy, "BinaryAccuracy": BinaryAccuracy,
           "TopKAccuracy": TopKAccuracy}


def get(identifier, binary: bool = False):
    """Resolve a metric given to ``compile``: a :class:`Metric`, a callable, or a name
    (``"accuracy"``/``"acc"``, ``"top_k_accuracy"`` (k=5), ``"top<k>_accuracy"``).

    ``binary=True`` (the loss is BCE-with-logits) makes ``"accuracy"`` mean
    :class:`BinaryAccuracy`, as Keras does.
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
        return BinaryAccuracy() if binary else Accuracy()
    if name == "binary_accuracy":
        return BinaryAccuracy()
    if name == "top_k_accuracy":
        return TopKAccuracy(5)
    if name.startswith("top") and name.endswith("_accuracy"):
        digits = name[3:-len("_accuracy")]
        if digits.isdigit() and int(digits) > 0:
            return TopKAccuracy(int(digits))
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
