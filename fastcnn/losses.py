"""Loss objects for ``Sequential.compile``: each wraps a functional loss and its
backward.

A loss is evaluated on one batch: ``loss(output, target) -> float`` is the cost J of
the batch (the mean of the per-sample losses L), and ``loss.backward(output, target)``
is dJ/d(output), the gradient that backpropagation starts from.

Per-sample weights ``s`` (``fit(sample_weight=...)``, or the third element of a
streamed batch) make J the weighted mean ``sum_i s_i L_i / sum_i s_i``, Keras's
``"mean_with_sample_weight"`` reduction (Keras's default divides by the batch size
instead); with class weights ``w`` as well, cross-entropy divides by
``sum_i s_i w[y_i]``, which is PyTorch's weighted mean when every ``s_i`` is 1
(with per-position labels, ``L_i`` and ``w[y_i]`` are sums over sample i's kept
positions: see :class:`CrossEntropy`).
A batch whose weights are all 0 gives NaN (0 / 0), as PyTorch does for class
weights.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _registry, backend
from . import functional as F
from ._checks import is_int


class Loss:
    """Base class. Subclasses set ``name`` and implement ``forward``/``backward``."""

    name = "loss"
    #: Whether ``fit(class_weight=...)`` applies to this loss.
    supports_class_weight = False
    #: Whether ``forward``/``backward`` take ``sample_weight`` (per-sample weights,
    #: shape (N,), of the output's dtype): ``fit(sample_weight=...)`` needs it.
    supports_sample_weight = False

    def __call__(self, output: np.ndarray, target: np.ndarray,
                 class_weight: np.ndarray | None = None,
                 sample_weight: np.ndarray | None = None) -> float:
        if sample_weight is None:
            return self.forward(output, target, class_weight)
        return self.forward(output, target, class_weight, sample_weight)

    def forward(self, output, target, class_weight=None,
                sample_weight=None) -> float:
        raise NotImplementedError

    def backward(self, output, target, class_weight=None,
                 sample_weight=None) -> np.ndarray:
        raise NotImplementedError

    def forward_backward(self, output, target, class_weight=None,
                         sample_weight=None):
        """``(J, dJ/d(output))`` of one batch, as :meth:`forward` and
        :meth:`backward` give them; a loss that can compute both in one pass
        overrides this (the training step calls it), and its J may be an object
        whose ``float()`` reads the value (a GPU's loss is read once, at the end of
        the step)."""
        extra = () if sample_weight is None else (sample_weight,)
        return (self.forward(output, target, class_weight, *extra),
                self.backward(output, target, class_weight, *extra))

    def prepare_target(self, target: np.ndarray, output: np.ndarray) -> np.ndarray:
        """The target as the functional loss wants it (dtype and shape)."""
        return target

    def batch_weight(self, output, target, class_weight=None,
                     sample_weight=None) -> float:
        """What ``forward`` divides this batch's (weighted) sum by, up to a factor
        shared by every batch of one output shape: the number of samples, or the
        sum of their weights. Data-parallel training weighs each rank's J by it,
        so that the ranks together give the mean of the whole batch."""
        if sample_weight is None:
            return float(output.shape[0])
        return float(np.sum(sample_weight, dtype=np.float64))

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _weighted_mean(per_sample: np.ndarray, sample_weight: np.ndarray,
                   denominator: float) -> float:
    """``sum_i s_i L_i / denominator``, on the host in float64 (NaN for 0 / 0)."""
    losses = backend.to_host(per_sample).reshape(per_sample.shape[0], -1)
    total = float(np.dot(sample_weight.astype(np.float64),
                         losses.mean(axis=1, dtype=np.float64)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(total) / np.float64(denominator))


def _scale_rows(grad, factor: np.ndarray):
    """``grad`` with row i multiplied by ``factor[i]`` (in grad's dtype), on the
    device where grad is (a device array makes a round trip through the host)."""
    factor = factor.astype(grad.dtype).reshape((-1,) + (1,) * (grad.ndim - 1))
    if backend.is_device_array(grad):
        dev = backend.device_of(grad)
        return dev.move_in(backend.to_host(grad) * factor)
    grad *= factor
    return grad


def _quotient(numerator: np.ndarray, denominator: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator.astype(np.float64) / np.float64(denominator)


def _float_target(name: str, target: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Cast a float target to the output's dtype; (N,) and (N, 1) are interchangeable
    because a one-output model gives (N, 1) where users usually hold (N,)."""
    target = np.asarray(target)
    if target.dtype.kind not in "biuf":
        raise TypeError(f"{name}: target must be numeric, got dtype {target.dtype}.")
    target = target.astype(output.dtype, copy=False)
    if target.shape != output.shape and target.size == output.size:
        target = target.reshape(output.shape)
    return target


class CrossEntropy(Loss):
    """Softmax cross-entropy from logits, with class-index or probability targets,
    as ``torch.nn.CrossEntropyLoss``.

    Targets are class indices: ``(N,)`` for ``(N, C)`` logits, or one per position,
    ``(N, d1, ...)``, for ``(N, C, d1, ...)`` logits (per-pixel labels of a
    segmentation model); a position labelled ``ignore_index`` counts for nothing.
    Or class probabilities of the output's shape (one-hot, soft or mixup targets;
    integer or bool one-hot arrays are cast to the output's dtype).

    ``J`` is PyTorch's mean: with indices, ``sum L / sum w[y]`` over the kept
    positions (their count without class weights ``w``); with probabilities, ``sum
    L / (N * d1 * ...)``. Per-position losses ``L`` with label smoothing ``eps``
    use the target ``(1 - eps) * target + eps / C``. With per-sample weights ``s``
    both sums weigh sample i by ``s_i``.

    Parameters
    ----------
    label_smoothing : float
        In ``[0, 1]``.
    ignore_index : int
        The class index that marks a position to ignore (default -100, as in
        PyTorch; 255 is common for segmentation masks). Must stay negative with
        probability targets, as PyTorch requires.

    Shape: output (N, C, d1, ...) logits, target (N, d1, ...) integer labels or
    (N, C, d1, ...) probabilities -> float.
    """

    name = "cross_entropy"
    supports_class_weight = True
    supports_sample_weight = True

    def __init__(self, label_smoothing: float = 0.0, ignore_index: int = -100):
        if not isinstance(label_smoothing, numbers.Real) or isinstance(
            label_smoothing, bool
        ):
            raise TypeError(
                f"CrossEntropy: label_smoothing must be a real number, got "
                f"{label_smoothing!r}."
            )
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"CrossEntropy: label_smoothing must lie in [0, 1], got "
                f"{label_smoothing!r}."
            )
        if not is_int(ignore_index):
            raise TypeError(
                f"CrossEntropy: ignore_index must be an int, got {ignore_index!r}."
            )
        if not -(2**63) <= int(ignore_index) < 2**63:
            raise ValueError(
                f"CrossEntropy: ignore_index must fit in int64, got {ignore_index!r}."
            )
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = int(ignore_index)

    def prepare_target(self, target, output):
        target = np.asarray(target)
        if target.shape == tuple(output.shape) and target.dtype.kind in "biuf":
            # Probabilities (one per class, as the output): in the output's dtype,
            # so that a one-hot or float64 y serves a float32 model.
            return target.astype(output.dtype, copy=False)
        return target

    def _kwargs(self, class_weight):
        return {"weight": class_weight, "label_smoothing": self.label_smoothing,
                "ignore_index": self.ignore_index}

    def batch_weight(self, output, target, class_weight=None, sample_weight=None):
        """``sum_i s_i D_i``: ``D_i`` is sample i's part of PyTorch's mean's
        denominator (its kept positions' class weights, or its positions for
        probabilities)."""
        n = output.shape[0]
        target = np.asarray(target)
        if target.shape == tuple(output.shape):  # probabilities
            positions = math.prod(output.shape[2:]) if output.shape[1] else 0
            shares = np.full(n, positions, dtype=np.float64)
        else:
            labels = target.reshape(n, -1)
            kept = labels != self.ignore_index
            weights = (np.ones(output.shape[1]) if class_weight is None
                       else backend.to_host(class_weight).astype(np.float64))
            picked = np.zeros(labels.shape)
            picked[kept] = weights[labels[kept]]
            shares = picked.sum(axis=1)
        if sample_weight is None:
            return float(np.sum(shares))
        return float(np.dot(sample_weight.astype(np.float64), shares))

    def forward(self, output, target, class_weight=None, sample_weight=None):
        if sample_weight is None:
            return float(F.cross_entropy(output, target, **self._kwargs(class_weight)))
        # Per-position losses (already times w[y]), summed per sample and weighted
        # on the host.
        losses = F.cross_entropy(output, target, reduction="none",
                                 **self._kwargs(class_weight))
        per_sample = backend.to_host(losses).reshape(output.shape[0], -1).sum(
            axis=1, dtype=np.float64)
        total = float(np.dot(sample_weight.astype(np.float64), per_sample))
        denominator = self.batch_weight(output, target, class_weight, sample_weight)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float64(total) / np.float64(denominator))

    def forward_backward(self, output, target, class_weight=None,
                         sample_weight=None):
        if sample_weight is None:
            # One kernel in the common case; the loss stays on the device till read.
            return F.cross_entropy_with_grad(output, target,
                                             **self._kwargs(class_weight))
        return super().forward_backward(output, target, class_weight, sample_weight)

    def backward(self, output, target, class_weight=None, sample_weight=None):
        if sample_weight is None:
            return F.cross_entropy_backward(output, target,
                                            **self._kwargs(class_weight))
        grad = F.cross_entropy_backward(output, target, reduction="sum",
                                        **self._kwargs(class_weight))
        denominator = self.batch_weight(output, target, class_weight, sample_weight)
        return _scale_rows(grad, _quotient(sample_weight, denominator))

    def get_config(self):
        return {"label_smoothing": self.label_smoothing,
                "ignore_index": self.ignore_index}


class MSE(Loss):
    """Mean squared error, ``J = mean((output - target)**2)`` over every element.

    With per-sample weights ``s``, ``J = sum_i s_i L_i / sum_i s_i`` where ``L_i``
    is the mean over sample i's elements.

    Shape: output and target of one shape -> float.
    """

    name = "mse"
    supports_sample_weight = True

    def forward(self, output, target, class_weight=None, sample_weight=None):
        if sample_weight is None:
            return float(F.mse_loss(output, target))
        losses = F.mse_loss(output, target, reduction="none")
        return _weighted_mean(losses, sample_weight,
                              np.sum(sample_weight, dtype=np.float64))

    def backward(self, output, target, class_weight=None, sample_weight=None):
        if sample_weight is None:
            return F.mse_loss_backward(output, target)
        grad = F.mse_loss_backward(output, target, reduction="sum")
        per_sample = output.size // max(output.shape[0], 1)
        denominator = np.sum(sample_weight, dtype=np.float64) * per_sample
        return _scale_rows(grad, _quotient(sample_weight, denominator))

    def prepare_target(self, target, output):
        return _float_target("MSE", target, output)


class BCEWithLogits(Loss):
    """Binary cross-entropy on logits (a sigmoid folded in, numerically stable).

    Parameters
    ----------
    pos_weight : sequence of float, optional
        Weight of the positive examples per output (PyTorch's ``pos_weight``).

    With per-sample weights ``s``, ``J = sum_i s_i L_i / sum_i s_i`` where ``L_i``
    is the mean over sample i's outputs.

    Shape: output (N, K) logits, target (N, K) in [0, 1] -> float.
    """

    name = "bce_with_logits"
    supports_sample_weight = True

    def __init__(self, pos_weight=None):
        if pos_weight is not None:
            values = np.asarray(pos_weight, dtype=np.float64).reshape(-1)
            if values.size == 0 or not np.all(np.isfinite(values)):
                raise ValueError(
                    f"BCEWithLogits: pos_weight must be finite numbers, got "
                    f"{pos_weight!r}."
                )
            pos_weight = [float(v) for v in values]
        self.pos_weight = pos_weight

    def _pos_weight(self, output):
        if self.pos_weight is None:
            return None
        return np.asarray(self.pos_weight, dtype=output.dtype)

    @staticmethod
    def _element_weight(output, sample_weight):
        """``s_i / (sum s * K)`` per sample, shaped to broadcast over output: the
        weighted mean is then the kernel's weighted sum."""
        per_sample = output.size // max(output.shape[0], 1)
        factor = _quotient(sample_weight,
                           np.sum(sample_weight, dtype=np.float64) * per_sample)
        return factor.astype(output.dtype).reshape(
            (-1,) + (1,) * (output.ndim - 1))

    def forward(self, output, target, class_weight=None, sample_weight=None):
        if sample_weight is None:
            return float(F.binary_cross_entropy_with_logits(
                output, target, pos_weight=self._pos_weight(output)))
        return float(F.binary_cross_entropy_with_logits(
            output, target, weight=self._element_weight(output, sample_weight),
            reduction="sum", pos_weight=self._pos_weight(output)))

    def backward(self, output, target, class_weight=None, sample_weight=None):
        if sample_weight is None:
            return F.binary_cross_entropy_with_logits_backward(
                output, target, pos_weight=self._pos_weight(output))
        return F.binary_cross_entropy_with_logits_backward(
            output, target, weight=self._element_weight(output, sample_weight),
            reduction="sum", pos_weight=self._pos_weight(output))

    def prepare_target(self, target, output):
        return _float_target("BCEWithLogits", target, output)

    def get_config(self):
        return {"pos_weight": self.pos_weight}


LOSSES = {"CrossEntropy": CrossEntropy, "MSE": MSE, "BCEWithLogits": BCEWithLogits}

_ALIASES = {
    "cross_entropy": CrossEntropy,
    "crossentropy": CrossEntropy,
    "sparse_categorical_crossentropy": CrossEntropy,
    "mse": MSE,
    "mean_squared_error": MSE,
    "bce_with_logits": BCEWithLogits,
    "binary_cross_entropy_with_logits": BCEWithLogits,
}


def get(identifier) -> Loss:
    """Resolve ``compile(loss=...)``: a :class:`Loss` or one of the names
    ``"cross_entropy"``, ``"mse"``, ``"bce_with_logits"`` (and their long forms)."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower())
        if cls is not None:
            return cls()
        raise ValueError(
            f"compile: unknown loss {identifier!r}; use one of "
            f"{sorted(_ALIASES)} or a fastcnn.losses.Loss."
        )
    raise TypeError(
        f"compile: loss must be a name or a fastcnn.losses.Loss, got {identifier!r}."
    )


def from_config(config, label: str = "fastcnn.losses.from_config: the entry") -> Loss:
    """Rebuild a loss saved as ``{"class_name": ..., "config": {...}}``; it may
    come from an untrusted file (see :func:`fastcnn._registry.build`).

    Raises
    ------
    ValueError
        A bad entry, an unknown loss type or bad arguments; the message starts
        with ``label``.

    Shape: no arrays.
    """
    return _registry.build(LOSSES, config, label, noun="loss type")
