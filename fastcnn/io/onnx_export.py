"""Export a model to ONNX, for deployment runtimes (onnxruntime, TensorRT, ...).

The graph is the model in evaluation mode: Dropout is the identity and BatchNorm
uses its running statistics, as :meth:`predict` does. The batch axis is dynamic
(``"N"``); the other axes are the model's. Needs the ``onnx`` package
(``pip install "fastcnn[onnx]"``); fastcnn imports it only here, on call.

Every built-in layer exports, each as the ONNX operators that compute what the
layer computes (activations without an operator of their own in the target opset
are written out: GELU through Erf or Tanh, SiLU as ``x * Sigmoid(x)``, Softplus
with PyTorch's ``beta`` and ``threshold``, Mish as ``x * Tanh(Softplus(x))``;
AdaptiveAvgPool2D with uneven bins as two averaging MatMuls; GroupNorm and
LayerNorm2D as LayerNormalization between Reshapes or Transposes). Custom layers have no
ONNX form and are refused, by name, as is an AdaptiveAvgPool2D of empty output.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..backend import to_host
from ..layers import BUILTIN_LAYERS, LAYERS
from ..network import Network

#: The ONNX opset written: 17 is read by every onnxruntime since 1.13.
OPSET = 17


class _Graph:
    """The nodes and initializers being written, with unique value names."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.helper = onnx.helper
        self.dtype = np.dtype(dtype)
        self.nodes = []
        self.initializers = []
        self._names: set[str] = set()

    def name(self, hint: str) -> str:
        name, k = hint, 1
        while name in self._names:
            k += 1
            name = f"{hint}_{k}"
        self._names.add(name)
        return name

    def constant(self, hint: str, value, dtype=None) -> str:
        array = np.asarray(value, dtype=dtype or self.dtype)
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _activation(g: _Graph, layer, x: str, hint: str) -> str:
    """The nodes of an activation layer applied to ``x``; returns the output."""
    kind = type(layer).__name__
    if kind == "ReLU":
        return g.node("Relu", [x], hint)
    if kind == "LeakyReLU":
        return g.node("LeakyRelu", [x], hint, alpha=float(layer.negative_slope))
    if kind == "Sigmoid":
        return g.node("Sigmoid", [x], hint)
    if kind == "Tanh":
        return g.node("Tanh", [x], hint)
    if kind == "ELU":
        return g.node("Elu", [x], hint, alpha=float(layer.alpha))
    if kind == "Hardswish":
        return g.node("HardSwish", [x], hint)
    if kind == "Hardsigmoid":  # relu6(x + 3) / 6
        return g.node("HardSigmoid", [x], hint, alpha=1.0 / 6.0, beta=0.5)
    if kind == "ReLU6":
        return g.node("Clip", [x, g.constant(f"{hint}.min", 0.0),
                               g.constant(f"{hint}.max", 6.0)], hint)
    if kind == "SiLU":
        return g.node("Mul", [x, g.node("Sigmoid", [x], f"{hint}.sigmoid")], hint)
    if kind == "Softplus":
        return _softplus(g, x, float(layer.beta), float(layer.threshold), hint)
    if kind == "Mish":
        soft = g.node("Softplus", [x], f"{hint}.softplus")
        return g.node("Mul", [x, g.node("Tanh", [soft], f"{hint}.tanh")], hint)
    if kind == "GELU":
        half = g.constant(f"{hint}.half", 0.5)
        if layer.approximate == "tanh":
            # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            cube = g.node("Mul", [x, g.node("Mul", [x, x], f"{hint}.sq")],
                          f"{hint}.cube")
            inner = g.node("Add", [x, g.node("Mul", [cube, g.constant(
                f"{hint}.c", 0.044715)], f"{hint}.cx")], f"{hint}.inner")
            scaled = g.node("Mul", [inner, g.constant(f"{hint}.k",
                                                      math.sqrt(2 / math.pi))],
                            f"{hint}.scaled")
            gate = g.node("Tanh", [scaled], f"{hint}.tanh")
        else:  # 0.5 x (1 + erf(x / sqrt(2)))
            gate = g.node("Erf", [g.node("Div", [x, g.constant(
                f"{hint}.root2", math.sqrt(2.0))], f"{hint}.div")], f"{hint}.erf")
        plus = g.node("Add", [gate, g.constant(f"{hint}.one", 1.0)], f"{hint}.plus")
        return g.node("Mul", [g.node("Mul", [x, half], f"{hint}.hx"), plus], hint)
    if kind == "Softmax":
        return g.node("Softmax", [x], hint, axis=int(layer._axis))
    return ""


def _softplus(g: _Graph, x: str, beta: float, threshold: float, hint: str) -> str:
    """PyTorch's softplus: ``log(1 + exp(beta x)) / beta``, or ``x`` where
    ``beta x > threshold``."""
    bx = g.node("Mul", [x, g.constant(f"{hint}.beta", beta)], f"{hint}.bx")
    soft = g.node("Div", [g.node("Softplus", [bx], f"{hint}.sp"),
                          g.constant(f"{hint}.beta_div", beta)], f"{hint}.soft")
    over = g.node("Greater", [bx, g.constant(f"{hint}.threshold", threshold)],
                  f"{hint}.over")
    return g.node("Where", [over, x, soft], hint)


def _pads(pad_h, pad_w) -> list[int]:
    """ONNX's pads: all the befores, then all the afters."""
    return [int(pad_h[0]), int(pad_w[0]), int(pad_h[1]), int(pad_w[1])]


def _sample_norm(g: _Graph, layer, x: str, key: str, params: dict) -> str:
    """LayerNorm, GroupNorm and LayerNorm2D through LayerNormalization (opset 17;
    biased variance, ``eps`` inside the square root, as torch): LayerNorm directly;
    LayerNorm2D between Transposes to channels-last and back; GroupNorm on an
    ``(N, G, C / G * H * W)`` Reshape with unit scale, then its per-channel weight
    and bias broadcast over ``(C, *)``."""
    kind = type(layer).__name__
    eps = float(layer.eps)
    shape = layer.input_shape
    affine = layer.normalized_shape if kind == "LayerNorm" else (shape[0],)
    weight = g.constant(f"{key}.weight", params.get("weight", np.ones(affine)))
    bias = g.constant(f"{key}.bias", params.get("bias", np.zeros(affine)))
    if kind == "LayerNorm":
        return g.node("LayerNormalization", [x, weight, bias], key,
                      axis=-len(affine), epsilon=eps)
    if kind == "LayerNorm2D":
        last = g.node("Transpose", [x], f"{key}.channels_last", perm=[0, 2, 3, 1])
        y = g.node("LayerNormalization", [last, weight, bias], f"{key}.norm",
                   axis=-1, epsilon=eps)
        return g.node("Transpose", [y], key, perm=[0, 3, 1, 2])
    groups = int(layer.num_groups)
    size = math.prod(shape) // groups
    grouped = g.node("Reshape", [x, g.constant(f"{key}.groups", [0, groups, size],
                                               np.int64)], f"{key}.grouped")
    y = g.node("LayerNormalization", [grouped, g.constant(f"{key}.unit",
                                                          np.ones(size))],
               f"{key}.norm", axis=-1, epsilon=eps)
    y = g.node("Reshape", [y, g.constant(f"{key}.shape", [0, *shape], np.int64)],
               f"{key}.ungrouped")
    per_channel = [shape[0]] + [1] * (len(shape) - 1)
    weight = g.node("Reshape", [weight, g.constant(f"{key}.per_channel",
                                                   per_channel, np.int64)],
                    f"{key}.weight_c")
    bias = g.node("Reshape", [bias, g.constant(f"{key}.per_channel_b", per_channel,
                                               np.int64)], f"{key}.bias_c")
    return g.node("Add", [g.node("Mul", [y, weight], f"{key}.scaled"), bias], key)


def _layer(g: _Graph, layer, inputs: list[str], key: str) -> str:
    """The nodes of one layer reading ``inputs``; returns its output's name."""
    kind = type(layer).__name__
    x = inputs[0]
    params = {name: to_host(value) for name, value in layer.params.items()}

    if isinstance(layer, Network):
        return _network(g, layer, x, f"{key}.")
    if kind not in BUILTIN_LAYERS or type(layer) is not LAYERS[kind]:
        # A custom layer, or a subclass of a built-in one (which may compute
        # something else under the same name).
        raise ValueError(
            f"export_onnx: layer {key!r} ({kind} {layer.name!r}) has no ONNX "
            f"equivalent; only fastcnn's built-in layers export.")
    if kind == "SeparableConv2D":
        geo = layer._depthwise._geometry(layer.input_shape)
        w = g.constant(f"{key}.depthwise_weight", params["depthwise_weight"])
        mid = g.node("Conv", [x, w], f"{key}.depthwise",
                     kernel_shape=list(layer.kernel_size), strides=list(geo.stride),
                     dilations=list(geo.dilation), pads=_pads(geo.pad_h, geo.pad_w),
                     group=int(geo.groups))
        args = [mid, g.constant(f"{key}.pointwise_weight", params["pointwise_weight"])]
        if "bias" in params:
            args.append(g.constant(f"{key}.bias", params["bias"]))
        y = g.node("Conv", args, key, kernel_shape=[1, 1])
        return y if layer._act is None else _activation(g, layer._act, y,
                                                       f"{key}.activation")
    if kind in ("Conv2D", "DepthwiseConv2D"):
        geo = layer._geometry(layer.input_shape)
        args = [x, g.constant(f"{key}.weight", params["weight"])]
        if "bias" in params:
            args.append(g.constant(f"{key}.bias", params["bias"]))
        y = g.node("Conv", args, key, kernel_shape=list(layer.kernel_size),
                   strides=list(geo.stride), dilations=list(geo.dilation),
                   pads=_pads(geo.pad_h, geo.pad_w), group=int(geo.groups))
        return y if layer._act is None else _activation(g, layer._act, y,
                                                       f"{key}.activation")
    if kind == "Conv2DTranspose":
        args = [x, g.constant(f"{key}.weight", params["weight"])]
        if "bias" in params:
            args.append(g.constant(f"{key}.bias", params["bias"]))
        ph, pw = layer.padding
        y = g.node("ConvTranspose", args, key, kernel_shape=list(layer.kernel_size),
                   strides=list(layer.stride), dilations=list(layer.dilation),
                   pads=[ph, pw, ph, pw], output_padding=list(layer.output_padding),
                   group=int(layer.groups))
        return y if layer._act is None else _activation(g, layer._act, y,
                                                       f"{key}.activation")
    if kind == "Dense":
        args = [x, g.constant(f"{key}.weight", params["weight"])]
        if "bias" in params:
            args.append(g.constant(f"{key}.bias", params["bias"]))
        y = g.node("Gemm", args, key, transB=1)
        return y if layer._act is None else _activation(g, layer._act, y,
                                                       f"{key}.activation")
    if kind in ("BatchNorm2D", "BatchNorm1D"):
        mean, var = (to_host(layer.buffers[n]) for n in ("running_mean",
                                                         "running_var"))
        scale = params.get("weight", np.ones(mean.shape, g.dtype))
        shift = params.get("bias", np.zeros(mean.shape, g.dtype))
        return g.node("BatchNormalization", [
            x, g.constant(f"{key}.weight", scale), g.constant(f"{key}.bias", shift),
            g.constant(f"{key}.running_mean", mean),
            g.constant(f"{key}.running_var", var)],
            key, epsilon=float(layer.eps))
    if kind in ("LayerNorm", "GroupNorm", "LayerNorm2D"):
        return _sample_norm(g, layer, x, key, params)
    if kind in ("MaxPool2D", "AvgPool2D"):
        ph, pw = layer.padding
        attrs = {"kernel_shape": list(layer.kernel_size), "strides": list(layer.stride),
                 "pads": [ph, pw, ph, pw], "ceil_mode": int(layer.ceil_mode)}
        if kind == "MaxPool2D":
            return g.node("MaxPool", [x], key, dilations=list(layer.dilation), **attrs)
        return g.node("AveragePool", [x], key,
                      count_include_pad=int(layer.count_include_pad), **attrs)
    if kind == "GlobalAvgPool2D":
        pooled = g.node("GlobalAveragePool", [x], f"{key}.pool")
        return g.node("Flatten", [pooled], key, axis=1)
    if kind == "AdaptiveAvgPool2D":
        return _adaptive_avg_pool(g, layer, x, key)
    if kind == "Flatten":
        return g.node("Flatten", [x], key, axis=1)
    if kind == "Reshape":
        shape = g.constant(f"{key}.shape", [0, *layer.target_shape], np.int64)
        return g.node("Reshape", [x, shape], key)
    if kind in ("Dropout", "SpatialDropout2D"):
        return g.node("Identity", [x], key)
    if kind == "Add":
        return g.node("Sum", inputs, key)
    if kind == "Multiply":  # Mul broadcasts as numpy does; one node per factor
        y = inputs[0]
        for k, other in enumerate(inputs[1:], start=1):
            y = g.node("Mul", [y, other], key if k == len(inputs) - 1
                       else f"{key}.mul{k}")
        return y
    if kind == "ZeroPadding2D":
        (top, bottom), (left, right) = layer.padding
        pads = g.constant(f"{key}.pads", [0, 0, top, left, 0, 0, bottom, right],
                          np.int64)
        return g.node("Pad", [x, pads], key, mode="constant")
    if kind == "Scale":  # gamma (C, 1, 1) broadcast over (N, C, H, W)
        weight = params["weight"].reshape(-1, *[1] * (len(layer.input_shape) - 1))
        return g.node("Mul", [x, g.constant(f"{key}.weight", weight)], key)
    if kind == "Concatenate":
        return g.node("Concat", inputs, key, axis=int(layer.axis))
    if kind == "UpSampling2D":
        sh, sw = layer.size
        scales = g.constant(f"{key}.scales", [1.0, 1.0, sh, sw], np.float32)
        return g.node("Resize", [x, "", scales], key, mode="nearest",
                      coordinate_transformation_mode="asymmetric",
                      nearest_mode="floor")
    y = _activation(g, layer, x, key)
    if y:
        return y
    raise ValueError(
        f"export_onnx: layer {key!r} ({kind} {layer.name!r}) has no ONNX "
        f"equivalent; only "
        f"fastcnn's built-in layers export."
    )


def _adaptive_avg_pool(g: _Graph, layer, x: str, key: str) -> str:
    """AdaptiveAvgPool2D: GlobalAveragePool for a 1x1 output, AveragePool where the
    bins are even (H, W multiples of the output size), else the bins as two
    averaging matrices, ``A_h @ x @ A_w.T`` (each bin is a rectangle, so its mean is
    a row mean of column means: exact up to rounding)."""
    _, h, w = layer.input_shape
    out = layer.compute_output_shape(layer.input_shape)[1:]
    if min(out) < 1:
        raise ValueError(
            f"export_onnx: layer {key!r} (AdaptiveAvgPool2D {layer.name!r}) has an "
            f"empty output {tuple(out)}; ONNX's pooling operators have no empty "
            f"output, so it does not export.")
    if out == (1, 1):
        return g.node("GlobalAveragePool", [x], key)
    win = layer.window()
    if win is not None:
        return g.node("AveragePool", [x], key, kernel_shape=list(win.kernel),
                      strides=list(win.stride), pads=[0, 0, 0, 0])
    (hs, he), (ws, we) = layer.bins()

    def averaging(starts, stops, size):
        matrix = np.zeros((len(starts), size), g.dtype)
        for o, (a, b) in enumerate(zip(starts, stops, strict=True)):
            matrix[o, a:b] = 1.0 / (b - a)
        return matrix

    cols = g.node("MatMul", [x, g.constant(f"{key}.cols", averaging(ws, we, w).T)],
                  f"{key}.cols_mean")
    return g.node("MatMul", [g.constant(f"{key}.rows", averaging(hs, he, h)), cols],
                  key)


def _network(g: _Graph, model, x: str, prefix: str) -> str:
    """The nodes of every layer of ``model`` (a Sequential or a graph Model, also
    when nested) applied to ``x``; returns the output's name."""
    inbound = getattr(model, "inbound", None)
    if inbound is None:  # Sequential: each layer reads the one before
        inbound = [(k,) for k in range(len(model.layers))]
    keys = [key for key, _ in model._keyed_layers()]
    values = [x]
    for layer, sources, key in zip(model.layers, inbound, keys, strict=True):
        values.append(_layer(g, layer, [values[i] for i in sources], prefix + key))
    return values[-1]


def export_onnx(model, path: str | os.PathLike, *, opset: int = OPSET) -> None:
    """Write ``model`` (a built :class:`fastcnn.Sequential` or
    :class:`fastcnn.Model`) to ``path`` as an ONNX model, in evaluation mode.

    Parameters
    ----------
    model : Sequential or Model
        Built (its input shape known); on the CPU or a GPU (weights are copied
        to the host).
    path : str or os.PathLike
        Where to write the ``.onnx`` file.
    opset : int
        The ONNX opset to declare (at least 17, where every operator used is
        defined as written here).

    Raises
    ------
    ImportError
        The ``onnx`` package is not installed.
    ValueError
        The model is not built, or has a layer with no ONNX equivalent (named).

    Shape: the file's input is ``(N, *model.input_shape)`` with ``N`` dynamic, its
    output ``(N, *model.output_shape)``.
    """
    try:
        import onnx
    except ImportError:
        raise ImportError("export_onnx needs the onnx package: pip install "
                          "\"fastcnn[onnx]\" (or pip install onnx).") from None
    if not isinstance(model, Network):
        raise TypeError(f"export_onnx: model must be a fastcnn Sequential or Model, "
                        f"got {type(model).__name__}.")
    if model.input_shape is None or model.output_shape is None:
        raise ValueError("export_onnx: the model is not built; build it (or give "
                         "input_shape) first.")
    if not isinstance(opset, int) or opset < OPSET:
        raise ValueError(f"export_onnx: opset must be an int >= {OPSET}, got "
                         f"{opset!r}.")
    g = _Graph(onnx, model.dtype)
    g.name("input")
    y = _network(g, model, "input", "")
    g.nodes.append(onnx.helper.make_node("Identity", [y], ["output"], name="output"))
    elem = onnx.helper.np_dtype_to_tensor_dtype(g.dtype)
    graph = onnx.helper.make_graph(
        g.nodes, model.name,
        [onnx.helper.make_tensor_value_info("input", elem,
                                            ["N", *model.input_shape])],
        [onnx.helper.make_tensor_value_info("output", elem,
                                            ["N", *model.output_shape])],
        initializer=g.initializers)
    proto = onnx.helper.make_model(
        graph, producer_name="fastcnn",
        opset_imports=[onnx.helper.make_opsetid("", opset)])
    proto.ir_version = min(proto.ir_version, 8)  # readable by older runtimes too
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, os.fspath(path))
