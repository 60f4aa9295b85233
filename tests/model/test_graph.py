"""The graph Model: residual and branching networks written with fastcnn.Input.

Forward and backward are checked against the same network computed by hand from
the layers' ops, by float64 finite differences (gradcheck) and, where installed,
against a PyTorch residual block with the same weights (forward and one SGD step).
"""

import numpy as np
import pytest

import fastcnn
from fastcnn import functional as F
from fastcnn import layers as L
from fastcnn import optimizers


def _residual(dtype="float64", seed=0):
    """x -> conv -> relu -> conv -+-> relu -> flatten -> dense
       x ----------- 1x1 conv ----+   (x also feeds a concatenation)"""
    fastcnn.seed(seed)
    x = fastcnn.Input((2, 5, 5), name="x")
    h = L.Conv2D(3, 3, padding=1, name="c1")(x)
    h = L.ReLU(name="r1")(h)
    h = L.Conv2D(3, 3, padding=1, name="c2")(h)
    s = L.Conv2D(3, 1, name="proj")(x)
    a = L.ReLU(name="r2")(L.Add(name="add")([h, s]))
    c = L.Concatenate(name="cat")([a, x])
    out = L.Dense(4, name="fc")(L.Flatten(name="flat")(c))
    return fastcnn.Model(x, out, name="res", dtype=dtype)


def _by_hand(model, x):
    """The same network from the functional ops, and its gradients for dy."""
    p = {k: v for k, v in model.state_dict().items()}
    c1 = F.conv2d(x, p["c1.weight"], p["c1.bias"], padding=1)
    r1 = F.relu(c1)
    c2 = F.conv2d(r1, p["c2.weight"], p["c2.bias"], padding=1)
    s = F.conv2d(x, p["proj.weight"], p["proj.bias"])
    a = F.relu(c2 + s)
    cat = np.concatenate([a, x], axis=1)
    out = F.linear(cat.reshape(len(x), -1), p["fc.weight"], p["fc.bias"])

    def backward(dy):
        dflat, dwfc, dbfc = F.linear_backward(dy, cat.reshape(len(x), -1),
                                              p["fc.weight"])
        dcat = dflat.reshape(cat.shape)
        da, dx_cat = dcat[:, :3], dcat[:, 3:]
        dsum = F.relu_backward(np.ascontiguousarray(da), c2 + s)
        dr1, dwc2, dbc2 = F.conv2d_backward(dsum, r1, p["c2.weight"], padding=1)
        dx_proj, dwp, dbp = F.conv2d_backward(dsum, x, p["proj.weight"])
        dc1 = F.relu_backward(dr1, c1)
        dx_c1, dwc1, dbc1 = F.conv2d_backward(dc1, x, p["c1.weight"], padding=1)
        grads = {"c1.weight": dwc1, "c1.bias": dbc1, "c2.weight": dwc2,
                 "c2.bias": dbc2, "proj.weight": dwp, "proj.bias": dbp,
                 "fc.weight": dwfc, "fc.bias": dbfc}
        return dx_c1 + dx_proj + dx_cat, grads

    return out, backward


def test_forward_and_backward_match_the_network_by_hand(rng):
    model = _residual()
    x = rng.standard_normal((3, 2, 5, 5))
    dy = rng.standard_normal((3, 4))
    out = model.forward(x, training=True)
    expected, backward = _by_hand(model, x)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    dx = model.backward(dy)
    dx_expected, grads = backward(dy)
    # x feeds three layers: its gradient is the sum of theirs.
    np.testing.assert_allclose(dx, dx_expected, rtol=1e-10, atol=1e-12)
    named = {name: grad for name, _, grad in model._named_grads()}
    assert sorted(named) == sorted(grads)
    for key, grad in grads.items():
        np.testing.assert_allclose(named[key], grad, rtol=1e-10, atol=1e-12,
                                   err_msg=key)


def test_gradcheck_passes_on_a_graph_model(rng):
    model = _residual()
    report = fastcnn.gradcheck(model, rng.standard_normal((2, 2, 5, 5)),
                               rng.integers(0, 4, 2))
    assert report.passed, str(report)
    assert {r.name for r in report.rows} >= {"c1", "c2", "proj", "fc", "(input)"}


def test_state_dict_keys_are_layer_names_and_layers_run_in_topological_order():
    model = _residual()
    assert list(model.state_dict()) == [
        "c1.weight", "c1.bias", "c2.weight", "c2.bias", "proj.weight", "proj.bias",
        "fc.weight", "fc.bias"]
    names = [layer.name for layer in model.layers]
    assert names == ["c1", "r1", "c2", "proj", "add", "r2", "cat", "flat", "fc"]
    assert model.inbound[names.index("add")] == (3, 4)  # c2's and proj's outputs
    assert model.inbound[names.index("cat")] == (6, 0)  # r2's output and the input
    assert model.count_params() == 2 * 3 * 9 + 3 + 3 * 3 * 9 + 3 + 2 * 3 + 3 \
        + 5 * 25 * 4 + 4


def test_training_is_bitwise_reproducible_and_save_load_round_trips(tmp_path, rng):
    x, y = rng.standard_normal((12, 2, 5, 5)), rng.integers(0, 4, 12)
    runs = []
    for _ in range(2):
        model = _residual("float32")
        model.compile(optimizers.SGD(lr=0.05, momentum=0.9), "cross_entropy",
                      metrics=["accuracy"])
        model.fit(x, y, epochs=2, batch_size=4, verbose=0, seed=3)
        runs.append(model)
    for key, value in runs[0].state_dict().items():
        assert np.array_equal(value, runs[1].state_dict()[key]), key
    path = tmp_path / "res.fastcnn"
    runs[0].save(path)
    loaded = fastcnn.load_model(path)
    assert isinstance(loaded, fastcnn.Model)
    assert loaded.get_config() == runs[0].get_config()
    assert np.array_equal(loaded.predict(x), runs[0].predict(x))
    # Training continues identically from the file (optimizer state restored).
    runs[0].fit(x, y, epochs=1, batch_size=4, verbose=0, seed=4)
    loaded.fit(x, y, epochs=1, batch_size=4, verbose=0, seed=4)
    assert np.array_equal(loaded.predict(x), runs[0].predict(x))


def test_nested_models_join_the_graph_and_their_keys_carry_their_name(rng):
    fastcnn.seed(0)
    encoder = fastcnn.Sequential([L.Conv2D(2, 3, padding=1), L.ReLU()],
                                 name="enc")
    x = fastcnn.Input((1, 4, 4))
    skip = fastcnn.Model(x, L.Add(name="plus")([encoder(x), encoder_like(x)]),
                         name="blk")
    outer_in = fastcnn.Input((1, 4, 4))
    out = L.Dense(2, name="head")(L.Flatten(name="fl")(skip(outer_in)))
    model = fastcnn.Model(outer_in, out)
    assert list(model.state_dict()) == [
        "blk.enc.0.weight", "blk.enc.0.bias", "blk.twin.weight", "blk.twin.bias",
        "head.weight", "head.bias"]
    # Freezing the nested Sequential freezes its layers in the outer model.
    encoder.trainable = False
    model.compile("sgd", "cross_entropy")
    before = model.state_dict()
    model.fit(rng.standard_normal((8, 1, 4, 4)), rng.integers(0, 2, 8), epochs=1,
              batch_size=4, verbose=0)
    after = model.state_dict()
    assert np.array_equal(before["blk.enc.0.weight"], after["blk.enc.0.weight"])
    assert not np.array_equal(before["head.weight"], after["head.weight"])
    assert model.count_params(split=True)[1] == 2 * 9 + 2


def encoder_like(x):
    return L.Conv2D(2, 3, padding=1, name="twin")(x)


def test_summary_shows_what_each_layer_reads():
    table = _residual().summary(print_fn=None)
    assert "add (Add) <- c2, proj" in table
    assert "cat (Concatenate) <- r2, input" in table


def test_warmup_and_device_move_work_on_a_graph_model():
    model = _residual("float32")
    assert fastcnn.warmup(model, batch_size=2, verbose=False, workers=1) > 0
    assert model.to("cpu") is model


@pytest.mark.parametrize("build, message", [
    (lambda x: L.Add()([L.Conv2D(2, 1)(x), L.Conv2D(3, 1)(x)]), "one shape"),
    (lambda x: L.Concatenate()([x, L.MaxPool2D(2)(x)]), "differ on axis 1 only"),
    (lambda x: L.Add()(x), "takes a list"),
    (lambda x: L.Multiply()([x, L.GlobalAvgPool2D()(x)]), "one number of axes"),
    (lambda x: L.Multiply()([x, L.MaxPool2D(2)(x)]), "does not broadcast"),
    (lambda x: L.ReLU()([x, x]), "takes one tensor"),
])
def test_bad_joins_fail_when_the_network_is_written(build, message):
    with pytest.raises((TypeError, ValueError), match=message):
        build(fastcnn.Input((2, 4, 4)))


def test_models_refuse_what_they_cannot_run():
    x = fastcnn.Input((2, 4, 4))
    relu = L.ReLU(name="shared")
    with pytest.raises(ValueError, match="called more than once"):
        fastcnn.Model(x, relu(relu(x)))
    with pytest.raises(ValueError, match="named 'same'"):
        fastcnn.Model(x, L.Add()([L.ReLU(name="same")(x), L.Tanh(name="same")(x)]))
    other = fastcnn.Input((2, 4, 4), name="other")
    with pytest.raises(ValueError, match="not the model's input"):
        fastcnn.Model(x, L.Add()([L.ReLU()(x), L.ReLU()(other)]))
    with pytest.raises(ValueError, match="at least one layer"):
        fastcnn.Model(x, x)
    with pytest.raises(TypeError, match="one inputs tensor"):
        fastcnn.Model([x, other], L.ReLU()(x))
    with pytest.raises(TypeError, match="fastcnn.Model"):
        fastcnn.Sequential([L.Add()])
    with pytest.raises(TypeError, match="chain of layers"):
        fastcnn.receptive_field(_residual(), -1, 0)


def test_from_config_refuses_a_hostile_graph():
    config = _residual().get_config()
    bad_inbound = {**config, "layers": [dict(config["layers"][0],
                                             inbound=["nowhere"])]}
    with pytest.raises(ValueError, match="'inbound' must list"):
        fastcnn.Model.from_config(bad_inbound)
    forward_ref = {**config, "layers": [config["layers"][1], config["layers"][0]]}
    with pytest.raises(ValueError, match="'inbound' must list"):
        fastcnn.Model.from_config(forward_ref)
    dangling = {**config, "layers": [*config["layers"][:-1],
                                     dict(config["layers"][0], key="spare"),
                                     config["layers"][-1]]}
    with pytest.raises(ValueError, match="do not lead to the output"):
        fastcnn.Model.from_config(dangling)
    huge = {**config, "layers": [dict(config["layers"][0],
                                      config={**config["layers"][0]["config"],
                                              "out_channels": 10**6})]}
    with pytest.raises(ValueError, match="max_params"):
        fastcnn.Model.from_config(huge, max_params=1000)


def test_merge_ops_match_numpy(rng):
    a, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 2, 4, 5))
    np.testing.assert_array_equal(F.concatenate([a, b]), np.concatenate([a, b], 1))
    np.testing.assert_array_equal(F.concatenate([a, a], axis=-1),
                                  np.concatenate([a, a], -1))
    da, db = F.concatenate_backward(np.concatenate([a, b], 1), [3, 2])
    np.testing.assert_array_equal(da, a)
    np.testing.assert_array_equal(db, b)
    np.testing.assert_array_equal(F.add([a, a, a]), a + a + a)
    with pytest.raises(ValueError, match="axis"):
        F.concatenate([a, a], axis=0)
    with pytest.raises(ValueError, match="add up to"):
        F.concatenate_backward(a, [1, 1])


# ------------------------------------------------------------------------ Multiply


def _squeeze_excite(dtype="float64", seed=0):
    """x -> conv -+-> multiply -> flatten -> dense
                  +-> pool -> dense -> relu -> dense -> sigmoid -> (C, 1, 1) --+"""
    fastcnn.seed(seed)
    x = fastcnn.Input((2, 4, 4), name="x")
    h = L.Conv2D(4, 3, padding=1, name="conv")(x)
    g = L.Dense(2, name="fc1")(L.GlobalAvgPool2D(name="pool")(h))
    g = L.Dense(4, name="fc2")(L.ReLU(name="relu")(g))
    g = L.Reshape((4, 1, 1), name="gate")(L.Sigmoid(name="sig")(g))
    y = L.Multiply(name="excite")([h, g])
    out = L.Dense(3, name="head")(L.Flatten(name="flat")(y))
    return fastcnn.Model(x, out, name="se", dtype=dtype)


def test_multiply_in_a_squeeze_and_excitation_block_matches_the_ops(rng):
    model = _squeeze_excite()
    p = model.state_dict()
    x = rng.standard_normal((3, 2, 4, 4))
    h = F.conv2d(x, p["conv.weight"], p["conv.bias"], padding=1)
    z1 = F.linear(F.global_avg_pool2d(h), p["fc1.weight"], p["fc1.bias"])
    z2 = F.linear(F.relu(z1), p["fc2.weight"], p["fc2.bias"])
    gate = F.sigmoid(z2).reshape(3, 4, 1, 1)
    y = F.multiply([h, gate])
    np.testing.assert_array_equal(y, h * gate)
    out = model.forward(x, training=True)
    np.testing.assert_allclose(out, F.linear(y.reshape(3, -1), p["head.weight"],
                                             p["head.bias"]), 1e-12, 1e-12)
    dy = rng.standard_normal(out.shape)
    dflat = F.linear_backward(dy, y.reshape(3, -1), p["head.weight"])[0]
    dh, dgate = F.multiply_backward(dflat.reshape(y.shape), [h, gate])
    model.backward(dy)
    excite = next(layer for layer in model.layers if layer.name == "excite")
    np.testing.assert_allclose(excite.backward(dflat.reshape(y.shape))[1], dgate,
                               1e-12, 1e-12)
    np.testing.assert_allclose(dgate, (dflat.reshape(y.shape) * h).sum(
        axis=(2, 3), keepdims=True), 1e-12, 1e-12)
    assert dh.shape == h.shape


def test_gradcheck_passes_on_a_squeeze_and_excitation_model(rng):
    model = _squeeze_excite()
    report = fastcnn.gradcheck(model, rng.standard_normal((2, 2, 4, 4)),
                               rng.integers(0, 3, 2))
    assert report.passed, str(report)
    assert {r.name for r in report.rows} >= {"conv", "fc1", "fc2", "head",
                                             "(input)"}


def test_multiply_of_three_inputs_with_gradcheck(rng):
    fastcnn.seed(2)
    x = fastcnn.Input((3, 2, 2), name="x")
    a = L.Tanh(name="a")(x)
    b = L.Reshape((3, 1, 1), name="b")(L.GlobalAvgPool2D(name="pool")(x))
    c = L.Reshape((1, 2, 2), name="c")(L.Dense(4, name="fc")(L.Flatten()(x)))
    out = L.Dense(2, name="head")(L.Flatten()(L.Multiply(name="m")([a, b, c])))
    model = fastcnn.Model(x, out, dtype="float64")
    assert model.layers[[la.name for la in model.layers].index("m")].output_shape \
        == (3, 2, 2)
    report = fastcnn.gradcheck(model, rng.standard_normal((2, 3, 2, 2)),
                               rng.integers(0, 2, 2))
    assert report.passed, str(report)


def test_multiply_config_save_and_load(tmp_path, rng):
    model = _squeeze_excite("float32")
    path = tmp_path / "se.fastcnn"
    model.save(path)
    loaded = fastcnn.load_model(path)
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert "excite (Multiply) <- conv, gate" in model.summary(print_fn=None)


def test_multiply_layer_refuses_what_it_cannot_join():
    layer = L.Multiply()
    with pytest.raises(ValueError, match="one number of axes"):
        layer.compute_output_shape([(3, 4, 4), (3,)])
    with pytest.raises(ValueError, match=r"input 1 has shape \(3, 2, 4\), which "
                       r"does not broadcast"):
        layer.compute_output_shape([(3, 4, 4), (3, 2, 4)])
    assert layer.compute_output_shape([(3, 1, 4), (1, 5, 1)]) == (3, 5, 4)
    with pytest.raises(ValueError, match="has 3 samples but x\\[0\\] has 2"):
        layer.forward([np.ones((2, 3, 1, 1)), np.ones((3, 3, 1, 1))])
