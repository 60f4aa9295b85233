"""What ``fit`` does to its data before the first step: the finite check, the
validation split, the class weights and the sample weights."""

from __future__ import annotations

import contextlib

import numpy as np

from .args import is_int

#: Rows of at most about this many elements per block when ``fit`` checks its data
#: for NaN and infinity: the boolean temporary stays small whatever the data set.
_FINITE_CHECK_BLOCK = 1 << 20


def first_non_finite(array: np.ndarray) -> int | None:
    """The index of the first sample of a float ``array`` that holds a NaN or an
    infinity, or None: one pass, in blocks of rows."""
    if array.dtype.kind != "f" or array.size == 0:
        return None
    per_row = max(1, array.size // array.shape[0])
    rows = max(1, _FINITE_CHECK_BLOCK // per_row)
    for begin in range(0, array.shape[0], rows):
        ok = np.isfinite(array[begin : begin + rows])
        if not ok.all():
            bad = ~ok.reshape(ok.shape[0], -1).all(axis=1)
            return begin + int(np.argmax(bad))
    return None


def check_finite_data(name: str, array: np.ndarray, given_dtype=None) -> None:
    """fit's one pass over its data: a NaN or infinity there makes every weight NaN
    within a step or two."""
    bad = first_non_finite(array)
    if bad is None:
        return
    cast = ("" if given_dtype is None or given_dtype == array.dtype else
            f" after the cast from {given_dtype} to {array.dtype} (values beyond "
            f"its range become infinite)")
    harm = ("Validating on it would give NaN metrics" if name.startswith("valid")
            else "Training on it would make every weight NaN")
    raise ValueError(
        f"fit: {name} holds NaN or infinity{cast}, first in sample {bad}. "
        f"{harm}: fix or drop those samples, or pass check_finite=False."
    )


def cast_input(model, op: str, x, check_finite: bool) -> np.ndarray:
    """``model._as_input`` for fit: with ``check_finite``, values beyond the model
    dtype's range become infinite in the cast silently, and the finite check then
    reports them by name instead of NumPy warning about an overflow."""
    with np.errstate(over="ignore") if check_finite else contextlib.nullcontext():
        return model._as_input(op, x)


def split_rows(n: int, fraction: float, seed: int, labels):
    """Shuffled (and, with labels, stratified) train/validation row indices."""
    rng = np.random.default_rng([seed, 0])
    if labels is None:
        n_val = n - int(n * (1.0 - fraction))
        perm = rng.permutation(n)
        val = np.sort(perm[:n_val])
        train = np.sort(perm[n_val:])
    else:
        val_parts = []
        for cls in np.unique(labels):
            members = np.flatnonzero(labels == cls)
            rng.shuffle(members)
            val_parts.append(members[: int(round(len(members) * fraction))])
        val = np.sort(np.concatenate(val_parts))
        mask = np.ones(n, dtype=bool)
        mask[val] = False
        train = np.flatnonzero(mask)
    if len(val) == 0 or len(train) == 0:
        raise ValueError(
            f"fit: validation_split={fraction} leaves {len(train)} training and "
            f"{len(val)} validation samples out of {n}; both must be non-empty."
        )
    return train, val


def validation_set(model, x, y, validation_data, validation_split, seed,
                   stratify, check_finite, sample_weight=None):
    """``(train_rows, (x_val, y_val, sample_weight_val or None) or None)`` from
    fit's arguments; a stream as ``validation_data`` is left to the caller."""
    check_stratify(y, stratify)
    if validation_data is not None:
        return np.arange(x.shape[0]), validation_arrays(model, validation_data,
                                                        check_finite)
    if validation_split > 0:
        train_rows, val_rows = split_rows(x.shape[0], float(validation_split), seed,
                                          y if stratify else None)
        val_weight = None if sample_weight is None else sample_weight[val_rows]
        return train_rows, (x[val_rows], y[val_rows], val_weight)
    return np.arange(x.shape[0]), None


def check_stratify(y, stratify: bool) -> None:
    if stratify and (y.ndim != 1 or y.dtype.kind not in "iub"):
        raise ValueError(
            f"fit: stratify=True needs 1-D integer labels y, got dtype {y.dtype} "
            f"and shape {y.shape}."
        )


def validation_arrays(model, validation_data, check_finite):
    """fit's ``validation_data`` given as arrays, checked:
    ``(x_val, y_val, sample_weight_val or None)``."""
    if not isinstance(validation_data, tuple | list) or len(validation_data) not in (
            2, 3):
        got = (f"a {type(validation_data).__name__} of {len(validation_data)} "
               f"elements" if isinstance(validation_data, tuple | list)
               else type(validation_data).__name__)
        raise TypeError(
            "fit: validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
            f"sample_weight_val) of arrays, or a stream of batches, got {got}."
        )
    val_dtype = getattr(validation_data[0], "dtype", None)
    x_val = cast_input(model, "fit: validation_data", validation_data[0],
                       check_finite)
    y_val = model._as_target("fit: validation_data", validation_data[1],
                             x_val.shape[0])
    w_val = None
    if len(validation_data) == 3 and validation_data[2] is not None:
        w_val = sample_weights(model, "fit: validation_data", "sample_weight",
                               validation_data[2], x_val.shape[0])
    if check_finite:
        check_finite_data("validation_data x", x_val, val_dtype)
        check_finite_data("validation_data y", y_val)
    return x_val, y_val, w_val


def sample_weights(model, op: str, name: str, value, n: int) -> np.ndarray:
    """Per-sample weights checked (numeric, shape (n,), finite, >= 0) and cast to
    the model's dtype."""
    if not getattr(model.loss, "supports_sample_weight", False):
        raise ValueError(
            f"{op}: {name} needs a loss that takes per-sample weights (CrossEntropy, "
            f"MSE, BCEWithLogits), not {type(model.loss).__name__}."
        )
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{op}: {name} must be a numpy.ndarray of shape ({n},), got "
            f"{type(value).__name__}."
        )
    if value.dtype.kind not in "iuf":
        raise TypeError(f"{op}: {name} must be numeric, got dtype {value.dtype}.")
    if value.shape != (n,):
        raise ValueError(
            f"{op}: {name} must have one weight per sample, shape ({n},), got "
            f"shape {value.shape}."
        )
    if not np.all(np.isfinite(value)) or np.any(value < 0):
        raise ValueError(f"{op}: {name} must be finite and >= 0.")
    return value.astype(model.dtype, copy=False)


def class_weights(model, class_weight):
    """fit's ``class_weight`` (a dict or a per-class sequence) as one weight per
    class in the model's dtype, or None."""
    if class_weight is None:
        return None
    if not model.loss.supports_class_weight:
        raise ValueError(
            f"fit: class_weight needs a classification loss (CrossEntropy), not "
            f"{type(model.loss).__name__}."
        )
    # Classes are axis 1 of the output, (N, C) or (N, C, d1, ...): the first
    # per-sample axis.
    n_classes = model.output_shape[0]
    if isinstance(class_weight, dict):
        weights = np.ones(n_classes)
        for key, value in class_weight.items():
            if not is_int(key) or not 0 <= key < n_classes:
                raise ValueError(
                    f"fit: class_weight keys must be class indices in "
                    f"[0, {n_classes}), got {key!r}."
                )
            weights[key] = value
    else:
        weights = np.asarray(class_weight, dtype=np.float64)
        if weights.shape != (n_classes,):
            raise ValueError(
                f"fit: class_weight must be a dict or have shape ({n_classes},), "
                f"got shape {weights.shape}."
            )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(
            f"fit: class_weight must be finite and >= 0, got {class_weight!r}."
        )
    return weights.astype(model.dtype)
