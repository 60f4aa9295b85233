"""Loader: mini-batches streamed from arrays or ``np.memmap`` files, with seeded
per-batch augmentation and the next batch prepared on a background thread.

``fit``, ``evaluate`` and ``predict`` take a Loader in place of arrays. Only the
rows of the current batch are read (fancy indexing, one batch at a time), so a
``np.memmap`` larger than memory streams from disk.
"""

from __future__ import annotations

import numbers
import queue
import threading
import weakref
from collections.abc import Iterator

import numpy as np

#: How long the worker waits on a full queue before looking at the stop flag.
_POLL_S = 0.05


def _rows(array: np.ndarray, index) -> np.ndarray:
    """``array[index]`` as an in-memory ndarray (a memmap's rows are read here)."""
    part = array[index]
    if isinstance(array, np.memmap):
        return np.array(part)  # read now (on the worker thread), not lazily later
    return part


class Loader:
    """Mini-batches of ``(x, y)`` (or ``(x, y, sample_weight)``, or ``x`` alone)
    over arrays, one epoch per iteration.

    Every ``iter(loader)`` is one epoch: epoch ``e`` visits the rows in an order
    that is a pure function of ``(seed, e)``, and batch ``b`` is transformed with
    a Generator seeded by ``(seed, e, b)``, so the same seed gives the same
    batches run after run, with or without prefetching. Iterating again gives
    the next epoch; :meth:`set_epoch` chooses it (``fit`` calls it with its own
    epoch, so a resumed fit sees the batches an uninterrupted one would).

    Parameters
    ----------
    x : ndarray or np.memmap
        Samples along the first axis; never copied whole.
    y : ndarray, optional
        Targets, one per sample. Without y the loader yields ``x`` batches alone
        (for ``predict``).
    batch_size : int
        Samples per batch; the last batch may be smaller unless ``drop_last``.
    shuffle : bool
        A new random order every epoch; False visits the rows in order.
    transform : callable, optional
        ``transform(x_batch, rng) -> x_batch``, applied to every batch with a
        seeded numpy Generator; chain several with
        :class:`fastcnn.datasets.Compose` (e.g. ``RandomCrop``, ``RandomFlip``).
    seed : int, optional
        Seeds the order and the transforms. None draws one from NumPy's global
        RNG when the loader is made (so ``fastcnn.seed`` makes it reproducible).
    drop_last : bool
        Skip a final batch smaller than ``batch_size``.
    prefetch : bool
        Prepare the next batch (indexing, memmap reads, the transform) on a
        background thread while the caller works on the current one. The thread
        is a daemon, ends when the epoch is exhausted or its iterator is closed
        or dropped, and an exception raised there is raised to the caller.
    sample_weight : ndarray, optional
        Per-sample weights, yielded as the third element of each batch.

    Shape: x ``(N, ...)``, y ``(N, ...)``, sample_weight ``(N,)`` -> batches
    ``(B, ...)``, ``(B, ...)``, ``(B,)``.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray | None = None,
                 batch_size: int = 32, shuffle: bool = True, transform=None,
                 seed: int | None = None, drop_last: bool = False,
                 prefetch: bool = True, sample_weight: np.ndarray | None = None
                 ) -> None:
        if not isinstance(x, np.ndarray) or x.ndim < 1:
            raise TypeError(
                f"Loader: x must be a numpy.ndarray or np.memmap with a batch axis, "
                f"got {getattr(x, 'shape', type(x).__name__)}."
            )
        n = x.shape[0]
        for name, value in (("y", y), ("sample_weight", sample_weight)):
            if value is None:
                continue
            if not isinstance(value, np.ndarray) or value.ndim < 1:
                raise TypeError(
                    f"Loader: {name} must be a numpy.ndarray, got "
                    f"{type(value).__name__}."
                )
            if value.shape[0] != n:
                raise ValueError(
                    f"Loader: x has {n} samples but {name} has {value.shape[0]}."
                )
        if sample_weight is not None and y is None:
            raise ValueError("Loader: sample_weight needs y (batches (x, y, w)).")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(f"Loader: batch_size must be an int, got {batch_size!r}.")
        if batch_size < 1:
            raise ValueError(f"Loader: batch_size must be >= 1, got {batch_size!r}.")
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last),
                           ("prefetch", prefetch)):
            if not isinstance(flag, bool):
                raise TypeError(f"Loader: {name} must be a bool, got {flag!r}.")
        if transform is not None and not callable(transform):
            raise TypeError(
                f"Loader: transform must be a callable transform(x_batch, rng) -> "
                f"x_batch, got {transform!r}."
            )
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"Loader: seed must be an int >= 0, got {seed!r}.")
        if n == 0:
            raise ValueError("Loader: x has no samples.")
        if drop_last and n < batch_size:
            raise ValueError(
                f"Loader: drop_last=True with batch_size={batch_size} and {n} "
                f"samples leaves no batch."
            )
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.batch_size, self.shuffle = int(batch_size), shuffle
        self.drop_last = drop_last
        self.transform, self.seed, self.prefetch = transform, int(seed), prefetch
        #: The epoch the next ``iter(loader)`` gives.
        self.epoch = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its order and transforms)."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or (
                epoch < 0):
            raise ValueError(f"Loader.set_epoch: epoch must be an int >= 0, got "
                             f"{epoch!r}.")
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray | None:
        """The row order of ``epoch`` (None when not shuffled: rows in order)."""
        if not self.shuffle:
            return None
        return np.random.default_rng([self.seed, 0, epoch]).permutation(
            self.x.shape[0])

    def batch(self, epoch: int, index: int, order: np.ndarray | None = None):
        """Batch ``index`` of ``epoch``, as iteration yields it (``order`` is
        :meth:`order`'s, passed to skip recomputing it)."""
        if order is None and self.shuffle:
            order = self.order(epoch)
        begin = index * self.batch_size
        rows = (slice(begin, begin + self.batch_size) if order is None
                else order[begin : begin + self.batch_size])
        x = _rows(self.x, rows)
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, 1, epoch, index])
            x = self.transform(x, rng)
        if self.y is None:
            return x
        if self.sample_weight is None:
            return x, _rows(self.y, rows)
        return x, _rows(self.y, rows), _rows(self.sample_weight, rows)

    def __iter__(self) -> Iterator:
        epoch = self.epoch
        self.epoch += 1
        if self.prefetch:
            return _Prefetching(self, epoch)
        return _Serial(self, epoch)

    def __repr__(self) -> str:
        return (f"Loader(n={self.x.shape[0]}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, transform={self.transform!r}, "
                f"seed={self.seed}, drop_last={self.drop_last}, "
                f"prefetch={self.prefetch})")


class _Serial:
    """One epoch's batches, each made when asked for."""

    def __init__(self, loader: Loader, epoch: int) -> None:
        self._loader, self._epoch = loader, epoch
        self._order = loader.order(epoch)
        self._next, self._count = 0, len(loader)

    def __iter__(self):
        return self

    def __next__(self):
        if self._next >= self._count:
            raise StopIteration
        index = self._next
        self._next += 1
        return self._loader.batch(self._epoch, index, self._order)

    def close(self) -> None:
        self._next = self._count


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def _work(loader: Loader, epoch: int, order, count: int, out: queue.Queue,
          stop: threading.Event) -> None:
    """The prefetch thread: make each batch in turn and hand it over, until the
    epoch ends or ``stop`` is set."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    index = 0
    try:
        for index in range(count):
            if stop.is_set() or not put(loader.batch(epoch, index, order)):
                return
        put(_DONE)
    except BaseException as error:  # noqa: BLE001 - handed to the caller
        error.add_note(f"(raised in the Loader's prefetch thread, making batch "
                       f"{index} of epoch {epoch})")
        put(_Failure(error))


def _shutdown(stop: threading.Event, out: queue.Queue,
              thread: threading.Thread) -> None:
    stop.set()
    while True:  # free a worker blocked on a full queue
        try:
            out.get_nowait()
        except queue.Empty:
            break
    if thread is not threading.current_thread():
        thread.join()


class _Prefetching:
    """One epoch's batches, the next made on a daemon thread while the caller
    uses the current one."""

    def __init__(self, loader: Loader, epoch: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_work,
            args=(loader, epoch, loader.order(epoch), len(loader), self._queue,
                  self._stop),
            name=f"fastcnn-loader-epoch-{epoch}", daemon=True)
        self._done = False
        # Stops and joins the thread when this iterator is closed or collected;
        # the worker holds no reference to it.
        self._finalizer = weakref.finalize(self, _shutdown, self._stop, self._queue,
                                           self._thread)
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _DONE:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        return item

    def close(self) -> None:
        """Stop the thread (it is joined before this returns)."""
        self._done = True
        self._finalizer()
