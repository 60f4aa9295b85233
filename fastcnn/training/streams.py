"""Streams of batches for ``fit``, ``evaluate`` and ``predict``: any iterable or
generator of ``(x, y)`` or ``(x, y, sample_weight)`` batches (``predict``: ``x``
batches or ``(x, ...)`` tuples), such as :class:`fastcnn.datasets.Loader`.

Epochs, as in Keras: a re-iterable (a Loader, a list) is iterated anew every
epoch; a one-shot iterator (a generator) is consumed across epochs, so epoch 2
continues where epoch 1 stopped. With ``steps_per_epoch`` an epoch is that many
batches; without, it lasts until the iterable is exhausted. When the data runs
out before an epoch's ``steps_per_epoch`` (or gives no batch at all at the start
of an epoch), ``fit`` warns and stops training after that epoch, as Keras does
("Your input ran out of data; interrupting training").
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator

import numpy as np

from .args import int_arg
from .data import cast_input, first_non_finite, sample_weights


def is_stream(data) -> bool:
    """Whether ``data`` is a stream of batches rather than an array: any iterable
    or iterator other than an ndarray, a string, bytes or a dict."""
    if isinstance(data, np.ndarray | str | bytes | dict):
        return False
    return isinstance(data, Iterable | Iterator)


def is_validation_stream(data) -> bool:
    """fit's ``validation_data`` as a stream: a tuple, or a list whose first
    element is an array, is ``(x_val, y_val[, sample_weight_val])`` (as in Keras);
    any other iterable is a stream of batches."""
    if isinstance(data, tuple):
        return False
    if isinstance(data, list) and data and isinstance(data[0], np.ndarray):
        return False
    return is_stream(data)


def steps_arg(op: str, name: str, value) -> int | None:
    """``steps_per_epoch`` / ``validation_steps`` / ``steps``: None or an int >= 1."""
    return None if value is None else int_arg(op, name, value, 1)


def _kind(data) -> str:
    return type(data).__name__


class Feed:
    """One stream's passes: :meth:`items` gives one epoch's raw batches.

    Parameters
    ----------
    op : str
        ``"fit"``, ``"evaluate"`` or ``"predict"``, for messages.
    data : iterable
        The stream.
    steps : int or None
        Batches per pass (None: until exhausted).
    where : str
        The argument the stream came in, for messages (``"x"``,
        ``"validation_data"``).

    Shape: no arrays.
    """

    def __init__(self, op: str, data, steps: int | None, where: str) -> None:
        self.op, self.data, self.steps, self.where = op, data, steps, where
        self.one_shot = isinstance(data, Iterator)
        self._pending: tuple | None = None
        #: Set by :meth:`items`: the pass ended early (fewer than ``steps`` batches,
        #: or none at all without ``steps``).
        self.ran_out = False

    def length(self) -> int | None:
        """Batches per pass where known (for the progress bar)."""
        if self.steps is not None:
            return self.steps
        if not self.one_shot:
            try:
                return len(self.data)
            except TypeError:
                return None
        return None

    def _open(self, epoch: int | None):
        if epoch is not None and not self.one_shot and hasattr(self.data, "set_epoch"):
            # A Loader: epoch e's order and transforms, whatever came before.
            self.data.set_epoch(epoch)
        return iter(self.data)

    def peek(self, epoch: int | None):
        """The first batch of the pass for ``epoch`` (kept: :meth:`items` yields it
        first), to build the model from."""
        iterator = self._open(epoch)
        try:
            item = next(iterator)
        except StopIteration:
            raise ValueError(
                f"{self.op}: {self.where} ({_kind(self.data)}) yielded no batches."
                + (" A generator can be consumed only once: pass a fresh one, or a "
                   "re-iterable such as a list or fastcnn.datasets.Loader."
                   if self.one_shot else "")
            ) from None
        self._pending = (iterator, item)
        return item

    def close(self) -> None:
        """Drop a peeked pass that will not be iterated (its prefetch thread
        stops)."""
        if self._pending is not None:
            iterator, _ = self._pending
            self._pending = None
            close = getattr(iterator, "close", None)
            if not self.one_shot and close is not None:
                close()

    def items(self, epoch: int | None = None):
        """``(index, raw batch)`` of one pass, at most ``steps`` of them."""
        if self._pending is not None:
            iterator, first = self._pending
            self._pending = None
            head = [first]
        else:
            iterator, head = self._open(epoch), []
        self.ran_out = False
        count = 0
        try:
            while self.steps is None or count < self.steps:
                if head:
                    item = head.pop()
                else:
                    try:
                        item = next(iterator)
                    except StopIteration:
                        self.ran_out = self.steps is not None or count == 0
                        break
                yield count, item
                count += 1
        finally:
            # A re-iterable's pass left early (steps, a stop) must stop its
            # prefetch thread; a generator goes on next epoch.
            close = getattr(iterator, "close", None)
            if not self.one_shot and close is not None:
                close()

    def ran_out_warning(self, epoch: int, epochs: int, seen: int) -> None:
        when = (f"after {seen} of steps_per_epoch={self.steps} batches of epoch "
                f"{epoch + 1}/{epochs}" if self.steps is not None else
                f"at the start of epoch {epoch + 1}/{epochs}")
        advice = ("A generator is consumed across epochs: make it yield at least "
                  "steps_per_epoch * epochs batches (e.g. loop forever), or pass a "
                  "re-iterable such as a list or fastcnn.datasets.Loader, which "
                  "restarts every epoch." if self.one_shot else
                  f"It gives {self.length() if self.steps is None else 'fewer'} "
                  f"batches per pass: lower steps_per_epoch or leave it None.")
        warnings.warn(
            f"{self.op}: {self.where} ({_kind(self.data)}) ran out of data {when}; "
            f"training stops here, as in Keras. {advice}",
            UserWarning, stacklevel=4)


def _where(op: str, where: str, index: int, epoch: int | None) -> str:
    at = f" of epoch {epoch + 1}" if epoch is not None else ""
    return f"{op}: batch {index}{at} of {where}"


def unpack(op: str, item, label: str, need_y: bool):
    """A raw batch as ``(x, y, sample_weight)`` (y and sample_weight may be None)."""
    if not need_y:
        if isinstance(item, np.ndarray):
            return item, None, None
        if isinstance(item, tuple | list) and 1 <= len(item) <= 3:
            return item[0], None, None
        raise TypeError(
            f"{label} must be an x array or a tuple (x, ...), got "
            + (f"a {type(item).__name__} of {len(item)} elements."
               if isinstance(item, tuple | list) else f"{type(item).__name__}.")
        )
    if not isinstance(item, tuple | list) or len(item) not in (2, 3):
        got = (f"a {type(item).__name__} of {len(item)} elements"
               if isinstance(item, tuple | list) else type(item).__name__)
        hint = (f" (y missing? {op} needs the targets in every batch)"
                if isinstance(item, np.ndarray) or (
                    isinstance(item, tuple | list) and len(item) == 1) else "")
        raise TypeError(
            f"{label} must be a tuple (x, y) or (x, y, sample_weight), got "
            f"{got}{hint}."
        )
    x, y = item[0], item[1]
    if y is None:
        raise ValueError(f"{label} has y=None; {op} needs the targets in every "
                         f"batch.")
    return x, y, (item[2] if len(item) == 3 else None)


def prepare(model, op: str, item, where: str, index: int, epoch: int | None,
            check_finite: bool, need_y: bool = True):
    """One raw batch unpacked, checked and cast: ``(x, y, sample_weight)``."""
    label = _where(op, where, index, epoch)
    x, y, weight = unpack(op, item, label, need_y)
    given_dtype = getattr(x, "dtype", None)
    x = cast_input(model, label, x, check_finite)
    if x.shape[0] == 0:
        raise ValueError(f"{label}: x is an empty batch (0 samples).")
    if need_y:
        y = model._as_target(label, y, x.shape[0])
    if weight is not None:
        weight = sample_weights(model, label, "sample_weight", weight, x.shape[0])
    if check_finite:
        for name, array in (("x", x), ("y", y)):
            bad = None if array is None else first_non_finite(array)
            if bad is not None:
                cast = ("" if name == "y" or given_dtype in (None, x.dtype) else
                        f" after the cast from {given_dtype} to {x.dtype}")
                raise ValueError(
                    f"{label}: {name} holds NaN or infinity{cast}, first in sample "
                    f"{bad} of the batch. Fix or drop those samples, or pass "
                    f"check_finite=False."
                )
    return x, y, weight
