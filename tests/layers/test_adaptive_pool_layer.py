"""AdaptiveAvgPool2D beyond the generic harness (tests/layers/test_layers.py): its
config forms, bad arguments, an empty plane, save and load, and what
fastcnn.inspect reports for it (receptive fields through its bins, MACs)."""

import numpy as np
import pytest

import fastcnn
import fastcnn.functional as F
from fastcnn import layers as L
from fastcnn.inspect import receptive_field
from fastcnn.inspect.summary import layer_stats

from .layer_harness import run_layer_test


@pytest.mark.parametrize(("given", "config", "out"), [
    (3, 3, (2, 3, 3)),
    ((3, 3), 3, (2, 3, 3)),
    ([2, 4], [2, 4], (2, 2, 4)),
    ((None, 2), [None, 2], (2, 7, 2)),
    ((None, None), [None, None], (2, 7, 5)),
    (0, 0, (2, 0, 0)),
])
def test_config_forms_and_output_shape(given, config, out):
    layer = L.AdaptiveAvgPool2D(given)
    assert layer.get_config()["output_size"] == config
    again = L.AdaptiveAvgPool2D(config, name="again")
    assert again.get_config() == {**layer.get_config(), "name": "again"}
    assert layer.compute_output_shape((2, 7, 5)) == out


def test_harness_with_an_output_larger_than_the_input():
    run_layer_test(L.AdaptiveAvgPool2D, {"output_size": (5, 2)}, (1, 3, 3),
                   (1, 5, 2), 0, 0)


@pytest.mark.parametrize(("value", "exc", "match"), [
    (None, TypeError, "output_size must be an int or a pair"),
    ((2,), TypeError, "output_size must be an int or a pair"),
    (2.5, TypeError, "output_size must be an int"),
    (-1, ValueError, "output_size must be >= 0"),
    ((1, -2), ValueError, "output_size must be >= 0"),
])
def test_bad_output_size_names_the_layer(value, exc, match):
    with pytest.raises(exc, match=f"^AdaptiveAvgPool2D 'adaptive_avg_pool2d.*': "
                       f"{match}"):
        L.AdaptiveAvgPool2D(value)


def test_an_empty_plane_is_refused_at_forward_and_empty_channels_pass():
    layer = L.AdaptiveAvgPool2D(2)
    layer.build((3, 0, 4))  # building is fine: shapes only
    with pytest.raises(ValueError, match="adaptive_avg_pool2d: x has a zero-sized "
                       "height or width"):
        layer.forward(np.zeros((1, 3, 0, 4)))
    layer = L.AdaptiveAvgPool2D(2)
    y = layer.forward(np.zeros((2, 0, 5, 4)))
    assert y.shape == (2, 0, 2, 2)
    assert layer.backward(y).shape == (2, 0, 5, 4)


def test_forward_and_backward_are_the_functional_op(rng):
    layer = L.AdaptiveAvgPool2D((3, None))
    x = rng.standard_normal((2, 2, 7, 5)).astype(np.float32)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, F.adaptive_avg_pool2d(x, (3, None)))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(layer.backward(dy),
                                  F.adaptive_avg_pool2d_backward(dy, x, (3, None)))


def test_save_and_load(tmp_path, rng):
    model = fastcnn.Sequential([L.Conv2D(3, 3), L.AdaptiveAvgPool2D((2, None)),
                                L.Flatten(), L.Dense(2)], input_shape=(1, 7, 6))
    model.save(tmp_path / "m.fcnn")
    loaded = fastcnn.load_model(tmp_path / "m.fcnn")
    assert loaded.layers[1].get_config()["output_size"] == [2, None]
    x = rng.standard_normal((2, 1, 7, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# ------------------------------------------------------------------------ inspect


def test_receptive_field_traces_uneven_bins():
    # 5 rows into 3 bins: [0, 2), [1, 4), [3, 5); 7 columns into 2: [0, 4), [3, 7).
    layers = [L.AdaptiveAvgPool2D((3, 2))]
    assert receptive_field(layers, 0, (1, 0), input_shape=(1, 5, 7)) == ((1, 4),
                                                                         (0, 4))
    assert receptive_field(layers, 0, (2, 1), input_shape=(1, 5, 7)) == ((3, 5),
                                                                         (3, 7))
    # Behind a 3x3 convolution each bin widens by one on each side.
    layers = [L.Conv2D(1, 3, padding=1), L.AdaptiveAvgPool2D((3, 2))]
    assert receptive_field(layers, 1, (1, 0), input_shape=(1, 5, 7)) == ((0, 5),
                                                                         (0, 5))


def test_summary_field_size_jump_and_macs():
    even = layer_stats(L.AdaptiveAvgPool2D((2, 3)), (4, 8, 9))
    # Even bins: the AvgPool2D(4, 3) window.
    assert even.rf.size == (4, 3) and even.rf.jump == (4, 3)
    assert even.macs == 4 * 8 * 9  # every input read once
    uneven = layer_stats(L.AdaptiveAvgPool2D((3, 2)), (2, 5, 7))
    # Rows [0, 2), [1, 4), [3, 5) and columns [0, 4), [3, 7): the largest bin
    # (3 x 4) and the largest step (2 x 3), upper bounds.
    assert uneven.rf.size == (3, 4) and uneven.rf.jump == (2, 3)
    assert uneven.macs == 2 * (2 + 3 + 2) * (4 + 4)  # overlapping rows count twice
    assert layer_stats(L.AdaptiveAvgPool2D(1), (2, 5, 7)).macs == 2 * 5 * 7
