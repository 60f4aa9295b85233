"""Training parity with PyTorch: same initial weights (copied through the state dict),
same batches, ten optimizer steps, same weights; and state dicts that load both ways.
"""

import numpy as np
import pytest

import fastcnn
from fastcnn import optimizers
from fastcnn.layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
)
from fastcnn.model import Sequential

torch = pytest.importorskip("torch")
nn = torch.nn

pytestmark = pytest.mark.torch

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
TOL = {np.float32: 1e-4, np.float64: 1e-9}
STEPS = 10
SHAPE = (1, 10, 10)


class ChannelsLastLayerNorm(nn.LayerNorm):
    """ConvNeXt's LayerNorm of NCHW maps, as torch spells it: a LayerNorm over C
    applied channels-last (fastcnn's LayerNorm2D)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def to_torch(model: Sequential, dtype) -> "nn.Sequential":
    """An equivalent torch.nn.Sequential (same layer indices) with torch's own init."""
    mods = []
    for layer in model.layers:
        c = layer.get_config()
        kind = type(layer).__name__
        if kind == "Conv2D":
            mods.append(nn.Conv2d(layer.input_shape[0], c["out_channels"],
                                  c["kernel_size"], stride=c["stride"],
                                  padding=c["padding"], dilation=c["dilation"],
                                  groups=c["groups"], bias=c["bias"]))
        elif kind == "Dense":
            mods.append(nn.Linear(layer.input_shape[0], c["out_features"],
                                  bias=c["bias"]))
        elif kind == "MaxPool2D":
            mods.append(nn.MaxPool2d(c["kernel_size"], c["stride"], c["padding"],
                                     c["dilation"], ceil_mode=c["ceil_mode"]))
        elif kind == "AvgPool2D":
            mods.append(nn.AvgPool2d(c["kernel_size"], c["stride"], c["padding"],
                                     ceil_mode=c["ceil_mode"],
                                     count_include_pad=c["count_include_pad"]))
        elif kind == "GlobalAvgPool2D":
            mods.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        elif kind == "BatchNorm2D":
            mods.append(nn.BatchNorm2d(layer.input_shape[0], eps=c["eps"],
                                       momentum=c["momentum"], affine=c["affine"]))
        elif kind == "BatchNorm1D":
            mods.append(nn.BatchNorm1d(layer.input_shape[0], eps=c["eps"],
                                       momentum=c["momentum"], affine=c["affine"]))
        elif kind == "LayerNorm":
            mods.append(nn.LayerNorm(c["normalized_shape"], eps=c["eps"],
                                     elementwise_affine=c["elementwise_affine"]))
        elif kind == "GroupNorm":
            mods.append(nn.GroupNorm(c["num_groups"], layer.input_shape[0],
                                     eps=c["eps"], affine=c["affine"]))
        elif kind == "LayerNorm2D":
            mods.append(ChannelsLastLayerNorm(layer.input_shape[0], eps=c["eps"],
                                              elementwise_affine=c["affine"]))
        elif kind == "Dropout":
            mods.append(nn.Dropout(c["p"]))
        elif kind == "LeakyReLU":
            mods.append(nn.LeakyReLU(c["negative_slope"]))
        else:
            mods.append({"ReLU": nn.ReLU, "Flatten": nn.Flatten, "Tanh": nn.Tanh,
                         "Sigmoid": nn.Sigmoid}[kind]())
    return nn.Sequential(*mods).to(TORCH_DTYPE[dtype])


def copy_into_torch(model: Sequential, tmodel) -> None:
    """Our state dict into torch's; only torch's num_batches_tracked may be missing."""
    ours = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    result = tmodel.load_state_dict(ours, strict=False)
    assert not result.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys)


def lenet(dtype, batch_norm=False) -> Sequential:
    """A small LeNet-like net: conv/pool/conv/dense, optionally with BatchNorm."""
    if batch_norm:
        # No conv bias before BatchNorm: BN cancels it, so its gradient is pure
        # rounding noise (~1e-9) that Adam rescales to steps of size lr, and the
        # two libraries' noise differs. (Standard practice drops that bias anyway.)
        layers = [Conv2D(4, 3, padding=1, bias=False), BatchNorm2D()]
    else:
        layers = [Conv2D(4, 3, padding=1)]
    layers += [ReLU(), MaxPool2D(2), Conv2D(6, 3), ReLU(), Flatten(), Dense(12),
               ReLU(), Dense(3)]
    fastcnn.seed(0)
    return Sequential(layers, input_shape=SHAPE, dtype=dtype)


def batches(dtype, n=STEPS, size=8):
    rng = np.random.default_rng(42)
    return [(rng.standard_normal((size, *SHAPE)).astype(dtype),
             rng.integers(0, 3, size)) for _ in range(n)]


# name -> (ours, torch optimizer factory, torch gradient clipping)
CONFIGS = {
    "sgd_momentum": (
        lambda: optimizers.SGD(0.05, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), None),
    "sgd_nesterov_wd": (
        lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                  weight_decay=1e-3), None),
    "sgd_dampening_clipnorm": (
        lambda: optimizers.SGD(0.05, momentum=0.5, dampening=0.1, clipnorm=0.5),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5, dampening=0.1),
        lambda p: nn.utils.clip_grad_norm_(p, 0.5)),
    "sgd_clipvalue": (
        lambda: optimizers.SGD(0.1, clipvalue=0.01),
        lambda p: torch.optim.SGD(p, lr=0.1),
        lambda p: nn.utils.clip_grad_value_(p, 0.01)),
    "adam": (
        lambda: optimizers.Adam(1e-2),
        lambda p: torch.optim.Adam(p, lr=1e-2), None),
    "adam_amsgrad_wd": (
        lambda: optimizers.Adam(1e-2, amsgrad=True, weight_decay=1e-2),
        lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True, weight_decay=1e-2),
        None),
    "adamw": (
        lambda: optimizers.AdamW(1e-2, betas=(0.8, 0.99)),
        lambda p: torch.optim.AdamW(p, lr=1e-2, betas=(0.8, 0.99)), None),
    "rmsprop_centered_momentum": (
        lambda: optimizers.RMSprop(1e-3, momentum=0.9, centered=True,
                                   weight_decay=1e-3),
        lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.9, centered=True,
                                      weight_decay=1e-3), None),
    "rmsprop": (
        lambda: optimizers.RMSprop(1e-3),
        lambda p: torch.optim.RMSprop(p, lr=1e-3), None),
}

GRID = [(name, False) for name in CONFIGS] + [("sgd_momentum", True), ("adam", True)]


def run_both(dtype, name, batch_norm):
    ours_opt, torch_opt, clip = CONFIGS[name]
    model = lenet(dtype, batch_norm)
    tmodel = to_torch(model, dtype)
    copy_into_torch(model, tmodel)
    model.compile(ours_opt(), "cross_entropy")
    topt = torch_opt(tmodel.parameters())
    tmodel.train()
    loss_err = 0.0
    for x, y in batches(dtype):
        loss = model.train_step(x, y)
        topt.zero_grad()
        tloss = nn.functional.cross_entropy(tmodel(torch.from_numpy(x)),
                                            torch.from_numpy(y))
        tloss.backward()
        if clip is not None:
            clip(tmodel.parameters())
        topt.step()
        loss_err = max(loss_err, abs(loss - tloss.item()))
    expected = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()
                if not k.endswith("num_batches_tracked")}
    ours = model.state_dict()
    assert set(ours) == set(expected)
    err = max(float(np.max(np.abs(ours[k] - expected[k]))) for k in ours)
    return err, loss_err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "batch_norm"), GRID)
def test_ten_steps_match_torch(dtype, name, batch_norm):
    err, loss_err = run_both(dtype, name, batch_norm)
    print(f"{name} bn={batch_norm} {np.dtype(dtype).name}: max |w - w_torch| = "
          f"{err:.3g}, max |J - J_torch| = {loss_err:.3g}")
    assert err < TOL[dtype]
    assert loss_err < TOL[dtype]


def test_weights_actually_moved():
    # Guards the parity test against a vacuous pass (an optimizer that does nothing).
    model = lenet(np.float64)
    before = model.state_dict()
    model.compile(optimizers.SGD(0.05, momentum=0.9), "cross_entropy")
    for x, y in batches(np.float64, n=2):
        model.train_step(x, y)
    after = model.state_dict()
    assert all(np.max(np.abs(after[k] - before[k])) > 1e-6 for k in before)


def rich_model(dtype) -> Sequential:
    """Every parameterised and most parameter-free layer types, with strides,
    padding, dilation and groups, so the key indices and layouts are exercised."""
    fastcnn.seed(1)
    return Sequential([
        Conv2D(4, 3, stride=1, padding=1), BatchNorm2D(), LeakyReLU(0.1),
        Conv2D(4, 3, padding=2, dilation=2, groups=2), Tanh(),
        AvgPool2D(2), Conv2D(6, (2, 3), stride=(1, 2), bias=False), Sigmoid(),
        MaxPool2D(2, stride=1), Dropout(0.3), Flatten(), Dense(8), BatchNorm1D(),
        ReLU(), Dense(3),
    ], input_shape=(2, 12, 12), dtype=dtype)


def gap_model(dtype) -> Sequential:
    """Conv -> BatchNorm -> global average pooling -> Dense."""
    fastcnn.seed(2)
    return Sequential([Conv2D(5, 3, stride=2, bias=False), BatchNorm2D(), ReLU(),
                       GlobalAvgPool2D(), Dense(3)], input_shape=(2, 12, 12),
                      dtype=dtype)


@pytest.mark.parametrize("make", [rich_model, gap_model])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_loads_our_state_dict(dtype, make):
    model = make(dtype)
    model.compile(optimizers.SGD(0.1), "cross_entropy")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 2, 12, 12)).astype(dtype)
    for _ in range(2):  # non-trivial running statistics
        model.train_step(x, rng.integers(0, 3, 6))
    assert float(np.max(np.abs(model.state_dict()["1.running_mean"]))) > 0
    tmodel = to_torch(model, dtype)
    copy_into_torch(model, tmodel)
    tmodel.eval()
    expected = tmodel(torch.from_numpy(x)).detach().numpy()
    got = model.predict(x)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("make", [rich_model, gap_model])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_we_load_torch_state_dict(dtype, make):
    model = make(dtype)
    tmodel = to_torch(model, dtype)
    torch.manual_seed(0)
    with torch.no_grad():
        for mod in tmodel.modules():
            if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    tmodel.eval()
    # torch's own dict, num_batches_tracked included, loads strictly.
    model.load_state_dict(tmodel.state_dict(), strict=True)
    x = np.random.default_rng(4).standard_normal((5, 2, 12, 12)).astype(dtype)
    expected = tmodel(torch.from_numpy(x)).detach().numpy()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(model.predict(x), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("make", [rich_model, gap_model])
def test_state_dict_keys_match_torch_sequential(make):
    model = make(np.float32)
    tkeys = [k for k in to_torch(model, np.float32).state_dict()
             if not k.endswith("num_batches_tracked")]
    assert list(model.state_dict()) == tkeys
