"""What every fastcnn model is, whatever joins its layers: parameters on a device,
predict, state dicts, weights, saving, freezing, and (from
:class:`fastcnn.training.trainer.Trainer`) compile / fit / evaluate / train_step.

A model subclass says how its layers are joined: :class:`fastcnn.Sequential` a
stack, :class:`fastcnn.Model` a graph. It provides ``layers`` (each layer once, in
the order they run), ``_keyed_layers`` (the state-dict prefix of each),
``build``, ``forward``, ``backward``, ``get_config``/``from_config`` and
``_connect`` (what calling the model on a symbolic tensor does).
"""

from __future__ import annotations

import numpy as np

from . import backend
from ._predict_guard import PREDICT_LOCK, parallel_guard
from .functional._validate import FLOAT_DTYPES
from .layers import Layer
from .layers.symbolic import is_symbolic
from .training.args import int_arg
from .training.trainer import Trainer


def checked_dtype(op: str, dtype) -> np.dtype:
    """``dtype`` as float32 or float64, or a TypeError naming ``op``."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    # "is None" first: np.dtype(None) is float64, so None == float64 is True.
    if resolved is None or dtype is None or resolved not in FLOAT_DTYPES:
        raise TypeError(f"{op}: dtype must be float32 or float64, got {dtype!r}.")
    return resolved


class Network(Trainer):
    """The base of :class:`fastcnn.Sequential` and :class:`fastcnn.Model`.

    Shape: x (N, *input_shape) -> (N, *output_shape).
    """

    def __init__(self, layers: list[Layer], dtype, name: str,
                 device: str | None) -> None:
        self.layers: list[Layer] = list(layers)
        self.dtype: np.dtype = dtype
        #: "cpu" or "cuda": where the arrays live (set by ``device=`` and :meth:`to`).
        self.device: str = backend.resolve_device(device)
        self.name = name
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        Trainer.__init__(self)

    def _keyed_layers(self) -> list[tuple[str, Layer]]:
        """``(state-dict prefix, layer)`` for every layer, in run order."""
        raise NotImplementedError

    def _connect(self, x):
        raise NotImplementedError

    @property
    def trainable(self) -> bool:
        """Whether any layer trains; setting it freezes (False) or unfreezes (True)
        every layer, as Keras's ``model.trainable`` does (see
        :attr:`fastcnn.layers.Layer.trainable`), a nested model's in its outer
        model too.
        """
        return any(layer.trainable for layer in self.layers)

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"{self.name}: trainable must be a bool, got {value!r}.")
        for layer in self.layers:
            layer.trainable = value

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    def to(self, device: str) -> Network:
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
        dev = backend.device(self.device)
        for layer in self.layers:
            for arrays in (layer.params, layer.grads, layer.buffers):
                for key, array in arrays.items():
                    arrays[key] = dev.move_in(array)
            layer._cache = None  # activations kept for backward live on the old side
        if self.optimizer is not None and self.built:
            self.optimizer.place_state(
                (name, param, None) for name, param in self._named_params().items())

    def _to_model_device(self, x):
        """A batch copied to the device where the model lives there (once per
        step: every layer then works on the device copy)."""
        return backend.device(self.device).move_in(x)

    def _require_built(self, op: str) -> None:
        if not self.built:
            raise ValueError(
                f"{op}: the model is not built; give Sequential(input_shape=...) or "
                f"call build(input_shape) first."
            )

    def _as_input(self, op: str, x) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{op}: x must be a numpy.ndarray, got {type(x).__name__}.")
        if x.dtype.kind not in "iuf":
            raise TypeError(f"{op}: x must have a numeric dtype, got {x.dtype}.")
        if x.dtype.kind in "iu" and x.size and (x.max() > 1 or x.min() < 0):
            # Integer 0/1 masks are fine; raw 0-255 pixels would train, badly
            # (loss ~5 on MNIST), and silently.
            raise ValueError(
                f"{op}: x has the integer dtype {x.dtype} with values up to "
                f"{x.max()}: raw pixels? The model takes them as they are; scale "
                f"first, e.g. x.astype('float32') / 255 "
                f"(fastcnn.datasets.normalize also standardises). Integer inputs "
                f"are accepted only as 0/1 masks.")
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
        """``(name, param, grad)`` of every parameter training updates: frozen
        layers' (``trainable = False``) are left out."""
        for prefix, layer in self._keyed_layers():
            if layer.trainable:
                for key, param in layer.params.items():
                    yield f"{prefix}.{key}", param, layer.grads[key]

    def _named_params(self) -> dict:
        """``{name: param}`` of every parameter, frozen or not (the names the
        optimizer state is keyed by)."""
        return {f"{prefix}.{key}": param for prefix, layer in self._keyed_layers()
                for key, param in layer.params.items()}

    def _named_buffers(self) -> dict:
        """``{name: buffer}`` of every buffer (BatchNorm's running statistics)."""
        return {f"{prefix}.{key}": buffer for prefix, layer in self._keyed_layers()
                for key, buffer in layer.buffers.items()}

    def predict(self, x, batch_size: int = 32, steps: int | None = None
                ) -> np.ndarray:
        """The model's output for every sample, in evaluation mode.

        ``x`` is an array, or a stream of batches (an iterable or generator of
        ``x`` batches or ``(x, ...)`` tuples, whose targets are ignored; a
        :class:`fastcnn.datasets.Loader`); ``steps`` stops a stream after that
        many batches (None: when it ends).

        Shape: x (N, *input_shape) -> (N, *output_shape).
        """
        from .training.streams import is_stream

        if is_stream(x):
            from .training.loop import predict_stream

            return predict_stream(self, x, steps)
        if steps is not None:
            raise ValueError("predict: steps applies to a stream of batches; x is "
                             "an array.")
        x = self._as_input("predict", x)
        batch_size = int_arg("predict", "batch_size", batch_size, 1)
        if x.shape[0] == 0:
            raise ValueError("predict: x is an empty batch (0 samples).")
        if not self.built:
            with PREDICT_LOCK:  # two threads must not both build the layers
                if not self.built:
                    self.build(x.shape[1:])
        with parallel_guard():
            if x.shape[0] <= batch_size:
                out = backend.to_host(self._predict_batch(x))
                # A new array, never a view of x or of a layer's state (as the
                # concatenation below gives; a model ending in Flatten reshapes).
                return out if out.base is None and out is not x else out.copy()
            parts = [backend.to_host(self._predict_batch(x[b : b + batch_size]))
                     for b in range(0, x.shape[0], batch_size)]
        return np.concatenate(parts, axis=0)

    def _predict_batch(self, x: np.ndarray) -> np.ndarray:
        """One batch of :meth:`predict`: the evaluation-mode forward."""
        return self.forward(x, training=False)

    def summary(self, print_fn=print) -> str:
        """Print and return the per-layer table of :func:`fastcnn.inspect.summary_table`
        (output shapes, parameters, MACs, dense-equivalent weights, receptive fields).

        Shape: no arrays.
        """
        from .inspect import summary_table

        self._require_built("summary")
        table = str(summary_table(self, self.input_shape, self.dtype))
        if print_fn is not None:
            print_fn(table)
        return table

    def count_params(self, split: bool = False) -> int | tuple[int, int]:
        """Elements in all parameters and buffers, as Keras counts them; with
        ``split=True`` the pair ``(trainable, non_trainable)`` (frozen layers'
        parameters and BatchNorm's running statistics are non-trainable).

        Shape: no arrays.
        """
        self._require_built("count_params")
        counts = [layer.count_params() for layer in self.layers]
        trainable, non_trainable = sum(c[0] for c in counts), sum(c[1] for c in counts)
        return (trainable, non_trainable) if split else trainable + non_trainable

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every parameter and buffer, layer by layer in ``state_dict``
        order (Keras's ``get_weights``; PyTorch layouts).

        Shape: arrays in PyTorch's layouts.
        """
        return list(self.state_dict().values())

    def set_weights(self, weights) -> None:
        """Copy a :meth:`get_weights` list back in, in the same order; each array
        must have its slot's shape (cast to the model's dtype, as
        ``load_state_dict`` does).

        Shape: arrays in PyTorch's layouts.
        """
        self._require_built("set_weights")
        keys = list(self._state_refs())
        if isinstance(weights, np.ndarray | str | bytes) or not hasattr(
                weights, "__len__"):
            raise TypeError(f"set_weights: weights must be a list of arrays, got "
                            f"{type(weights).__name__}.")
        if len(weights) != len(keys):
            raise ValueError(f"set_weights: the model has {len(keys)} weight arrays, "
                             f"got {len(weights)}.")
        self.load_state_dict(dict(zip(keys, weights, strict=True)), strict=True)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``model(x)``: the output for the batch ``x`` in evaluation mode, as
        :meth:`predict` computes it (in one batch). Called on a symbolic tensor
        (:func:`fastcnn.Input` or a layer's output), the model's layers join the
        graph being written: a nested model, whose layers train with the outer
        one.

        Shape: x (N, *input_shape) -> (N, *output_shape).
        """
        if is_symbolic(x):
            return self._connect(x)
        return self.predict(x, batch_size=max(len(x), 1) if hasattr(x, "__len__")
                            else 1)

    def _state_refs(self) -> dict[str, np.ndarray]:
        refs = {}
        for prefix, layer in self._keyed_layers():
            for key, array in (*layer.params.items(), *layer.buffers.items()):
                refs[f"{prefix}.{key}"] = array
        return refs

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed as PyTorch keys them:
        ``"<layer>.weight"``, ``".bias"``, ``".running_mean"``, ``".running_var"``,
        where ``<layer>`` is the layer's index in a :class:`Sequential` (as in
        ``torch.nn.Sequential``) and its name in a graph :class:`fastcnn.Model`.

        Shape: arrays in PyTorch's layouts.
        """
        self._require_built("state_dict")
        return {key: backend.to_host(array) if backend.is_device_array(array)
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
            if backend.is_device_array(refs[key]):  # a model on "cuda"
                value = np.ascontiguousarray(value, dtype=refs[key].dtype)
                backend.device_of(refs[key]).copy_into(refs[key], value)
            else:
                refs[key][...] = value
        return IncompatibleKeys(missing, unexpected)

    def save(self, path) -> None:
        """Save architecture, weights, optimizer and training state to one zip file
        (see :func:`fastcnn.saving.save_model`).

        Shape: no arrays.
        """
        from ._model_writer import write_model

        write_model(self, path)
