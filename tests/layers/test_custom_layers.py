"""Custom layers: the subclass contract, ``fastcnn.layers.register`` and loading."""

import numpy as np
import pytest

import fastcnn
from fastcnn import layers


@pytest.fixture
def registry():
    """Leaves LAYERS as it was, whatever a test registers."""
    before = dict(layers.LAYERS)
    yield layers.LAYERS
    layers.LAYERS.clear()
    layers.LAYERS.update(before)


def _scale_class():
    class Gain(layers.Layer):
        def __init__(self, init=1.0, name=None):
            super().__init__(name=name)
            self.init = float(init)

        def _config(self):
            return {"init": self.init}

        def _build(self, input_shape, dtype, rng):
            self.params["scale"] = np.full(input_shape[0], self.init, dtype=dtype)

        def _forward(self, x, training):
            self._cache = x
            return x * self.params["scale"][:, None, None]

        def _backward(self, dy):
            self.grads["scale"] = (dy * self._cache).sum(axis=(0, 2, 3))
            return dy * self.params["scale"][:, None, None]

    return Gain


def _net(scale_cls):
    model = fastcnn.Sequential([layers.Conv2D(3, 3), scale_cls(0.5), layers.Flatten(),
                                layers.Dense(2)], input_shape=(2, 6, 6))
    model.compile("sgd", "cross_entropy")
    return model


def test_a_registered_layer_trains_saves_and_loads(registry, tmp_path, rng):
    scale = layers.register(_scale_class())
    assert registry["Gain"] is scale
    model = _net(scale)
    x, y = rng.random((8, 2, 6, 6), dtype=np.float32), rng.integers(0, 2, 8)
    before = model.layers[1].params["scale"].copy()
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert not np.array_equal(model.layers[1].params["scale"], before)
    model.save(tmp_path / "m.fcnn")
    loaded = fastcnn.load_model(tmp_path / "m.fcnn")
    assert type(loaded.layers[1]) is scale
    assert loaded.layers[1].init == 0.5
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert fastcnn.gradcheck(model, x[:3], y[:3]).passed
    # warmup copies the model through its config: the registered class rebuilds.
    fastcnn.warmup(model, batch_size=2, verbose=False)


def test_an_unregistered_layer_is_refused_at_save_not_at_load(registry, tmp_path):
    model = _net(_scale_class())
    with pytest.raises(ValueError, match="fastcnn.layers.register"):
        model.save(tmp_path / "m.fcnn")
    assert not (tmp_path / "m.fcnn").exists()


def test_register_checks_its_argument(registry):
    with pytest.raises(TypeError, match="subclass of fastcnn.layers.Layer"):
        layers.register(int)
    with pytest.raises(TypeError, match="subclass of fastcnn.layers.Layer"):
        layers.register(layers.Layer)

    class Conv2D(layers.Layer):
        pass

    with pytest.raises(ValueError, match="built-in layer type"):
        layers.register(Conv2D)
    assert registry["Conv2D"] is layers.Conv2D
    # The built-in class itself may be "registered" again: nothing changes.
    assert layers.register(layers.Conv2D) is layers.Conv2D


def test_registering_a_name_again_replaces_the_class(registry):
    first, second = layers.register(_scale_class()), layers.register(_scale_class())
    assert first is not second
    assert registry["Gain"] is second


def test_gradcheck_checks_a_frozen_layer_too(rng):
    model = _net(_scale_class())
    model.layers[0].trainable = False
    x, y = rng.random((3, 2, 6, 6), dtype=np.float32), rng.integers(0, 2, 3)
    report = fastcnn.gradcheck(model, x, y)
    assert report.passed
    assert model.layers[0].trainable is False
