"""Sequential: building, compile, fit/evaluate/predict/train_step, validation
splits, state dicts, losses, metrics, seeding and argument checks."""

import numpy as np
import pytest

import fastcnn
from fastcnn import losses, metrics
from fastcnn.layers import (
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    MaxPool2D,
    ReLU,
)
from fastcnn.model import Sequential
from fastcnn.optimizers import SGD, Adam
from fastcnn.training.data import split_rows


def blobs(n=96, classes=3, features=4, seed=0, dtype=np.float32):
    """Well-separated Gaussian blobs: a problem gradient descent solves quickly."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.standard_normal((classes, features)) * 3
    x = centres[y] + rng.standard_normal((n, features)) * 0.5
    return x.astype(dtype), y


def mlp(dtype="float32", dropout=0.0, batch_norm=False, seed=0, classes=3):
    fastcnn.seed(seed)
    layers = [Dense(16)]
    if batch_norm:
        layers.append(BatchNorm1D())
    layers.append(ReLU())
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(classes))
    return Sequential(layers, input_shape=(4,), dtype=dtype)


def tiny_cnn(dtype="float32"):
    fastcnn.seed(0)
    return Sequential([Conv2D(3, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(),
                       Dense(2)], input_shape=(1, 6, 6), dtype=dtype)


# ------------------------------------------------------------------ building


def test_build_infers_shapes_and_dtype():
    model = tiny_cnn("float64")
    assert model.input_shape == (1, 6, 6)
    assert model.output_shape == (2,)
    assert [layer.output_shape for layer in model.layers] == [
        (3, 6, 6), (3, 6, 6), (3, 3, 3), (27,), (2,)]
    assert all(p.dtype == np.float64 for p in model.state_dict().values())
    assert model.count_params(split=True) == (3 * 9 + 3 + 27 * 2 + 2, 0)


def test_lazy_build_on_first_predict():
    fastcnn.seed(0)
    model = Sequential([Dense(5), ReLU(), Dense(2)])
    assert not model.built
    out = model.predict(np.ones((3, 7)))
    assert out.shape == (3, 2) and out.dtype == np.float32
    assert model.input_shape == (7,)


def test_seed_makes_building_reproducible():
    a, b = mlp(seed=3).state_dict(), mlp(seed=3).state_dict()
    c = mlp(seed=4).state_dict()
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert any(a[k].tobytes() != c[k].tobytes() for k in a)


def test_prebuilt_layers_must_agree():
    dense = Dense(3)
    dense.build((4,))
    Sequential([dense], input_shape=(4,))  # agrees: kept
    with pytest.raises(ValueError, match="already built"):
        Sequential([dense], input_shape=(5,))


# ------------------------------------------------------------------- training


def test_fit_reduces_cost_and_records_history():
    x, y = blobs()
    model = mlp()
    model.compile(SGD(0.1, momentum=0.9), "cross_entropy",
                  ["accuracy", "top2_accuracy"])
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0, seed=0)
    assert set(history.history) == {"loss", "accuracy", "top2_accuracy"}
    assert all(len(v) == 5 for v in history.history.values())
    assert len(history.iterations) == 5 * 6
    assert history.epoch == [0, 1, 2, 3, 4]
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert np.mean(history.iterations[-6:]) < np.mean(history.iterations[:6])
    assert history.history["accuracy"][-1] == 1.0
    assert model.epoch == 5
    result = model.evaluate(x, y, batch_size=40)
    assert set(result) == {"loss", "accuracy", "top2_accuracy"}
    assert result["accuracy"] == 1.0


def test_epoch_loss_is_the_sample_weighted_mean_of_batch_costs():
    x, y = blobs(n=40)
    model = mlp()
    model.compile(SGD(0.0), "cross_entropy")  # lr 0: the weights never change
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    sizes = [16, 16, 8]
    expected = np.dot(history.iterations, sizes) / 40
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-12)
    assert model.evaluate(x, y)["loss"] == pytest.approx(
        losses.CrossEntropy()(model.predict(x), y), rel=1e-5)


def test_train_step_returns_cost_and_updates():
    x, y = blobs(n=8)
    model = mlp()
    model.compile(SGD(0.1), "cross_entropy")
    before = model.state_dict()
    expected = losses.CrossEntropy()(model.predict(x), y)
    loss = model.train_step(x, y)
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected, rel=1e-6)
    after = model.state_dict()
    assert all(not np.array_equal(before[k], after[k]) for k in before)


def test_fit_with_same_seed_is_bitwise_reproducible():
    x, y = blobs()
    results = []
    for _ in range(2):
        model = mlp(dropout=0.2, batch_norm=True)
        model.compile(Adam(0.01), "cross_entropy")
        model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0,
                  seed=7)
        results.append(model.state_dict())
    assert all(results[0][k].tobytes() == results[1][k].tobytes() for k in results[0])


def test_dropout_and_batchnorm_follow_training_mode():
    x, y = blobs(n=16)
    model = mlp(dropout=0.5, batch_norm=True)
    model.compile(SGD(0.0), "cross_entropy")
    # Evaluation mode is deterministic and leaves the running statistics alone.
    state = model.state_dict()
    first, second = model.predict(x), model.predict(x)
    assert first.tobytes() == second.tobytes()
    assert model.state_dict()["1.running_mean"].tobytes() == state[
        "1.running_mean"].tobytes()
    # Training mode draws masks and updates the running statistics.
    a = model.forward(x, training=True)
    b = model.forward(x, training=True)
    assert not np.array_equal(a, b)
    assert not np.array_equal(model.state_dict()["1.running_mean"],
                              state["1.running_mean"])


def test_conv_model_fits_and_accepts_odd_inputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 1, 6, 6))  # float64 input, float32 model
    y = (x[:, 0, :3].sum(axis=(1, 2)) > 0).astype(np.int64)
    model = tiny_cnn()
    model.compile("adam", "cross_entropy", ["accuracy"])
    history = model.fit(np.asfortranarray(x), y, epochs=3, batch_size=5, verbose=0,
                        seed=0)
    assert len(history.iterations) == 9
    pred = model.predict(x[:, :, ::-1, :][:, :, ::-1, :], batch_size=4)
    assert pred.dtype == np.float32 and pred.shape == (12, 2)
    ints = model.predict((x > 0).astype(np.uint8))
    assert ints.shape == (12, 2)


def _layouts(x):
    """``x`` in every memory layout predict must treat alike (each equal to x)."""
    wide = np.zeros((x.shape[0] * 2, *x.shape[1:-1], x.shape[-1] * 3), x.dtype)
    wide[::2, ..., 1::3] = x
    flipped = np.ascontiguousarray(x[..., ::-1])[..., ::-1]  # negative strides
    views = {"fortran": np.asfortranarray(x), "strided": wide[::2, ..., 1::3],
             "negative_strides": flipped}
    if x.ndim == 4:  # channels last in memory, as images often arrive
        views["channels_last"] = np.moveaxis(
            np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    return views


def _layout_models():
    fastcnn.seed(3)
    cnn = Sequential([Conv2D(3, 3, padding=1), BatchNorm2D(), ReLU(), MaxPool2D(2),
                      Conv2D(4, 2), ReLU(), GlobalAvgPool2D(), Dense(2)],
                     input_shape=(2, 6, 6), dtype="float64")
    return {"cnn": cnn, "mlp": mlp(dtype="float64", batch_norm=True)}


@pytest.mark.parametrize("model_name", ["cnn", "mlp"])
@pytest.mark.parametrize("batch_size", [32, 3])
def test_predict_is_the_same_for_every_memory_layout(model_name, batch_size):
    model = _layout_models()[model_name]
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, *model.input_shape))
    # Running statistics that are not the identity, so BatchNorm really computes.
    for layer in model.layers:
        for name, buf in layer.buffers.items():
            buf[...] = rng.random(buf.shape) + (0.5 if name == "running_var" else 0)
    expected = model.predict(x, batch_size=batch_size)
    for name, view in _layouts(x).items():
        assert not view.flags.c_contiguous, name
        np.testing.assert_array_equal(view, x)
        got = model.predict(view, batch_size=batch_size)
        np.testing.assert_array_equal(got, expected, err_msg=name)
        # float32 input to a float64 model goes through the cast as well.
        got32 = model.predict(view.astype(np.float32), batch_size=batch_size)
        np.testing.assert_array_equal(
            got32, model.predict(x.astype(np.float32), batch_size=batch_size),
            err_msg=name + " float32")


def test_nan_input_propagates_without_crashing():
    x, y = blobs(n=8)
    x[0, 0] = np.nan
    model = mlp()
    model.compile(SGD(0.1), "cross_entropy")
    assert np.isnan(model.predict(x)[0]).all()
    assert np.isnan(model.train_step(x, y))


def test_mse_and_bce_losses_train():
    x, y = blobs(n=48, classes=2)
    model = mlp(classes=1)
    model.compile(Adam(0.05), "bce_with_logits", ["accuracy"])
    assert isinstance(model.metrics[0], metrics.BinaryAccuracy)
    history = model.fit(x, y.astype(np.float32), epochs=8, batch_size=8, verbose=0,
                        seed=0)
    assert history.history["accuracy"][-1] == 1.0
    regression = mlp(classes=1)
    regression.compile(SGD(0.01), "mse")
    target = x[:, :1] * 2.0
    history = regression.fit(x, target[:, 0], epochs=10, batch_size=8, verbose=0,
                             seed=0)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]


def test_class_weight_matches_weighted_cross_entropy():
    x, y = blobs(n=12)
    model = mlp()
    model.compile(SGD(0.0), "cross_entropy")
    logits = model.predict(x)
    weights = np.array([1.0, 3.0, 0.5], dtype=np.float32)
    expected = fastcnn.functional.cross_entropy(logits, y, weight=weights)
    assert model.train_step(x, y, class_weight={1: 3.0, 2: 0.5}) == pytest.approx(
        expected, rel=1e-6)
    history = model.fit(x, y, batch_size=12, class_weight=[1.0, 3.0, 0.5],
                        shuffle=False, verbose=0)
    assert history.iterations[0] == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_changes_the_cost():
    x, y = blobs(n=12)
    plain, smooth = mlp(), mlp()
    plain.compile(SGD(0.0), "cross_entropy")
    smooth.compile(SGD(0.0), losses.CrossEntropy(label_smoothing=0.2))
    assert smooth.evaluate(x, y)["loss"] != plain.evaluate(x, y)["loss"]


# ---------------------------------------------------------- validation splits


def test_validation_split_is_shuffled_seeded_and_disjoint():
    n = 50
    train, val = split_rows(n, 0.2, seed=1, labels=None)
    assert len(val) == 10 and len(train) == 40
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(n))
    # Keras would hold out rows 40..49; ours is a seeded random draw.
    assert list(val) != list(range(40, 50))
    again, val_again = split_rows(n, 0.2, seed=1, labels=None)
    assert np.array_equal(val, val_again) and np.array_equal(train, again)
    assert not np.array_equal(val, split_rows(n, 0.2, seed=2, labels=None)[1])


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat([0, 1, 2], [60, 30, 10])  # sorted, imbalanced
    train, val = split_rows(100, 0.2, seed=0, labels=labels)
    assert np.bincount(labels[val]).tolist() == [12, 6, 2]
    assert np.bincount(labels[train]).tolist() == [48, 24, 8]


def test_fit_reports_validation_metrics():
    x, y = blobs()
    model = mlp()
    model.compile(SGD(0.1), "cross_entropy", ["accuracy"])
    history = model.fit(x, y, epochs=2, validation_split=0.25, stratify=True,
                        verbose=0, seed=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.iterations) == 2 * 3  # 72 training rows, batches of 32
    history = model.fit(x, y, epochs=1, validation_data=(x[:10], y[:10]), verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(
        model.evaluate(x[:10], y[:10])["loss"])


def test_initial_epoch_counts_like_keras():
    x, y = blobs(n=16)
    model = mlp()
    model.compile(SGD(0.1), "cross_entropy")
    history = model.fit(x, y, epochs=5, initial_epoch=3, verbose=0)
    assert history.epoch == [3, 4]
    assert model.epoch == 5


# ----------------------------------------------------------------- progress


def test_verbose_one_shows_a_progress_bar(capsys):
    x, y = blobs(n=32)
    model = mlp()
    model.compile(SGD(0.1), "cross_entropy", ["accuracy"])
    model.fit(x, y, epochs=1, batch_size=8, verbose=1, validation_split=0.25)
    err = capsys.readouterr().err
    assert "Epoch 1/1" in err and "img/s" in err and "accuracy" in err
    assert "val_loss" in err


def test_plain_progress_bar_without_tqdm(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name == "tqdm":
            raise ImportError("no tqdm here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    x, y = blobs(n=32)
    model = mlp()
    model.compile(SGD(0.1), "cross_entropy", ["accuracy"])
    model.fit(x, y, epochs=1, batch_size=8, verbose=1)
    err = capsys.readouterr().err
    assert "Epoch 1/1" in err and "4/4" in err and "img/s" in err


def test_verbose_two_prints_one_line_per_epoch(capsys):
    x, y = blobs(n=32)
    model = mlp()
    model.compile(SGD(0.1), "cross_entropy")
    model.fit(x, y, epochs=2, verbose=2)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Ep")]
    assert len(lines) == 2 and "img/s" in lines[0] and "loss" in lines[0]


def test_summary_delegates_to_inspect():
    table = tiny_cnn().summary(print_fn=None)
    assert isinstance(table, str) and "Conv2D" in table and "Dense" in table


# ----------------------------------------------------------------- state dicts


def test_state_dict_keys_count_every_layer():
    model = mlp(dropout=0.1, batch_norm=True)
    assert list(model.state_dict()) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
        "1.running_var", "4.weight", "4.bias"]


def test_state_dict_returns_copies_and_load_copies_in_place():
    model = mlp()
    state = model.state_dict()
    weight = model.layers[0].params["weight"]
    state["0.weight"][...] = 0.0
    assert np.any(weight != 0)
    model.load_state_dict(state)
    assert model.layers[0].params["weight"] is weight
    assert np.all(weight == 0)


def test_load_state_dict_strict_and_non_strict():
    model = mlp()
    state = model.state_dict()
    partial = {"0.weight": np.zeros_like(state["0.weight"])}
    with pytest.raises(ValueError, match=r"missing \['0.bias'"):
        model.load_state_dict(partial)
    with pytest.raises(ValueError, match=r"unexpected \['9.weight'\]"):
        model.load_state_dict({**state, "9.weight": np.zeros(1)})
    model.load_state_dict(partial, strict=False)
    assert np.all(model.state_dict()["0.weight"] == 0)
    assert np.array_equal(model.state_dict()["0.bias"], state["0.bias"])
    # torch's BatchNorm counter is accepted and ignored.
    model.load_state_dict({**state, "1.num_batches_tracked": np.array(3)})


def test_load_state_dict_shape_mismatch_leaves_model_untouched():
    model = mlp()
    state = model.state_dict()
    bad = {**state, "0.bias": np.ones(16), "2.weight": np.zeros((3, 5))}
    bad["0.bias"] = np.ones(16)
    with pytest.raises(ValueError, match=r"2.weight has shape \(3, 5\).*\(3, 16\)"):
        model.load_state_dict(bad)
    assert np.array_equal(model.state_dict()["0.bias"], state["0.bias"])


def test_load_state_dict_errors():
    with pytest.raises(ValueError, match="not built"):
        Sequential([Dense(2)]).load_state_dict({})
    with pytest.raises(TypeError, match="state must be a dict"):
        mlp().load_state_dict([("0.weight", np.zeros(1))])
    with pytest.raises(TypeError, match="non-numeric"):
        mlp().load_state_dict({**mlp().state_dict(), "0.bias": np.array(["a"] * 16)})


def test_config_round_trip():
    model = tiny_cnn()
    again = Sequential.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    with pytest.raises(ValueError, match="unknown type 'Foo'"):
        Sequential.from_config({"layers": [{"class_name": "Foo", "config": {}}]})


# ----------------------------------------------------------------- metrics


def test_accuracy_and_top_k():
    out = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    y = np.array([2, 0, 0])
    assert metrics.accuracy(out, y) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy(out, y, k=2) == pytest.approx(2 / 3)
    assert metrics.top_k_accuracy(out, y, k=3) == 1.0
    assert metrics.top_k_accuracy(out, y, k=10) == 1.0
    assert metrics.get("top_k_accuracy").k == 5
    assert metrics.get("top3_accuracy").name == "top3_accuracy"
    assert metrics.BinaryAccuracy()(np.array([[-1.0], [2.0]]),
                                    np.array([0.0, 0.0])) == 0.5


def test_custom_metric_callable_is_named_by_function():
    def mean_logit(output, target):
        return float(output.mean())

    x, y = blobs(n=8)
    model = mlp()
    model.compile(SGD(0.1), "cross_entropy", [mean_logit])
    assert "mean_logit" in model.evaluate(x, y)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: metrics.get("f1"), ValueError, "unknown metric 'f1'"),
        (lambda: metrics.get(3), TypeError, "metric must be"),
        (lambda: metrics.TopKAccuracy(0), ValueError, "k must be positive"),
        (lambda: metrics.TopKAccuracy(2.0), TypeError, "k must be an int"),
        (lambda: metrics.accuracy(np.zeros(3), np.zeros(3)), ValueError, "2-D"),
        (lambda: metrics.accuracy(np.zeros((3, 2)), np.zeros(2)), ValueError,
         "3 samples"),
        (lambda: metrics.accuracy([[1.0]], np.zeros(1)), TypeError, "ndarray"),
    ],
)
def test_metric_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# -------------------------------------------------------------- loss objects


def test_loss_lookup_and_errors():
    assert isinstance(losses.get("mse"), losses.MSE)
    assert isinstance(losses.get("binary_cross_entropy_with_logits"),
                      losses.BCEWithLogits)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        losses.get("hinge")
    with pytest.raises(TypeError, match="loss must be"):
        losses.get(3)
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.CrossEntropy(label_smoothing=1.5)
    with pytest.raises(TypeError, match="label_smoothing"):
        losses.CrossEntropy(label_smoothing="0.1")
    with pytest.raises(ValueError, match="pos_weight"):
        losses.BCEWithLogits(pos_weight=[np.nan])


def test_bce_pos_weight_and_target_shapes():
    out = np.array([[0.3], [-1.2]], dtype=np.float32)
    loss = losses.BCEWithLogits(pos_weight=[2.0])
    target = loss.prepare_target(np.array([1, 0]), out)
    assert target.shape == (2, 1) and target.dtype == np.float32
    expected = fastcnn.functional.binary_cross_entropy_with_logits(
        out, target, pos_weight=np.array([2.0], dtype=np.float32))
    assert loss(out, target) == pytest.approx(float(expected))
    assert loss.backward(out, target).shape == (2, 1)


# ------------------------------------------------------------ reproducibility


def test_seed_and_thread_count_helpers():
    fastcnn.seed(5)
    a = np.random.random()
    fastcnn.seed(5)
    assert np.random.random() == a
    previous = fastcnn.get_num_threads()
    try:
        fastcnn.set_num_threads(1)
        assert fastcnn.get_num_threads() == 1
    finally:
        fastcnn.set_num_threads(previous)


def test_seed_also_seeds_numba_jitted_code():
    from fastcnn.kernels._jit import cpu_helper

    @cpu_helper
    def draw():
        return np.random.random()

    fastcnn.seed(11)
    first = draw()
    fastcnn.seed(11)
    assert draw() == first
    fastcnn.seed(12)
    assert draw() != first


def test_training_is_thread_count_invariant():
    from ..threads import assert_thread_count_invariant

    x, y = blobs(n=32)

    def run():
        model = mlp(dropout=0.2, batch_norm=True)
        model.compile(SGD(0.1, momentum=0.9), "cross_entropy")
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=0)
        return tuple(model.state_dict().values())

    assert_thread_count_invariant(run, "fit")


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: fastcnn.seed(-1), ValueError, "s must lie"),
        (lambda: fastcnn.seed(2**32), ValueError, "s must lie"),
        (lambda: fastcnn.seed(1.5), TypeError, "s must be an int"),
        (lambda: fastcnn.set_num_threads(0), ValueError, "n must lie"),
        (lambda: fastcnn.set_num_threads(10**6), ValueError, "n must lie"),
        (lambda: fastcnn.set_num_threads("2"), TypeError, "n must be an int"),
    ],
)
def test_seed_and_thread_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ------------------------------------------------------------------ bad input


@pytest.fixture
def compiled():
    model = mlp()
    model.compile(SGD(0.1), "cross_entropy")
    return model


def test_constructor_errors():
    with pytest.raises(TypeError, match="layers must be a non-empty list"):
        Sequential([])
    with pytest.raises(TypeError, match=r"layers\[1\] must be"):
        Sequential([Dense(2), "relu"])
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        Sequential([Dense(2)], dtype="int32")
    # np.dtype(None) is float64, and None == np.dtype("float64"): both refused.
    for bad in (None, object()):
        with pytest.raises(TypeError, match="dtype must be float32 or float64"):
            Sequential([Dense(2)], dtype=bad)
    with pytest.raises(TypeError, match="input_shape must be"):
        Sequential([Dense(2)], input_shape=(0,))


def test_compile_errors():
    model = mlp()
    with pytest.raises(ValueError, match="unknown optimizer"):
        model.compile("adagrad")
    with pytest.raises(ValueError, match="metric names must be unique"):
        model.compile("sgd", metrics=["accuracy", "acc"])


def test_not_compiled():
    x, y = blobs(n=4)
    with pytest.raises(ValueError, match="not compiled"):
        mlp().fit(x, y)
    with pytest.raises(ValueError, match="not compiled"):
        mlp().train_step(x, y)
    with pytest.raises(ValueError, match="not compiled"):
        mlp().evaluate(x, y)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"epochs": -1}, ValueError, "epochs must be >= 0"),
        ({"epochs": 1.5}, TypeError, "epochs must be an int"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"initial_epoch": -2}, ValueError, "initial_epoch"),
        ({"validation_split": 1.0}, ValueError, "validation_split"),
        ({"validation_split": -0.1}, ValueError, "validation_split"),
        ({"validation_split": 0.95}, ValueError, "validation_split=0.95 leaves"),
        ({"verbose": 3}, ValueError, "verbose"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": "a"}, TypeError, "seed"),
        ({"validation_data": np.zeros(3)}, TypeError, "validation_data"),
        ({"callbacks": [print]}, TypeError, "callbacks"),
        ({"class_weight": {7: 1.0}}, ValueError, "class_weight keys"),
        ({"class_weight": [1.0, 2.0]}, ValueError, r"class_weight must .*\(3,\)"),
        ({"class_weight": [1.0, -2.0, 1.0]}, ValueError, ">= 0"),
        ({"validation_split": 0.5, "stratify": True, "y": np.zeros(8)}, ValueError,
         "stratify"),
    ],
)
def test_fit_argument_errors(compiled, kwargs, exc, match):
    x, y = blobs(n=8)
    y = kwargs.pop("y", y)
    kwargs.setdefault("verbose", 0)
    with pytest.raises(exc, match=match):
        compiled.fit(x, y, **kwargs)


@pytest.mark.parametrize(
    ("x", "y", "exc", "match"),
    [
        ([[1.0] * 4], np.zeros(1, dtype=int), TypeError, "x must be a numpy.ndarray"),
        (np.zeros((2, 4), dtype=bool), np.zeros(2, dtype=int), TypeError, "numeric"),
        (np.zeros(4), np.zeros(1, dtype=int), ValueError, "batch axis"),
        (np.zeros((2, 5)), np.zeros(2, dtype=int), ValueError, r"per-sample shape"),
        (np.zeros((2, 4)), np.zeros(3, dtype=int), ValueError, "one entry per sample"),
        (np.zeros((2, 4)), [0, 1], TypeError, "y must be a numpy.ndarray"),
        (np.zeros((0, 4)), np.zeros(0, dtype=int), ValueError, "empty batch"),
    ],
)
def test_data_errors(compiled, x, y, exc, match):
    with pytest.raises(exc, match=match):
        compiled.fit(x, y, verbose=0)


def test_class_weight_needs_cross_entropy():
    model = mlp(classes=1)
    model.compile(SGD(0.1), "mse")
    x, y = blobs(n=8)
    with pytest.raises(ValueError, match="class_weight needs a classification"):
        model.fit(x, y.astype(np.float32), class_weight={0: 1.0}, verbose=0)


def test_predict_and_evaluate_errors(compiled):
    with pytest.raises(ValueError, match="batch_size"):
        compiled.predict(np.zeros((2, 4)), batch_size=0)
    with pytest.raises(ValueError, match="empty batch"):
        compiled.predict(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="empty batch"):
        compiled.evaluate(np.zeros((0, 4)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="not built"):
        Sequential([Dense(2)]).summary()


def test_backward_without_input_grad_gives_the_same_parameter_grads(rng):
    # Training skips the first conv's dx; the parameters' gradients must not change.
    from fastcnn.models import lenet5

    model = lenet5(dtype="float64")
    model.build((1, 28, 28))
    x = rng.standard_normal((3, 1, 28, 28))
    dy = rng.standard_normal((3, 10))
    model.forward(x, training=True)
    dx = model.backward(dy)
    full = {k: g.copy() for k, _, g in model._named_grads()}
    model.forward(x, training=True)
    assert model.backward(dy, input_grad=False) is None
    for key, _, grad in model._named_grads():
        np.testing.assert_array_equal(grad, full[key])
    assert dx.shape == x.shape
    with pytest.raises(TypeError, match="input_grad must be a bool"):
        model.backward(dy, input_grad=None)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_predict_returns_a_new_array_never_a_view_of_x(batch_size):
    # One batch is returned as the forward gives it, where that owns its memory;
    # a model ending in a reshape (Flatten) would otherwise hand back x itself.
    x = np.random.default_rng(0).standard_normal((4, 2, 3, 3), dtype=np.float32)
    model = Sequential([Flatten()], input_shape=(2, 3, 3))
    out = model.predict(x, batch_size=batch_size)
    assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(out, x.reshape(4, 18))
    out[...] = 0
    assert x.any()


def _plan_models():
    from fastcnn import models
    from fastcnn.layers import GELU, AvgPool2D, BatchNorm2D, Conv2D, MaxPool2D

    fastcnn.seed(3)
    yield models.lenet5(input_shape=(1, 12, 12))
    yield models.simple_cnn(input_shape=(3, 8, 8), width=4)  # BatchNorm, Dropout
    yield Sequential([Conv2D(4, 3, padding=1, activation="relu"), MaxPool2D(2),
                      Conv2D(4, 3, activation="gelu"), ReLU(), AvgPool2D(2),
                      Flatten(), Dense(5, activation="relu6"), ReLU(), Dense(3),
                      GELU()], input_shape=(2, 10, 10))
    yield Sequential([Conv2D(3, 3, stride=2), BatchNorm2D(), ReLU(), Flatten(),
                      Dense(4, bias=False), ReLU(), ReLU()], input_shape=(2, 9, 9),
                     dtype="float64")


@pytest.mark.parametrize("index", range(4))
def test_predict_plan_gives_the_forwards_bits_and_follows_the_parameters(index):
    # predict runs each layer's runner (checks and choices made once per shape):
    # bitwise the evaluation-mode forward, fused ReLUs included, and it sees
    # parameters updated in place or replaced.
    model = list(_plan_models())[index]
    rng = np.random.default_rng(index)
    for batch in (1, 5, 5, 2):
        x = rng.standard_normal((batch, *model.input_shape)).astype(model.dtype)
        expected = model.forward(x, training=False)
        assert model.predict(x, batch_size=batch).tobytes() == expected.tobytes()
    from fastcnn.model import _PLANS

    if index == 0:  # LeNet-5: the four ReLUs applied by the kernels before them
        assert len(_PLANS[model][4]) == len(model.layers) - 4
    x = rng.standard_normal((3, *model.input_shape)).astype(model.dtype)
    before = model.predict(x)
    layer = next(la for la in model.layers if "weight" in la.params)
    layer.params["weight"] *= 2  # in place
    updated = model.predict(x)
    assert updated.tobytes() == model.forward(x, training=False).tobytes()
    assert updated.tobytes() != before.tobytes()
    layer.params["weight"] = np.ascontiguousarray(layer.params["weight"][..., ::-1])
    replaced = model.predict(x)  # a new array: the plan is made again
    assert replaced.tobytes() == model.forward(x, training=False).tobytes()
    assert replaced.tobytes() != updated.tobytes()


def test_predict_plan_runs_only_with_the_cpu_as_the_default_device(monkeypatch):
    # The runners bind the CPU kernels; with "cuda" the default device, host
    # arrays go through the CUDA launchers, which forward picks on every call.
    from fastcnn import backend, models

    model = models.lenet5(input_shape=(1, 12, 12))
    x = np.zeros((2, 1, 12, 12), np.float32)
    model.predict(x)
    calls = []
    forward = model.forward
    monkeypatch.setattr(model, "forward",
                        lambda *a, **k: calls.append(1) or forward(*a, **k))
    model.predict(x)
    assert calls == []  # the plan
    monkeypatch.setattr(backend, "get_device", lambda: "cuda")
    model.predict(x)
    assert calls == [1]
