"""LayerNorm, GroupNorm and LayerNorm2D (and BatchNorm1D on (C, L) samples): what
the generic harness in test_layers.py does not cover: the functional op behind
each layer, shapes refused at build, PyTorch state dicts and modules, saving, a
frozen layer, and training steps equal to torch's."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn
import fastcnn.functional as F
from fastcnn import layers as L
from fastcnn import optimizers
from fastcnn.model import Sequential


def _randomise(model, rng):
    """Non-trivial affine parameters (ones and zeros would hide an axis mix-up)."""
    for layer in model.layers:
        if isinstance(layer, L.LayerNorm | L.GroupNorm | L.LayerNorm2D):
            for p in layer.params.values():
                p[...] = rng.uniform(0.5, 1.5, p.shape) * rng.choice([-1, 1], p.shape)


@pytest.mark.parametrize("layer, shape, op", [
    (L.LayerNorm((3, 4), eps=1e-3),
     (2, 3, 4), lambda x, w, b: F.layer_norm(x, (3, 4), w, b, 1e-3)),
    (L.GroupNorm(2, eps=1e-4), (4, 3, 2),
     lambda x, w, b: F.group_norm(x, 2, w, b, 1e-4)),
    (L.LayerNorm2D(), (3, 2, 5), lambda x, w, b: F.layer_norm2d(x, w, b, 1e-6)),
])
def test_layers_are_their_functional_op(layer, shape, op, rng):
    layer.build(shape, np.float64)
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape)
    x = rng.standard_normal((3, *shape)) * 2 + 1
    w, b = layer.params["weight"], layer.params["bias"]
    want = op(x, w, b)
    # No batch statistics, no buffers: training and evaluation agree.
    np.testing.assert_array_equal(layer.forward(x, training=True), want)
    np.testing.assert_array_equal(layer.forward(x, training=False), want)
    assert layer.buffers == {}
    dy = rng.standard_normal(x.shape)
    dx = layer.backward(dy)
    name = {L.LayerNorm: "layer_norm", L.GroupNorm: "group_norm",
            L.LayerNorm2D: "layer_norm2d"}[type(layer)]
    backward = getattr(F, f"{name}_backward")
    args = {"layer_norm": ((3, 4), w, 1e-3), "group_norm": (2, w, 1e-4),
            "layer_norm2d": (w, 1e-6)}[name]
    want_dx, want_dw, want_db = backward(dy, x, *args)
    np.testing.assert_array_equal(dx, want_dx)
    np.testing.assert_array_equal(layer.grads["weight"], want_dw)
    np.testing.assert_array_equal(layer.grads["bias"], want_db)


def test_parameters_start_as_ones_and_zeros():
    for layer, shape, pshape in [(L.LayerNorm(4), (3, 4), (4,)),
                                 (L.LayerNorm([3, 4]), (3, 4), (3, 4)),
                                 (L.GroupNorm(3), (6, 2, 2), (6,)),
                                 (L.LayerNorm2D(), (5, 2, 2), (5,))]:
        assert layer.state_shapes(shape) == {"weight": pshape, "bias": pshape}
        layer.build(shape)
        assert layer.params["weight"].dtype == np.float32
        np.testing.assert_array_equal(layer.params["weight"], np.ones(pshape))
        np.testing.assert_array_equal(layer.params["bias"], np.zeros(pshape))
    assert L.LayerNorm(4, elementwise_affine=False).state_shapes((4,)) == {}
    assert L.GroupNorm(1, affine=False).state_shapes((4,)) == {}
    assert L.LayerNorm2D(affine=False).state_shapes((4, 2, 2)) == {}


def test_config_and_names():
    layer = L.LayerNorm(5)
    assert layer.normalized_shape == (5,)
    assert layer.get_config() == {"normalized_shape": [5], "eps": 1e-5,
                                  "elementwise_affine": True, "name": layer.name}
    assert L.GroupNorm(2).get_config()["num_groups"] == 2
    assert L.LayerNorm2D().get_config()["eps"] == 1e-6
    assert layer.name.startswith("layer_norm")
    assert L.GroupNorm(1).name.startswith("group_norm")
    assert L.LayerNorm2D().name.startswith("layer_norm2d")


@pytest.mark.parametrize("layer, shape, error, match", [
    (L.GroupNorm(4), (6, 3, 3), ValueError,
     r"GroupNorm 'group_norm.*': num_groups=4 does not divide the 6 channels of "
     r"input_shape \(6, 3, 3\)"),
    (L.LayerNorm((3, 4)), (2, 4, 3), ValueError,
     r"the per-sample input must end with normalized_shape \(3, 4\), got "
     r"input_shape \(2, 4, 3\)"),
    (L.LayerNorm((2, 3, 4)), (3, 4), ValueError, r"must end with normalized_shape"),
    (L.LayerNorm2D(), (3, 4), ValueError, r"expects a 3-D per-sample input"),
    (L.LayerNorm2D(), (3, 4, 4, 4), ValueError, r"expects a 3-D per-sample input"),
    (L.BatchNorm1D(), (2, 3, 4), ValueError,
     r"expects a 1-D or 2-D per-sample input \(features,\) or \(channels, length\)"),
])
def test_bad_input_shapes_fail_at_build(layer, shape, error, match):
    with pytest.raises(error, match=match):
        layer.compute_output_shape(shape)
    with pytest.raises(error, match=match):
        layer.build(shape)
    assert not layer.built


@pytest.mark.parametrize("make, error, match", [
    (lambda: L.LayerNorm(()), TypeError, "normalized_shape must be an int or a "
     "non-empty tuple of ints"),
    (lambda: L.LayerNorm((3, -1)), ValueError, r"normalized_shape must hold sizes"),
    (lambda: L.LayerNorm(3.0), TypeError, "normalized_shape must be an int"),
    (lambda: L.LayerNorm(3, eps=0), ValueError, "eps must be a finite number"),
    (lambda: L.LayerNorm(3, elementwise_affine=1), TypeError,
     "elementwise_affine must be a bool"),
    (lambda: L.GroupNorm(0), ValueError, "num_groups must be positive"),
    (lambda: L.GroupNorm(2.0), TypeError, "num_groups must be an int"),
    (lambda: L.GroupNorm(2, eps="small"), TypeError, "eps must be a real number"),
    (lambda: L.GroupNorm(2, affine=None), TypeError, "affine must be a bool"),
    (lambda: L.LayerNorm2D(eps=-1.0), ValueError, "eps must be a finite number"),
    (lambda: L.LayerNorm2D(affine="yes"), TypeError, "affine must be a bool"),
])
def test_bad_hyper_parameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_batch_norm1d_on_channels_and_length(rng):
    layer = L.BatchNorm1D(momentum=0.5)
    layer.build((3, 4), np.float64)
    assert layer.state_shapes((3, 4))["running_mean"] == (3,)
    x = rng.standard_normal((5, 3, 4)) * 2 + 1
    layer.forward(x, training=True)
    np.testing.assert_allclose(layer.buffers["running_mean"],
                               0.5 * x.mean(axis=(0, 2)), rtol=1e-13)
    np.testing.assert_allclose(layer.buffers["running_var"],
                               0.5 + 0.5 * x.var(axis=(0, 2), ddof=1), rtol=1e-13)


def test_frozen_norm_layers_keep_their_parameters(rng):
    layer = L.GroupNorm(2)
    layer.build((4, 3), np.float64)
    layer.params["weight"][...] = rng.standard_normal(4)
    layer.trainable = False
    x = rng.standard_normal((3, 4, 3))
    dy = rng.standard_normal(x.shape)
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(
        dx, F.group_norm_backward(dy, x, 2, layer.params["weight"])[0])
    assert layer.count_params() == (0, 8)


def _norm_model(dtype):
    fastcnn.seed(3)
    model = Sequential([
        L.Conv2D(6, 3, padding=1), L.LayerNorm2D(), L.ReLU(),
        L.Conv2D(6, 3, stride=2), L.GroupNorm(3), L.Tanh(), L.LayerNorm((3, 3)),
        L.Flatten(), L.Dense(16), L.LayerNorm(16), L.ReLU(), L.Dense(3),
    ], input_shape=(2, 8, 8), dtype=dtype)
    _randomise(model, np.random.default_rng(0))
    return model


def test_save_and_load_keep_the_norm_layers(tmp_path, rng):
    model = _norm_model(np.float64)
    x = rng.standard_normal((2, 2, 8, 8))
    path = tmp_path / "norms.fastcnn"
    model.save(path)
    loaded = fastcnn.load_model(path)
    assert [type(la) for la in loaded.layers] == [type(la) for la in model.layers]
    assert loaded.layers[6].normalized_shape == (3, 3)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_modules_load_our_state_dict_and_back(dtype, rng):
    torch = pytest.importorskip("torch")
    from ..model.test_training_torch import copy_into_torch, to_torch

    model = _norm_model(dtype)
    tmodel = to_torch(model, dtype)
    assert sorted(tmodel.state_dict()) == sorted(model.state_dict())
    copy_into_torch(model, tmodel)
    x = rng.standard_normal((4, 2, 8, 8)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(model.predict(x),
                               tmodel(torch.from_numpy(x)).detach().numpy(),
                               rtol=tol, atol=tol)
    other = _norm_model(dtype)
    other.load_state_dict(tmodel.state_dict(), strict=True)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


@pytest.mark.torch
@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-4), (np.float64, 1e-9)])
def test_training_steps_match_torch(dtype, tol):
    """A Sequential with LayerNorm2D, GroupNorm and LayerNorm (on image and
    feature samples): five SGD-with-momentum steps from the same weights give
    torch's losses and weights."""
    torch = pytest.importorskip("torch")
    from ..model.test_training_torch import copy_into_torch, to_torch

    model = _norm_model(dtype)
    tmodel = to_torch(model, dtype)
    copy_into_torch(model, tmodel)
    model.compile(optimizers.SGD(0.05, momentum=0.9), "cross_entropy")
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.05, momentum=0.9)
    data = np.random.default_rng(42)
    before = model.state_dict()
    for _ in range(5):
        x = data.standard_normal((8, 2, 8, 8)).astype(dtype)
        y = data.integers(0, 3, 8)
        loss = model.train_step(x, y)
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)),
                                                  torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert abs(loss - tloss.item()) < tol
    ours = model.state_dict()
    theirs = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}
    assert set(ours) == set(theirs)
    for key in ours:
        assert np.max(np.abs(ours[key] - before[key])) > 1e-4, f"{key} did not move"
        np.testing.assert_allclose(ours[key], theirs[key], rtol=tol, atol=tol,
                                   err_msg=key)
