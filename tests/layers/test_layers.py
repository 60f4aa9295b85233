"""Layers: the generic harness for every layer type, PyTorch parity of every layer's
forward and backward with copied weights, initialisers, the registry and bad
arguments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fastcnn import initializers
from fastcnn import layers as L

from .layer_harness import run_layer_test

# (class, kwargs, input shape, output shape, trainable, non-trainable, training)
CASES = [
    (L.Conv2D, {"out_channels": 2, "kernel_size": 3}, (1, 5, 5), (2, 3, 3), 20, 0,
     True),
    (L.Conv2D, {"out_channels": 3, "kernel_size": (2, 3), "stride": 2, "padding": 1},
     (2, 5, 6), (3, 3, 3), 39, 0, True),
    (L.Conv2D, {"out_channels": 4, "kernel_size": 3, "dilation": 2, "groups": 2,
                "bias": False, "kernel_initializer": "he_normal"},
     (4, 6, 6), (4, 2, 2), 72, 0, True),
    (L.Conv2D, {"out_channels": 2, "kernel_size": 2, "padding": "same",
                "kernel_initializer": "glorot_uniform"}, (1, 4, 5), (2, 4, 5), 10, 0,
     True),
    (L.Conv2D, {"out_channels": 2, "kernel_size": 3, "padding": "valid",
                "name": "my_conv"}, (1, 4, 4), (2, 2, 2), 20, 0, True),
    (L.DepthwiseConv2D, {"kernel_size": 3, "padding": 1}, (3, 5, 5), (3, 5, 5), 30, 0,
     True),
    (L.DepthwiseConv2D, {"kernel_size": (3, 2), "depth_multiplier": 2, "stride": 2,
                         "dilation": (1, 2), "bias": False}, (2, 7, 7), (4, 3, 3), 24,
     0, True),
    (L.DepthwiseConv2D, {"kernel_size": 5, "padding": "same",
                         "activation": "relu6"}, (2, 6, 6), (2, 6, 6), 52, 0, True),
    (L.SeparableConv2D, {"out_channels": 4, "kernel_size": 3, "padding": 1},
     (2, 5, 5), (4, 5, 5), 18 + 8 + 4, 0, True),
    (L.SeparableConv2D, {"filters": 3, "kernel_size": 3, "depth_multiplier": 2,
                         "stride": 2, "bias": False, "activation": "relu"},
     (2, 7, 7), (3, 3, 3), 36 + 12, 0, True),
    (L.Conv2DTranspose, {"out_channels": 2, "kernel_size": 3}, (1, 3, 3), (2, 5, 5),
     20, 0, True),
    (L.Conv2DTranspose, {"out_channels": 4, "kernel_size": (2, 3), "stride": 2,
                         "padding": 1, "output_padding": 1, "groups": 2,
                         "dilation": (1, 2)}, (2, 3, 4), (4, 5, 10), 28, 0, True),
    (L.UpSampling2D, {}, (2, 3, 2), (2, 6, 4), 0, 0, True),
    (L.UpSampling2D, {"size": (1, 3)}, (1, 2, 2), (1, 2, 6), 0, 0, True),
    (L.MaxPool2D, {"kernel_size": 2}, (2, 5, 5), (2, 2, 2), 0, 0, True),
    (L.MaxPool2D, {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2,
                   "ceil_mode": True}, (1, 7, 6), (1, 3, 3), 0, 0, True),
    (L.AvgPool2D, {"kernel_size": 2}, (2, 4, 5), (2, 2, 2), 0, 0, True),
    (L.AvgPool2D, {"kernel_size": (3, 2), "stride": (2, 1), "padding": 1,
                   "ceil_mode": True, "count_include_pad": False},
     (1, 6, 5), (1, 4, 6), 0, 0, True),
    (L.GlobalAvgPool2D, {}, (3, 4, 5), (3,), 0, 0, True),
    (L.AdaptiveAvgPool2D, {"output_size": 2}, (2, 4, 6), (2, 2, 2), 0, 0, True),
    (L.AdaptiveAvgPool2D, {"output_size": [3, None]}, (1, 5, 4), (1, 3, 4), 0, 0,
     True),
    (L.AdaptiveAvgPool2D, {"output_size": (4, 3)}, (2, 3, 5), (2, 4, 3), 0, 0, True),
    (L.Dense, {"out_features": 4}, (5,), (4,), 24, 0, True),
    (L.Reshape, {"target_shape": (4, -1)}, (2, 3, 4), (4, 6), 0, 0, True),
    (L.Reshape, {"target_shape": [2, 1, 12]}, (24,), (2, 1, 12), 0, 0, True),
    (L.Dense, {"out_features": 3, "bias": False, "kernel_initializer": "he_uniform"},
     (6,), (3,), 18, 0, True),
    (L.Flatten, {}, (2, 3, 4), (24,), 0, 0, True),
    (L.ReLU, {}, (2, 3, 3), (2, 3, 3), 0, 0, True),
    (L.LeakyReLU, {"negative_slope": 0.2}, (7,), (7,), 0, 0, True),
    (L.Sigmoid, {}, (2, 3, 3), (2, 3, 3), 0, 0, True),
    (L.Tanh, {}, (6,), (6,), 0, 0, True),
    (L.GELU, {}, (2, 3, 3), (2, 3, 3), 0, 0, True),
    (L.GELU, {"approximate": "tanh"}, (6,), (6,), 0, 0, True),
    (L.SiLU, {}, (2, 3, 3), (2, 3, 3), 0, 0, True),
    (L.ELU, {"alpha": 0.5}, (6,), (6,), 0, 0, True),
    (L.Softplus, {"beta": 2.0, "threshold": 10.0}, (6,), (6,), 0, 0, True),
    (L.Hardswish, {}, (2, 3, 3), (2, 3, 3), 0, 0, True),
    (L.Hardsigmoid, {}, (6,), (6,), 0, 0, True),
    (L.ReLU6, {}, (2, 3, 3), (2, 3, 3), 0, 0, True),
    (L.Mish, {}, (6,), (6,), 0, 0, True),
    (L.Softmax, {}, (5,), (5,), 0, 0, True),
    (L.Softmax, {"dim": -1}, (2, 3, 4), (2, 3, 4), 0, 0, True),
    (L.Dropout, {"p": 0.3}, (4, 5), (4, 5), 0, 0, True),
    (L.Dropout, {"p": 0.3}, (4, 5), (4, 5), 0, 0, False),
    (L.SpatialDropout2D, {"p": 0.3}, (4, 2, 3), (4, 2, 3), 0, 0, True),
    (L.SpatialDropout2D, {}, (3, 2, 2), (3, 2, 2), 0, 0, False),
    (L.ZeroPadding2D, {}, (2, 3, 4), (2, 5, 6), 0, 0, True),
    (L.ZeroPadding2D, {"padding": (2, 0)}, (1, 3, 3), (1, 7, 3), 0, 0, True),
    (L.ZeroPadding2D, {"padding": ((0, 2), [3, 1])}, (2, 2, 3), (2, 4, 7), 0, 0,
     True),
    (L.Scale, {}, (3, 4, 4), (3, 4, 4), 3, 0, True),
    (L.Scale, {"init_value": 1e-6}, (5,), (5,), 5, 0, True),
    (L.BatchNorm2D, {}, (3, 4, 4), (3, 4, 4), 6, 6, True),
    (L.BatchNorm2D, {"momentum": 0.2, "eps": 1e-3}, (2, 3, 3), (2, 3, 3), 4, 4,
     False),
    (L.BatchNorm2D, {"affine": False}, (2, 3, 3), (2, 3, 3), 0, 4, True),
    (L.BatchNorm1D, {}, (5,), (5,), 10, 10, True),
    (L.BatchNorm1D, {"affine": False}, (4,), (4,), 0, 8, False),
    (L.BatchNorm1D, {}, (3, 4), (3, 4), 6, 6, True),
    (L.LayerNorm, {"normalized_shape": 5}, (5,), (5,), 10, 0, True),
    (L.LayerNorm, {"normalized_shape": (3, 4), "eps": 1e-3}, (2, 3, 4), (2, 3, 4),
     24, 0, False),
    (L.LayerNorm, {"normalized_shape": [2, 3, 4], "elementwise_affine": False},
     (2, 3, 4), (2, 3, 4), 0, 0, True),
    (L.GroupNorm, {"num_groups": 2}, (4, 3, 3), (4, 3, 3), 8, 0, True),
    (L.GroupNorm, {"num_groups": 3, "eps": 1e-3, "affine": False}, (6, 5), (6, 5),
     0, 0, True),
    (L.GroupNorm, {"num_groups": 1}, (3,), (3,), 6, 0, False),
    (L.LayerNorm2D, {}, (3, 4, 4), (3, 4, 4), 6, 0, True),
    (L.LayerNorm2D, {"eps": 1e-3, "affine": False}, (2, 3, 3), (2, 3, 3), 0, 0,
     False),
]


def _id(case):
    cls, kwargs, *_, training = case
    args = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{cls.__name__}({args})-{'train' if training else 'eval'}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_layer_harness(case):
    cls, kwargs, in_shape, out_shape, trainable, non_trainable, training = case
    run_layer_test(cls, kwargs, in_shape, out_shape, trainable, non_trainable,
                   batch_size=4, training=training)


def test_every_registered_layer_has_a_harness_case():
    # Merge layers take several inputs: tests/model/test_graph.py covers them.
    assert {c[0] for c in CASES} == {
        cls for cls in L.LAYERS.values() if not cls.takes_many}


# ------------------------------------------------------------------ torch parity


def _chain_class(nn):
    class Chain(nn.Module):
        """A convolution (its parameters this module's own, as our layer's) and
        an activation."""

        def __init__(self, conv, act):
            super().__init__()
            self.conv, self.act = conv, act
            self.weight, self.bias = conv.weight, conv.bias

        def forward(self, x):
            return self.act(self.conv(x))

    return Chain


def _Chain(conv, act):
    import torch

    return _chain_class(torch.nn)(conv, act)


def _Separable(nn, c_in, layer):
    """torch's depthwise-then-pointwise pair, parameters named as our layer's."""
    mid = c_in * layer.depth_multiplier
    depthwise = nn.Conv2d(c_in, mid, layer.kernel_size, layer.stride, layer.padding,
                          layer.dilation, c_in, bias=False)
    pointwise = nn.Conv2d(mid, layer.out_channels, 1, bias=layer.use_bias)
    act = {None: nn.Identity, "relu": nn.ReLU}[layer.activation]()

    class Separable(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw, self.pw, self.act = depthwise, pointwise, act
            self.depthwise_weight = depthwise.weight
            self.pointwise_weight = pointwise.weight
            self.bias = pointwise.bias

        def forward(self, x):
            return self.act(self.pw(self.dw(x)))

    return Separable()


def _Scale(torch, channels, ndim):
    """gamma[:, None, None] * x (ConvNeXt's layer scale), gamma named as ours."""

    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(channels))

        def forward(self, x):
            return self.weight.reshape(-1, *[1] * (ndim - 1)) * x

    return Scale()


def _torch_module(torch, layer):
    nn = torch.nn
    cfg = layer.get_config()
    c_in = layer.input_shape[0]
    if isinstance(layer, L.DepthwiseConv2D):
        conv = nn.Conv2d(c_in, layer.out_channels, layer.kernel_size, layer.stride,
                         layer.padding, layer.dilation, c_in, layer.use_bias)
        act = {None: nn.Identity, "relu6": nn.ReLU6}[layer.activation]
        return _Chain(conv, act())
    if isinstance(layer, L.Conv2D):
        return nn.Conv2d(c_in, layer.out_channels, layer.kernel_size, layer.stride,
                         layer.padding, layer.dilation, layer.groups, layer.use_bias)
    if isinstance(layer, L.SeparableConv2D):
        return _Separable(nn, c_in, layer)
    if isinstance(layer, L.Conv2DTranspose):
        return nn.ConvTranspose2d(c_in, layer.out_channels, layer.kernel_size,
                                  layer.stride, layer.padding, layer.output_padding,
                                  layer.groups, layer.use_bias, layer.dilation)
    if isinstance(layer, L.UpSampling2D):
        return nn.Upsample(scale_factor=layer.size, mode="nearest")
    if isinstance(layer, L.MaxPool2D):
        return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding,
                            layer.dilation, ceil_mode=layer.ceil_mode)
    if isinstance(layer, L.AvgPool2D):
        return nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding,
                            layer.ceil_mode, layer.count_include_pad)
    if isinstance(layer, L.GlobalAvgPool2D):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if isinstance(layer, L.AdaptiveAvgPool2D):
        return nn.AdaptiveAvgPool2d(layer.output_size)
    if isinstance(layer, L.Dense):
        return nn.Linear(c_in, layer.out_features, layer.use_bias)
    if isinstance(layer, L.BatchNorm2D):
        return nn.BatchNorm2d(c_in, cfg["eps"], cfg["momentum"], cfg["affine"])
    if isinstance(layer, L.BatchNorm1D):
        return nn.BatchNorm1d(c_in, cfg["eps"], cfg["momentum"], cfg["affine"])
    if isinstance(layer, L.LayerNorm):
        return nn.LayerNorm(layer.normalized_shape, layer.eps,
                            layer.elementwise_affine)
    if isinstance(layer, L.GroupNorm):
        return nn.GroupNorm(layer.num_groups, c_in, layer.eps, layer.affine)
    if isinstance(layer, L.LayerNorm2D):
        class ChannelsLastLayerNorm(nn.LayerNorm):  # ConvNeXt's LayerNorm on NCHW
            def forward(self, x):
                return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

        return ChannelsLastLayerNorm(c_in, layer.eps, layer.affine)
    simple = {L.Flatten: nn.Flatten, L.ReLU: nn.ReLU, L.Sigmoid: nn.Sigmoid,
              L.Tanh: nn.Tanh, L.SiLU: nn.SiLU, L.Hardswish: nn.Hardswish,
              L.Hardsigmoid: nn.Hardsigmoid, L.ReLU6: nn.ReLU6, L.Mish: nn.Mish}
    if isinstance(layer, L.GELU):
        return nn.GELU(layer.approximate)
    if isinstance(layer, L.ELU):
        return nn.ELU(layer.alpha)
    if isinstance(layer, L.Softplus):
        return nn.Softplus(layer.beta, layer.threshold)
    if type(layer) in simple:
        return simple[type(layer)]()
    if isinstance(layer, L.LeakyReLU):
        return nn.LeakyReLU(layer.negative_slope)
    if isinstance(layer, L.Softmax):
        return nn.Softmax(layer.dim)
    if isinstance(layer, L.SpatialDropout2D):
        return nn.Dropout2d(layer.p)
    if isinstance(layer, L.Dropout):
        return nn.Dropout(layer.p)
    if isinstance(layer, L.ZeroPadding2D):
        (top, bottom), (left, right) = layer.padding
        return nn.ZeroPad2d((left, right, top, bottom))
    if isinstance(layer, L.Scale):
        return _Scale(torch, c_in, len(layer.input_shape))
    if isinstance(layer, L.Reshape):  # torch has no Reshape module: this is one
        return nn.Sequential(nn.Flatten(), nn.Unflatten(1, layer.output_shape))
    raise AssertionError(type(layer))


# Hardsigmoid is compared in test_activation_layers.py: PyTorch's float64 backward
# multiplies by a float32 1/6 (3e-8 relative), beyond TOLERANCE.
TORCH_CASES = [c for c in CASES if (c[0] not in (L.Dropout, L.SpatialDropout2D)
                                     or not c[-1])
               and c[0] is not L.Hardsigmoid]
TOLERANCE = {np.float32: (2e-5, 2e-6), np.float64: (1e-11, 1e-12)}


@pytest.mark.torch
# torch notes that its asymmetric 'same' padding copies the input; not our concern.
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TORCH_CASES, ids=[_id(c) for c in TORCH_CASES])
def test_layer_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    cls, kwargs, in_shape, _, _, _, training = case
    rng = np.random.default_rng(7)
    layer = cls(**kwargs)
    layer.build(in_shape, dtype, np.random.default_rng(3))
    # Non-trivial affine parameters and running statistics.
    for key, array in {**layer.params, **layer.buffers}.items():
        array[...] = rng.uniform(0.5, 1.5, array.shape) if key == "running_var" else (
            rng.standard_normal(array.shape))
    module = _torch_module(torch, layer).to(torch.float64 if dtype == np.float64
                                             else torch.float32)
    with torch.no_grad():
        for key, array in {**layer.params, **layer.buffers}.items():
            getattr(module, key).copy_(torch.from_numpy(array.copy()))
    module.train(training)

    x = rng.standard_normal((4, *in_shape)).astype(dtype)
    y = layer.forward(x, training=training)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = module(xt)
    rtol, atol = TOLERANCE[dtype]
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=atol)

    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=rtol, atol=atol * 10)
    for key, grad in layer.grads.items():
        np.testing.assert_allclose(grad, getattr(module, key).grad.numpy(),
                                   rtol=rtol, atol=atol * 10, err_msg=key)
    for key, buffer in layer.buffers.items():
        np.testing.assert_allclose(buffer, getattr(module, key).numpy(), rtol=rtol,
                                   atol=atol, err_msg=key)


@pytest.mark.torch
def test_state_dict_keys_match_torch_sequential():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(18, 3))
    ours = [L.Conv2D(2, 3), L.BatchNorm2D(), L.Flatten(), L.Dense(3)]
    shape = (1, 5, 5)
    keys = []
    for i, layer in enumerate(ours):
        layer.build(shape)
        shape = layer.output_shape
        keys += [f"{i}.{k}" for k in (*layer.params, *layer.buffers)]
    torch_keys = [k for k in model.state_dict() if "num_batches" not in k]
    assert sorted(keys) == sorted(torch_keys)
    for key, value in model.state_dict().items():
        if "num_batches" in key:
            continue
        i, name = key.split(".")
        layer = ours[int(i)]
        assert {**layer.params, **layer.buffers}[name].shape == tuple(value.shape)


# ------------------------------------------------------------------ initialisers


@pytest.mark.parametrize("shape", [(6, 3, 5, 5), (4, 2, 3, 1), (10, 7), (3, 8, 2, 2)])
def test_fans_match_torch(shape):
    torch = pytest.importorskip("torch")
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert initializers.fan_in_and_fan_out(shape) == expected


def test_fans_need_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        initializers.fan_in_and_fan_out((5,))


@pytest.mark.parametrize("cls,kwargs,in_shape,fan_in", [
    (L.Conv2D, {"out_channels": 64, "kernel_size": 3}, (8, 6, 6), 72),
    (L.Conv2D, {"out_channels": 64, "kernel_size": 3, "groups": 4}, (8, 6, 6), 18),
    (L.Dense, {"out_features": 200}, (50,), 50),
])
def test_torch_default_init_bounds(cls, kwargs, in_shape, fan_in):
    layer = cls(**kwargs)
    layer.build(in_shape, np.float64, np.random.default_rng(0))
    bound = 1 / math.sqrt(fan_in)
    for key in ("weight", "bias"):
        p = layer.params[key]
        assert np.all(np.abs(p) <= bound)
        # Uniform on [-b, b]: max close to b, variance b^2 / 3.
        assert np.abs(p).max() > 0.8 * bound
    w = layer.params["weight"]
    assert abs(w.var() - bound**2 / 3) < 0.1 * bound**2 / 3


@pytest.mark.parametrize("name,std", [
    ("he_normal", math.sqrt(2 / 200)),
    ("he_uniform", math.sqrt(2 / 200)),
    ("glorot_normal", math.sqrt(2 / (200 + 300))),
    ("glorot_uniform", math.sqrt(2 / (200 + 300))),
])
def test_he_glorot_std(name, std):
    layer = L.Dense(300, kernel_initializer=name)
    layer.build((200,), np.float64, np.random.default_rng(1))
    w = layer.params["weight"]
    assert abs(w.std() - std) < 0.03 * std
    assert abs(w.mean()) < 0.05 * std
    np.testing.assert_array_equal(layer.params["bias"], 0)
    if name.endswith("uniform"):
        assert np.abs(w).max() <= math.sqrt(3) * std


def test_conv_he_normal_fan_in_counts_the_kernel():
    layer = L.Conv2D(64, 3, kernel_initializer="he_normal")
    layer.build((16, 8, 8), np.float64, np.random.default_rng(2))
    std = math.sqrt(2 / (16 * 9))
    assert abs(layer.params["weight"].std() - std) < 0.03 * std


def test_batch_norm_init():
    bn = L.BatchNorm2D()
    bn.build((3, 2, 2))
    np.testing.assert_array_equal(bn.params["weight"], 1)
    np.testing.assert_array_equal(bn.params["bias"], 0)
    np.testing.assert_array_equal(bn.buffers["running_mean"], 0)
    np.testing.assert_array_equal(bn.buffers["running_var"], 1)
    assert bn.params["weight"].dtype == np.float32


def test_build_is_reproducible_under_numpy_seed():
    def build():
        layer = L.Conv2D(3, 3)
        layer.build((2, 5, 5))
        return layer.params["weight"].copy()

    np.random.seed(11)
    a = build()
    np.random.seed(11)
    b = build()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, build())


def test_unknown_initializer():
    with pytest.raises(ValueError, match="unknown initialiser 'lecun'"):
        L.Dense(3, kernel_initializer="lecun")
    with pytest.raises(TypeError, match="name must be a str"):
        initializers.get(3)


# ------------------------------------------------------------------ behaviour


def test_forward_builds_unbuilt_layer_from_input():
    layer = L.Conv2D(2, 3)
    y = layer.forward(np.zeros((2, 3, 5, 5), dtype=np.float64))
    assert layer.built and layer.input_shape == (3, 5, 5)
    assert layer.dtype == np.float64 and y.shape == (2, 2, 3, 3)


def test_grads_are_written_in_place():
    layer = L.Dense(3)
    layer.build((4,), np.float64)
    before = layer.grads["weight"]
    x = np.ones((2, 4))
    layer.forward(x)
    layer.backward(np.ones((2, 3)))
    assert layer.grads["weight"] is before
    np.testing.assert_allclose(before, 2.0)


def test_dropout_draws_a_fresh_mask_per_training_forward_and_reuses_it():
    layer = L.Dropout(0.5)
    layer.build((200,), np.float64, np.random.default_rng(0))
    x = np.ones((2, 200))
    y1 = layer.forward(x, training=True)
    dx1 = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx1, y1)  # same mask, same 1/(1-p) scale
    y2 = layer.forward(x, training=True)
    assert not np.array_equal(y1, y2)
    assert set(np.unique(y1)) == {0.0, 2.0}
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_dropout_eval_does_not_touch_numpy_global_rng():
    layer = L.Dropout(0.5)
    layer.build((5,))
    np.random.seed(3)
    layer.forward(np.ones((2, 5), dtype=np.float32), training=False)
    after = np.random.random()
    np.random.seed(3)
    assert np.random.random() == after


def test_batch_norm_updates_running_stats_only_in_training():
    bn = L.BatchNorm1D(momentum=0.5)
    bn.build((3,), np.float64)
    x = np.random.default_rng(0).standard_normal((8, 3)) * 2 + 1
    bn.forward(x, training=False)
    np.testing.assert_array_equal(bn.buffers["running_mean"], 0)
    bn.forward(x, training=True)
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.5 * x.mean(0))
    np.testing.assert_allclose(bn.buffers["running_var"],
                               0.5 + 0.5 * x.var(0, ddof=1))


def test_repr_and_default_names():
    a, b = L.MaxPool2D(2), L.MaxPool2D(2)
    assert a.name != b.name and a.name.startswith("max_pool2d")
    assert L.LeakyReLU().name.startswith("leaky_relu")
    assert repr(L.Dense(3, name="fc")) == (
        "Dense(out_features=3, bias=True, kernel_initializer='torch', name='fc')"
    )


def test_config_is_canonical_and_json_round_trips():
    conv = L.Conv2D(4, (3, 3), stride=(1, 2), padding=[1, 1])
    cfg = conv.get_config()
    assert cfg["kernel_size"] == 3 and cfg["stride"] == [1, 2] and cfg["padding"] == 1
    assert L.Conv2D(**json.loads(json.dumps(cfg))).get_config() == cfg
    assert L.MaxPool2D(2).get_config()["stride"] is None


def test_registry_get():
    assert L.get("Conv2D") is L.Conv2D
    with pytest.raises(ValueError, match="unknown layer type 'Conv3D'"):
        L.get("Conv3D")


def test_count_params_needs_build():
    with pytest.raises(ValueError, match="not built"):
        L.Dense(3).count_params()


# ------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize("make,error,match", [
    (lambda: L.Conv2D(-1, 3), ValueError, "out_channels must be >= 0"),
    (lambda: L.Conv2D(2.0, 3), TypeError, "out_channels must be an int"),
    (lambda: L.Conv2D(2, (3, 0)), ValueError, "kernel_size must be positive"),
    (lambda: L.Conv2D(2, "3"), TypeError, "kernel_size must be an int or a pair"),
    (lambda: L.Conv2D(2, 3, stride=0), ValueError, "stride must be positive"),
    (lambda: L.Conv2D(2, 3, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: L.Conv2D(2, 3, padding="full"), ValueError, "padding must be"),
    (lambda: L.Conv2D(2, 3, dilation=0), ValueError, "dilation must be positive"),
    (lambda: L.Reshape(()), ValueError, "non-empty tuple of positive ints"),
    (lambda: L.Reshape((2, 0)), ValueError, "non-empty tuple of positive ints"),
    (lambda: L.Reshape((2, 1.5)), ValueError, "non-empty tuple of positive ints"),
    (lambda: L.Reshape(6), ValueError, "non-empty tuple of positive ints"),
    (lambda: L.Reshape((-1, -1)), ValueError, "may hold -1 once"),
    (lambda: L.Conv2D(3, 3, groups=2), ValueError, "groups=2 does not divide"),
    (lambda: L.Conv2D(2, 3, bias=1), TypeError, "bias must be a bool"),
    (lambda: L.Conv2D(2, 3, name=5), TypeError, "name must be a non-empty str"),
    (lambda: L.MaxPool2D(2, padding=2), ValueError, "at most half of kernel_size"),
    (lambda: L.MaxPool2D(2, ceil_mode="yes"), TypeError, "ceil_mode must be a bool"),
    (lambda: L.AvgPool2D(3, stride=0), ValueError, "stride must be positive"),
    (lambda: L.AvgPool2D(2, count_include_pad=None), TypeError, "count_include_pad"),
    (lambda: L.Dense(-1), ValueError, "out_features must be >= 0"),
    (lambda: L.LeakyReLU("a"), TypeError, "negative_slope must be a real number"),
    (lambda: L.Softmax(0), ValueError, "dim=0 is the batch axis"),
    (lambda: L.Softmax(1.0), TypeError, "dim must be an int"),
    (lambda: L.Dropout(1.5), ValueError, "p must be a finite number in"),
    (lambda: L.BatchNorm2D(eps=0), ValueError, "eps must be a finite number"),
    (lambda: L.BatchNorm1D(momentum=2), ValueError, "momentum must be"),
    (lambda: L.BatchNorm1D(affine="no"), TypeError, "affine must be a bool"),
])
def test_bad_hyper_parameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("layer,shape,error,match", [
    (L.Conv2D(2, 3), (5, 5), ValueError, r"3-D per-sample input"),
    (L.Conv2D(2, 3, groups=2), (3, 5, 5), ValueError, "groups=2 does not divide"),
    (L.Conv2D(2, 7), (1, 5, 5), ValueError, "larger than the padded input"),
    (L.MaxPool2D(7), (1, 5, 5), ValueError, "input is too small"),
    (L.Dense(3), (2, 4, 4), ValueError, "put a Flatten"),
    (L.BatchNorm1D(), (2, 4, 4), ValueError, "1-D or 2-D per-sample input"),
    (L.Softmax(4), (3, 2), ValueError, "dim=4 is out of range"),
    (L.ReLU(), (-1, 3), TypeError, "tuple of non-negative ints"),
    (L.ReLU(), "3", TypeError, "tuple of non-negative ints"),
])
def test_bad_input_shape(layer, shape, error, match):
    with pytest.raises(error, match=match):
        layer.compute_output_shape(shape)
    with pytest.raises(error, match=match):
        layer.build(shape)


def test_build_bad_dtype_and_rng():
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        L.Dense(2).build((3,), np.int32)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        L.Dense(2).build((3,), rng=np.random.RandomState(0))


def test_forward_bad_inputs():
    layer = L.Dense(2)
    layer.build((3,), np.float32)
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        layer.forward([[1.0, 2.0, 3.0]])
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        layer.forward(np.ones((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"per-sample shape \(4,\)"):
        layer.forward(np.ones((2, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="parameters are float32"):
        layer.forward(np.ones((2, 3), dtype=np.float64))
    with pytest.raises(TypeError, match="training must be a bool"):
        layer.forward(np.ones((2, 3), dtype=np.float32), training=1)


def test_backward_bad_inputs():
    layer = L.ReLU()
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.ones((2, 3)))
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dy must have the shape .*\(2, 3\)"):
        layer.backward(np.ones((2, 4)))
    with pytest.raises(TypeError, match="dy must be a numpy.ndarray"):
        layer.backward(1.0)


def test_nan_propagates_through_layers():
    x = np.full((1, 1, 4, 4), np.nan, dtype=np.float32)
    for layer in (L.Conv2D(2, 3), L.AvgPool2D(2), L.ReLU(), L.Flatten()):
        y = layer.forward(x)
        assert np.isnan(y).all()
        x = y if y.ndim == 4 else x
