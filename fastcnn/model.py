"""Sequential: a stack of layers you compile, fit, evaluate and save.

This module holds the layer stack: build, forward and backward, devices, predict,
state dicts and config. Training (compile, fit, evaluate, train_step) comes from
:class:`fastcnn.training.trainer.Trainer`: it minimises the cost
``J = (1/m) sum_i L(f(x_i), y_i)`` over each mini-batch of m samples by gradient
descent: a forward pass through every layer, the loss, a backward pass that fills
every layer's ``grads``, and one optimizer step. ``fit`` records J for every
iteration (``History.iterations``) and every metric per epoch.

State dicts use ``torch.nn.Sequential``'s keys, ``"<index>.<name>"`` with the index
of the layer in the stack (parameter-free layers count too), so a PyTorch model with
the same layers loads our arrays and we load its arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import backend
from ._predict_guard import PREDICT_LOCK, parallel_guard
from .functional._validate import FLOAT_DTYPES
from .layers import Layer
from .training.args import int_arg, is_int
from .training.trainer import Trainer

#: Sequential.from_config's default limit on a model's parameters and buffers
#: (elements): 4 GiB of float32.
MAX_CONFIG_PARAMS = 2**30


def _layer_entry(layer: Layer) -> dict:
    """A layer's entry in a model config; "trainable" only where it is frozen, so
    configs of models without frozen layers read as before."""
    entry = {"class_name": type(layer).__name__, "config": layer.get_config()}
    if not layer.trainable:
        entry["trainable"] = False
    return entry


def _check_size(op: str, layers: list[Layer], input_shape, max_params) -> None:
    """Refuse a bad ``input_shape`` or a model of more than ``max_params`` elements,
    from shapes alone: nothing is allocated."""
    ok = isinstance(input_shape, list | tuple) and input_shape and all(
        is_int(s) and s > 0 for s in input_shape)
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


class Sequential(Trainer):
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
        Trainer.__init__(self)
        if input_shape is not None:
            self.build(input_shape)

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
            is_int(s) and s > 0 for s in input_shape
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
        for i, layer in enumerate(self.layers):
            if layer.trainable:
                for key, param in layer.params.items():
                    yield f"{i}.{key}", param, layer.grads[key]

    def _named_params(self) -> dict:
        """``{name: param}`` of every parameter, frozen or not (the names the
        optimizer state is keyed by)."""
        return {f"{i}.{key}": param for i, layer in enumerate(self.layers)
                for key, param in layer.params.items()}

    # ------------------------------------------------------------- predicting

    def predict(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """The model's output for every sample, in evaluation mode.

        Shape: x (N, *input_shape) -> (N, *output_shape).
        """
        x = self._as_input("predict", x)
        batch_size = int_arg("predict", "batch_size", batch_size, 1)
        if x.shape[0] == 0:
            raise ValueError("predict: x is an empty batch (0 samples).")
        if not self.built:
            with PREDICT_LOCK:  # two threads must not both build the layers
                if not self.built:
                    self.build(x.shape[1:])
        with parallel_guard():
            parts = [backend.to_host(self.forward(x[b : b + batch_size],
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
        :meth:`predict` computes it (in one batch).

        Shape: x (N, *input_shape) -> (N, *output_shape).
        """
        return self.predict(x, batch_size=max(len(x), 1) if hasattr(x, "__len__")
                            else 1)

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

    def get_config(self) -> dict:
        """The architecture as JSON-able data: name, input shape, dtype, layers.

        Shape: no arrays.
        """
        return {
            "name": self.name,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "dtype": self.dtype.name,
            "layers": [_layer_entry(layer) for layer in self.layers],
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
