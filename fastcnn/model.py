"""Sequential: a stack of layers you compile, fit, evaluate and save.

Training minimises the cost ``J = (1/m) sum_i L(f(x_i), y_i)`` over each mini-batch
of m samples by gradient descent: a forward pass through every layer, the loss, a
backward pass that fills every layer's ``grads``, and one optimizer step. ``fit``
records J for every iteration (``History.iterations``) and every metric per epoch.

State dicts use ``torch.nn.Sequential``'s keys, ``"<index>.<name>"`` with the index
of the layer in the stack (parameter-free layers count too), so a PyTorch model with
the same layers loads our arrays and we load its arrays.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import threading
import time
from collections.abc import Iterable, Sequence

import numpy as np

from . import backend
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers as optimizers_mod
from ._progress import ProgressBar
from .callbacks import Callback, History
from .functional import _device
from .functional._validate import FLOAT_DTYPES
from .layers import Layer

_MAX_SEED = 2**63 - 1


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(
        value, bool | np.bool_
    )


def _int_arg(op, name, value, minimum):
    if not _is_int(value):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}.")
    return int(value)


#: Sequential.from_config's default limit on a model's parameters and buffers
#: (elements): 4 GiB of float32.
MAX_CONFIG_PARAMS = 2**30


def _check_size(op: str, layers: list[Layer], input_shape, max_params) -> None:
    """Refuse a bad ``input_shape`` or a model of more than ``max_params`` elements,
    from shapes alone: nothing is allocated."""
    ok = isinstance(input_shape, list | tuple) and input_shape and all(
        _is_int(s) and s > 0 for s in input_shape)
    if not ok:
        raise ValueError(
            f"{op}: input_shape must be a non-empty list of positive ints, got "
            f"{input_shape!r:.200}."
        )
    shape, total = tuple(int(s) for s in input_shape), 0
    for i, layer in enumerate(layers):
        try:
            total += sum(math.prod(s) for s in layer.state_shapes(shape).values())
            shape = layer.compute_output_shape(shape)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{op}: layer {i}: {error}") from None
        if max_params is not None and total > max_params:
            raise ValueError(
                f"{op}: the model has more than {max_params} parameters and buffers "
                f"by layer {i} ({type(layer).__name__}: {total} so far); refusing to "
                f"allocate them (max_params={max_params})."
            )


#: Serialises ``predict`` where the Numba threading layer is not thread-safe.
_PREDICT_LOCK = threading.RLock()

#: Rows of at most about this many elements per block when ``fit`` checks its data
#: for NaN and infinity: the boolean temporary stays small whatever the data set.
_FINITE_CHECK_BLOCK = 1 << 20


def _first_non_finite(array: np.ndarray) -> int | None:
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


def _parallel_guard():
    """A lock for ``predict`` where concurrent parallel kernels would kill the
    process, else nothing.

    ``predict`` on a built model is safe to call from several Python threads with
    the "omp" and "tbb" threading layers: in evaluation mode no layer's output
    depends on what another call leaves in the layer (tested bit for bit). Numba's
    "workqueue" layer aborts the interpreter on concurrent parallel regions, so there
    the calls take turns. Before any parallel kernel has run the layer is not known
    yet, and the first call takes the lock too. Training (``fit``, ``train_step``)
    takes the model's own training lock: a second caller, from another thread or
    a callback, gets a RuntimeError (see :meth:`Sequential._training`).
    """
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = None
    return _PREDICT_LOCK if layer in (None, "workqueue") else contextlib.nullcontext()


class Sequential:
    """A linear stack of layers.

    Parameters
    ----------
    layers : sequence of Layer
        Applied in order. Input sizes are inferred: each layer is built from the
        previous layer's output shape.
    input_shape : tuple of int, optional
        Per-sample input shape, e.g. ``(1, 28, 28)``. Given, the model is built now;
        otherwise on the first ``fit``/``predict``/``evaluate``/``train_step``.
    dtype : "float32" or "float64"
        The dtype of every parameter; inputs are cast to it.
    name : str
    device : "cpu", "cuda", "auto" or None
        Where parameters, gradients, buffers and optimizer state live and the
        kernels run (see :meth:`to`). None: the current default device
        (:func:`fastcnn.get_device`). "cuda" without a GPU raises; "auto" falls
        back to the CPU.

    Shape: x (N, *input_shape) -> (N, *output_shape).
    """

    def __init__(self, layers: Sequence[Layer],
                 input_shape: Sequence[int] | None = None, dtype="float32",
                 name: str = "sequential", device: str | None = None):
        if not isinstance(layers, list | tuple) or not layers:
            raise TypeError(
                f"Sequential: layers must be a non-empty list of fastcnn layers, got "
                f"{layers!r}."
            )
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"Sequential: layers[{i}] must be a fastcnn.layers.Layer, got "
                    f"{type(layer).__name__}."
                )
        try:
            resolved = np.dtype(dtype)
        except TypeError:
            resolved = None
        # "is None" first: np.dtype(None) is float64, so None == float64 is True.
        if resolved is None or dtype is None or resolved not in FLOAT_DTYPES:
            raise TypeError(
                f"Sequential: dtype must be float32 or float64, got {dtype!r}."
            )
        dtype = resolved
        self.layers: list[Layer] = list(layers)
        self.dtype: np.dtype = dtype
        #: "cpu" or "cuda": where the arrays live (set by ``device=`` and :meth:`to`).
        self.device: str = backend.resolve_device(device)
        self.name = name
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
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
        if input_shape is not None:
            self.build(input_shape)

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

    # ---------------------------------------------------------------- building

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    def build(self, input_shape: Sequence[int],
              rng: np.random.Generator | None = None) -> None:
        """Build every layer for a per-sample ``input_shape``.

        ``rng`` draws the initial weights (None: NumPy's global RNG seeds each
        layer, so ``fastcnn.seed`` makes the model reproducible). Layers already
        built are kept if their input shape and dtype agree.

        Shape: input_shape (per sample) -> no arrays.
        """
        if not isinstance(input_shape, tuple | list) or not all(
            _is_int(s) and s > 0 for s in input_shape
        ) or not input_shape:
            raise TypeError(
                f"Sequential: input_shape must be a tuple of positive ints (per "
                f"sample, without the batch axis), got {input_shape!r}."
            )
        shape = tuple(int(s) for s in input_shape)
        first = shape
        for i, layer in enumerate(self.layers):
            if layer.built and layer.input_shape == shape and layer.dtype == self.dtype:
                pass
            elif layer.built:
                raise ValueError(
                    f"Sequential: layers[{i}] ({layer.name}) is already built for "
                    f"input {layer.input_shape} ({layer.dtype}) but receives {shape} "
                    f"({self.dtype}) here."
                )
            else:
                layer.build(shape, dtype=self.dtype, rng=rng)
            shape = tuple(layer.output_shape)
        self.input_shape, self.output_shape = first, shape
        self._place_arrays()

    # ------------------------------------------------------------------ devices

    def to(self, device: str) -> Sequential:
        """Move the model to ``device`` ("cpu", "cuda" or "auto") and return it.

        Parameters, gradients, buffers (BatchNorm's running statistics) and the
        optimizer's state move; from then on each batch is copied to the device
        once per step, the kernels run there, and ``predict``, ``evaluate``,
        ``state_dict`` and ``save`` still give NumPy arrays. "cuda" without a GPU
        raises; "auto" falls back to the CPU.

        Shape: no arrays.
        """
        self.device = backend.resolve_device(device)
        self._place_arrays()
        return self

    def _place_arrays(self) -> None:
        """Put every layer's arrays (and the optimizer's state) on ``self.device``."""
        on_device = self.device == "cuda"
        for layer in self.layers:
            for arrays in (layer.params, layer.grads, layer.buffers):
                for key, array in arrays.items():
                    arrays[key] = _device.move(array, on_device)
            layer._cache = None  # activations kept for backward live on the old side
        if self.optimizer is not None and self.built:
            self.optimizer.place_state(self._named_grads())

    def _to_model_device(self, x):
        """A batch copied to the device where the model lives there (once per
        step: every layer then works on the device copy)."""
        return _device.move(x, self.device == "cuda")

    def _require_built(self, op: str) -> None:
        if not self.built:
            raise ValueError(
                f"{op}: the model is not built; give Sequential(input_shape=...) or "
                f"call build(input_shape) first."
            )

    def _require_compiled(self, op: str) -> None:
        if self.optimizer is None or self.loss is None:
            raise ValueError(
                f"{op}: the model is not compiled; call compile(optimizer, loss) first."
            )

    # ---------------------------------------------------------------- compiling

    def compile(self, optimizer="sgd", loss="cross_entropy",
                metrics: Iterable | None = None) -> None:
        """Choose the optimizer, the loss and the metrics reported by fit/evaluate.

        Parameters
        ----------
        optimizer : str or Optimizer
            ``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"`` (default settings) or
            an instance from :mod:`fastcnn.optimizers`.
        loss : str or Loss
            ``"cross_entropy"`` (logits and integer labels), ``"mse"``,
            ``"bce_with_logits"`` or an instance from :mod:`fastcnn.losses`.
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
        self.metrics = [metrics_mod.get(m, binary=binary) for m in metrics]
        names = [metrics_mod.metric_name(m) for m in self.metrics]
        for name in names:
            if name == "loss" or names.count(name) > 1:
                raise ValueError(
                    f"compile: metric names must be unique and not 'loss', got {names}."
                )

    # ------------------------------------------------------- forward and backward

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Run every layer on a batch (``training`` switches Dropout/BatchNorm).

        Shape: x (N, *input_shape) -> (N, *output_shape).
        """
        x = self._as_input("forward", x)
        if not self.built:
            self.build(x.shape[1:])
        x = self._to_model_device(x)
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate ``dy`` (the gradient of the output of the last forward);
        fills every layer's ``grads`` and returns the gradient of the input, or None
        with ``input_grad=False``, which lets the first layer skip computing it
        (training needs only the parameters' gradients).

        Shape: dy (N, *output_shape) -> dx (N, *input_shape).
        """
        if not isinstance(input_grad, bool):
            raise TypeError(f"backward: input_grad must be a bool, got {input_grad!r}.")
        for layer in reversed(self.layers[1:]):
            dy = layer.backward(dy)
        return self.layers[0].backward(dy, input_grad=input_grad)

    def _as_input(self, op: str, x) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{op}: x must be a numpy.ndarray, got {type(x).__name__}.")
        if x.dtype.kind not in "iuf":
            raise TypeError(f"{op}: x must have a numeric dtype, got {x.dtype}.")
        if x.ndim < 2:
            raise ValueError(
                f"{op}: x must have a batch axis and at least one more, got shape "
                f"{x.shape}."
            )
        if self.built and x.shape[1:] != self.input_shape:
            raise ValueError(
                f"{op}: x has per-sample shape {x.shape[1:]} but the model expects "
                f"{self.input_shape}."
            )
        return x.astype(self.dtype, copy=False)

    @staticmethod
    def _as_target(op: str, y, n: int) -> np.ndarray:
        if not isinstance(y, np.ndarray):
            raise TypeError(f"{op}: y must be a numpy.ndarray, got {type(y).__name__}.")
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(
                f"{op}: y must have one entry per sample of x ({n}), got shape "
                f"{y.shape}."
            )
        return y

    def _named_grads(self):
        for i, layer in enumerate(self.layers):
            for key, param in layer.params.items():
                yield f"{i}.{key}", param, layer.grads[key]

    def _train_batch(self, x, y, class_weight, check_finite=False):
        """One step; returns ``(loss, host output, target)``. With
        ``check_finite``, a non-finite loss returns ``(loss, None, None)`` before
        backward and the update, so the weights stay those that gave it."""
        out = self.forward(x, training=True)
        target = self.loss.prepare_target(y, out)
        loss = self.loss.forward(out, target, class_weight)
        if check_finite and not math.isfinite(loss):  # a host float: ~0.1 us
            return loss, None, None
        self.backward(self.loss.backward(out, target, class_weight),
                      input_grad=False)
        self.optimizer.step(self._named_grads())
        # The metrics run on the host: a copy of the (N, classes) output is small.
        return loss, _device.to_host(out), target

    def train_step(self, x: np.ndarray, y: np.ndarray, class_weight=None) -> float:
        """One iteration of gradient descent on one batch: forward (training mode),
        loss J, backward, optimizer step. Returns J (before the step).

        ``train_step`` returns whatever J is, NaN included (``fit`` stops on it);
        like ``fit`` it refuses to run while another call trains the model.

        Shape: x (N, *input_shape), y (N,) labels or (N, *output_shape) -> float.
        """
        with self._training("train_step"):
            return self._train_step(x, y, class_weight)

    def _train_step(self, x, y, class_weight):
        self._require_compiled("train_step")
        x = self._as_input("train_step", x)
        y = self._as_target("train_step", y, x.shape[0])
        if not self.built:
            self.build(x.shape[1:])
        weights = self._class_weight(class_weight)
        return self._train_batch(x, y, weights)[0]

    # ------------------------------------------------------------------ fitting

    def _class_weight(self, class_weight):
        if class_weight is None:
            return None
        if not self.loss.supports_class_weight:
            raise ValueError(
                f"fit: class_weight needs a classification loss (CrossEntropy), not "
                f"{type(self.loss).__name__}."
            )
        n_classes = self.output_shape[-1]
        if isinstance(class_weight, dict):
            weights = np.ones(n_classes)
            for key, value in class_weight.items():
                if not _is_int(key) or not 0 <= key < n_classes:
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
        return weights.astype(self.dtype)

    @staticmethod
    def _split(n: int, fraction: float, seed: int, labels):
        """Shuffled (and, with labels, stratified) train/validation indices."""
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

    def _batch_metrics(self, out, target) -> dict:
        return {metrics_mod.metric_name(m): float(m(out, target)) for m in self.metrics}

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int = 1, batch_size: int = 32,
            validation_split: float = 0.0, validation_data=None, shuffle: bool = True,
            class_weight=None, initial_epoch: int = 0,
            callbacks: Iterable[Callback] | None = None, verbose: int = 1,
            seed: int | None = None, stratify: bool = False,
            distributed=False, check_finite: bool = True) -> History:
        """Train with mini-batch gradient descent.

        Parameters
        ----------
        x, y : ndarray
            Inputs and targets (integer labels for cross-entropy).
        epochs : int
            Index of the last epoch (as in Keras): trains epochs
            ``initial_epoch .. epochs - 1``.
        batch_size : int
        validation_split : float
            Fraction in ``[0, 1)`` held out for validation. **Unlike Keras**, which
            takes the *last* rows of x unshuffled, the held-out rows are drawn at
            random (seeded by ``seed``), and with ``stratify=True`` the split keeps
            each class's proportion; sorted data therefore gives a fair split.
        validation_data : (x_val, y_val), optional
            Used instead of ``validation_split``.
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
            ranks, after the step. False trains on regardless, as before.

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

        Shape: x (N, *input_shape), y (N,) or (N, *output_shape).
        """
        with self._training("fit"):
            return self._fit(x, y, epochs, batch_size, validation_split,
                             validation_data, shuffle, class_weight, initial_epoch,
                             callbacks, verbose, seed, stratify, distributed,
                             check_finite)

    def _fit(self, x, y, epochs, batch_size, validation_split, validation_data,
             shuffle, class_weight, initial_epoch, callbacks, verbose, seed,
             stratify, distributed, check_finite) -> History:
        op = "fit"
        self._require_compiled(op)
        if not isinstance(check_finite, bool):
            raise TypeError(f"fit: check_finite must be a bool, got {check_finite!r}.")
        given_dtype = getattr(x, "dtype", None)
        # Values beyond the model dtype's range become infinite in the cast; with
        # check_finite that is reported below, by name, instead of as a warning.
        with np.errstate(over="ignore") if check_finite else contextlib.nullcontext():
            x = self._as_input(op, x)
        y = self._as_target(op, y, x.shape[0])
        if x.shape[0] == 0:
            raise ValueError("fit: x is an empty batch (0 samples).")
        epochs = _int_arg(op, "epochs", epochs, 0)
        batch_size = _int_arg(op, "batch_size", batch_size, 1)
        initial_epoch = _int_arg(op, "initial_epoch", initial_epoch, 0)
        if verbose not in (0, 1, 2):
            raise ValueError(f"fit: verbose must be 0, 1 or 2, got {verbose!r}.")
        if not isinstance(validation_split, numbers.Real) or not (
            0.0 <= validation_split < 1.0
        ):
            raise ValueError(
                f"fit: validation_split must be a number in [0, 1), got "
                f"{validation_split!r}."
            )
        if seed is None and initial_epoch > 0 and self.fit_seed is not None:
            # Resuming (e.g. after load_model): keep the checkpoint's shuffling.
            seed = self.fit_seed
        elif seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        seed = _int_arg(op, "seed", seed, 0)
        if not self.built:
            self.build(x.shape[1:])
        dist = None
        if distributed:
            dist = self._data_parallel(distributed, seed, x, y)
            seed = dist.seed  # rank 0's, so every rank splits and shuffles alike
            verbose = verbose if dist.is_root else 0
        if check_finite:
            # After DataParallel has checked that every rank holds the same data,
            # so that every rank refuses it alike.
            self._check_finite_data("x", x, given_dtype)
            self._check_finite_data("y", y)
        self.fit_seed = seed

        if stratify and (y.ndim != 1 or y.dtype.kind not in "iub"):
            raise ValueError(
                f"fit: stratify=True needs 1-D integer labels y, got dtype {y.dtype} "
                f"and shape {y.shape}."
            )
        val = None
        if validation_data is not None:
            if (not isinstance(validation_data, tuple | list)
                    or len(validation_data) != 2):
                raise TypeError(
                    "fit: validation_data must be a pair (x_val, y_val), got "
                    f"{type(validation_data).__name__}."
                )
            val_dtype = getattr(validation_data[0], "dtype", None)
            with (np.errstate(over="ignore") if check_finite
                  else contextlib.nullcontext()):
                x_val = self._as_input(op, validation_data[0])
            val = (x_val, self._as_target(op, validation_data[1], x_val.shape[0]))
            if check_finite:
                self._check_finite_data("validation_data x", x_val, val_dtype)
                self._check_finite_data("validation_data y", val[1])
            train_rows = np.arange(x.shape[0])
        elif validation_split > 0:
            train_rows, val_rows = self._split(x.shape[0], float(validation_split),
                                               seed, y if stratify else None)
            val = (x[val_rows], y[val_rows])
        else:
            train_rows = np.arange(x.shape[0])
        weights = self._class_weight(class_weight)

        history = History()
        # History goes last (as in Keras) so it records what callbacks add, e.g. "lr".
        callbacks = [*(callbacks or []), history]
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"fit: callbacks must be fastcnn.callbacks.Callback instances, got "
                    f"{type(cb).__name__}."
                )
            cb.set_model(self)
        if dist is not None:
            callbacks = dist.callbacks_for_rank(callbacks)
        self.stop_training = False
        for cb in callbacks:
            cb.on_train_begin({})
        n_train = len(train_rows)
        n_batches = (-(-n_train // batch_size) if dist is None
                     else dist.num_steps(n_train, batch_size))
        for epoch in range(initial_epoch, epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch, {})
            if shuffle:
                order = train_rows[
                    np.random.default_rng([seed, 1, epoch]).permutation(n_train)
                ]
            else:
                order = train_rows
            if dist is not None:
                order = dist.shard(order)
            bar = (ProgressBar(n_batches, f"Epoch {epoch + 1}/{epochs}")
                   if verbose == 1 else None)
            start = time.perf_counter()
            sums: dict[str, float] = {}
            seen = 0
            for b in range(n_batches):
                rows = order[b * batch_size : (b + 1) * batch_size]
                # Distributed: the batch is every rank's rows, and so are its logs.
                size = (len(rows) if dist is None
                        else dist.step_rows(b, n_train, batch_size))
                for cb in callbacks:
                    cb.on_batch_begin(b, {"size": size})
                if dist is None:
                    loss, out, target = self._train_batch(x[rows], y[rows], weights,
                                                          check_finite)
                    if out is None:  # a non-finite loss; the step was not applied
                        self._stop_non_finite(loss, epoch, epochs, b, n_batches, x,
                                              bar, False, weights)
                    batch_logs = {"loss": loss, **self._batch_metrics(out, target)}
                else:
                    batch_logs = dist.train_batch(x[rows], y[rows], weights)
                    # The loss is over all ranks: every rank stops alike.
                    if check_finite and not math.isfinite(batch_logs["loss"]):
                        self._stop_non_finite(batch_logs["loss"], epoch, epochs, b,
                                              n_batches, x, bar, True, weights)
                seen += size
                for key, value in batch_logs.items():
                    sums[key] = sums.get(key, 0.0) + value * size
                for cb in callbacks:
                    cb.on_batch_end(b, {**batch_logs, "size": size})
                if bar is not None:
                    bar.update(size, **{k: s / seen for k, s in sums.items()})
                if dist is not None:
                    self.stop_training = dist.agree(self.stop_training)
                if self.stop_training:
                    break
            logs = {key: total / seen for key, total in sums.items()}
            if dist is not None:
                dist.average_buffers()
            if val is not None:
                val_logs = (self.evaluate(val[0], val[1], batch_size=batch_size)
                            if dist is None else
                            dist.evaluate(val[0], val[1], batch_size=batch_size))
                logs.update({f"val_{k}": value for k, value in val_logs.items()})
            self.epoch = epoch + 1
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            elapsed = time.perf_counter() - start
            if bar is not None:
                bar.close(**{k: value for k, value in logs.items()
                             if k.startswith("val_")})
            elif verbose == 2:
                shown = " - ".join(f"{k}: {value:.4g}" for k, value in logs.items())
                print(f"Epoch {epoch + 1}/{epochs} - {elapsed:.1f}s - "
                      f"{seen / max(elapsed, 1e-9):.0f} img/s - {shown}")
            if dist is not None:
                self.stop_training = dist.agree(self.stop_training)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end({})
        return history

    @staticmethod
    def _check_finite_data(name: str, array: np.ndarray, given_dtype=None) -> None:
        """fit's one pass over its data: a NaN or infinity there makes every
        weight NaN within a step or two."""
        bad = _first_non_finite(array)
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

    def _stop_non_finite(self, loss, epoch, epochs, step, n_steps, x, bar,
                         applied: bool, class_weight=None):
        """Raise fit's FloatingPointError for a non-finite ``loss``, with the
        likely causes and what happened to the weights (checked once, here)."""
        if bar is not None:
            bar.close()
        broken = next((name for name, param, _ in self._named_grads()
                       if not np.isfinite(_device.to_host(param)).all()), None)
        if broken is not None and applied:
            weights = (f"This step's update was applied (distributed training "
                       f"checks the loss over all ranks after the step) and the "
                       f"weights now hold NaN or infinity (first in {broken}); "
                       f"reload a checkpoint.")
        elif broken is not None:
            weights = (f"The weights already hold NaN or infinity (first in "
                       f"{broken}): an earlier step diverged; reload a checkpoint.")
        elif applied:
            weights = ("This step's update was applied; the weights are still "
                       "finite.")
        else:
            weights = ("This step's update was not applied: the model keeps the "
                       "(finite) weights that gave this loss.")
        opt = self.optimizer
        low, high = float(np.min(x)), float(np.max(x))
        causes = [
            f"a learning rate too high (lr={opt.lr:g} in {type(opt).__name__}; try "
            f"10-100 times smaller, or clipnorm=1.0)",
            f"inputs not scaled (x ranges over [{low:g}, {high:g}]; scale it to "
            f"about [0, 1] or standardise it)",
            "NaN or infinity in x or y (none was found at the start of fit)",
        ]
        if class_weight is not None:
            causes.append("a class_weight of 0 for every sample of a batch")
        raise FloatingPointError(
            f"fit: the loss is {loss} at epoch {epoch + 1}/{epochs}, step "
            f"{step + 1}/{n_steps}; training stopped (check_finite=True). {weights} "
            f"Likely causes: {'; '.join(causes)}. Pass check_finite=False to train "
            f"on regardless."
        )

    def _data_parallel(self, distributed, seed, x, y):
        """fit(distributed=...)'s :class:`fastcnn.distributed.DataParallel`, made on
        every rank at once (it broadcasts rank 0's weights and optimizer state)."""
        from .distributed import DataParallel

        if distributed is not True and isinstance(distributed, bool | int | float):
            raise TypeError(
                f"fit: distributed must be True, False or an mpi4py communicator, "
                f"got {distributed!r}."
            )
        if getattr(self, "device", "cpu") != "cpu":
            raise ValueError(
                f"fit: distributed=True trains on the CPU only for now; this model "
                f"is on {self.device!r} (call model.to('cpu'))."
            )
        return DataParallel(self, None if distributed is True else distributed,
                            seed=seed, x=x, y=y)

    # ------------------------------------------------------ evaluating, predicting

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 32,
                 verbose: int = 0) -> dict[str, float]:
        """Loss and metrics over a data set, in evaluation mode (no Dropout, BatchNorm
        running statistics). Batch values are averaged weighted by batch size.

        Shape: x (N, *input_shape), y (N,) or (N, *output_shape) -> dict.
        """
        op = "evaluate"
        self._require_compiled(op)
        x = self._as_input(op, x)
        y = self._as_target(op, y, x.shape[0])
        batch_size = _int_arg(op, "batch_size", batch_size, 1)
        if x.shape[0] == 0:
            raise ValueError("evaluate: x is an empty batch (0 samples).")
        sums: dict[str, float] = {}
        for begin in range(0, x.shape[0], batch_size):
            out = self.forward(x[begin : begin + batch_size], training=False)
            target = self.loss.prepare_target(y[begin : begin + batch_size], out)
            loss = self.loss.forward(out, target)  # on the device where out is
            out = _device.to_host(out)
            values = {"loss": loss, **self._batch_metrics(out, target)}
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value * out.shape[0]
        result = {key: total / x.shape[0] for key, total in sums.items()}
        if verbose:
            print(" - ".join(f"{k}: {value:.4g}" for k, value in result.items()))
        return result

    def predict(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """The model's output for every sample, in evaluation mode.

        Shape: x (N, *input_shape) -> (N, *output_shape).
        """
        x = self._as_input("predict", x)
        batch_size = _int_arg("predict", "batch_size", batch_size, 1)
        if x.shape[0] == 0:
            raise ValueError("predict: x is an empty batch (0 samples).")
        if not self.built:
            with _PREDICT_LOCK:  # two threads must not both build the layers
                if not self.built:
                    self.build(x.shape[1:])
        with _parallel_guard():
            parts = [_device.to_host(self.forward(x[b : b + batch_size],
                                                  training=False))
                     for b in range(0, x.shape[0], batch_size)]
        return np.concatenate(parts, axis=0)

    # ---------------------------------------------------------- inspection, state

    def summary(self, print_fn=print) -> str:
        """Print and return the per-layer table of :func:`fastcnn.inspect.summary_table`
        (output shapes, parameters, MACs, dense-equivalent weights, receptive fields).

        Shape: no arrays.
        """
        from .inspect import summary_table

        self._require_built("summary")
        table = str(summary_table(self.layers, self.input_shape, self.dtype))
        if print_fn is not None:
            print_fn(table)
        return table

    def count_params(self) -> tuple[int, int]:
        """``(trainable, non_trainable)`` element counts over all layers.

        Shape: no arrays.
        """
        self._require_built("count_params")
        counts = [layer.count_params() for layer in self.layers]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def _state_refs(self) -> dict[str, np.ndarray]:
        refs = {}
        for i, layer in enumerate(self.layers):
            for key, array in (*layer.params.items(), *layer.buffers.items()):
                refs[f"{i}.{key}"] = array
        return refs

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed as ``torch.nn.Sequential``
        does: ``"<layer index>.weight"``, ``".bias"``, ``".running_mean"``,
        ``".running_var"``.

        Shape: arrays in PyTorch's layouts.
        """
        self._require_built("state_dict")
        return {key: _device.to_host(array) if _device.on_device(array)
                else array.copy() for key, array in self._state_refs().items()}

    def load_state_dict(self, state: dict, strict: bool = True):
        """Copy arrays into the model's parameters and buffers (in place).

        Values may be NumPy arrays or PyTorch tensors (e.g. a ``torch.load``-ed or
        :func:`fastcnn.io.load_weights`-ed state dict); they are cast to the model's
        dtype. PyTorch's ``"*.num_batches_tracked"`` entries are ignored. With
        ``strict`` the keys must match exactly; without, the matching keys are
        loaded and the others reported. Shapes must always match.

        Returns
        -------
        IncompatibleKeys
            ``(missing_keys, unexpected_keys)``, as torch's ``load_state_dict``.

        Shape: arrays in PyTorch's layouts.
        """
        from ._state_keys import IncompatibleKeys

        op = "load_state_dict"
        self._require_built(op)
        if not isinstance(state, dict):
            raise TypeError(f"{op}: state must be a dict, got {type(state).__name__}.")
        if not isinstance(strict, bool):
            raise TypeError(f"{op}: strict must be a bool, got {strict!r}.")
        state = {k: value for k, value in state.items()
                 if not str(k).endswith(".num_batches_tracked")}
        refs = self._state_refs()
        missing = [k for k in refs if k not in state]
        unexpected = [k for k in state if k not in refs]
        if strict and (missing or unexpected):
            hint = ""
            roots = {str(k).split(".")[0] for k in unexpected}
            if unexpected and not any(r.isdigit() for r in roots):
                hint = (f" The keys sit under {sorted(roots)}: pass "
                        f"fastcnn.io.strip_prefix(state, {sorted(roots)[0]!r}).")
            elif missing and unexpected:
                hint = (" Layer indices differ: fastcnn.io.renumber_like(state, "
                        "model) pairs the layers with weights in order.")
            raise ValueError(
                f"{op}: keys do not match the model (strict=True): missing "
                f"{missing}, unexpected {unexpected}.{hint}"
            )
        arrays = {}
        for key, ref in refs.items():
            if key not in state:
                continue
            value = state[key]
            if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
                value = value.detach().cpu().numpy()
            value = np.asarray(value)
            if value.dtype.kind not in "iuf":
                raise TypeError(f"{op}: {key} has non-numeric dtype {value.dtype}.")
            if value.shape != ref.shape:
                raise ValueError(
                    f"{op}: {key} has shape {value.shape} but the model's "
                    f"{key} has shape {ref.shape}."
                )
            arrays[key] = value
        # Checked everything first, so a bad entry leaves the model untouched.
        for key, value in arrays.items():
            if _device.on_device(refs[key]):  # a model on "cuda"
                value = np.ascontiguousarray(value, dtype=refs[key].dtype)
                _device.copy_into(refs[key], value)
            else:
                refs[key][...] = value
        return IncompatibleKeys(missing, unexpected)

    def get_config(self) -> dict:
        """The architecture as JSON-able data: name, input shape, dtype, layers.

        Shape: no arrays.
        """
        return {
            "name": self.name,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "dtype": self.dtype.name,
            "layers": [{"class_name": type(layer).__name__,
                        "config": layer.get_config()} for layer in self.layers],
        }

    @classmethod
    def from_config(cls, config: dict,
                    max_params: int | None = MAX_CONFIG_PARAMS) -> Sequential:
        """Rebuild an (untrained) model from :meth:`get_config`'s output.

        The config may come from an untrusted file: layer types are looked up in
        :data:`fastcnn.layers.LAYERS` only (never imported by name), and the model is
        sized from the layers' :meth:`~fastcnn.layers.Layer.state_shapes` *before*
        anything is allocated.

        Parameters
        ----------
        config : dict
        max_params : int or None
            Refuse a model of more parameters and buffers (elements) than this;
            None: no limit. The default, :data:`MAX_CONFIG_PARAMS` (2**30), keeps a
            config such as ``Dense(10**12)`` from asking for terabytes.

        Raises
        ------
        ValueError
            Anything wrong with the config: its structure, an unknown layer type,
            bad layer arguments, a bad input shape or dtype, or too many parameters.

        Shape: no arrays.
        """
        from . import layers as layers_mod

        op = "Sequential.from_config"
        if not isinstance(config, dict):
            raise ValueError(
                f"{op}: config must be a dict, got {type(config).__name__}."
            )
        entries = config.get("layers")
        if not isinstance(entries, list) or not entries:
            raise ValueError(
                f"{op}: config['layers'] must be a non-empty list, got "
                f"{entries!r:.200}."
            )
        dtype, name = config.get("dtype", "float32"), config.get("name", "sequential")
        if dtype not in ("float32", "float64"):
            raise ValueError(
                f"{op}: dtype must be 'float32' or 'float64', got {dtype!r:.200}."
            )
        if not isinstance(name, str):
            raise ValueError(f"{op}: name must be a str, got {name!r:.200}.")
        built = [layers_mod.from_config(entry, f"{op}: layer {i}")
                 for i, entry in enumerate(entries)]
        model = cls(built, dtype=dtype, name=name)
        input_shape = config.get("input_shape")
        if input_shape is not None:
            _check_size(op, built, input_shape, max_params)
            # A fixed rng: the weights are about to be overwritten, and building must
            # not advance the user's global RNG.
            try:
                model.build(tuple(input_shape), rng=np.random.default_rng(0))
            except TypeError as error:
                raise ValueError(f"{op}: {error}") from None
        return model

    def save(self, path) -> None:
        """Save architecture, weights, optimizer and training state to one zip file
        (see :func:`fastcnn.saving.save_model`).

        Shape: no arrays.
        """
        from ._model_writer import write_model

        write_model(self, path)

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], input_shape={self.input_shape})"
