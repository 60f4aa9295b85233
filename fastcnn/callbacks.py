"""Callbacks: hooks ``fit`` calls at the start and end of training, epochs and
batches (Keras's callback protocol).

``logs`` passed to ``on_epoch_end`` hold that epoch's metrics (``"loss"``,
``"accuracy"``, ``"val_loss"``, ...); ``on_batch_end`` gets the batch's ``"loss"``
(the cost J of that batch) and ``"size"``. A callback stops training by setting
``self.model.stop_training = True``; ``fit`` checks it after every batch and epoch.
Epoch numbers are 0-based, as in Keras's hooks.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable

import numpy as np

from . import _registry
from .schedules import Schedule


class Callback:
    """Base class; every hook does nothing."""

    #: In ``fit(distributed=True)``, run only on rank 0 (callbacks that write
    #: files); the others run on every rank, silenced except on rank 0.
    rank_zero_only = False

    def __init__(self):
        self.model = None

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs=None): ...

    def on_train_end(self, logs=None): ...

    def on_epoch_begin(self, epoch, logs=None): ...

    def on_epoch_end(self, epoch, logs=None): ...

    def on_batch_begin(self, batch, logs=None): ...

    def on_batch_end(self, batch, logs=None): ...


class History(Callback):
    """What ``fit`` returns.

    Attributes
    ----------
    history : dict[str, list[float]]
        Every metric for every epoch: ``"loss"``, ``"accuracy"``, ``"val_loss"``, ...
    iterations : list[float]
        The cost J of every batch, in order: the curve gradient descent pushes down.
    epoch : list[int]
        The (0-based) epoch numbers that ran.
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.iterations: list[float] = []
        self.epoch: list[int] = []

    def on_batch_end(self, batch, logs=None):
        self.iterations.append(float(logs["loss"]))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def _mode(op: str, mode: str, monitor: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{op}: mode must be 'auto', 'min' or 'max', got {mode!r}.")
    if mode == "auto":
        return "max" if ("acc" in monitor or "auc" in monitor) else "min"
    return mode


def _monitored(op: str, monitor: str, logs) -> float:
    if not logs or monitor not in logs:
        raise ValueError(
            f"{op}: monitor={monitor!r} is not among the epoch's metrics "
            f"{sorted(logs or {})}; pass validation data for 'val_*' metrics or "
            f"monitor another key."
        )
    return float(logs[monitor])


class _Monitor(Callback):
    """Shared best-value bookkeeping of the callbacks that watch a metric."""

    def __init__(self, op, monitor, mode, min_delta):
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"{op}: monitor must be a str, got {monitor!r}.")
        if not isinstance(min_delta, int | float) or isinstance(min_delta, bool):
            raise TypeError(f"{op}: min_delta must be a number, got {min_delta!r}.")
        self._op = op
        self.monitor = monitor
        self.mode = _mode(op, mode, monitor)
        self.min_delta = abs(float(min_delta))
        self.best = math.inf if self.mode == "min" else -math.inf

    def _improved(self, current: float, reference: float) -> bool:
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta


def _non_negative_int(op, name, value):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}.")
    if value < 0:
        raise ValueError(f"{op}: {name} must be >= 0, got {value!r}.")
    return value


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience``
    epochs.

    With ``restore_best_weights=True`` the weights (and BatchNorm statistics) of the
    best epoch are put back when training ends, as in Keras 3.

    Shape: no arrays.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0,
                 patience: int = 0, mode: str = "auto",
                 restore_best_weights: bool = False, baseline: float | None = None,
                 start_from_epoch: int = 0, verbose: int = 0):
        super().__init__("EarlyStopping", monitor, mode, min_delta)
        self.patience = _non_negative_int("EarlyStopping", "patience", patience)
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = baseline
        self.start_from_epoch = _non_negative_int("EarlyStopping",
                                                  "start_from_epoch",
                                                  start_from_epoch)
        self.verbose = verbose

    def get_config(self) -> dict:
        return {"monitor": self.monitor, "min_delta": self.min_delta,
                "patience": self.patience, "mode": self.mode,
                "restore_best_weights": self.restore_best_weights,
                "baseline": self.baseline,
                "start_from_epoch": self.start_from_epoch, "verbose": self.verbose}

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        current = _monitored("EarlyStopping", self.monitor, logs)
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.state_dict()
            self.best_epoch = epoch
        self.wait += 1
        if self._improved(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring the weights of epoch {self.best_epoch + 1}.")
            self.model.load_state_dict(self.best_weights)


class ModelCheckpoint(_Monitor):
    """Save the model (``model.save``: weights, optimizer and training state) after
    every epoch, or only when ``monitor`` improves (``save_best_only``).

    ``filepath`` may hold ``str.format`` fields: ``{epoch}`` (1-based, as in Keras,
    which is also the ``initial_epoch`` to resume from) and any metric, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.zip"``.

    Every write is atomic and durable (a temporary file in the same folder, fsync,
    ``os.replace``, fsync of the folder): a process killed at any moment leaves the
    previous checkpoint or the new one, never a torn file, so the last checkpoint
    always loads. A kill inside a write may leave a ``.<name>.*.tmp`` file beside
    it, which is safe to delete.

    Shape: no arrays.
    """

    rank_zero_only = True

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss",
                 mode: str = "auto", save_best_only: bool = False,
                 verbose: int = 0):
        super().__init__("ModelCheckpoint", monitor, mode, 0.0)
        self.filepath = os.fspath(filepath)
        self.save_best_only = bool(save_best_only)
        self.verbose = verbose

    def get_config(self) -> dict:
        return {"filepath": self.filepath, "monitor": self.monitor,
                "mode": self.mode, "save_best_only": self.save_best_only,
                "verbose": self.verbose}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = _monitored("ModelCheckpoint", self.monitor, logs)
            if not self._improved(current, self.best):
                return
            self.best = current
        if self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        self.model.save(path)


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate from a schedule before every epoch (or
    batch).

    Parameters
    ----------
    schedule : Schedule or callable
        A :class:`~fastcnn.schedules.Schedule` (called with the step and the
        optimizer's ``initial_lr``; OneCycle also sets the momentum), or Keras's
        ``schedule(epoch, lr) -> new_lr``.
    per : {"epoch", "batch"}
        ``"batch"`` steps once per optimizer step, counting
        ``optimizer.iterations`` (which a checkpoint keeps, so resuming continues
        the schedule where it stopped).

    Shape: no arrays.
    """

    def __init__(self, schedule: Schedule | Callable, per: str = "epoch",
                 verbose: int = 0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(
                f"LearningRateScheduler: schedule must be a Schedule or a callable, "
                f"got {schedule!r}."
            )
        if per not in ("epoch", "batch"):
            raise ValueError(
                f"LearningRateScheduler: per must be 'epoch' or 'batch', got {per!r}."
            )
        self.schedule = schedule
        self.per = per
        self.verbose = verbose

    def _apply(self, step: int) -> None:
        opt = self.model.optimizer
        if isinstance(self.schedule, Schedule):
            lr = self.schedule(step, opt.initial_lr)
            momentum = self.schedule.momentum(step)
            if momentum is not None:
                _set_momentum(opt, momentum)
        else:
            lr = self.schedule(step, opt.lr)
        if not isinstance(lr, int | float | np.floating) or not math.isfinite(lr):
            raise ValueError(
                f"LearningRateScheduler: the schedule returned {lr!r} at step {step}; "
                f"it must return a finite float."
            )
        try:  # the optimizer's own checks (lr >= 0), as in its constructor
            opt.set_dynamic(lr=float(lr))
        except ValueError as error:
            raise ValueError(
                f"LearningRateScheduler: at step {step}: {error}") from None

    def on_epoch_begin(self, epoch, logs=None):
        if self.per == "epoch":
            self._apply(epoch)
            if self.verbose:
                print(f"Epoch {epoch + 1}: learning rate {self.model.optimizer.lr:.6g}")

    def on_batch_begin(self, batch, logs=None):
        if self.per == "batch":
            self._apply(self.model.optimizer.iterations)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = self.model.optimizer.lr


def _set_momentum(opt, momentum: float) -> None:
    """OneCycle's momentum: SGD/RMSprop ``momentum`` or Adam's ``beta1``."""
    # Through the optimizer's own checks: a beta1 of 1 would divide by zero in
    # Adam's bias correction, and SGD's nesterov needs momentum > 0.
    if hasattr(opt, "betas"):
        opt.set_dynamic(betas=(momentum, opt.betas[1]))
    elif hasattr(opt, "momentum"):
        opt.set_dynamic(momentum=momentum)
    else:
        raise ValueError(
            f"LearningRateScheduler: cycle_momentum needs an optimizer with momentum "
            f"or betas, got {type(opt).__name__}."
        )


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved
    for ``patience`` epochs (Keras's rule, with ``cooldown`` and ``min_lr``).

    Shape: no arrays.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1,
                 patience: int = 10, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, verbose: int = 0):
        super().__init__("ReduceLROnPlateau", monitor, mode, min_delta)
        if not isinstance(factor, int | float) or not 0 < factor < 1:
            raise ValueError(
                f"ReduceLROnPlateau: factor must be a number in (0, 1), got "
                f"{factor!r}."
            )
        self.factor = float(factor)
        self.patience = _non_negative_int("ReduceLROnPlateau", "patience", patience)
        self.cooldown = _non_negative_int("ReduceLROnPlateau", "cooldown", cooldown)
        if not isinstance(min_lr, int | float) or min_lr < 0:
            raise ValueError(
                f"ReduceLROnPlateau: min_lr must be a number >= 0, got {min_lr!r}."
            )
        self.min_lr = float(min_lr)
        self.verbose = verbose

    def get_config(self) -> dict:
        return {"monitor": self.monitor, "factor": self.factor,
                "patience": self.patience, "mode": self.mode,
                "min_delta": self.min_delta, "cooldown": self.cooldown,
                "min_lr": self.min_lr, "verbose": self.verbose}

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch, logs=None):
        opt = self.model.optimizer
        current = _monitored("ReduceLROnPlateau", self.monitor, logs)
        logs["lr"] = opt.lr
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current, self.best):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and opt.lr > self.min_lr:
                opt.lr = max(opt.lr * self.factor, self.min_lr)
                if self.verbose:
                    print(f"Epoch {epoch + 1}: reducing the learning rate to "
                          f"{opt.lr:.6g}.")
                self.cooldown_counter = self.cooldown
                self.wait = 0


class CSVLogger(Callback):
    """Append one row per epoch (``epoch`` then every metric) to a CSV file.

    Shape: no arrays.
    """

    rank_zero_only = True

    def __init__(self, filename: str | os.PathLike, separator: str = ",",
                 append: bool = False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self._file = None
        self._writer = None
        self._keys = None

    def get_config(self) -> dict:
        return {"filename": self.filename, "separator": self.separator,
                "append": self.append}

    def on_train_begin(self, logs=None):
        has_rows = (self.append and os.path.exists(self.filename)
                    and os.path.getsize(self.filename) > 0)
        self._file = open(self.filename, "a" if self.append else "w",
                          newline="", encoding="utf-8")
        self._writer = None
        self._keys = None
        self._header_written = has_rows

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = list(logs)
            self._writer = csv.DictWriter(self._file, ["epoch", *self._keys],
                                          delimiter=self.separator,
                                          extrasaction="ignore")
            if not self._header_written:
                self._writer.writeheader()
        self._writer.writerow({"epoch": epoch, **logs})
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite.

    ``fit`` does more by default (``check_finite=True``): it refuses non-finite
    data up front and raises a FloatingPointError at the first non-finite loss,
    before that batch's update. This callback is the quiet variant for
    ``check_finite=False``: training ends after the bad batch (its update applied)
    and ``fit`` returns the History.

    Shape: no arrays.
    """

    def get_config(self) -> dict:
        return {}

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training.")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions, e.g.
    ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs))``.

    ``on_train_begin``/``on_train_end`` take ``(logs)``; the epoch and batch hooks
    take ``(epoch_or_batch, logs)``.

    Shape: no arrays.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_batch_begin=None,
                 on_batch_end=None, on_train_begin=None, on_train_end=None):
        super().__init__()
        hooks = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end,
                 "on_batch_begin": on_batch_begin, "on_batch_end": on_batch_end,
                 "on_train_begin": on_train_begin, "on_train_end": on_train_end}
        for name, fn in hooks.items():
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be callable, got {fn!r}.")
            setattr(self, name, fn)


#: The callbacks :func:`from_config` makes: those whose arguments are plain data
#: (not LearningRateScheduler's schedule function or LambdaCallback's functions).
CALLBACKS: dict[str, type[Callback]] = {
    cls.__name__: cls
    for cls in (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, CSVLogger,
                TerminateOnNaN)
}


def from_config(entry,
                label: str = "fastcnn.callbacks.from_config: the entry") -> Callback:
    """A new callback from ``{"class_name": ..., "config": {...}}`` (its
    ``get_config()``), looked up in :data:`CALLBACKS` only; the entry may come from
    an untrusted file (see :func:`fastcnn._registry.build`).

    Raises
    ------
    ValueError
        A bad entry, an unknown callback type or bad arguments; the message
        starts with ``label``.

    Shape: no arrays.
    """
    return _registry.build(CALLBACKS, entry, label, noun="callback type")
