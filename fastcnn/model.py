"""Sequential: a stack of layers you compile, fit, evaluate and save.

This module holds the layer stack: build, forward and backward, and config. What
every model has (devices, predict, state dicts, saving) comes from
:class:`fastcnn.network.Network`, and training (compile, fit, evaluate,
train_step) from :class:`fastcnn.training.trainer.Trainer`: it minimises the cost
``J = (1/m) sum_i L(f(x_i), y_i)`` over each mini-batch of m samples by gradient
descent: a forward pass through every layer, the loss, a backward pass that fills
every layer's ``grads``, and one optimizer step. ``fit`` records J for every
iteration (``History.iterations``) and every metric per epoch.

State dicts use ``torch.nn.Sequential``'s keys, ``"<index>.<name>"`` with the index
of the layer in the stack (parameter-free layers count too), so a PyTorch model with
the same layers loads our arrays and we load its arrays.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Sequence

import numpy as np

from . import backend
from .layers import Conv2D, Dense, Layer, MaxPool2D, ReLU, ReLU6
from .layers.symbolic import connect
from .network import Network, checked_dtype
from .training.args import is_int

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


#: Each model's last prediction plan (``Sequential._predict_batch``), kept out of
#: the model itself so that a copy or pickle of a model carries no closures.
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fusable_clamp(layer, after):
    """The interval of ``after`` (a ReLU or ReLU6 layer) where ``layer`` (a Conv2D
    or Dense without an activation of its own) can apply it in its kernel's store,
    as ``activation="relu"`` does: one pass fewer per pair, the same bits. None
    otherwise (exact types: a subclass may compute something else)."""
    if type(after) not in (ReLU, ReLU6) or type(layer) not in (Conv2D, Dense):
        return None
    epilogue = layer._epilogue
    if epilogue.clamp is not None or epilogue.layer is not None:
        return None
    return after.clamp


def _gate_before(layer, before):
    """The interval of ``before`` (a ReLU or ReLU6 layer) when ``layer`` (a
    MaxPool2D fed by it) can apply its backward in the pool's backward kernel:
    ``relu_backward`` reads the ReLU's input or output, the pool's input is that
    output, and the masks agree on both (NaN and signed zeros included), so the
    bits are the same. None otherwise (exact types)."""
    if type(before) not in (ReLU, ReLU6) or type(layer) is not MaxPool2D:
        return None
    return before.clamp if layer.gates_backward() else None


class Sequential(Network):
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
            if layer.takes_many:
                raise TypeError(
                    f"Sequential: layers[{i}] ({type(layer).__name__}) joins several "
                    f"tensors; build such a network with fastcnn.Input and "
                    f"fastcnn.Model."
                )
        dtype = checked_dtype("Sequential", dtype)
        Network.__init__(self, layers, dtype, name, device)
        if input_shape is not None:
            self.build(input_shape)

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

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Run every layer on a batch (``training`` switches Dropout/BatchNorm).

        Shape: x (N, *input_shape) -> (N, *output_shape).
        """
        x = self._as_input("forward", x)
        if not self.built:
            self.build(x.shape[1:])
        x = self._to_model_device(x)
        layers = self.layers
        adopt = False
        for i, layer in enumerate(layers):
            if adopt:  # the kernel before applied this ReLU/ReLU6
                x = layer.adopt_clamped(x)
                adopt = False
                continue
            after = layers[i + 1] if i + 1 < len(layers) else None
            clamp = _fusable_clamp(layer, after)
            if clamp is None:
                x = layer.forward(x, training=training)
                continue
            layer.next_clamp = clamp
            try:
                x = layer.forward(x, training=training)
            finally:
                layer.next_clamp = None
            adopt = layer.applied_next_clamp
        return x

    def _predict_batch(self, x: np.ndarray) -> np.ndarray:
        """``forward(x, training=False)`` for a checked batch of the model's
        dtype, through a plan of the layers' runners (``Layer._inference_runner``:
        the checks and decisions of each call made once per input shape, the
        same bits) on the host; :meth:`forward` elsewhere. A batch-1 LeNet-5
        prediction spends more time in Python than in its kernels."""
        if (getattr(self, "device", "cpu") != "cpu" or not self.built
                or backend.get_device() != "cpu"):
            # The runners bind the CPU kernels: with "cuda" the default device,
            # host arrays run the CUDA launchers, as forward chooses per call.
            return super()._predict_batch(x)
        x = np.ascontiguousarray(x)
        layers = self.layers
        params = tuple(p for layer in layers for p in layer.params.values())
        plan = _PLANS.get(self)
        if (plan is None or plan[0] != x.shape or plan[1] is not x.dtype
                or len(plan[2]) != len(layers) or not all(
                    a is b for a, b in zip(plan[2], layers, strict=True))
                or len(plan[3]) != len(params) or not all(
                    a is b for a, b in zip(plan[3], params, strict=True))):
            plan = (x.shape, x.dtype, tuple(layers), params, self._plan_steps(x.shape))
            _PLANS[self] = plan
        for step in plan[4]:
            x = step(x)
        return x

    def _plan_steps(self, x_shape) -> list:
        """The steps of :meth:`_predict_batch` for inputs of ``x_shape``: each
        layer's runner, its ReLU skipped where it applies it (as :meth:`forward`
        fuses them), or the layer's own forward."""
        layers, steps, i = self.layers, [], 0
        shape = tuple(x_shape)
        while i < len(layers):
            layer = layers[i]
            after = layers[i + 1] if i + 1 < len(layers) else None
            runner = layer._inference_runner(shape, _fusable_clamp(layer, after))
            if runner is None:
                steps.append(functools.partial(layer.forward, training=False))
            else:
                steps.append(runner[0])
                if runner[1]:
                    i += 1
                    layer = after
            shape = (shape[0], *layer.output_shape)
            i += 1
        return steps

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate ``dy`` (the gradient of the output of the last forward);
        fills every layer's ``grads`` and returns the gradient of the input, or None
        with ``input_grad=False``, which lets the first layer skip computing it
        (training needs only the parameters' gradients).

        Shape: dy (N, *output_shape) -> dx (N, *input_shape).
        """
        if not isinstance(input_grad, bool):
            raise TypeError(f"backward: input_grad must be a bool, got {input_grad!r}.")
        layers = self.layers
        i = len(layers) - 1
        while i > 0:
            layer = layers[i]
            gate = _gate_before(layer, layers[i - 1]) if i > 1 else None
            if gate is None:
                dy = layer.backward(dy)
                i -= 1
                continue
            # The pool's kernel applies the ReLU's backward: one pass fewer.
            layer.backward_gate = gate
            try:
                dy = layer.backward(dy)
            finally:
                layer.backward_gate = None
            i -= 2
        return layers[0].backward(dy, input_grad=input_grad)

    def _keyed_layers(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def _connect(self, x):
        """The layers applied in turn to the symbolic ``x``, keyed
        ``"<model name>.<index>"`` in the outer model's state dict."""
        for i, layer in enumerate(self.layers):
            x = connect(layer, x, key=f"{self.name}.{i}")
        return x

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

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], input_shape={self.input_shape})"
