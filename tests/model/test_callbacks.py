"""Callbacks: early stopping, checkpoints, schedules, plateaus, CSV, NaN, lambdas."""

import csv
import math

import numpy as np
import pytest

import fastcnn
from fastcnn import callbacks, schedules
from fastcnn.layers import Dense, ReLU
from fastcnn.model import Sequential
from fastcnn.optimizers import SGD, Adam


def data(n=32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def model(opt=None):
    fastcnn.seed(0)
    m = Sequential([Dense(8), ReLU(), Dense(2)], input_shape=(4,))
    m.compile(opt or SGD(0.1), "cross_entropy", ["accuracy"])
    return m


def inject(values, key="score"):
    """A LambdaCallback that writes values[epoch] into the epoch's logs (before the
    callbacks after it in the list see them)."""
    return callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: logs.__setitem__(key, values[epoch]))


def test_history_is_returned_and_counts_batches():
    x, y = data()
    history = model().fit(x, y, epochs=2, batch_size=10, verbose=0)
    assert isinstance(history, callbacks.History)
    assert len(history.iterations) == 8


def test_early_stopping_stops_and_restores_best_weights():
    x, y = data()
    m = model()
    snapshots = {}
    keep = callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.__setitem__(epoch, m.state_dict()))
    stop = callbacks.EarlyStopping(monitor="score", patience=1,
                                   restore_best_weights=True)
    history = m.fit(x, y, epochs=10, verbose=0,
                    callbacks=[keep, inject([3.0, 1.0, 2.0, 0.5, 0.1]), stop])
    assert history.epoch == [0, 1, 2]
    assert stop.stopped_epoch == 2 and stop.best_epoch == 1 and stop.best == 1.0
    best = snapshots[1]
    assert all(m.state_dict()[k].tobytes() == best[k].tobytes() for k in best)
    assert any(snapshots[2][k].tobytes() != best[k].tobytes() for k in best)


def test_early_stopping_patience_mode_and_min_delta():
    x, y = data()
    stop = callbacks.EarlyStopping(monitor="val_accuracy", patience=2, min_delta=0.1)
    assert stop.mode == "max"
    m = model()
    history = m.fit(x, y, epochs=10, verbose=0,
                    callbacks=[inject([0.5, 0.55, 0.58, 0.9], "val_accuracy"), stop])
    # 0.55 and 0.58 are not improvements by more than 0.1: stop after epoch 2.
    assert history.epoch == [0, 1, 2]
    assert not stop.restore_best_weights


def test_early_stopping_on_a_missing_metric_says_so():
    x, y = data()
    with pytest.raises(ValueError, match="monitor='val_loss' is not among"):
        model().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.EarlyStopping()])


def test_model_checkpoint_save_best_only(tmp_path):
    x, y = data()
    m = model()
    path = tmp_path / "ckpt-{epoch:02d}-{score:.1f}.zip"
    ckpt = callbacks.ModelCheckpoint(path, monitor="score", save_best_only=True)
    m.fit(x, y, epochs=4, verbose=0, callbacks=[inject([2.0, 3.0, 1.0, 1.5]), ckpt])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt-01-2.0.zip", "ckpt-03-1.0.zip"]
    loaded = fastcnn.load_model(tmp_path / "ckpt-03-1.0.zip")
    assert loaded.epoch == 3


def test_model_checkpoint_every_epoch_overwrites(tmp_path):
    x, y = data()
    m = model()
    ckpt = callbacks.ModelCheckpoint(tmp_path / "last.zip")
    m.fit(x, y, epochs=2, verbose=0, callbacks=[ckpt])
    loaded = fastcnn.load_model(tmp_path / "last.zip")
    assert loaded.epoch == 2
    assert all(np.array_equal(loaded.state_dict()[k], v)
               for k, v in m.state_dict().items())
    assert [p.name for p in tmp_path.iterdir()] == ["last.zip"]


def test_learning_rate_scheduler_per_epoch():
    x, y = data()
    m = model(SGD(0.4))
    sched = callbacks.LearningRateScheduler(schedules.StepLR(1, 0.5))
    history = m.fit(x, y, epochs=3, verbose=0, callbacks=[sched])
    assert history.history["lr"] == [0.4, 0.2, 0.1]
    keras_style = callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.1)
    history = m.fit(x, y, epochs=2, verbose=0, callbacks=[keras_style])
    assert history.history["lr"] == pytest.approx([0.01, 0.001])


def test_learning_rate_scheduler_per_batch_one_cycle_sets_momentum():
    x, y = data()
    m = model(Adam(1.0))
    cycle = schedules.OneCycle(0.01, total_steps=8)
    seen = []
    spy = callbacks.LambdaCallback(on_batch_begin=lambda b, logs: seen.append(
        (m.optimizer.lr, m.optimizer.betas[0])))
    m.fit(x, y, epochs=2, batch_size=8, verbose=0,
          callbacks=[callbacks.LearningRateScheduler(cycle, per="batch"), spy])
    assert [lr for lr, _ in seen] == [cycle(t, 1.0) for t in range(8)]
    assert [b for _, b in seen] == [cycle.momentum(t) for t in range(8)]
    assert m.optimizer.iterations == 8


def test_learning_rate_scheduler_errors():
    with pytest.raises(TypeError, match="schedule must be"):
        callbacks.LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match="per must be"):
        callbacks.LearningRateScheduler(schedules.StepLR(1), per="step")
    x, y = data()
    bad = callbacks.LearningRateScheduler(lambda epoch, lr: float("nan"))
    with pytest.raises(ValueError, match="finite float"):
        model().fit(x, y, verbose=0, callbacks=[bad])


def test_reduce_lr_on_plateau_with_cooldown_and_floor():
    x, y = data()
    m = model(SGD(1.0))
    plateau = callbacks.ReduceLROnPlateau(monitor="score", factor=0.5, patience=1,
                                          cooldown=1, min_lr=0.3)
    history = m.fit(x, y, epochs=7, verbose=0,
                    callbacks=[inject([1.0] * 7), plateau])
    # lr as seen at each epoch's end (logged before that epoch's reduction). Keras's
    # rule: the cooldown epoch counts down before the patience check of that epoch.
    assert history.history["lr"] == [1.0, 1.0, 0.5, 0.3, 0.3, 0.3, 0.3]
    assert m.optimizer.lr == 0.3


def test_reduce_lr_on_plateau_errors():
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="min_lr"):
        callbacks.ReduceLROnPlateau(min_lr=-1)
    with pytest.raises(ValueError, match="patience"):
        callbacks.ReduceLROnPlateau(patience=-1)
    with pytest.raises(ValueError, match="mode"):
        callbacks.ReduceLROnPlateau(mode="up")


def test_csv_logger_writes_and_appends(tmp_path):
    x, y = data()
    path = tmp_path / "log.csv"
    m = model()
    m.fit(x, y, epochs=2, verbose=0, validation_split=0.25,
          callbacks=[callbacks.CSVLogger(path)])
    m.fit(x, y, epochs=3, initial_epoch=2, verbose=0, validation_split=0.25,
          callbacks=[callbacks.CSVLogger(path, append=True)])
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
    assert float(rows[2]["loss"]) > 0


def test_terminate_on_nan_stops_after_the_bad_batch(capsys):
    x, y = data()
    x[12] = np.nan  # lands in the second batch without shuffling
    # check_finite=False: fit's own check would refuse x before the first batch.
    history = model().fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                          callbacks=[callbacks.TerminateOnNaN()], check_finite=False)
    assert len(history.iterations) == 2 and math.isnan(history.iterations[-1])
    assert history.epoch == [0]
    assert "invalid loss" in capsys.readouterr().out


def test_lambda_callback_hooks_and_stop_training():
    x, y = data()
    calls = []
    m = model()

    def stop_at_batch_2(batch, logs):
        calls.append(("batch_end", batch, logs["size"]))
        if batch == 2:
            m.stop_training = True

    cb = callbacks.LambdaCallback(
        on_train_begin=lambda logs: calls.append(("train_begin",)),
        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch)),
        on_batch_end=stop_at_batch_2,
        on_train_end=lambda logs: calls.append(("train_end",)))
    m.fit(x, y, epochs=3, batch_size=10, verbose=0, callbacks=[cb])
    assert calls == [("train_begin",), ("epoch_begin", 0), ("batch_end", 0, 10),
                     ("batch_end", 1, 10), ("batch_end", 2, 10), ("train_end",)]
    with pytest.raises(TypeError, match="on_epoch_end must be callable"):
        callbacks.LambdaCallback(on_epoch_end=3)


def test_monitor_arguments_are_checked():
    with pytest.raises(TypeError, match="monitor"):
        callbacks.EarlyStopping(monitor=3)
    with pytest.raises(ValueError, match="patience"):
        callbacks.EarlyStopping(patience=-1)
    with pytest.raises(TypeError, match="min_delta"):
        callbacks.EarlyStopping(min_delta="1")
