"""The activation layers of modern CNNs (GELU, SiLU, ELU, Softplus, Hardswish,
Hardsigmoid, ReLU6, Mish): the generic layer harness, PyTorch parity, names and
bad arguments; and every new ``activation=`` name on Conv2D and Dense."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn.functional as F
from fastcnn import layers as L
from fastcnn.layers.activation import ACTIVATIONS

from .layer_harness import run_layer_test

#: Where a derivative jumps: the harness's finite differences stay 0.05 away.
KINKS = (-3.0, 0.0, 3.0, 6.0, 5.0)


def _away_from_kinks(rng, shape):
    x = 3 * rng.standard_normal(shape)
    for k in KINKS:
        near = np.abs(x - k) < 0.05
        x[near] = k + np.where(x[near] < k, -0.05, 0.05)
    return x


# (class, kwargs, functional forward, functional backward, torch module)
LAYER_CASES = [
    (L.GELU, {}, F.gelu, F.gelu_backward, lambda nn: nn.GELU()),
    (L.GELU, {"approximate": "tanh"}, lambda x: F.gelu(x, "tanh"),
     lambda dy, x: F.gelu_backward(dy, x, "tanh"), lambda nn: nn.GELU("tanh")),
    (L.SiLU, {}, F.silu, F.silu_backward, lambda nn: nn.SiLU()),
    (L.ELU, {}, F.elu, F.elu_backward, lambda nn: nn.ELU()),
    (L.ELU, {"alpha": 0.5}, lambda x: F.elu(x, 0.5),
     lambda dy, x: F.elu_backward(dy, x, 0.5), lambda nn: nn.ELU(0.5)),
    (L.Softplus, {}, F.softplus, F.softplus_backward, lambda nn: nn.Softplus()),
    (L.Softplus, {"beta": 2.0, "threshold": 10.0}, lambda x: F.softplus(x, 2, 10),
     lambda dy, x: F.softplus_backward(dy, x, 2, 10),
     lambda nn: nn.Softplus(2.0, 10.0)),
    (L.Hardswish, {}, F.hardswish, F.hardswish_backward, lambda nn: nn.Hardswish()),
    (L.Hardsigmoid, {}, F.hardsigmoid, F.hardsigmoid_backward,
     lambda nn: nn.Hardsigmoid()),
    (L.ReLU6, {}, F.relu6, F.relu6_backward, lambda nn: nn.ReLU6()),
    (L.Mish, {}, F.mish, F.mish_backward, lambda nn: nn.Mish()),
]


def _id(case):
    cls, kwargs, *_ = case
    return f"{cls.__name__}({','.join(f'{k}={v}' for k, v in kwargs.items())})"


IDS = [_id(c) for c in LAYER_CASES]


@pytest.mark.parametrize("case", LAYER_CASES, ids=IDS)
@pytest.mark.parametrize("shape", [(2, 3, 3), (7,)])
def test_layer_harness(case, shape):
    cls, kwargs, *_ = case
    run_layer_test(cls, kwargs, shape, shape, 0, 0, batch_size=4,
                   input_fn=_away_from_kinks)


@pytest.mark.parametrize("case", LAYER_CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_equals_its_functional_op(case, dtype, rng):
    cls, kwargs, forward, backward, _ = case
    layer = cls(**kwargs)
    layer.build((3, 4), dtype)
    x = (4 * rng.standard_normal((2, 3, 4))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, forward(x))
    np.testing.assert_array_equal(layer.backward(dy), backward(dy, x))
    assert layer.grads == {} and layer.params == {}


@pytest.mark.torch
@pytest.mark.parametrize("case", LAYER_CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    cls, kwargs, _, _, module = case
    rng = np.random.default_rng(7)
    layer = cls(**kwargs)
    layer.build((3, 4, 4), dtype)
    x = (4 * rng.standard_normal((2, 3, 4, 4))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = module(torch.nn)(tx)
    ty.backward(torch.tensor(dy))
    # PyTorch's float64 hardsigmoid backward uses a float32 1/6 (3e-8 relative).
    rtol = 2e-5 if dtype == np.float32 else (
        1e-7 if cls is L.Hardsigmoid else 1e-12)
    np.testing.assert_allclose(layer.forward(x), ty.detach().numpy(), rtol,
                               rtol / 10)
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), rtol, rtol / 10)


def test_default_names_and_configs():
    assert L.GELU().name.startswith("gelu")
    assert L.SiLU().name.startswith("silu")
    assert L.ReLU6().name.startswith("relu6")
    assert L.Hardswish().name.startswith("hardswish")
    config = L.GELU().get_config()
    assert set(config) == {"name", "approximate"} and config["approximate"] == "none"
    assert L.GELU("tanh", name="g").get_config() == {"name": "g",
                                                    "approximate": "tanh"}
    assert L.ELU(0.5, name="e").get_config() == {"name": "e", "alpha": 0.5}
    assert L.Softplus(2, 10, name="s").get_config() == {
        "name": "s", "beta": 2.0, "threshold": 10.0}
    assert L.Mish(name="m").get_config() == {"name": "m"}


@pytest.mark.parametrize("make, error, message", [
    (lambda: L.GELU("erf"), ValueError, "approximate must be 'none' or 'tanh'"),
    (lambda: L.GELU(None), TypeError, "approximate must be 'none' or 'tanh'"),
    (lambda: L.ELU("a"), TypeError, "alpha must be a real number"),
    (lambda: L.ELU(np.inf), ValueError, "alpha must be a finite number"),
    (lambda: L.Softplus(0), ValueError, "beta must be a non-zero finite number"),
    (lambda: L.Softplus(1.0, np.nan), ValueError, "threshold must be a finite"),
    (lambda: L.Softplus(True), TypeError, "beta must be a real number"),
    (lambda: L.Mish(3), TypeError, "Mish: name must be a non-empty str"),
])
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_layers_are_registered():
    for cls in (L.GELU, L.SiLU, L.ELU, L.Softplus, L.Hardswish, L.Hardsigmoid,
                L.ReLU6, L.Mish):
        assert L.LAYERS[cls.__name__] is cls and L.get(cls.__name__) is cls
        assert cls.__name__ in L.BUILTIN_LAYERS and cls.__name__ in L.__all__


# ---------------------------------------------------- activation= on Conv2D / Dense

#: Every new activation= name and the functional forward it must apply.
NAMES = {
    "gelu": F.gelu, "silu": F.silu, "swish": F.silu, "elu": F.elu,
    "softplus": F.softplus, "hard_swish": F.hardswish, "hardswish": F.hardswish,
    "hard_silu": F.hardswish, "hard_sigmoid": F.hardsigmoid,
    "hardsigmoid": F.hardsigmoid, "relu6": F.relu6, "mish": F.mish,
}
BACKWARDS = {F.gelu: F.gelu_backward, F.silu: F.silu_backward,
             F.elu: F.elu_backward, F.softplus: F.softplus_backward,
             F.hardswish: F.hardswish_backward,
             F.hardsigmoid: F.hardsigmoid_backward, F.relu6: F.relu6_backward,
             F.mish: F.mish_backward}


def test_every_new_name_is_offered():
    assert set(NAMES) <= set(ACTIVATIONS)
    with pytest.raises(ValueError, match=r"activation must be one of .*'gelu'.*"
                       r"'hard_swish'.*'mish'.*'swish'"):
        L.Dense(2, activation="geluu")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_and_dense_apply_the_activation(name, dtype, rng):
    forward = NAMES[name]
    backward = BACKWARDS[forward]
    for layer, shape in ((L.Conv2D(3, 3, padding=1, activation=name), (2, 5, 5)),
                         (L.Dense(4, activation=name), (6,))):
        assert layer.get_config()["activation"] == name
        rebuilt = type(layer)(**layer.get_config())
        assert rebuilt.get_config() == layer.get_config()
        layer.build(shape, dtype, np.random.default_rng(0))
        x = (2 * rng.standard_normal((3, *shape))).astype(dtype)
        if isinstance(layer, L.Conv2D):
            z = F.conv2d(x, layer.params["weight"], layer.params["bias"], padding=1)
        else:
            z = F.linear(x, layer.params["weight"], layer.params["bias"])
        y = layer.forward(x, training=True)
        np.testing.assert_array_equal(y, forward(z))
        dy = rng.standard_normal(y.shape).astype(dtype)
        dz = backward(dy, z)
        if isinstance(layer, L.Conv2D):
            want = F.conv2d_backward(dz, x, layer.params["weight"], padding=1)
        else:
            want = F.linear_backward(dz, x, layer.params["weight"])
        dx = layer.backward(dy)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(dx, want[0], tol, tol)
        np.testing.assert_allclose(layer.grads["weight"], want[1], tol, tol)
        np.testing.assert_allclose(layer.grads["bias"], want[2], tol, tol)


@pytest.mark.parametrize("cls, kwargs, in_shape, out_shape, params", [
    (L.Conv2D, {"out_channels": 2, "kernel_size": 3, "activation": "gelu"},
     (1, 5, 5), (2, 3, 3), 20),
    (L.Conv2D, {"out_channels": 2, "kernel_size": 3, "activation": "swish"},
     (1, 5, 5), (2, 3, 3), 20),
    (L.Dense, {"out_features": 3, "activation": "mish"}, (5,), (3,), 18),
    (L.Dense, {"out_features": 3, "activation": "elu"}, (5,), (3,), 18),
])
def test_harness_with_activation(cls, kwargs, in_shape, out_shape, params):
    run_layer_test(cls, kwargs, in_shape, out_shape, params, 0, batch_size=3)
