"""Validation happens once: layers check their arguments at construction and their
input shape at build, then call the trusted op paths with the geometry they
computed at build; the public ops still check everything."""

import numpy as np
import pytest

from fastcnn import layers as L
from fastcnn.functional import _validate, conv, pool


def _model_layers():
    return [L.Conv2D(3, 3, padding="same"), L.ReLU(), L.MaxPool2D(2),
            L.Conv2D(4, 3, stride=2, padding=1), L.LeakyReLU(0.2), L.AvgPool2D(2),
            L.Sigmoid(), L.GlobalAvgPool2D(), L.Dense(5), L.Tanh(), L.Softmax()]


def _run(layers, x):
    for layer in layers:
        x = layer.forward(x, training=True)
    dy = np.ones_like(x)
    for layer in reversed(layers):
        dy = layer.backward(dy)
    return x, dy


def test_built_layers_do_not_revalidate(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 12, 12)).astype(np.float32)
    layers = _model_layers()
    expected = _run(layers, x)  # builds every layer

    def refuse(*args, **kwargs):
        raise AssertionError("validated again after build")

    for module, name in ((conv, "conv_geometry"), (pool, "pool_geometry"),
                         (_validate, "float_array"), (_validate, "pair")):
        monkeypatch.setattr(module, name, refuse)
    for got, want in zip(_run(layers, x), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_public_ops_still_validate():
    import fastcnn.functional as F

    x = np.ones((1, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match="weight has 3 input channels per group"):
        F.conv2d(x, np.ones((2, 3, 3, 3), np.float32))
    with pytest.raises(TypeError, match="max_pool2d: x must have dtype"):
        F.max_pool2d(x.astype(np.int32), 2)


def test_a_layer_called_with_another_input_shape_still_fails_loudly():
    layer = L.Conv2D(2, 3)
    layer.forward(np.ones((1, 1, 6, 6), np.float32))
    with pytest.raises(ValueError, match="but the layer was built for"):
        layer.forward(np.ones((1, 1, 7, 7), np.float32))


def test_parameters_replaced_by_hand_go_through_the_checked_op():
    layer = L.Dense(3)
    layer.forward(np.ones((2, 4), np.float32))
    layer.params["weight"] = np.ones((3, 5), np.float32)
    with pytest.raises(ValueError, match="linear: weight has 5 input features"):
        layer.forward(np.ones((2, 4), np.float32))


def test_non_contiguous_inputs_give_the_same_result():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    layer = L.Conv2D(2, 3)
    y = layer.forward(x)
    strided = np.asfortranarray(x)
    np.testing.assert_array_equal(layer.forward(strided), y)
    np.testing.assert_array_equal(layer.backward(np.asfortranarray(np.ones_like(y))),
                                  layer.backward(np.ones_like(y)))
