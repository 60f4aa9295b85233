"""Trainer: compile, fit, evaluate and train_step, the training half of
:class:`fastcnn.Sequential` (as Keras 3's Model is a Layer and a Trainer).

Sequential keeps the layer stack (build, forward, backward, predict, state dicts,
config); this class keeps what training adds to it, and the loop itself lives in
:mod:`fastcnn.training.loop`. It needs from the model only ``forward``,
``backward``, ``build``, ``built``, ``output_shape``, ``dtype``, ``_as_input``,
``_as_target`` and ``_named_grads``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable

import numpy as np

from .. import losses as losses_mod
from .. import metrics as metrics_mod
from .. import optimizers as optimizers_mod
from ..callbacks import Callback, History
from . import loop
from .data import class_weights, sample_weights
from .step import train_batch


class Trainer:
    """The training state and methods of a model (see :class:`fastcnn.Sequential`).

    Shape: no arrays.
    """

    def __init__(self) -> None:
        self.optimizer: optimizers_mod.Optimizer | None = None
        self.loss: losses_mod.Loss | None = None
        self.metrics: list = []
        #: Set by a callback to end ``fit`` after the current batch.
        self.stop_training = False
        #: Epochs completed by ``fit`` (saved with the model: resume from here).
        self.epoch = 0
        #: The seed of the last ``fit`` (drawn from NumPy's RNG where none was given).
        self.fit_seed: int | None = None
        self._train_lock = threading.Lock()
        self._trainer: str | None = None

    def __getstate__(self) -> dict:
        # A lock cannot be copied or pickled; a copy starts with its own, free.
        state = dict(self.__dict__)
        state.pop("_train_lock", None)
        state["_trainer"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._train_lock = threading.Lock()

    @contextlib.contextmanager
    def _training(self, op: str):
        """Hold the model's training lock for ``fit`` or ``train_step``.

        Two threads stepping one model interleave their forward, backward and
        optimizer steps on shared arrays, and the weights then match no
        sequential order: the second caller is refused instead of waiting (a
        wait would still give an order the caller did not choose). ``predict``
        does not take this lock.
        """
        if not self._train_lock.acquire(blocking=False):
            # The holder names itself just after acquiring: it may not have yet.
            holder = self._trainer or "fit or train_step"
            raise RuntimeError(
                f"{op}: this model is already training in another call ("
                f"{holder}); one model trains from one thread at a time. "
                f"Two trainers would interleave their steps on the same weights, "
                f"which gives weights that match no sequential order. Wait for "
                f"that call to return, or give each thread its own model."
            )
        try:
            self._trainer = (f"{op} in thread "
                             f"{threading.current_thread().name!r}")
            yield
        finally:
            self._trainer = None
            self._train_lock.release()

    def _require_compiled(self, op: str) -> None:
        if self.optimizer is None or self.loss is None:
            raise ValueError(
                f"{op}: the model is not compiled; call compile(optimizer, loss) first."
            )

    def compile(self, optimizer="sgd", loss="cross_entropy",
                metrics: Iterable | None = None) -> None:
        """Choose the optimizer, the loss and the metrics reported by fit/evaluate.

        Parameters
        ----------
        optimizer : str or Optimizer
            ``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"`` (default settings) or
            an instance from :mod:`fastcnn.optimizers`.
        loss : str or Loss
            ``"cross_entropy"`` (logits and integer labels or probabilities),
            ``"mse"``, ``"bce_with_logits"`` or an instance from
            :mod:`fastcnn.losses`.
        metrics : list, optional
            Names (``"accuracy"``, ``"top5_accuracy"``, ...), Metric objects or
            callables ``(output, target) -> float``.

        Shape: no arrays.
        """
        self.optimizer = optimizers_mod.get(optimizer)
        self.loss = losses_mod.get(loss)
        binary = isinstance(self.loss, losses_mod.BCEWithLogits)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, str) or callable(metrics):
            metrics = [metrics]
        ignore_index = getattr(self.loss, "ignore_index", None)
        self.metrics = [metrics_mod.get(m, binary=binary, ignore_index=ignore_index)
                        for m in metrics]
        names = [metrics_mod.metric_name(m) for m in self.metrics]
        for name in names:
            if name == "loss" or names.count(name) > 1:
                raise ValueError(
                    f"compile: metric names must be unique and not 'loss', got {names}."
                )

    def train_step(self, x: np.ndarray, y: np.ndarray, class_weight=None,
                   sample_weight: np.ndarray | None = None) -> float:
        """One iteration of gradient descent on one batch: forward (training mode),
        loss J, backward, optimizer step. Returns J (before the step).

        ``train_step`` returns whatever J is, NaN included (``fit`` stops on it);
        like ``fit`` it refuses to run while another call trains the model.
        ``class_weight`` and ``sample_weight`` weigh J as in :meth:`fit`.

        Shape: x (N, *input_shape), y (N,) labels or (N, *output_shape),
        sample_weight (N,) -> float.
        """
        with self._training("train_step"):
            self._require_compiled("train_step")
            x = self._as_input("train_step", x)
            y = self._as_target("train_step", y, x.shape[0])
            if not self.built:
                self.build(x.shape[1:])
            weights = class_weights(self, class_weight)
            if sample_weight is not None:
                sample_weight = sample_weights(self, "train_step", "sample_weight",
                                               sample_weight, x.shape[0])
            return train_batch(self, x, y, weights, sample_weight=sample_weight)[0]

    def fit(self, x, y: np.ndarray | None = None, epochs: int = 1,
            batch_size: int = 32, validation_split: float = 0.0,
            validation_data=None, shuffle: bool = True, class_weight=None,
            initial_epoch: int = 0, callbacks: Iterable[Callback] | None = None,
            verbose: int = 1, seed: int | None = None, stratify: bool = False,
            distributed=False, check_finite: bool = True,
            sample_weight: np.ndarray | None = None,
            steps_per_epoch: int | None = None,
            validation_steps: int | None = None) -> History:
        """Train with mini-batch gradient descent.

        Parameters
        ----------
        x : ndarray or iterable of batches
            Inputs; or a stream of batches ``(x, y)`` or ``(x, y, sample_weight)``:
            any iterable or generator, such as :class:`fastcnn.datasets.Loader`
            (then y is None, and ``batch_size``, ``shuffle`` and ``seed`` do not
            apply to it). A re-iterable (a Loader, a list) is iterated anew every
            epoch (a Loader is told the epoch through its ``set_epoch``); a
            generator is consumed across epochs. As in Keras, when the stream
            runs out before ``steps_per_epoch`` batches, or gives none at the
            start of an epoch, fit warns and stops after that epoch.
            ``distributed``, ``validation_split`` and ``stratify`` need arrays.
        y : ndarray, optional
            Targets (integer labels for cross-entropy); None for a stream.
        epochs : int
            Index of the last epoch (as in Keras): trains epochs
            ``initial_epoch .. epochs - 1``.
        batch_size : int
        validation_split : float
            Fraction in ``[0, 1)`` held out for validation. **Unlike Keras**, which
            takes the *last* rows of x unshuffled, the held-out rows are drawn at
            random (seeded by ``seed``), and with ``stratify=True`` the split keeps
            each class's proportion; sorted data therefore gives a fair split.
        validation_data : (x_val, y_val[, sample_weight_val]) or stream, optional
            Used instead of ``validation_split``: arrays, or a stream of batches
            evaluated once per epoch (``validation_steps`` batches of it, or until
            it is exhausted: pass a re-iterable or an endless generator).
        shuffle : bool
            Reshuffle the training rows every epoch. Epoch e's order is a pure
            function of ``(seed, e)``, so a run resumed at ``initial_epoch`` sees
            the same batches as an uninterrupted one.
        class_weight : dict or sequence, optional
            Per-class loss weights (cross-entropy only); classes absent from a dict
            weigh 1. J is PyTorch's weighted mean ``sum w[y_i] L_i / sum w[y_i]``,
            where Keras divides by the batch size instead.
        initial_epoch : int
            Epoch to start at (resume from a checkpoint saved after that many).
        callbacks : list of Callback, optional
        verbose : 0, 1 or 2
            0 silent, 1 a progress bar per epoch (loss, accuracy, images/s),
            2 one line per epoch.
        seed : int, optional
            Seeds the split and the shuffling. None draws one from NumPy's global
            RNG (so ``fastcnn.seed`` makes it reproducible), except when resuming
            (``initial_epoch > 0``) a model that already has a ``fit_seed`` (kept
            by every fit and saved with the model): that seed is reused, so
            ``load_model(path).fit(x, y, epochs, initial_epoch=model.epoch)``
            continues exactly like an uninterrupted run.
        stratify : bool
            Stratify ``validation_split`` by the integer labels y.
        distributed : bool or communicator
            True: data-parallel training over the ranks of the MPI job this process
            belongs to (``mpiexec -n N``; see :mod:`fastcnn.distributed`). Every
            rank calls fit with the same model and data; ``batch_size`` is per rank,
            so N ranks step like one process with ``N * batch_size``; the logs are
            over all ranks; only rank 0 prints and runs ModelCheckpoint/CSVLogger.
            An mpi4py communicator trains over its ranks instead of COMM_WORLD.
        check_finite : bool
            True (the default): refuse x (and float y, and ``validation_data``)
            holding NaN or infinity, with one pass over the data per call, and
            stop at the first batch whose loss is NaN or infinite with a
            FloatingPointError naming the epoch and the step. That step's update
            is not applied, so the model keeps the weights that gave the loss
            (finite unless an earlier step already overflowed; the error says
            which). With ``distributed`` the loss checked is the one over all
            ranks, after the step. False trains on regardless. A stream's
            batches are checked one by one as they arrive.
        sample_weight : ndarray, optional
            A weight >= 0 per sample of x, shape (N,) (a stream gives them as each
            batch's third element). J is the weighted mean ``sum s_i L_i /
            sum s_i`` (with class weights, ``sum s_i w[y_i] L_i / sum s_i
            w[y_i]``): Keras's ``"mean_with_sample_weight"`` reduction, where
            Keras's default divides by the batch size. The metrics are not
            weighted; a ``validation_split`` takes its rows' weights along.
            With ``distributed`` each rank weighs its share of the rows.
        steps_per_epoch : int, optional
            Batches per epoch of a stream (None: until it is exhausted).
        validation_steps : int, optional
            Batches of a ``validation_data`` stream per evaluation (None: all).

        Returns
        -------
        History
            ``history`` (per-epoch metrics ``"loss"``, ``"accuracy"``,
            ``"val_loss"``, ...) and ``iterations`` (J of every batch).

        Raises
        ------
        FloatingPointError
            With ``check_finite``, the loss became NaN or infinite.
        RuntimeError
            The model is already training in another call (thread).

        Shape: x (N, *input_shape), y (N,) or (N, *output_shape), sample_weight
        (N,); a stream's batches (B, *input_shape), (B, ...), (B,).
        """
        with self._training("fit"):
            return loop.fit(self, x, y, epochs, batch_size, validation_split,
                            validation_data, shuffle, class_weight, initial_epoch,
                            callbacks, verbose, seed, stratify, distributed,
                            check_finite, sample_weight, steps_per_epoch,
                            validation_steps)

    def evaluate(self, x, y: np.ndarray | None = None, batch_size: int = 32,
                 verbose: int = 0, sample_weight: np.ndarray | None = None,
                 steps: int | None = None) -> dict[str, float]:
        """Loss and metrics over a data set, in evaluation mode (no Dropout, BatchNorm
        running statistics). Batch values are averaged weighted by batch size.

        ``x`` may be a stream of ``(x, y)`` or ``(x, y, sample_weight)`` batches
        (y None; ``steps`` batches of it, or until it is exhausted), as in
        :meth:`fit`. ``sample_weight`` weighs each batch's loss as in fit (not the
        metrics).

        Shape: x (N, *input_shape), y (N,) or (N, *output_shape), sample_weight
        (N,) -> dict.
        """
        return loop.evaluate(self, x, y, batch_size, verbose, sample_weight, steps)
