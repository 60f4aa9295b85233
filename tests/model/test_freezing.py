"""``layer.trainable = False``: the layer's parameters stay as they are through
training, its backward skips the parameter gradients, it counts as non-trainable,
and the flag survives save/load."""

import numpy as np
import pytest

import fastcnn
from fastcnn import layers, optimizers


def _net(seed=0):
    model = fastcnn.Sequential([
        layers.Conv2D(4, 3, padding=1), layers.BatchNorm2D(), layers.ReLU(),
        layers.MaxPool2D(2), layers.Flatten(), layers.Dense(8), layers.ReLU(),
        layers.Dense(3),
    ], input_shape=(2, 6, 6), dtype="float64")
    model.compile(optimizers.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    return model


def _data(rng, n=16):
    return rng.standard_normal((n, 2, 6, 6)), rng.integers(0, 3, n)


def test_frozen_layers_keep_their_weights_and_the_others_train(rng):
    model = _net()
    model.layers[0].trainable = False
    model.layers[5].trainable = False
    before = {k: v.copy() for k, v in model.state_dict().items()}
    x, y = _data(rng)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    after = model.state_dict()
    for key in ("0.weight", "0.bias", "5.weight", "5.bias"):
        assert np.array_equal(after[key], before[key]), key
    for key in ("1.weight", "7.weight", "7.bias"):
        assert not np.array_equal(after[key], before[key]), key
    # As in PyTorch, freezing does not change a layer's mode: BatchNorm's running
    # statistics still follow the batches.
    assert not np.array_equal(after["1.running_mean"], before["1.running_mean"])


def test_training_with_frozen_layers_matches_a_model_that_never_updates_them(rng):
    # Same gradients reach the trainable layers as when nothing is frozen; the
    # frozen layer's dx still flows back to the layers before it.
    frozen, reference = _net(), _net()
    reference.load_state_dict(frozen.state_dict())
    frozen.layers[5].trainable = False
    x, y = _data(rng)
    frozen.train_step(x, y)
    reference.backward(reference.loss.backward(reference.forward(x, training=True),
                                               y, None), input_grad=False)
    # One SGD step by hand on everything but layer 5 (momentum starts at zero).
    expected = {}
    for i, layer in enumerate(reference.layers):
        for key, param in layer.params.items():
            step = 0.0 if i == 5 else 0.1 * layer.grads[key]
            expected[f"{i}.{key}"] = param - step
    state = frozen.state_dict()
    for key, value in expected.items():
        np.testing.assert_allclose(state[key], value, rtol=1e-12, atol=1e-14,
                                   err_msg=key)


def test_frozen_layer_backward_skips_parameter_gradients(rng):
    layer = layers.Conv2D(3, 3)
    layer.build((2, 5, 5), np.float64, np.random.default_rng(0))
    x = rng.standard_normal((2, 2, 5, 5))
    dy = rng.standard_normal((2, 3, 3, 3))
    layer.forward(x, training=True)
    dx_trainable = layer.backward(dy)
    marker = {k: np.full_like(g, 7.0) for k, g in layer.grads.items()}
    layer.grads = marker
    layer.trainable = False
    layer.forward(x, training=True)
    dx_frozen = layer.backward(dy)
    np.testing.assert_array_equal(dx_frozen, dx_trainable)
    assert all((g == 7.0).all() for g in layer.grads.values())
    assert layer.backward(dy, input_grad=False) is None

    dense = layers.Dense(4)
    dense.build((6,), np.float64, np.random.default_rng(0))
    xd, dyd = rng.standard_normal((3, 6)), rng.standard_normal((3, 4))
    dense.forward(xd, training=True)
    expected = dense.backward(dyd)
    dense.trainable = False
    dense.forward(xd, training=True)
    np.testing.assert_array_equal(dense.backward(dyd), expected)


def test_frozen_parameters_count_as_non_trainable():
    model = _net()
    trainable, non_trainable = model.count_params(split=True)
    conv = 4 * 2 * 9 + 4
    model.layers[0].trainable = False
    assert model.count_params(split=True) == (trainable - conv, non_trainable + conv)
    assert model.count_params() == trainable + non_trainable
    table = model.summary(print_fn=None)
    assert "conv2d" in table
    model.layers[0].trainable = True
    assert model.count_params(split=True) == (trainable, non_trainable)


def test_trainable_survives_save_and_load(tmp_path, rng):
    model = _net()
    model.layers[5].trainable = False
    x, y = _data(rng)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "m.fcnn"
    model.save(path)
    loaded = fastcnn.load_model(path)
    assert [layer.trainable for layer in loaded.layers] == [
        layer.trainable for layer in model.layers]
    assert model.get_config()["layers"][5]["trainable"] is False
    assert "trainable" not in model.get_config()["layers"][0]
    # Training the loaded model goes on exactly as the original would.
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value, err_msg=key)


def test_freezing_after_training_keeps_the_optimizer_state(rng):
    # Momentum slots of a layer frozen later stay (unused), and unfreezing resumes.
    model = _net()
    x, y = _data(rng)
    model.train_step(x, y)
    model.layers[7].trainable = False
    weight = model.layers[7].params["weight"].copy()
    model.train_step(x, y)
    np.testing.assert_array_equal(model.layers[7].params["weight"], weight)
    assert "7.weight" in model.optimizer.state
    model.layers[7].trainable = True
    model.train_step(x, y)
    assert not np.array_equal(model.layers[7].params["weight"], weight)


@pytest.mark.parametrize("value", [0, 1, "no", None])
def test_trainable_must_be_a_bool(value):
    layer = layers.Dense(2)
    with pytest.raises(TypeError, match="trainable must be a bool"):
        layer.trainable = value


def test_a_config_with_a_bad_trainable_is_refused():
    config = _net().get_config()
    config["layers"][0]["trainable"] = "yes"
    with pytest.raises(ValueError, match="'trainable' that is not a bool"):
        fastcnn.Sequential.from_config(config)
