"""Training guards: one trainer per model at a time, and ``fit`` stops at the first
non-finite loss (or refuses non-finite data) instead of training on NaN weights."""

import copy
import pickle
import re
import threading
import warnings

import numpy as np
import pytest

import fastcnn
from fastcnn.callbacks import Callback
from fastcnn.layers import Conv2D, Dense, Flatten, ReLU
from fastcnn.model import Sequential
from fastcnn.optimizers import SGD, Adam


def small_model(lr=0.05, optimizer=None, loss="cross_entropy", outputs=3):
    fastcnn.seed(0)
    model = Sequential([Conv2D(4, 3), ReLU(), Flatten(), Dense(outputs)],
                       input_shape=(1, 5, 5))
    model.compile(optimizer or SGD(lr, momentum=0.9), loss)
    return model


def data(n=48):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 1, 5, 5)).astype(np.float32)
    return x, (x[:, 0, 2, 2] > 0).astype(np.int64) + (x[:, 0, 0, 0] > 1)


def weights(model):
    return [p.copy() for layer in model.layers for p in layer.params.values()]


def same(a, b):
    return len(a) == len(b) and all(
        u.tobytes() == v.tobytes() for u, v in zip(a, b, strict=True))


def finite(model):
    return all(np.isfinite(p).all() for p in weights(model))


# ------------------------------------------------------------------ two trainers


class _SecondTrainer(Callback):
    """At one batch of ``fit``, calls ``call(model)`` from another thread (joined
    at once, so that the overlap is certain) and records what it raised."""

    def __init__(self, call, at_batch=2):
        super().__init__()
        self.call, self.at_batch, self.errors = call, at_batch, []

    def on_batch_begin(self, batch, logs=None):
        if batch != self.at_batch or self.errors:
            return

        def run():
            try:
                self.call(self.model)
            except BaseException as error:  # noqa: BLE001 - checked by the test
                self.errors.append(error)
            else:
                self.errors.append(None)

        thread = threading.Thread(target=run, name="intruder")
        thread.start()
        thread.join()


@pytest.mark.parametrize("second", ["train_step", "fit"])
def test_a_second_thread_is_refused_while_fit_runs(second):
    x, y = data()
    reference = small_model()
    reference.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=1)

    def call(model):
        if second == "fit":
            model.fit(x, y, epochs=1, batch_size=8, verbose=0, seed=2)
        else:
            model.train_step(x[:8], y[:8])

    model = small_model()
    intruder = _SecondTrainer(call)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=1, callbacks=[intruder])
    [error] = intruder.errors
    assert isinstance(error, RuntimeError), error
    message = str(error)
    assert message.startswith(f"{second}: this model is already training")
    assert "fit in thread 'MainThread'" in message and "one thread" in message
    # The refused call changed nothing: the weights are those of fit alone.
    assert same(weights(model), weights(reference))
    # The lock is free again.
    model.train_step(x[:8], y[:8])


def test_a_callback_training_the_same_model_is_refused():
    x, y = data()

    class Reenter(Callback):
        def on_batch_end(self, batch, logs=None):
            self.model.train_step(x[:4], y[:4])

    model = small_model()
    with pytest.raises(RuntimeError, match="train_step: this model is already "
                                           "training .*fit in thread"):
        model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[Reenter()])
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # released after the error


def test_two_threads_fitting_at_once_give_a_sequential_result():
    """Released together, the second fit is refused (or, where the first finished
    before it began, runs after it): the weights always match a sequential order."""
    x, y = data()
    one = small_model()
    one.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=5)
    two = small_model()
    two.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=5)
    two.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=5)
    for _ in range(3):
        model = small_model()
        barrier = threading.Barrier(2)
        outcomes = []

        def work(model=model, barrier=barrier, outcomes=outcomes):
            barrier.wait()
            try:
                model.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=5)
                outcomes.append("ok")
            except RuntimeError as error:
                assert "already training" in str(error)
                outcomes.append("refused")

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) in (["ok", "refused"], ["ok", "ok"]), outcomes
        expected = one if "refused" in outcomes else two
        assert same(weights(model), weights(expected))


def test_predict_from_another_thread_stays_allowed_while_training():
    x, y = data()
    model = small_model()
    results = []

    class Predict(Callback):
        def on_batch_begin(self, batch, logs=None):
            if batch == 1:
                thread = threading.Thread(
                    target=lambda: results.append(self.model.predict(x[:4])))
                thread.start()
                thread.join()

    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[Predict()])
    assert len(results) == 1 and results[0].shape == (4, 3)


def test_a_model_copies_and_pickles_with_a_free_lock():
    x, y = data()
    model = small_model()
    model.train_step(x[:8], y[:8])
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone._train_lock is not model._train_lock
        clone.train_step(x[:8], y[:8])


# ------------------------------------------------------------ non-finite training


def test_a_huge_learning_rate_stops_fit_at_the_first_nan_loss():
    x, y = data()
    model = small_model(optimizer=SGD(1e6))
    with pytest.raises(FloatingPointError) as info:
        model.fit(x, y, epochs=3, batch_size=8, verbose=0, seed=0)
    message = str(info.value)
    found = re.search(r"the loss is (nan|inf|-inf) at epoch (\d+)/3, step (\d+)/6",
                      message)
    assert found, message
    for hint in ("learning rate too high", "lr=1e+06", "inputs not scaled",
                 "NaN or infinity in x", "check_finite=False"):
        assert hint in message, (hint, message)
    # The failing step was not applied: the weights are the finite ones that gave
    # the loss, after exactly the steps before it.
    epoch, step = int(found[2]), int(found[3])
    assert "was not applied" in message and finite(model)
    assert model.optimizer.iterations == (epoch - 1) * 6 + step - 1
    replay = small_model(optimizer=SGD(1e6))
    replay.fit(x, y, epochs=3, batch_size=8, verbose=0, seed=0, check_finite=False)
    assert not finite(replay)  # without the guard training goes on, on NaN


def test_the_stop_says_when_the_weights_are_already_broken():
    x, y = data()
    model = small_model()
    model.layers[3].params["weight"][0, 0] = np.inf  # as after a diverged step
    with pytest.raises(FloatingPointError, match=r"already hold NaN or infinity "
                                                 r"\(first in 3.weight\)"):
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)


def test_one_nan_pixel_is_refused_before_any_step():
    x, y = data()
    x[17, 0, 3, 1] = np.nan
    model = small_model()
    before = weights(model)
    with pytest.raises(ValueError, match=r"fit: x holds NaN or infinity, first in "
                                         r"sample 17\..*check_finite=False"):
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert same(weights(model), before) and model.optimizer.iterations == 0
    x[17, 0, 3, 1] = np.inf
    with pytest.raises(ValueError, match="sample 17"):
        model.fit(x, y, verbose=0)


def test_values_that_overflow_the_cast_are_named_without_a_warning():
    x, y = data()
    x = x.astype(np.float64)
    x[30, 0, 0, 0] = 1e300
    model = small_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="after the cast from float64 to "
                                             "float32.*sample 30"):
            model.fit(x, y, verbose=0)


def test_nan_targets_and_validation_data_are_refused():
    x, y = data()
    model = small_model(loss="mse", outputs=1)
    target = y.astype(np.float32)
    target[3] = np.nan
    with pytest.raises(ValueError, match="fit: y holds NaN or infinity, first in "
                                         "sample 3"):
        model.fit(x, target, verbose=0)
    x_val = x[:8].copy()
    x_val[5, 0, 0, 0] = -np.inf
    with pytest.raises(ValueError, match="validation_data x holds NaN .*sample 5"):
        model.fit(x, y.astype(np.float32), verbose=0, validation_data=(x_val, y[:8]))


def test_check_finite_false_trains_on_non_finite_data_as_before():
    x, y = data()
    x[0, 0, 0, 0] = np.nan
    model = small_model(optimizer=Adam(0.01))
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0, check_finite=False)
    assert np.isnan(history.iterations[-1]) and not finite(model)
    with pytest.raises(TypeError, match="check_finite must be a bool"):
        model.fit(x, y, verbose=0, check_finite=1)


def test_a_finite_run_is_unchanged_by_the_check():
    x, y = data()
    checked, unchecked = small_model(), small_model()
    a = checked.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=4)
    b = unchecked.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=4,
                      check_finite=False)
    assert a.iterations == b.iterations
    assert same(weights(checked), weights(unchecked))


def test_the_progress_bar_is_closed_when_fit_stops(capsys):
    x, y = data()
    model = small_model(optimizer=SGD(1e6))
    with pytest.raises(FloatingPointError):
        model.fit(x, y, epochs=1, batch_size=8, verbose=1)
    assert capsys.readouterr().err.endswith("\n")


# ------------------------------------------------------- schedules set hyper-params


def test_schedules_set_hyper_parameters_through_the_constructors_checks():
    from fastcnn import callbacks, schedules

    x, y = data()
    model = small_model(optimizer=Adam(0.01))
    bad_lr = callbacks.LearningRateScheduler(lambda epoch, lr: -0.1)
    with pytest.raises(ValueError, match=r"LearningRateScheduler: at step 0: Adam: "
                                         r"lr must be a finite number in \[0.0"):
        model.fit(x, y, verbose=0, callbacks=[bad_lr])
    assert model.optimizer.lr == 0.01
    # beta1 = 1 would divide by zero in Adam's bias correction.
    cycle = schedules.OneCycle(0.1, total_steps=12, max_momentum=1.0)
    with pytest.raises(ValueError, match=r"Adam: betas\[0\] must be a finite number "
                                         r"in \[0.0, 1.0\), got 1.0"):
        model.fit(x, y, verbose=0,
                  callbacks=[callbacks.LearningRateScheduler(cycle, per="batch")])
    with pytest.raises(ValueError, match="unknown scalars"):
        model.optimizer.set_dynamic(eps=1.0)
    model.optimizer.set_dynamic(lr=0.5, betas=[0.8, 0.9])
    assert model.optimizer.lr == 0.5 and model.optimizer.betas == (0.8, 0.9)


def test_distributed_fit_stops_on_every_rank_at_the_global_loss():
    """Under fit(distributed=...) the loss checked is the one reduced over all
    ranks (the same on each), so every rank stops at the same step; the step has
    been applied by then. A one-rank fake communicator stands in for MPI."""
    from ..distributed.test_distributed import OneRank

    x, y = data()
    model = small_model(optimizer=SGD(1e6))
    with pytest.raises(FloatingPointError, match=r"epoch 1/2, step \d+/6.*update "
                                                 r"was applied .*over all ranks"):
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=0,
                  distributed=OneRank())
    x[2, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x holds NaN or infinity, first in "
                                         "sample 2"):
        small_model().fit(x, y, verbose=0, distributed=OneRank())


def test_one_hot_labels_are_probability_targets():
    # As in torch's cross_entropy: rows of the output's shape are class
    # probabilities, so one-hot rows give the loss of their class indices.
    model = fastcnn.models.lenet5()
    model.compile("sgd", "cross_entropy", ["accuracy"])
    x = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    labels = np.array([1, 2, 3, 4])
    want = model.evaluate(x, labels)
    for one_hot in (np.eye(10)[labels], np.eye(10, dtype=np.float32)[labels]):
        got = model.evaluate(x, one_hot)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
        assert got["accuracy"] == want["accuracy"]


def test_raw_integer_pixels_are_refused_but_0_1_masks_pass():
    model = fastcnn.models.lenet5()
    model.compile("sgd", "cross_entropy")
    pixels = np.full((4, 1, 28, 28), 200, np.uint8)
    labels = np.array([1, 2, 3, 4])
    for call in (lambda: model.fit(pixels, labels, epochs=1, verbose=0),
                 lambda: model.predict(pixels),
                 lambda: model.train_step(pixels, labels),
                 lambda: model.evaluate(pixels, labels)):
        with pytest.raises(ValueError, match=r"astype\('float32'\) / 255"):
            call()
    masks = (np.arange(4 * 28 * 28).reshape(4, 1, 28, 28) % 2).astype(np.uint8)
    assert model.predict(masks).shape == (4, 10)
