"""DataParallel: one replica of a model per MPI rank, trained as one model.

``Sequential.fit(..., distributed=True)`` makes one of these on every rank and
routes its training steps through it; you can also drive it yourself. It is a
training strategy: the interface of :class:`fastcnn.training.SingleProcess`
(see :mod:`fastcnn.training.strategy`), which the training loop talks to.

What every step does, on every rank: forward and backward on the rank's own rows,
then ONE allreduce over a persistent flat buffer that holds every gradient (scaled by
the rank's weight in the batch) followed by the batch's sample count, loss sum and
metric sums; then every rank divides by the total weight and applies the same
optimizer step to the same weights. So ``world`` ranks with batch B step exactly like
one process with batch ``world * B`` (to rounding), including the ragged last batch
of an epoch: a rank's weight is its row count (with ``class_weight`` and
``sample_weight``, the sum of its rows' weights, the denominator of the weighted
loss), and a rank with no rows in that batch contributes zeros.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import zlib

import numpy as np

from .. import metrics as metrics_mod
from ..callbacks import Callback, History
from ..random import layer_generators
from .comm import DistributedError, MPICommunicator, broadcast_bytes
from .flat import FlatBuffer
from .sharding import num_steps, shard, step_rows

#: The slots after the gradients: total weight, sample count, weighted loss sum.
_WEIGHT, _COUNT, _LOSS = 0, 1, 2
_STAT_SLOTS = 3


def communicator(comm=None):
    """The communicator ``fit(distributed=...)`` and :class:`DataParallel` use.

    ``None`` or ``True``: an :class:`MPICommunicator` on ``MPI.COMM_WORLD``; an
    mpi4py Intracomm: wrapped in one; an object with ``rank``, ``size``,
    ``allreduce`` and ``broadcast`` (an ``MPICommunicator``, a test fake): as is.

    Shape: no arrays.
    """
    if comm is None or comm is True:
        return MPICommunicator()
    if all(hasattr(comm, name) for name in ("rank", "size", "allreduce", "broadcast")):
        return comm
    if type(comm).__module__.startswith("mpi4py"):
        return MPICommunicator(comm)
    raise TypeError(
        f"fit: distributed must be True, False, an mpi4py communicator or a "
        f"fastcnn.distributed.MPICommunicator, got {comm!r}."
    )


def _jsonable(value):
    """``value`` as JSON would give it back (tuples become lists, and so on)."""
    return json.loads(json.dumps(value, default=str))


def _fingerprint(array: np.ndarray) -> list:
    """Shape, dtype and a CRC of up to ~256 evenly spaced rows: cheap, and enough
    to catch ranks that loaded different data."""
    step = max(1, array.shape[0] // 256) if array.ndim else 1
    sample = np.ascontiguousarray(array[::step] if array.ndim else array)
    return [list(array.shape), array.dtype.str, zlib.crc32(sample.tobytes())]


class _Discard(io.TextIOBase):
    """A text stream that drops what is written to it."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


class _Silenced(Callback):
    """Runs a callback on a rank other than 0 with its printing sent nowhere, so
    only rank 0 talks (EarlyStopping's "early stopping", a LambdaCallback's print).
    """

    def __init__(self, inner: Callback, sink) -> None:
        super().__init__()
        self.inner = inner
        self._sink = sink

    def set_model(self, model) -> None:
        super().set_model(model)
        self.inner.set_model(model)

    def _call(self, hook: str, *args) -> None:
        with contextlib.redirect_stdout(self._sink):
            getattr(self.inner, hook)(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_batch_begin(self, batch, logs=None):
        self._call("on_batch_begin", batch, logs)

    def on_batch_end(self, batch, logs=None):
        self._call("on_batch_end", batch, logs)


class DataParallel:
    """Synchronous data-parallel training of one model replica per rank.

    Making one is a collective (every rank must make it, with the same model
    architecture, compile settings and data): rank 0's seed, weights, BatchNorm
    statistics, optimizer state and Dropout generator states are broadcast to all
    ranks, then each rank's Dropout generators (except rank 0's) are reseeded from
    ``(rank 0's state, rank)`` so that ranks draw different masks.

    Semantics
    ---------
    - Data: every rank holds the whole data set; :meth:`shard` keeps the rank's
      interleaved share of each epoch's order (see :mod:`.sharding`).
    - Gradients: weighted mean over all ranks' rows, one allreduce per step.
    - Metrics: the batch loss and metrics returned by :meth:`train_batch` are over
      all ranks' rows, identical on every rank, so callbacks decide identically.
    - BatchNorm: each rank normalises with its own batch statistics (not synced);
      :meth:`average_buffers` (called by ``fit`` at the end of every epoch) averages
      the running statistics over the ranks, so all ranks evaluate and save the
      same model.
    - Validation: :meth:`evaluate` shards the rows and reduces the sums.

    Parameters
    ----------
    model : Sequential
        Built and compiled, on every rank.
    comm : optional
        See :func:`communicator` (default: ``MPI.COMM_WORLD``).
    seed : int, optional
        The fit seed; rank 0's is used everywhere (:attr:`seed`).
    x, y : ndarray, optional
        The training data, checked to be the same on every rank (shape, dtype and
        a checksum of sampled rows).

    Attributes
    ----------
    rank, size : int
    seed : int or None
    allreduce_seconds : float
        Wall time spent in the gradient allreduce (including waiting for slower
        ranks), summed over :attr:`steps` calls of :meth:`train_batch`.

    Shape: no arrays.
    """

    #: The loss is known over all ranks only after the allreduce, and so after the
    #: update: fit's non-finite check comes after the step.
    loss_checked_after_step = True

    def __init__(self, model, comm=None, seed: int | None = None,
                 x: np.ndarray | None = None, y: np.ndarray | None = None) -> None:
        if not model.built or model.optimizer is None or model.loss is None:
            raise ValueError(
                "DataParallel: the model must be built and compiled on every rank "
                "first."
            )
        self.model = model
        self.comm = communicator(comm)
        self.rank: int = int(self.comm.rank)
        self.size: int = int(self.comm.size)
        self.metric_names = [metrics_mod.metric_name(m) for m in model.metrics]
        # Trainable parameters only: the allreduce carries their gradients, and a
        # frozen layer's must not reach the optimizer (weight decay would move it).
        self._params = [(name, param) for name, param, _ in model._named_grads()]
        self._grads = FlatBuffer({name: p.shape for name, p in self._params},
                                 model.dtype,
                                 extra=_STAT_SLOTS + len(self.metric_names))
        self._buffers = model._named_buffers()
        self._buffer_flat = FlatBuffer({k: b.shape for k, b in self._buffers.items()},
                                       model.dtype)
        self._flag = np.zeros(1, dtype=np.int64)
        self.allreduce_seconds = 0.0
        self.steps = 0
        self.seed = self._synchronise(seed, x, y)

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0, the rank that prints and writes files."""
        return self.rank == 0

    # --------------------------------------------------------- starting together

    def _description(self, x, y) -> dict:
        model = self.model
        config = model.get_config()
        # Names are cosmetic, and auto-names count the layers a process has made.
        description = {
            "model": {**{k: v for k, v in config.items() if k != "name"},
                      "layers": [{**layer, "config": {
                          k: v for k, v in layer["config"].items() if k != "name"}}
                          for layer in config["layers"]]},
            "optimizer": [type(model.optimizer).__name__,
                          model.optimizer.get_config()],
            "loss": [type(model.loss).__name__, model.loss.get_config()],
            "metrics": self.metric_names,
        }
        if x is not None:
            description["x"] = _fingerprint(x)
        if y is not None:
            description["y"] = _fingerprint(y)
        return _jsonable(description)

    def _synchronise(self, seed, x, y):
        model = self.model
        refs = model._state_refs()
        opt_arrays, opt_scalars = model.optimizer.get_state()
        generators = layer_generators(model.layers)
        description = self._description(x, y)
        header = payload = None
        if self.is_root:
            arrays = {**{f"state/{k}": v for k, v in refs.items()},
                      **{f"optimizer/{k}": v for k, v in opt_arrays.items()}}
            header = json.dumps({
                "seed": seed,
                "description": description,
                "optimizer": opt_scalars,
                "generators": {k: g.bit_generator.state for k, g in generators.items()},
                "arrays": [[k, a.dtype.str, list(a.shape)] for k, a in arrays.items()],
            }, default=str).encode()
            payload = b"".join(np.ascontiguousarray(a).tobytes()
                               for a in arrays.values())
        header = json.loads(broadcast_bytes(self.comm, header, "rank 0's model setup"))
        payload = broadcast_bytes(self.comm, payload, "rank 0's weights")
        problem = None if self.is_root else self._mismatch(description,
                                                           header["description"])
        self._flag[0] = 0 if problem is None else self.rank + 1
        self.comm.allreduce(self._flag, "max",
                            what="the check that every rank trains the same model")
        if self._flag[0]:
            raise DistributedError(problem or (
                f"fit: rank {int(self._flag[0]) - 1} does not train the same model "
                f"or data as rank 0 (see that rank's error)."
            ))
        if not self.is_root:
            self._load(header, payload, refs, generators)
        self._reseed_dropout(generators)
        return header["seed"]

    def _mismatch(self, mine: dict, root: dict) -> str | None:
        for key in ("model", "optimizer", "loss", "metrics", "x", "y"):
            if mine.get(key) != root.get(key):
                what = {"x": "training data x (shape, dtype, checksum)",
                        "y": "training targets y (shape, dtype, checksum)"}
                what = what.get(key, key)
                return (
                    f"fit: rank {self.rank}'s {what} differs from rank 0's: "
                    f"{mine.get(key)!r:.300} against {root.get(key)!r:.300}. Every "
                    f"rank must build and compile the same model and pass the same "
                    f"data (fastcnn.distributed shards it)."
                )
        return None

    def _load(self, header, payload, refs, generators) -> None:
        offset = 0
        opt_arrays = {}
        for key, dtype, shape in header["arrays"]:
            dtype = np.dtype(dtype)
            count = int(np.prod(shape, dtype=np.int64))
            value = np.frombuffer(payload, dtype=dtype, count=count,
                                  offset=offset).reshape(shape)
            offset += count * dtype.itemsize
            kind, _, name = key.partition("/")
            if kind == "state":
                refs[name][...] = value
            else:
                opt_arrays[name] = value.copy()
        self.model.optimizer.set_state(opt_arrays, header["optimizer"],
                                       params=self.model._named_params())
        for key, state in header["generators"].items():
            generators[key].bit_generator.state = state

    def _reseed_dropout(self, generators) -> None:
        # Rank 0 keeps its stream (so one rank trains exactly like fit() without
        # distributed); rank r > 0 starts a stream from (rank 0's next draw, r).
        if self.is_root:
            return
        for gen in generators.values():
            clone = np.random.Generator(type(gen.bit_generator)())
            clone.bit_generator.state = gen.bit_generator.state
            base = int(clone.integers(0, 2**63, dtype=np.int64))
            fresh = type(gen.bit_generator)(np.random.SeedSequence([base, self.rank]))
            gen.bit_generator.state = fresh.state

    # ------------------------------------------------------------------- steps

    def shard(self, order: np.ndarray) -> np.ndarray:
        """This rank's rows of an epoch order: ``order[rank::size]``.

        Shape: order (n,) -> (about n / size,).
        """
        return shard(order, self.rank, self.size)

    def num_steps(self, n: int, batch_size: int) -> int:
        """Steps per epoch of ``n`` rows with ``batch_size`` rows per rank.

        Shape: no arrays.
        """
        return num_steps(n, batch_size, self.size)

    def step_rows(self, step: int, n: int, batch_size: int) -> int:
        """Rows all ranks together train on at ``step`` of an epoch of ``n``.

        Shape: no arrays.
        """
        return step_rows(step, n, batch_size, self.size)

    def train_batch(self, x: np.ndarray, y: np.ndarray,
                    class_weight: np.ndarray | None = None,
                    sample_weight: np.ndarray | None = None) -> dict[str, float]:
        """One synchronous step: forward and backward on this rank's rows (possibly
        none), one allreduce, the optimizer step. Returns the loss and metrics over
        all ranks' rows (the same on every rank).

        Shape: x (n, *input_shape) with n >= 0, y (n,) or (n, *output_shape);
        class_weight (C,) as ``fit`` prepares it; sample_weight (n,).
        """
        model = self.model
        flat = self._grads
        stats = flat.extra
        n = int(x.shape[0])
        if n:
            out = model.forward(x, training=True)
            target = model.loss.prepare_target(y, out)
            extra = () if sample_weight is None else (sample_weight,)
            loss = model.loss.forward(out, target, class_weight, *extra)
            model.backward(model.loss.backward(out, target, class_weight, *extra),
                           input_grad=False)
            # The loss is a (weighted) mean over this rank's rows; undo the division
            # so that the sum over ranks divided by the total weight is the mean over
            # all rows, as one process with the whole batch computes it.
            weight = model.loss.batch_weight(out, target, class_weight,
                                             sample_weight)
            flat.pack(((name, grad) for name, _, grad in model._named_grads()),
                      scale=weight)
            metrics = metrics_mod.batch_values(model.metrics, out, target)
            stats[_WEIGHT], stats[_COUNT], stats[_LOSS] = weight, n, loss * weight
            for i, name in enumerate(self.metric_names):
                stats[_STAT_SLOTS + i] = metrics[name] * n
        else:
            flat.array[:] = 0
        start = time.perf_counter()
        self.comm.allreduce(flat.array, "sum",
                            what=f"the gradient allreduce of step {self.steps}")
        self.allreduce_seconds += time.perf_counter() - start
        self.steps += 1
        total_weight, total_rows = float(stats[_WEIGHT]), float(stats[_COUNT])
        # A zero total weight (every row's class weight 0) gives NaN, as without MPI.
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(flat.body, total_weight, out=flat.body)
        model.optimizer.step((name, param, flat.views[name])
                             for name, param in self._params)
        logs = {"loss": float(stats[_LOSS]) / total_weight if total_weight
                else float("nan")}
        for i, name in enumerate(self.metric_names):
            logs[name] = float(stats[_STAT_SLOTS + i]) / total_rows
        return logs

    def agree(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (``stop_training``).

        Shape: no arrays.
        """
        self._flag[0] = 1 if flag else 0
        self.comm.allreduce(self._flag, "max", what="the stop_training vote")
        return bool(self._flag[0])

    def average_buffers(self) -> None:
        """Replace every buffer (BatchNorm running statistics) by its mean over the
        ranks, so that all ranks hold the same model.

        Shape: no arrays.
        """
        if not self._buffers or self.size == 1:
            return
        flat = self._buffer_flat
        flat.pack(self._buffers)
        self.comm.allreduce(flat.array, "sum", what="the BatchNorm statistics")
        flat.array *= flat.array.dtype.type(1.0 / self.size)
        flat.unpack(self._buffers)

    def evaluate(self, x: np.ndarray, y: np.ndarray,
                 batch_size: int = 32) -> dict[str, float]:
        """``model.evaluate`` over all ranks: each rank evaluates ``x[rank::size]``
        and the sums are reduced, so every rank gets the result for all of ``x``.

        Shape: x (N, *input_shape), y (N,) or (N, *output_shape) -> dict.
        """
        names = ["loss", *self.metric_names]
        sums = np.zeros(1 + len(names), dtype=np.float64)
        rows = np.arange(self.rank, x.shape[0], self.size)
        if len(rows):
            result = self.model.evaluate(x[rows], y[rows], batch_size=batch_size)
            sums[0] = len(rows)
            sums[1:] = [result[name] * len(rows) for name in names]
        self.comm.allreduce(sums, "sum", what="the validation sums")
        if sums[0] == 0:
            raise ValueError("evaluate: x is an empty batch (0 samples).")
        return {name: float(total / sums[0]) for name, total in zip(names, sums[1:],
                                                                    strict=True)}

    # --------------------------------------------------------------- callbacks

    def callbacks_for_rank(self, callbacks: list[Callback]) -> list[Callback]:
        """The callbacks this rank runs: all of them on rank 0; elsewhere all but
        those marked ``rank_zero_only`` (ModelCheckpoint, CSVLogger), with their
        printing silenced. They see the same reduced logs on every rank, so the
        ones that steer training (EarlyStopping, schedules) decide alike.

        Shape: no arrays.
        """
        if self.is_root:
            return list(callbacks)
        sink = _Discard()
        return [cb if isinstance(cb, History) else _Silenced(cb, sink)
                for cb in callbacks if not getattr(cb, "rank_zero_only", False)]
