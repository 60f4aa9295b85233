"""Model files: round trips, bitwise resume, atomic writes, no pickle, clear errors."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

import fastcnn
from fastcnn import callbacks, metrics
from fastcnn.layers import (
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    ReLU,
)
from fastcnn.model import Sequential
from fastcnn.optimizers import SGD, Adam, RMSprop
from fastcnn.saving import load_model, save_model


def net(dtype="float32"):
    """Conv, BatchNorm and Dropout: every kind of state a resume must carry."""
    fastcnn.seed(0)
    return Sequential([Conv2D(3, 3, padding=1, bias=False), BatchNorm2D(), ReLU(),
                       MaxPool2D(2), Flatten(), Dropout(0.25), Dense(3)],
                      input_shape=(1, 6, 6), dtype=dtype)


def data(n=40, dtype=np.float32):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 1, 6, 6)).astype(dtype)
    return x, (x[:, 0, :, :3].sum(axis=(1, 2)) > 0).astype(np.int64) + (
        x[:, 0, 0, 0] > 1)


def assert_same_state(a: Sequential, b: Sequential):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype
        assert sa[key].tobytes() == sb[key].tobytes(), key
    oa, ob = a.optimizer.get_state(), b.optimizer.get_state()
    assert oa[1] == ob[1]
    assert sorted(oa[0]) == sorted(ob[0])
    for key in oa[0]:
        assert oa[0][key].tobytes() == ob[0][key].tobytes(), key


def test_round_trip_restores_everything(tmp_path):
    x, y = data()
    model = net("float64")
    model.compile(Adam(0.01, amsgrad=True), "cross_entropy",
                  ["accuracy", metrics.TopKAccuracy(2)])
    model.fit(x.astype(np.float64), y, epochs=2, batch_size=8, verbose=0, seed=3)
    path = tmp_path / "model.zip"
    model.save(path)
    loaded = load_model(path)
    assert loaded.get_config() == model.get_config()
    assert loaded.dtype == np.float64 and loaded.epoch == 2 and loaded.fit_seed == 3
    assert type(loaded.optimizer) is Adam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert [metrics.metric_name(m) for m in loaded.metrics] == [
        "accuracy", "top2_accuracy"]
    assert_same_state(model, loaded)
    assert loaded.predict(x).tobytes() == model.predict(x).tobytes()
    assert loaded.layers[5].rng.bit_generator.state == \
        model.layers[5].rng.bit_generator.state


def test_archive_holds_only_json_and_npz(tmp_path):
    model = net()
    model.compile(SGD(0.1, momentum=0.9), "cross_entropy")
    x, y = data()
    model.train_step(x[:8], y[:8])
    path = tmp_path / "m.zip"
    save_model(model, path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == [
            "config.json", "optimizer.npz", "training_state.json", "weights.npz"]
        config = json.loads(archive.read("config.json"))
        assert config["format"] == "fastcnn.sequential"
        assert [layer["class_name"] for layer in config["model"]["layers"]] == [
            "Conv2D", "BatchNorm2D", "ReLU", "MaxPool2D", "Flatten", "Dropout", "Dense"]
        for member in ("weights.npz", "optimizer.npz"):
            with np.load(io.BytesIO(archive.read(member)), allow_pickle=False) as npz:
                assert all(npz[k].dtype != object for k in npz.files)
        with np.load(io.BytesIO(archive.read("optimizer.npz"))) as npz:
            assert sorted(npz.files) == [
                "0.weight/momentum_buffer", "1.bias/momentum_buffer",
                "1.weight/momentum_buffer", "6.bias/momentum_buffer",
                "6.weight/momentum_buffer"]
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_uncompiled_model_and_compile_false(tmp_path):
    model = net()
    model.save(tmp_path / "plain.zip")
    loaded = load_model(tmp_path / "plain.zip")
    assert loaded.optimizer is None and loaded.loss is None
    model.compile("rmsprop", "cross_entropy")
    model.save(tmp_path / "compiled.zip")
    assert load_model(tmp_path / "compiled.zip", compile=False).optimizer is None
    assert type(load_model(tmp_path / "compiled.zip").optimizer) is RMSprop


@pytest.mark.parametrize("make_opt", [lambda: SGD(0.05, momentum=0.9, nesterov=True),
                                      lambda: Adam(0.01)])
def test_save_load_continue_is_bitwise_identical(tmp_path, make_opt):
    x, y = data()
    kwargs = dict(batch_size=8, validation_split=0.2, verbose=0, seed=11)

    straight = net()
    straight.compile(make_opt(), "cross_entropy", ["accuracy"])
    full = straight.fit(x, y, epochs=4, **kwargs)

    first = net()
    first.compile(make_opt(), "cross_entropy", ["accuracy"])
    first.fit(x, y, epochs=2, **kwargs,
              callbacks=[callbacks.ModelCheckpoint(tmp_path / "ckpt-{epoch}.zip")])
    resumed = load_model(tmp_path / "ckpt-2.zip")
    assert resumed.epoch == 2
    # No seed: resuming reuses the checkpoint's fit_seed.
    rest = resumed.fit(x, y, epochs=4, initial_epoch=resumed.epoch,
                       **{k: v for k, v in kwargs.items() if k != "seed"})

    assert_same_state(straight, resumed)
    assert full.iterations[-len(rest.iterations):] == rest.iterations
    assert full.history["val_loss"][2:] == rest.history["val_loss"]


def test_resume_with_a_batch_schedule_is_bitwise_identical(tmp_path):
    x, y = data()
    cycle = fastcnn.schedules.OneCycle(0.1, total_steps=20)
    kwargs = dict(batch_size=8, verbose=0, seed=5, shuffle=True)

    def sched():
        return [callbacks.LearningRateScheduler(cycle, per="batch")]

    straight = net()
    straight.compile(SGD(0.1, momentum=0.9), "cross_entropy")
    straight.fit(x, y, epochs=4, callbacks=sched(), **kwargs)
    first = net()
    first.compile(SGD(0.1, momentum=0.9), "cross_entropy")
    first.fit(x, y, epochs=2, callbacks=sched(), **kwargs)
    first.save(tmp_path / "half.zip")
    resumed = load_model(tmp_path / "half.zip")
    resumed.fit(x, y, epochs=4, initial_epoch=2, callbacks=sched(), **kwargs)
    assert_same_state(straight, resumed)


def test_write_is_atomic(tmp_path, monkeypatch):
    model = net()
    path = tmp_path / "model.zip"
    model.save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before  # the old file survives intact
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"]  # no temp left


def _rewrite(path, member, data: bytes):
    """Copy the archive with one member replaced."""
    with zipfile.ZipFile(path) as src:
        items = {name: src.read(name) for name in src.namelist()}
    items[member] = data
    with zipfile.ZipFile(path, "w") as dst:
        for name, content in items.items():
            dst.writestr(name, content)


def _npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_unknown_layer_type_is_a_clear_error(tmp_path):
    path = tmp_path / "m.zip"
    net().save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    config["model"]["layers"][2]["class_name"] = "Swish"
    _rewrite(path, "config.json", json.dumps(config).encode())
    with pytest.raises(ValueError, match="layer 2 has unknown type 'Swish'"):
        load_model(path)


def test_mismatched_weight_shape_is_a_clear_error(tmp_path):
    path = tmp_path / "m.zip"
    model = net()
    model.save(path)
    state = model.state_dict()
    state["6.weight"] = np.zeros((3, 7), dtype=np.float32)
    _rewrite(path, "weights.npz", _npz(**state))
    with pytest.raises(ValueError, match=r"6.weight has shape \(3, 7\).*\(3, 27\)"):
        load_model(path)


def test_mismatched_optimizer_state_is_a_clear_error(tmp_path):
    path = tmp_path / "m.zip"
    model = net()
    model.compile(SGD(0.1, momentum=0.9), "cross_entropy")
    model.save(path)
    _rewrite(path, "optimizer.npz",
             _npz(**{"6.weight/momentum_buffer": np.zeros((2, 2), np.float32)}))
    with pytest.raises(ValueError, match="6.weight/momentum_buffer' has shape"):
        load_model(path)
    _rewrite(path, "optimizer.npz", _npz(**{"9.weight/momentum_buffer": np.zeros(1)}))
    with pytest.raises(ValueError, match="belongs to no parameter"):
        load_model(path)


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "m.zip"
    model = net()
    model.save(path)
    state = model.state_dict()
    state["0.weight"] = np.array([object()], dtype=object)
    _rewrite(path, "weights.npz", _npz(**state))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_model(path)


def test_not_a_model_file(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip archive"):
        load_model(bad)
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(ValueError, match="lacks 'weights.npz'"):
        load_model(bad)
    path = tmp_path / "m.zip"
    net().save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    config["format_version"] = 99
    _rewrite(path, "config.json", json.dumps(config).encode())
    with pytest.raises(ValueError, match="newer than this fastcnn"):
        load_model(path)
    config["format"] = "keras"
    _rewrite(path, "config.json", json.dumps(config).encode())
    with pytest.raises(ValueError, match="has format 'keras'"):
        load_model(path)


def test_unbuilt_or_wrong_models_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="not built"):
        Sequential([Dense(2)]).save(tmp_path / "x.zip")
    with pytest.raises(TypeError, match="must be a fastcnn.Sequential"):
        save_model("model", tmp_path / "x.zip")


def test_custom_metric_is_dropped_with_a_warning(tmp_path):
    def mean_logit(output, target):
        return float(output.mean())

    model = net()
    model.compile("sgd", "cross_entropy", ["accuracy", mean_logit])
    model.save(tmp_path / "m.zip")
    with pytest.warns(UserWarning, match="'mean_logit' was a custom callable"):
        loaded = load_model(tmp_path / "m.zip")
    assert [metrics.metric_name(m) for m in loaded.metrics] == ["accuracy"]


def test_loading_does_not_touch_the_global_rng(tmp_path):
    net().save(tmp_path / "m.zip")
    np.random.seed(9)
    expected = np.random.random()
    np.random.seed(9)
    load_model(tmp_path / "m.zip")
    assert np.random.random() == expected
