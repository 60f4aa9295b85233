"""Model: a network of layers joined as a graph, written in Keras's functional style::

    x = fastcnn.Input((3, 32, 32))
    h = layers.Conv2D(16, 3, padding=1, name="c1")(x)
    h = layers.ReLU(name="r1")(h)
    out = layers.Add(name="skip")([h, x])   # x feeds two layers: gradients add
    model = fastcnn.Model(x, out)

The model finds its layers by walking back from ``out`` to ``x``; they run in a
topological order (each after every layer it reads from), and backward runs them in
the reverse order, summing the gradients of a tensor that feeds several layers in
that fixed order, so results are bitwise the same run to run. A Sequential or a
Model called on a symbolic tensor nests: its layers join the graph (and train with
it), their state-dict keys prefixed by its name.

Everything else (compile, fit, evaluate, predict, state_dict with keys
``"<layer name>.<param>"``, save and ``load_model``, ``to(device)``, warmup,
summary) is shared with :class:`fastcnn.Sequential` through
:class:`fastcnn.network.Network`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .layers import from_config as layer_from_config
from .layers.graph import backward_graph, forward_graph
from .layers.symbolic import Input, SymbolicTensor, connect
from .model import MAX_CONFIG_PARAMS, _layer_entry
from .network import Network, checked_dtype

__all__ = ["Input", "Model", "backward_graph", "forward_graph"]


def _one_tensor(op: str, name: str, value) -> SymbolicTensor:
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, list | tuple):
        raise TypeError(f"{op}: a Model has one {name} tensor for now, got a list of "
                        f"{len(value)}; join several with layers.Concatenate or "
                        f"layers.Add.")
    if not isinstance(value, SymbolicTensor):
        raise TypeError(f"{op}: {name} must be a symbolic tensor (from "
                        f"fastcnn.Input or a layer called on one), got "
                        f"{type(value).__name__}.")
    return value


def _trace(op: str, source: SymbolicTensor,
           output: SymbolicTensor) -> list[SymbolicTensor]:
    """The layer outputs between ``source`` and ``output``, each after every tensor
    it reads (depth first from ``output``, inputs in the order given)."""
    order: list[SymbolicTensor] = []
    done: set[int] = set()
    active: set[int] = set()
    stack = [(output, False)]
    while stack:
        tensor, expanded = stack.pop()
        if id(tensor) in done:
            continue
        if tensor.layer is None:
            if tensor is not source:
                raise ValueError(f"{op}: the output depends on the input "
                                 f"{tensor.name!r}, which is not the model's input.")
            done.add(id(tensor))
            continue
        if expanded:
            active.discard(id(tensor))
            done.add(id(tensor))
            order.append(tensor)
            continue
        active.add(id(tensor))
        stack.append((tensor, True))
        for parent in reversed(tensor.inputs):
            if id(parent) not in done:
                stack.append((parent, False))
    if not order:
        raise ValueError(f"{op}: the output is the input itself; a model needs at "
                         f"least one layer.")
    return order


class Model(Network):
    """A network of layers joined as a graph (residual connections, branches).

    Parameters
    ----------
    inputs : SymbolicTensor
        What :func:`fastcnn.Input` returned (one input).
    outputs : SymbolicTensor
        A layer's output computed from ``inputs`` (one output).
    name : str
    dtype : "float32" or "float64"
    device : "cpu", "cuda", "auto" or None
        As for :class:`fastcnn.Sequential`.

    Each layer may appear once (a layer called twice would need two sets of saved
    activations: make a second layer, or share weights by hand). Layer names are
    the state-dict keys, so they must be unique. The model is built at once: the
    input's shape is known.

    Shape: x (N, *inputs.shape) -> (N, *outputs.shape).
    """

    def __init__(self, inputs: SymbolicTensor, outputs: SymbolicTensor,
                 name: str = "model", dtype="float32", device: str | None = None):
        op = "Model"
        source = _one_tensor(op, "inputs", inputs)
        if source.layer is not None:
            raise TypeError(f"{op}: inputs must be a fastcnn.Input, got the output "
                            f"of layer {source.layer.name!r}.")
        target = _one_tensor(op, "outputs", outputs)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{op}: name must be a non-empty str, got {name!r:.200}.")
        order = _trace(op, source, target)
        index = {id(source): 0, **{id(t): k + 1 for k, t in enumerate(order)}}
        seen: dict[int, str] = {}
        keys: dict[str, str] = {source.name: "the input"}
        for t in order:
            if id(t.layer) in seen:
                raise ValueError(f"{op}: layer {t.layer.name!r} is called more than "
                                 f"once; shared layers are not supported, make a "
                                 f"second layer.")
            seen[id(t.layer)] = t.key
            if t.key in keys:
                raise ValueError(f"{op}: two layers are named {t.key!r} ({keys[t.key]} "
                                 f"and a {type(t.layer).__name__}); names key the "
                                 f"state dict, give unique ones.")
            keys[t.key] = f"a {type(t.layer).__name__}"
        Network.__init__(self, [t.layer for t in order], checked_dtype(op, dtype),
                         name, device)
        #: Per layer, the tensors it reads: 0 is the input, ``k + 1`` layer k's output.
        self.inbound: list[tuple[int, ...]] = [
            tuple(index[id(p)] for p in t.inputs) for t in order]
        self._keys = [t.key for t in order]
        self._input_name = source.name
        self.build(source.shape)

    def _keyed_layers(self):
        return list(zip(self._keys, self.layers, strict=True))

    def build(self, input_shape: Sequence[int],
              rng: np.random.Generator | None = None) -> None:
        """Build every layer for a per-sample ``input_shape`` (the input's; a
        model is built when made, so this only re-checks it).

        Shape: input_shape (per sample) -> no arrays.
        """
        shape = tuple(input_shape) if isinstance(input_shape, list | tuple) else None
        if self.input_shape is not None and shape != self.input_shape:
            raise ValueError(f"Model: built for inputs of per-sample shape "
                             f"{self.input_shape}, got {input_shape!r:.200}.")
        shapes = [shape]
        for layer, sources in zip(self.layers, self.inbound, strict=True):
            ins = [shapes[i] for i in sources]
            wanted = tuple(ins) if layer.takes_many else ins[0]
            if not layer.built:
                layer.build(wanted, dtype=self.dtype, rng=rng)
            elif layer.input_shape != wanted or layer.dtype != self.dtype:
                raise ValueError(
                    f"Model: layer {layer.name!r} is already built for input "
                    f"{layer.input_shape} ({layer.dtype}) but receives {wanted} "
                    f"({self.dtype}) here.")
            shapes.append(tuple(layer.output_shape))
        self.input_shape, self.output_shape = shape, shapes[-1]
        self._place_arrays()

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Run every layer on a batch (``training`` switches Dropout/BatchNorm).

        Shape: x (N, *input_shape) -> (N, *output_shape).
        """
        x = self._to_model_device(self._as_input("forward", x))
        return forward_graph(self.layers, self.inbound, x, training)

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate ``dy`` (see :meth:`fastcnn.Sequential.backward`); fills
        every layer's ``grads``.

        Shape: dy (N, *output_shape) -> dx (N, *input_shape).
        """
        if not isinstance(input_grad, bool):
            raise TypeError(f"backward: input_grad must be a bool, got {input_grad!r}.")
        return backward_graph(self.layers, self.inbound, dy, input_grad)

    def _connect(self, x):
        """This model's layers applied to the symbolic ``x`` in its order, keyed
        ``"<model name>.<key>"`` in the outer model's state dict."""
        values = [x]
        for layer, sources, key in zip(self.layers, self.inbound, self._keys,
                                       strict=True):
            ins = [values[i] for i in sources]
            values.append(connect(layer, ins if layer.takes_many else ins[0],
                                  key=f"{self.name}.{key}"))
        return values[-1]

    # ---------------------------------------------------------------- config

    def _tensor_names(self) -> list[str]:
        return [self._input_name, *self._keys]

    def get_config(self) -> dict:
        """The architecture as JSON-able data: for each layer (in run order) its
        entry, its state-dict key and the tensors it reads ("inbound": the input's
        name or other layers' keys).

        Shape: no arrays.
        """
        names = self._tensor_names()
        layers = []
        for layer, sources, key in zip(self.layers, self.inbound, self._keys,
                                       strict=True):
            layers.append({**_layer_entry(layer), "key": key,
                           "inbound": [names[i] for i in sources]})
        return {"class_name": "Model", "name": self.name,
                "input_shape": list(self.input_shape),
                "input_name": self._input_name, "dtype": self.dtype.name,
                "layers": layers}

    @classmethod
    def from_config(cls, config: dict,
                    max_params: int | None = MAX_CONFIG_PARAMS) -> Model:
        """Rebuild an (untrained) model from :meth:`get_config`'s output, which may
        come from an untrusted file (see :meth:`fastcnn.Sequential.from_config`:
        layer types from the registry only; sized before anything is allocated).

        Shape: no arrays.
        """
        op = "Model.from_config"
        if not isinstance(config, dict):
            raise ValueError(f"{op}: config must be a dict, got "
                             f"{type(config).__name__}.")
        entries = config.get("layers")
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{op}: config['layers'] must be a non-empty list, got "
                             f"{entries!r:.200}.")
        dtype, name = config.get("dtype", "float32"), config.get("name", "model")
        input_name = config.get("input_name", "input")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"{op}: dtype must be 'float32' or 'float64', got "
                             f"{dtype!r:.200}.")
        for label, value in (("name", name), ("input_name", input_name)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{op}: {label} must be a non-empty str, got "
                                 f"{value!r:.200}.")
        try:
            tensor = Input(config.get("input_shape"), name=input_name)
        except TypeError as error:
            raise ValueError(f"{op}: {error}") from None
        tensors = {input_name: tensor}
        total = 0
        for i, entry in enumerate(entries):
            label = f"{op}: layer {i}"
            layer = layer_from_config(entry, label)
            key, inbound = entry.get("key"), entry.get("inbound")
            if not isinstance(key, str) or not key or key in tensors:
                raise ValueError(f"{label}: 'key' must be a new non-empty str, got "
                                 f"{key!r:.200}.")
            if not isinstance(inbound, list) or not inbound or not all(
                    isinstance(s, str) and s in tensors for s in inbound):
                raise ValueError(f"{label}: 'inbound' must list the input or earlier "
                                 f"layers' keys, got {inbound!r:.200}.")
            ins = [tensors[s] for s in inbound]
            try:
                out = connect(layer, ins if layer.takes_many else ins[0], key=key)
                shape = tuple(t.shape for t in ins) if layer.takes_many \
                    else ins[0].shape
                total += sum(math.prod(s) for s in layer.state_shapes(shape).values())
            except (TypeError, ValueError) as error:
                raise ValueError(f"{label}: {error}") from None
            if max_params is not None and total > max_params:
                raise ValueError(
                    f"{op}: the model has more than {max_params} parameters and "
                    f"buffers by layer {i} ({total} so far); refusing to allocate "
                    f"them (max_params={max_params}).")
            tensors[key] = out
        # A fixed rng: the weights are about to be overwritten, and building must
        # not advance the user's global RNG.
        state = np.random.get_state()
        try:
            model = cls(tensor, out, name=name, dtype=dtype)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{op}: {error}") from None
        finally:
            np.random.set_state(state)
        if len(model.layers) != len(entries):
            raise ValueError(f"{op}: {len(entries) - len(model.layers)} layer(s) do "
                             f"not lead to the output (the last entry).")
        return model

    def __repr__(self) -> str:
        return (f"Model({self.name!r}, {len(self.layers)} layers, "
                f"input_shape={self.input_shape}, output_shape={self.output_shape})")
