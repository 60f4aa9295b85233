"""The training loop: ``Sequential.fit`` and ``Sequential.evaluate``.

One loop over epochs and steps, talking to callbacks and to a strategy
(:mod:`fastcnn.training.strategy`): the same code trains in one process and over
MPI ranks, on arrays or (in one process) on a stream of batches
(:mod:`fastcnn.training.streams`).
"""

from __future__ import annotations

import math
import numbers
import time

import numpy as np

from .. import backend
from .. import metrics as metrics_mod
from .._predict_guard import PREDICT_LOCK, parallel_guard
from .._progress import ProgressBar
from ..callbacks import Callback, History
from .args import int_arg
from .data import (
    cast_input,
    check_finite_data,
    check_stratify,
    class_weights,
    sample_weights,
    validation_arrays,
    validation_set,
)
from .non_finite import raise_non_finite
from .strategy import make_strategy
from .streams import Feed, is_stream, is_validation_stream, prepare, steps_arg


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
        distributed, check_finite, sample_weight=None, steps_per_epoch=None,
        validation_steps=None) -> History:
    """:meth:`fastcnn.Sequential.fit` (see there), with the model's training lock
    held by the caller."""
    op = "fit"
    model._require_compiled(op)
    if not isinstance(check_finite, bool):
        raise TypeError(f"fit: check_finite must be a bool, got {check_finite!r}.")
    steps_per_epoch = steps_arg(op, "steps_per_epoch", steps_per_epoch)
    validation_steps = steps_arg(op, "validation_steps", validation_steps)
    val_stream = is_validation_stream(validation_data)
    if validation_steps is not None and not val_stream:
        raise ValueError(
            "fit: validation_steps applies to a stream given as validation_data; "
            "array validation data is evaluated whole."
        )
    if is_stream(x):
        return _fit_stream(model, x, y, epochs, batch_size, validation_split,
                           validation_data, class_weight, initial_epoch, callbacks,
                           verbose, seed, stratify, distributed, check_finite,
                           sample_weight, steps_per_epoch, validation_steps)
    if steps_per_epoch is not None:
        raise ValueError(
            "fit: steps_per_epoch applies to a stream of batches; with arrays an "
            "epoch is ceil(N / batch_size) steps."
        )
    if y is None and isinstance(x, np.ndarray):
        raise TypeError(
            "fit: y is missing: array x needs its targets y (or pass a stream of "
            "(x, y) batches as x)."
        )
    given_dtype = getattr(x, "dtype", None)
    x = cast_input(model, op, x, check_finite)
    y = model._as_target(op, y, x.shape[0])
    if x.shape[0] == 0:
        raise ValueError("fit: x is an empty batch (0 samples).")
    epochs, batch_size, initial_epoch, seed = _check_settings(
        model, epochs, batch_size, initial_epoch, verbose, validation_split, seed)
    if sample_weight is not None:
        sample_weight = sample_weights(model, op, "sample_weight", sample_weight,
                                       x.shape[0])
    if distributed and (val_stream or (
            isinstance(validation_data, tuple | list) and len(validation_data) == 3)):
        raise ValueError(
            "fit: distributed=True validates on arrays (x_val, y_val) only, not on a "
            "stream or with validation sample weights."
        )
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
    if val_stream:
        check_stratify(y, stratify)
        train_rows = np.arange(x.shape[0])
        val = Feed(op, validation_data, validation_steps, "validation_data")
    else:
        train_rows, val = validation_set(model, x, y, validation_data,
                                         validation_split, seed, stratify,
                                         check_finite, sample_weight)
    run = _Run(model, strategy, x, y, train_rows, val, epochs, batch_size, shuffle,
               class_weights(model, class_weight), verbose, seed, check_finite,
               sample_weight)
    return _train(model, run, callbacks, strategy, initial_epoch, epochs)


def _train(model, run, callbacks, strategy, initial_epoch, epochs) -> History:
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


def _fit_stream(model, data, y, epochs, batch_size, validation_split,
                validation_data, class_weight, initial_epoch, callbacks, verbose,
                seed, stratify, distributed, check_finite, sample_weight,
                steps_per_epoch, validation_steps) -> History:
    """fit on a stream of batches (one process)."""
    op = "fit"
    kind = type(data).__name__
    if y is not None:
        raise TypeError(
            f"fit: x must be a numpy.ndarray, got {kind}; or, for a stream of "
            f"batches, which carry their own targets, y must be None (got "
            f"{type(y).__name__})."
        )
    if sample_weight is not None:
        raise TypeError(
            f"fit: x is a stream of batches ({kind}): give per-sample weights as "
            f"each batch's third element (x, y, sample_weight), not as "
            f"sample_weight."
        )
    if distributed:
        raise ValueError(
            f"fit: distributed=True trains on arrays only, not on a stream of "
            f"batches ({kind}): every rank must hold the same x and y to shard them."
        )
    if validation_split:
        raise ValueError(
            f"fit: validation_split needs arrays; x is a stream of batches ({kind}): "
            f"pass validation_data instead."
        )
    if stratify:
        raise ValueError(f"fit: stratify needs arrays; x is a stream ({kind}).")
    epochs, batch_size, initial_epoch, seed = _check_settings(
        model, epochs, batch_size, initial_epoch, verbose, 0.0, seed)
    feed = Feed(op, data, steps_per_epoch, "x")
    try:
        if initial_epoch < epochs:
            first, _, _ = prepare(model, op, feed.peek(initial_epoch), "x", 0,
                                  initial_epoch, check_finite)
            if not model.built:
                model.build(first.shape[1:])
        if validation_data is None:
            val = None
        elif is_validation_stream(validation_data):
            val = Feed(op, validation_data, validation_steps, "validation_data")
        else:
            val = validation_arrays(model, validation_data, check_finite)
        # (An unbuilt model here has no epoch to train: it never reads them.)
        weights = class_weights(model, class_weight) if model.built else None
    except BaseException:
        feed.close()  # a Loader's first pass, peeked: stop its thread now
        raise
    strategy = make_strategy(model, False, seed, None, None, check_finite)
    model.fit_seed = seed
    run = _StreamRun(model, strategy, feed, val, epochs, batch_size, weights,
                     verbose, seed, check_finite)
    return _train(model, run, callbacks, strategy, initial_epoch, epochs)


class _Run:
    """One fit call's settings, and its epochs (on arrays)."""

    def __init__(self, model, strategy, x, y, train_rows, val, epochs, batch_size,
                 shuffle, weights, verbose, seed, check_finite, sample_weight=None):
        self.model, self.strategy = model, strategy
        self.x, self.y, self.train_rows, self.val = x, y, train_rows, val
        self.epochs, self.batch_size, self.shuffle = epochs, batch_size, shuffle
        self.weights, self.verbose, self.seed = weights, verbose, seed
        self.check_finite = check_finite
        self.sample_weight = sample_weight
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

    def _batches(self, epoch: int):
        """``(x, y, sample_weight or None, size)`` of each step of ``epoch``; size
        counts the rows of all processes."""
        order = self._order(epoch)
        batch_size, weight = self.batch_size, self.sample_weight
        for step in range(self.n_steps):
            rows = order[step * batch_size : (step + 1) * batch_size]
            # With several processes the step is every process's rows, and so are
            # the logs.
            size = self.strategy.step_rows(step, self.n_train, batch_size)
            yield (self.x[rows], self.y[rows],
                   None if weight is None else weight[rows], size)

    def _ran_out(self, epoch: int, steps: int) -> bool:
        return False

    def epoch(self, epoch: int) -> None:
        model, strategy = self.model, self.strategy
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, {})
        bar = (ProgressBar(self.n_steps, f"Epoch {epoch + 1}/{self.epochs}")
               if self.verbose == 1 else None)
        start = time.perf_counter()
        sums: dict[str, float] = {}
        seen = steps = 0
        batches = self._batches(epoch)
        try:
            for x, y, weight, size in batches:
                self._step(epoch, steps, x, y, weight, size, bar, sums)
                seen += size
                steps += 1
                if bar is not None:
                    bar.update(size, **{k: s / seen for k, s in sums.items()})
                model.stop_training = strategy.agree(model.stop_training)
                if model.stop_training:
                    break
        finally:
            batches.close()
        if self._ran_out(epoch, steps):
            model.stop_training = True
            if steps == 0:  # nothing trained this epoch: it does not count
                if bar is not None:
                    bar.close()
                return
        logs = {key: total / seen for key, total in sums.items()}
        strategy.average_buffers()
        if self.val is not None:
            val_logs = self._validate()
            logs.update({f"val_{k}": value for k, value in val_logs.items()})
        model.epoch = epoch + 1
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)
        self._report(epoch, logs, bar, seen, time.perf_counter() - start)
        model.stop_training = strategy.agree(model.stop_training)

    def _validate(self) -> dict[str, float]:
        if isinstance(self.val, Feed):
            return _evaluate_feed(self.model, self.val, 0, self.check_finite)
        x_val, y_val, w_val = self.val
        if w_val is None:
            return self.strategy.evaluate(x_val, y_val, batch_size=self.batch_size)
        return evaluate(self.model, x_val, y_val, self.batch_size,
                        sample_weight=w_val)

    def _step(self, epoch, step, x, y, weight, size, bar, sums) -> None:
        """Train one step on ``size`` rows (over all processes)."""
        for cb in self.callbacks:
            cb.on_batch_begin(step, {"size": size})
        if weight is None:
            logs = self.strategy.train_batch(x, y, self.weights)
        else:
            logs = self.strategy.train_batch(x, y, self.weights, sample_weight=weight)
        if self.check_finite and not math.isfinite(logs["loss"]):
            # The loss is over all processes: every one stops alike.
            if bar is not None:
                bar.close()
            raise_non_finite(self.model, logs["loss"], epoch, self.epochs, step,
                             self.n_steps, self.x if self.x is not None else x,
                             self.strategy.loss_checked_after_step, self.weights,
                             weight is not None)
        for key, value in logs.items():
            sums[key] = sums.get(key, 0.0) + value * size
        for cb in self.callbacks:
            cb.on_batch_end(step, {**logs, "size": size})

    def _report(self, epoch, logs, bar, seen, elapsed) -> None:
        if bar is not None:
            bar.close(**{k: value for k, value in logs.items()
                         if k.startswith("val_")})
        elif self.verbose == 2:
            shown = " - ".join(f"{k}: {value:.4g}" for k, value in logs.items())
            print(f"Epoch {epoch + 1}/{self.epochs} - {elapsed:.1f}s - "
                  f"{seen / max(elapsed, 1e-9):.0f} img/s - {shown}")


class _StreamRun(_Run):
    """fit's epochs over a stream of batches (see :mod:`.streams`)."""

    def __init__(self, model, strategy, feed, val, epochs, batch_size, weights,
                 verbose, seed, check_finite):
        self.model, self.strategy, self.feed, self.val = model, strategy, feed, val
        self.x = None
        self.epochs, self.batch_size = epochs, batch_size
        self.weights, self.verbose, self.seed = weights, verbose, seed
        self.check_finite = check_finite
        self.callbacks = []
        self.n_steps = feed.length()

    def _batches(self, epoch: int):
        items = self.feed.items(epoch)
        try:
            for index, item in items:
                x, y, weight = prepare(self.model, "fit", item, "x", index, epoch,
                                       self.check_finite)
                yield x, y, weight, x.shape[0]
        finally:
            items.close()

    def _ran_out(self, epoch: int, steps: int) -> bool:
        if self.feed.ran_out:
            self.feed.ran_out_warning(epoch, self.epochs, steps)
        return self.feed.ran_out


def evaluate(model, x, y=None, batch_size: int = 32, verbose: int = 0,
             sample_weight=None, steps=None) -> dict[str, float]:
    """:meth:`fastcnn.Sequential.evaluate` (see there)."""
    op = "evaluate"
    model._require_compiled(op)
    steps = steps_arg(op, "steps", steps)
    if is_stream(x):
        kind = type(x).__name__
        if y is not None:
            raise TypeError(
                f"evaluate: x must be a numpy.ndarray, got {kind}; or, for a "
                f"stream of batches, which carry their own targets, y must be "
                f"None (got {type(y).__name__})."
            )
        if sample_weight is not None:
            raise TypeError(
                f"evaluate: x is a stream of batches ({kind}): give per-sample "
                f"weights as each batch's third element, not as sample_weight."
            )
        return _evaluate_feed(model, Feed(op, x, steps, "x"), verbose)
    if steps is not None:
        raise ValueError("evaluate: steps applies to a stream of batches; arrays "
                         "are evaluated whole.")
    if y is None and isinstance(x, np.ndarray):
        raise TypeError(
            "evaluate: y is missing: array x needs its targets y (or pass a "
            "stream of (x, y) batches as x)."
        )
    x = model._as_input(op, x)
    y = model._as_target(op, y, x.shape[0])
    batch_size = int_arg(op, "batch_size", batch_size, 1)
    if x.shape[0] == 0:
        raise ValueError("evaluate: x is an empty batch (0 samples).")
    if sample_weight is not None:
        sample_weight = sample_weights(model, op, "sample_weight", sample_weight,
                                       x.shape[0])
    sums: dict[str, float] = {}
    for begin in range(0, x.shape[0], batch_size):
        part = slice(begin, begin + batch_size)
        _evaluate_batch(model, x[part], y[part],
                        None if sample_weight is None else sample_weight[part], sums)
    return _result(sums, x.shape[0], verbose)


def _evaluate_batch(model, x, y, sample_weight, sums) -> None:
    """Add one batch's loss and metrics, times its size, to ``sums``."""
    out = model.forward(x, training=False)
    target = model.loss.prepare_target(y, out)
    if sample_weight is None:
        loss = model.loss.forward(out, target)  # on the device where out is
    else:
        loss = model.loss.forward(out, target, None, sample_weight)
    out = backend.to_host(out)
    values = {"loss": loss, **metrics_mod.batch_values(model.metrics, out, target)}
    for key, value in values.items():
        sums[key] = sums.get(key, 0.0) + value * out.shape[0]


def _result(sums, count, verbose) -> dict[str, float]:
    result = {key: total / count for key, total in sums.items()}
    if verbose:
        print(" - ".join(f"{k}: {value:.4g}" for k, value in result.items()))
    return result


def _evaluate_feed(model, feed: Feed, verbose: int = 0,
                   check_finite: bool = False) -> dict[str, float]:
    """evaluate over one pass of a stream; batch values weighted by batch size."""
    sums: dict[str, float] = {}
    count = 0
    items = feed.items()
    try:
        for index, item in items:
            x, y, weight = prepare(model, feed.op, item, feed.where, index, None,
                                   check_finite)
            _evaluate_batch(model, x, y, weight, sums)
            count += x.shape[0]
    finally:
        items.close()
    if count == 0:
        raise ValueError(
            f"{feed.op}: {feed.where} ({type(feed.data).__name__}) yielded no "
            f"batches." + (" A generator is consumed once: for validation every "
                           "epoch pass a re-iterable (a list, a Loader) or an "
                           "endless generator with validation_steps."
                           if feed.one_shot else "")
        )
    return _result(sums, count, verbose)


def predict_stream(model, data, steps=None) -> np.ndarray:
    """The model's output for every batch of a stream (``x`` batches or ``(x, ...)``
    tuples, targets ignored), concatenated, in evaluation mode.

    Shape: batches (B_i, *input_shape) -> (sum B_i, *output_shape).
    """
    op = "predict"
    steps = steps_arg(op, "steps", steps)
    parts = []
    items = Feed(op, data, steps, "x").items()
    try:
        for index, item in items:
            x, _, _ = prepare(model, op, item, "x", index, None, False, need_y=False)
            if not model.built:
                with PREDICT_LOCK:  # two threads must not both build the layers
                    if not model.built:
                        model.build(x.shape[1:])
            with parallel_guard():
                parts.append(backend.to_host(model.forward(x, training=False)))
    finally:
        items.close()
    if not parts:
        raise ValueError(f"predict: x ({type(data).__name__}) yielded no batches.")
    return np.concatenate(parts, axis=0)
