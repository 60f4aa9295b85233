"""ZeroPadding2D, SpatialDropout2D and Scale beyond the generic harness of
test_layers.py: Keras's padding spellings, receptive fields through padding, the
channel masks a SpatialDropout2D draws, and Scale's parameter paths (frozen,
replaced by hand). Multiply is tested in a graph Model (tests/model/)."""

import numpy as np
import pytest

import fastcnn
import fastcnn.functional as F
from fastcnn import layers as L
from fastcnn.inspect import receptive_field

from ..support.test_inspect import _brute_force

# ------------------------------------------------------------------ ZeroPadding2D


@pytest.mark.parametrize("padding, pairs", [
    (2, ((2, 2), (2, 2))),
    ((1, 3), ((1, 1), (3, 3))),
    ([0, 2], ((0, 0), (2, 2))),
    (((1, 0), (2, 3)), ((1, 0), (2, 3))),
    ([[0, 1], (4, 0)], ((0, 1), (4, 0))),
    (np.int64(1), ((1, 1), (1, 1))),
])
def test_zero_padding_reads_keras_spellings(padding, pairs, rng):
    layer = L.ZeroPadding2D(padding)
    assert layer.padding == pairs
    assert layer.get_config()["padding"] == [list(pairs[0]), list(pairs[1])]
    (top, bottom), (left, right) = pairs
    x = rng.standard_normal((2, 3, 4, 5))
    y = layer.forward(x)
    np.testing.assert_array_equal(
        y, np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right))))
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward(dy),
                                  dy[:, :, top:top + 4, left:left + 5])


def test_zero_padding_default_is_one_on_every_side():
    assert L.ZeroPadding2D().compute_output_shape((2, 3, 4)) == (2, 5, 6)


@pytest.mark.parametrize("padding, error", [
    (-1, ValueError), ((1, -2), ValueError), (((0, 0), (-1, 0)), ValueError),
    (2**31, ValueError), ("same", TypeError), (1.0, TypeError), ((1,), TypeError),
    ((1, 2, 3), TypeError), (((1, 2), 3), TypeError), (True, TypeError),
    (None, TypeError),
])
def test_zero_padding_refuses_bad_padding(padding, error):
    with pytest.raises(error, match=r"ZeroPadding2D 'zero_padding2d\S*': padding "
                       r"(must|amounts)"):
        L.ZeroPadding2D(padding)


def test_zero_padding_needs_maps():
    with pytest.raises(ValueError, match=r"expects a 3-D per-sample input"):
        L.ZeroPadding2D(1).build((5,))


def test_receptive_fields_pass_through_zero_padding(rng):
    layers = [L.ZeroPadding2D(((2, 0), (1, 3))), L.Conv2D(2, 3, stride=2),
              L.ZeroPadding2D(1), L.MaxPool2D(2)]
    shape = in_shape = (1, 6, 7)
    for layer in layers:
        layer.build(shape, np.float64)
        shape = layer.output_shape
    for index in (0, 1, 3):
        for pos, expected in _brute_force(layers, in_shape, index, rng).items():
            assert receptive_field(layers, index, pos) == expected, (index, pos)
    stats = fastcnn.inspect.layer_stats(layers[0], in_shape)
    assert stats.rf.size == (1, 1) and stats.rf.jump == (1, 1)


# ----------------------------------------------------------------- SpatialDropout2D


def test_spatial_dropout_draws_a_channel_mask_per_forward_and_reuses_it(rng):
    layer = L.SpatialDropout2D(0.5)
    layer.build((6, 3, 3), np.float64, np.random.default_rng(0))
    x = rng.uniform(1, 2, (4, 6, 3, 3))
    twin = np.random.default_rng(0)
    twin = np.random.default_rng(int(twin.integers(0, 2**63, dtype=np.int64)))
    y1 = layer.forward(x, training=True)
    seed = int(twin.integers(0, 2**64, dtype=np.uint64))
    np.testing.assert_array_equal(y1, F.dropout2d(x, 0.5, True, seed))
    kept = y1.reshape(4, 6, -1).max(axis=2) > 0
    assert 0 < kept.sum() < kept.size  # some channels dropped, some kept
    np.testing.assert_array_equal(y1.reshape(4, 6, -1).min(axis=2) > 0, kept)
    dy = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(layer.backward(dy),
                                  F.dropout2d_backward(dy, 0.5, True, seed))
    y2 = layer.forward(x, training=True)
    assert not np.array_equal(y1, y2)  # a fresh mask


def test_spatial_dropout_eval_is_a_copy_and_leaves_numpy_alone(rng):
    layer = L.SpatialDropout2D(0.7)
    x = rng.standard_normal((2, 3, 2, 2))
    layer.build(x.shape[1:])  # building draws from NumPy's RNG; evaluating not
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    y = layer.forward(x)
    assert np.array_equal(y, x) and not np.shares_memory(y, x)
    assert np.array_equal(np.random.get_state()[1], before)
    np.testing.assert_array_equal(layer.backward(x), x)


def test_spatial_dropout_needs_maps_and_a_probability():
    with pytest.raises(ValueError, match=r"expects a 3-D per-sample input"):
        L.SpatialDropout2D().build((5,))
    with pytest.raises(ValueError, match=r"SpatialDropout2D .*p must be a finite "
                       r"number in \[0.0, 1.0\]"):
        L.SpatialDropout2D(1.5)


# --------------------------------------------------------------------------- Scale


def test_scale_starts_at_init_value_and_matches_the_op(rng):
    layer = L.Scale(1e-6)
    layer.build((4, 2, 3), np.float32)
    np.testing.assert_array_equal(layer.params["weight"],
                                  np.full(4, 1e-6, np.float32))
    assert layer.state_shapes((4, 2, 3)) == {"weight": (4,)}
    layer.params["weight"][...] = rng.standard_normal(4)
    x = rng.standard_normal((3, 4, 2, 3)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(layer.forward(x, training=True),
                                  F.channel_scale(x, layer.params["weight"]))
    dx = layer.backward(dy)
    want_dx, want_dw = F.channel_scale_backward(dy, x, layer.params["weight"])
    np.testing.assert_array_equal(dx, want_dx)
    np.testing.assert_array_equal(layer.grads["weight"], want_dw)


def test_scale_on_feature_vectors(rng):
    layer = L.Scale(2.0)
    x = rng.standard_normal((3, 5))
    np.testing.assert_array_equal(layer.forward(x), 2.0 * x)


def test_a_frozen_scale_computes_only_the_input_gradient(rng):
    layer = L.Scale(0.5)
    layer.build((3, 2, 2), np.float64)
    x = rng.standard_normal((2, 3, 2, 2))
    layer.forward(x, training=True)
    layer.grads["weight"][...] = 7.0
    layer.trainable = False
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx, np.full(x.shape, 0.5))
    np.testing.assert_array_equal(layer.grads["weight"], np.full(3, 7.0))
    assert layer.count_params() == (0, 3)


def test_scale_parameters_replaced_by_hand_go_through_the_checked_op():
    layer = L.Scale()
    layer.forward(np.ones((2, 3, 2, 2)))
    layer.params["weight"] = np.ones(4)
    with pytest.raises(ValueError, match=r"channel_scale: weight has 4 entries but x "
                       r"has 3 channels"):
        layer.forward(np.ones((2, 3, 2, 2)))


@pytest.mark.parametrize("value, error", [
    (np.nan, ValueError), (np.inf, ValueError), ("1", TypeError), (None, TypeError),
    (True, TypeError)])
def test_scale_refuses_bad_init_value(value, error):
    with pytest.raises(error, match=r"Scale 'scale\S*': init_value must be"):
        L.Scale(value)


def test_scale_is_a_built_in_name():
    class Scale(L.Layer):
        pass

    with pytest.raises(ValueError, match="built-in layer type"):
        L.register(Scale)
    assert L.LAYERS["Scale"] is L.Scale
