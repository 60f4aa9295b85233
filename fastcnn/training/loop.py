"""The training loop: ``Sequential.fit`` and ``Sequential.evaluate``.

One loop over epochs and steps, talking to callbacks and to a strategy
(:mod:`fastcnn.training.strategy`): the same code trains in one process and over
MPI ranks.
"""

from __future__ import annotations

import math
import numbers
import time

import numpy as np

from .. import backend
from .. import metrics as metrics_mod
from .._progress import ProgressBar
from ..callbacks import Callback, History
from .args import int_arg
from .data import cast_input, check_finite_data, class_weights, validation_set
from .non_finite import raise_non_finite
from .strategy import make_strategy


def _check_settings(model, epochs, batch_size, initial_epoch, verbose,
                    validation_split, seed):
    """fit's scalar arguments checked, in the order fit reports them; the seed
    resolved (a resumed model keeps its fit seed)."""
    op = "fit"
    epochs = int_arg(op, "epochs", epochs, 0)
    batch_size = int_arg(op, "batch_size", batch_size, 1)
    initial_epoch = int_arg(op, "initial_epoch", initial_epoch, 0)
    if verbose not in (0, 1, 2):
        raise ValueError(f"fit: verbose must be 0, 1 or 2, got {verbose!r}.")
    if not isinstance(validation_split, numbers.Real) or not (
        0.0 <= validation_split < 1.0
    ):
        raise ValueError(
            f"fit: validation_split must be a number in [0, 1), got "
            f"{validation_split!r}."
        )
    if seed is None and initial_epoch > 0 and model.fit_seed is not None:
        # Resuming (e.g. after load_model): keep the checkpoint's shuffling.
        seed = model.fit_seed
    elif seed is None:
        seed = int(np.random.randint(0, 2**31 - 1))
    seed = int_arg(op, "seed", seed, 0)
    return epochs, batch_size, initial_epoch, seed


def _callback_list(model, callbacks, strategy) -> tuple[list, History]:
    history = History()
    # History goes last (as in Keras) so it records what callbacks add, e.g. "lr".
    callbacks = [*(callbacks or []), history]
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(
                f"fit: callbacks must be fastcnn.callbacks.Callback instances, got "
                f"{type(cb).__name__}."
            )
        cb.set_model(model)
    return strategy.callbacks_for_rank(callbacks), history


def fit(model, x, y, epochs, batch_size, validation_split, validation_data, shuffle,
        class_weight, initial_epoch, callbacks, verbose, seed, stratify,
        distributed, check_finite) -> History:
    """:meth:`fastcnn.Sequential.fit` (see there), with the model's training lock
    held by the caller."""
    op = "fit"
    model._require_compiled(op)
    if not isinstance(check_finite, bool):
        raise TypeError(f"fit: check_finite must be a bool, got {check_finite!r}.")
    given_dtype = getattr(x, "dtype", None)
    x = cast_input(model, op, x, check_finite)
    y = model._as_target(op, y, x.shape[0])
    if x.shape[0] == 0:
        raise ValueError("fit: x is an empty batch (0 samples).")
    epochs, batch_size, initial_epoch, seed = _check_settings(
        model, epochs, batch_size, initial_epoch, verbose, validation_split, seed)
    if not model.built:
        model.build(x.shape[1:])
    strategy = make_strategy(model, distributed, seed, x, y, check_finite)
    seed = strategy.seed  # rank 0's, so every rank splits and shuffles alike
    verbose = verbose if strategy.is_root else 0
    if check_finite:
        # After DataParallel has checked that every rank holds the same data, so
        # that every rank refuses it alike.
        check_finite_data("x", x, given_dtype)
        check_finite_data("y", y)
    model.fit_seed = seed
    train_rows, val = validation_set(model, x, y, validation_data, validation_split,
                                     seed, stratify, check_finite)
    run = _Run(model, strategy, x, y, train_rows, val, epochs, batch_size, shuffle,
               class_weights(model, class_weight), verbose, seed, check_finite)
    callbacks, history = _callback_list(model, callbacks, strategy)
    run.callbacks = callbacks
    model.stop_training = False
    for cb in callbacks:
        cb.on_train_begin({})
    for epoch in range(initial_epoch, epochs):
        run.epoch(epoch)
        if model.stop_training:
            break
    for cb in callbacks:
        cb.on_train_end({})
    return history


class _Run:
    """One fit call's settings, and its epochs."""

    def __init__(self, model, strategy, x, y, train_rows, val, epochs, batch_size,
                 shuffle, weights, verbose, seed, check_finite):
        self.model, self.strategy = model, strategy
        self.x, self.y, self.train_rows, self.val = x, y, train_rows, val
        self.epochs, self.batch_size, self.shuffle = epochs, batch_size, shuffle
        self.weights, self.verbose, self.seed = weights, verbose, seed
        self.check_finite = check_finite
        self.callbacks: list = []
        self.n_train = len(train_rows)
        self.n_steps = strategy.num_steps(self.n_train, batch_size)

    def _order(self, epoch: int) -> np.ndarray:
        order = self.train_rows
        if self.shuffle:
            # A pure function of (seed, epoch): a resumed run sees the same batches.
            rng = np.random.default_rng([self.seed, 1, epoch])
            order = order[rng.permutation(self.n_train)]
        return self.strategy.shard(order)

    def epoch(self, epoch: int) -> None:
        model, strategy = self.model, self.strategy
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, {})
        order = self._order(epoch)
        bar = (ProgressBar(self.n_steps, f"Epoch {epoch + 1}/{self.epochs}")
               if self.verbose == 1 else None)
        start = time.perf_counter()
        sums: dict[str, float] = {}
        seen = 0
        for step in range(self.n_steps):
            size = self._step(epoch, step, order, bar, sums)
            seen += size
            if bar is not None:
                bar.update(size, **{k: s / seen for k, s in sums.items()})
            model.stop_training = strategy.agree(model.stop_training)
            if model.stop_training:
                break
        logs = {key: total / seen for key, total in sums.items()}
        strategy.average_buffers()
        if self.val is not None:
            val_logs = strategy.evaluate(self.val[0], self.val[1],
                                         batch_size=self.batch_size)
            logs.update({f"val_{k}": value for k, value in val_logs.items()})
        model.epoch = epoch + 1
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)
        self._report(epoch, logs, bar, seen, time.perf_counter() - start)
        model.stop_training = strategy.agree(model.stop_training)

    def _step(self, epoch, step, order, bar, sums) -> int:
        """Train one step; returns the rows all processes trained on."""
        batch_size = self.batch_size
        rows = order[step * batch_size : (step + 1) * batch_size]
        # With several processes the step is every process's rows, and so are the
        # logs.
        size = self.strategy.step_rows(step, self.n_train, batch_size)
        for cb in self.callbacks:
            cb.on_batch_begin(step, {"size": size})
        logs = self.strategy.train_batch(self.x[rows], self.y[rows], self.weights)
        if self.check_finite and not math.isfinite(logs["loss"]):
            # The loss is over all processes: every one stops alike.
            if bar is not None:
                bar.close()
            raise_non_finite(self.model, logs["loss"], epoch, self.epochs, step,
                             self.n_steps, self.x,
                             self.strategy.loss_checked_after_step, self.weights)
        for key, value in logs.items():
            sums[key] = sums.get(key, 0.0) + value * size
        for cb in self.callbacks:
            cb.on_batch_end(step, {**logs, "size": size})
        return size

    def _report(self, epoch, logs, bar, seen, elapsed) -> None:
        if bar is not None:
            bar.close(**{k: value for k, value in logs.items()
                         if k.startswith("val_")})
        elif self.verbose == 2:
            shown = " - ".join(f"{k}: {value:.4g}" for k, value in logs.items())
            print(f"Epoch {epoch + 1}/{self.epochs} - {elapsed:.1f}s - "
                  f"{seen / max(elapsed, 1e-9):.0f} img/s - {shown}")


def evaluate(model, x, y, batch_size: int = 32, verbose: int = 0) -> dict[str, float]:
    """:meth:`fastcnn.Sequential.evaluate` (see there)."""
    op = "evaluate"
    model._require_compiled(op)
    x = model._as_input(op, x)
    y = model._as_target(op, y, x.shape[0])
    batch_size = int_arg(op, "batch_size", batch_size, 1)
    if x.shape[0] == 0:
        raise ValueError("evaluate: x is an empty batch (0 samples).")
    sums: dict[str, float] = {}
    for begin in range(0, x.shape[0], batch_size):
        out = model.forward(x[begin : begin + batch_size], training=False)
        target = model.loss.prepare_target(y[begin : begin + batch_size], out)
        loss = model.loss.forward(out, target)  # on the device where out is
        out = backend.to_host(out)
        values = {"loss": loss,
                  **metrics_mod.batch_values(model.metrics, out, target)}
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value * out.shape[0]
    result = {key: total / x.shape[0] for key, total in sums.items()}
    if verbose:
        print(" - ".join(f"{k}: {value:.4g}" for k, value in result.items()))
    return result
