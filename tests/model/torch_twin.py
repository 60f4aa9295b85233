"""A graph Model rebuilt in PyTorch: each layer as a torch module holding copies
of its parameters under the same names and computing with torch.nn.functional
(written from torch's definitions, not from ours), run along ``model.inbound``."""

from __future__ import annotations

import numpy as np
import torch

nn = torch.nn
tF = torch.nn.functional

_ACTIVATIONS = {
    None: lambda x: x, "relu": tF.relu, "relu6": tF.relu6, "silu": tF.silu,
    "swish": tF.silu, "gelu": tF.gelu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "hard_swish": tF.hardswish, "hardswish": tF.hardswish,
}


def _padding(layer):
    padding = layer.padding
    if padding == "valid":
        return 0
    if padding == "same":
        conv = getattr(layer, "_depthwise", layer)  # SeparableConv2D's first step
        geo = conv._geometry(layer.input_shape)
        assert geo.pad_h[0] == geo.pad_h[1] and geo.pad_w[0] == geo.pad_w[1]
        return (geo.pad_h[0], geo.pad_w[0])
    return padding


class TorchLayer(nn.Module):
    """One of our single-input layers in torch."""

    def __init__(self, layer, dtype, random_dropout=False):
        super().__init__()
        self.random_dropout = random_dropout
        self.kind = type(layer).__name__
        self.layer = layer
        for key, value in layer.params.items():
            self.register_parameter(key, nn.Parameter(torch.tensor(value, dtype=dtype)))
        for key, value in layer.buffers.items():
            self.register_buffer(key, torch.tensor(value, dtype=dtype))

    def forward(self, x):
        lay, kind = self.layer, self.kind
        if kind in ("Conv2D", "DepthwiseConv2D"):
            y = tF.conv2d(x, self.weight, getattr(self, "bias", None), lay.stride,
                          _padding(lay), lay.dilation, lay.groups)
            return _ACTIVATIONS[lay.activation](y)
        if kind == "SeparableConv2D":
            mid = tF.conv2d(x, self.depthwise_weight, None, lay.stride, _padding(lay),
                            lay.dilation, x.shape[1])
            y = tF.conv2d(mid, self.pointwise_weight, getattr(self, "bias", None))
            return _ACTIVATIONS[lay.activation](y)
        if kind == "Dense":
            y = tF.linear(x, self.weight, getattr(self, "bias", None))
            return _ACTIVATIONS[lay.activation](y)
        if kind == "BatchNorm2D":
            return tF.batch_norm(x, self.running_mean, self.running_var,
                                 getattr(self, "weight", None),
                                 getattr(self, "bias", None), self.training,
                                 lay.momentum, lay.eps)
        if kind == "LayerNorm2D":
            y = tF.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],),
                              getattr(self, "weight", None),
                              getattr(self, "bias", None), lay.eps)
            return y.permute(0, 3, 1, 2)
        if kind == "LayerNorm":
            return tF.layer_norm(x, tuple(lay.normalized_shape),
                                 getattr(self, "weight", None),
                                 getattr(self, "bias", None), lay.eps)
        if kind == "GroupNorm":
            return tF.group_norm(x, lay.num_groups, getattr(self, "weight", None),
                                 getattr(self, "bias", None), lay.eps)
        if kind == "ZeroPadding2D":
            (top, bottom), (left, right) = lay.padding
            return tF.pad(x, (left, right, top, bottom))
        if kind == "AdaptiveAvgPool2D":
            return tF.adaptive_avg_pool2d(x, lay.output_size)
        if kind == "SpatialDropout2D":
            assert lay.p == 0 or not self.training, "random masks cannot match"
            return x
        if kind == "Scale":
            return x * self.weight.reshape(-1, *([1] * (x.dim() - 2)))
        if kind == "GlobalAvgPool2D":
            return x.mean(dim=(2, 3))
        if kind == "Reshape":
            return x.reshape(x.shape[0], *lay.output_shape)
        if kind == "Flatten":
            return x.flatten(1)
        if kind == "Dropout":
            if self.random_dropout:
                return tF.dropout(x, lay.p, self.training)
            assert lay.p == 0 or not self.training, "random masks cannot match"
            return x
        return {"ReLU": tF.relu, "ReLU6": tF.relu6, "SiLU": tF.silu, "GELU": tF.gelu,
                "Sigmoid": torch.sigmoid, "Hardswish": tF.hardswish,
                "Mish": tF.mish, "Hardsigmoid": tF.hardsigmoid}[kind](x)


class TorchGraph(nn.Module):
    """A graph Model's layers as :class:`TorchLayer` modules, run along its
    ``inbound`` lists (Add sums, Concatenate joins, Multiply multiplies with
    broadcasting)."""

    def __init__(self, model, random_dropout=False):
        """``random_dropout``: run dropout layers with torch's own random masks (for
        timing); otherwise a dropout layer that drops anything in training is an
        error, since its masks cannot match ours."""
        super().__init__()
        dtype = torch.float64 if model.dtype == np.float64 else torch.float32
        self.inbound = model.inbound
        self.kinds = [type(layer).__name__ for layer in model.layers]
        self.keys = [key for key, _ in model._keyed_layers()]
        self.mods_axis = {key: layer.axis for key, layer in model._keyed_layers()
                          if type(layer).__name__ == "Concatenate"}
        self.mods = nn.ModuleDict({
            key.replace(".", "_"): TorchLayer(layer, dtype, random_dropout)
            for key, layer in model._keyed_layers() if not layer.takes_many})

    def forward(self, x):
        values = [x]
        for key, kind, sources in zip(self.keys, self.kinds, self.inbound,
                                      strict=True):
            ins = [values[i] for i in sources]
            if kind == "Add":
                out = ins[0]
                for other in ins[1:]:
                    out = out + other
            elif kind == "Concatenate":
                out = torch.cat(ins, dim=self.mods_axis[key])
            elif kind == "Multiply":
                out = ins[0]
                for other in ins[1:]:
                    out = out * other
            else:
                out = self.mods[key.replace(".", "_")](ins[0])
            values.append(out)
        return values[-1]

    def ours(self, key: str):
        """The torch tensor that holds our state-dict entry ``key``."""
        prefix, _, name = key.rpartition(".")
        return getattr(self.mods[prefix.replace(".", "_")], name)
