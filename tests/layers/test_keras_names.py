"""Keras's names: filters/units/activation on Conv2D and Dense, learning_rate,
model(x), count_params(), get_weights/set_weights."""

import numpy as np
import pytest

import fastcnn
from fastcnn import layers as L
from fastcnn import optimizers

from .layer_harness import run_layer_test


@pytest.mark.parametrize("case", [
    (L.Conv2D, {"filters": 3, "kernel_size": 3, "activation": "relu"}, (2, 5, 5),
     (3, 3, 3), 3 * 2 * 9 + 3),
    (L.Conv2D, {"out_channels": 2, "kernel_size": 2, "activation": "tanh",
                "padding": "same"}, (2, 4, 5), (2, 4, 5), 2 * 2 * 4 + 2),
    (L.Dense, {"units": 4, "activation": "sigmoid"}, (6,), (4,), 6 * 4 + 4),
    (L.Dense, {"out_features": 3, "activation": "linear"}, (5,), (3,), 5 * 3 + 3),
], ids=lambda case: f"{case[0].__name__}({case[1]})")
def test_layers_with_an_activation_pass_the_harness(case):
    # Config round trip, shapes, finite differences, float32 vs float64, ...
    cls, kwargs, in_shape, out_shape, params = case
    run_layer_test(cls, kwargs, in_shape, out_shape, params)


@pytest.mark.parametrize("name,act_cls", [("relu", L.ReLU), ("sigmoid", L.Sigmoid),
                                          ("tanh", L.Tanh)])
def test_activation_argument_equals_the_activation_layer_after(name, act_cls, rng):
    fused = fastcnn.Sequential([L.Conv2D(filters=3, kernel_size=3, activation=name),
                                L.Flatten(), L.Dense(units=4, activation=name)],
                               input_shape=(2, 6, 6), dtype="float64")
    plain = fastcnn.Sequential([L.Conv2D(3, 3), act_cls(), L.Flatten(), L.Dense(4),
                                act_cls()], input_shape=(2, 6, 6), dtype="float64")
    plain.load_state_dict(dict(zip(plain.state_dict(), fused.get_weights(),
                                   strict=True)))
    x = rng.standard_normal((5, 2, 6, 6))
    np.testing.assert_array_equal(fused(x), plain(x))
    dy = rng.standard_normal((5, 4))
    fused.forward(x, training=True)
    plain.forward(x, training=True)
    np.testing.assert_array_equal(fused.backward(dy), plain.backward(dy))
    grads_f = [g for layer in fused.layers for g in layer.grads.values()]
    grads_p = [g for layer in plain.layers for g in layer.grads.values()]
    for a, b in zip(grads_f, grads_p, strict=True):
        np.testing.assert_array_equal(a, b)
    # A frozen layer's input gradient goes through its activation too.
    fused.layers[2].trainable = False
    fused.forward(x, training=True)
    np.testing.assert_array_equal(fused.backward(dy), plain.backward(dy))


def test_activation_survives_save_and_load(tmp_path, rng):
    model = fastcnn.Sequential([L.Conv2D(filters=2, kernel_size=3, activation="relu"),
                                L.Flatten(), L.Dense(units=3)], input_shape=(1, 5, 5))
    model.save(tmp_path / "m.fcnn")
    loaded = fastcnn.load_model(tmp_path / "m.fcnn")
    assert loaded.layers[0].activation == "relu"
    assert "activation" not in loaded.layers[2].get_config()
    x = rng.random((2, 1, 5, 5), dtype=np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize("make,error,match", [
    (lambda: L.Conv2D(4, 3, filters=4), TypeError, "not both"),
    (lambda: L.Conv2D(kernel_size=3), TypeError, "missing out_channels"),
    (lambda: L.Conv2D(filters=4), TypeError, "missing kernel_size"),
    (lambda: L.Dense(3, units=3), TypeError, "not both"),
    (lambda: L.Dense(), TypeError, "missing out_features"),
    (lambda: L.Dense(3, activation="softmax"), ValueError, "takes logits"),
    (lambda: L.Dense(3, activation="selu"), ValueError, "activation must be one"),
    (lambda: L.Conv2D(3, 3, activation=1), ValueError, "activation must be one"),
])
def test_bad_keras_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_learning_rate_is_lr():
    assert optimizers.Adam(learning_rate=0.01).lr == 0.01
    assert optimizers.AdamW(learning_rate=0.02).get_config()["lr"] == 0.02
    assert optimizers.SGD(learning_rate=0.5, momentum=0.9).lr == 0.5
    assert optimizers.RMSprop(learning_rate=0.3).lr == 0.3
    with pytest.raises(ValueError, match="not both"):
        optimizers.SGD(lr=0.1, learning_rate=0.2)


def test_model_call_count_params_and_weights(rng):
    model = fastcnn.models.lenet5()
    x = rng.random((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(model(x), model.predict(x))
    assert model.count_params() == 61706
    assert model.count_params(split=True) == (61706, 0)
    weights = model.get_weights()
    assert [w.shape for w in weights] == [v.shape for v in model.state_dict().values()]
    other = fastcnn.models.lenet5()
    assert not np.array_equal(other(x), model(x))
    other.set_weights(weights)
    np.testing.assert_array_equal(other(x), model(x))
    with pytest.raises(ValueError, match="has 10 weight arrays, got 9"):
        other.set_weights(weights[:-1])
    with pytest.raises(TypeError, match="list of arrays"):
        other.set_weights(weights[0])
    with pytest.raises(ValueError):
        other.set_weights([np.zeros(1)] * len(weights))


def test_reshape_is_numpys_c_order_reshape_and_refuses_a_bad_size(rng):
    layer = L.Reshape((3, -1))
    x = rng.standard_normal((2, 4, 3))
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, x.reshape(2, 3, 4))
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward(dy), dy.reshape(x.shape))
    with pytest.raises(ValueError, match="cannot reshape"):
        L.Reshape((5, -1)).compute_output_shape((4, 3))
    with pytest.raises(ValueError, match="cannot reshape"):
        L.Reshape((5, 2)).compute_output_shape((4, 3))
    model = fastcnn.Sequential([L.Dense(12), L.Reshape((3, 4)), L.Flatten(),
                                L.Dense(2)], input_shape=(5,))
    assert model.output_shape == (2,)
