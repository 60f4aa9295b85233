"""Loss objects for ``Sequential.compile``: each wraps a functional loss and its
backward.

A loss is evaluated on one batch: ``loss(output, target) -> float`` is the cost J of
the batch (the mean of the per-sample losses L), and ``loss.backward(output, target)``
is dJ/d(output), the gradient that backpropagation starts from.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _registry
from . import functional as F


class Loss:
    """Base class. Subclasses set ``name`` and implement ``forward``/``backward``."""

    name = "loss"
    #: Whether ``fit(class_weight=...)`` applies to this loss.
    supports_class_weight = False

    def __call__(self, output: np.ndarray, target: np.ndarray,
                 class_weight: np.ndarray | None = None) -> float:
        return self.forward(output, target, class_weight)

    def forward(self, output, target, class_weight=None) -> float:
        raise NotImplementedError

    def backward(self, output, target, class_weight=None) -> np.ndarray:
        raise NotImplementedError

    def prepare_target(self, target: np.ndarray, output: np.ndarray) -> np.ndarray:
        """The target as the functional loss wants it (dtype and shape)."""
        return target

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


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
    """Softmax cross-entropy from logits with integer labels.

    ``J = (1/m) sum_i L_i`` with ``L_i = -log softmax(z_i)[y_i]`` (with label
    smoothing ``eps``, the target is ``(1 - eps) * onehot + eps / C``). With class
    weights ``w`` it is PyTorch's weighted mean ``sum_i w[y_i] L_i / sum_i w[y_i]``.

    Parameters
    ----------
    label_smoothing : float
        In ``[0, 1]``.

    Shape: output (N, C) logits, target (N,) integer labels -> float.
    """

    name = "cross_entropy"
    supports_class_weight = True

    def __init__(self, label_smoothing: float = 0.0):
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
        self.label_smoothing = float(label_smoothing)

    def prepare_target(self, target, output):
        target = np.asarray(target)
        if target.ndim == 2 and target.shape == output.shape:
            raise ValueError(
                f"cross_entropy: y has shape {target.shape}, one row per sample like "
                f"the model's output: one-hot or probability targets. fastcnn's "
                f"cross_entropy takes class indices, shape ({target.shape[0]},): did "
                f"you mean y.argmax(1)?")
        return target

    def forward(self, output, target, class_weight=None):
        return float(F.cross_entropy(output, target, weight=class_weight,
                                     label_smoothing=self.label_smoothing))

    def backward(self, output, target, class_weight=None):
        return F.cross_entropy_backward(output, target, weight=class_weight,
                                        label_smoothing=self.label_smoothing)

    def get_config(self):
        return {"label_smoothing": self.label_smoothing}


class MSE(Loss):
    """Mean squared error, ``J = mean((output - target)**2)`` over every element.

    Shape: output and target of one shape -> float.
    """

    name = "mse"

    def forward(self, output, target, class_weight=None):
        return float(F.mse_loss(output, target))

    def backward(self, output, target, class_weight=None):
        return F.mse_loss_backward(output, target)

    def prepare_target(self, target, output):
        return _float_target("MSE", target, output)


class BCEWithLogits(Loss):
    """Binary cross-entropy on logits (a sigmoid folded in, numerically stable).

    Parameters
    ----------
    pos_weight : sequence of float, optional
        Weight of the positive examples per output (PyTorch's ``pos_weight``).

    Shape: output (N, K) logits, target (N, K) in [0, 1] -> float.
    """

    name = "bce_with_logits"

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

    def forward(self, output, target, class_weight=None):
        return float(F.binary_cross_entropy_with_logits(
            output, target, pos_weight=self._pos_weight(output)))

    def backward(self, output, target, class_weight=None):
        return F.binary_cross_entropy_with_logits_backward(
            output, target, pos_weight=self._pos_weight(output))

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
