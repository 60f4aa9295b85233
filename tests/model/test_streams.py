"""fit / evaluate / predict on streams of batches (generators, lists, Loaders), with
steps_per_epoch, validation streams and sample weights; the errors for bad
streams."""

import threading

import numpy as np
import pytest

import fastcnn
from fastcnn import Sequential
from fastcnn.callbacks import Callback
from fastcnn.datasets import Compose, Loader, RandomCrop, RandomFlip
from fastcnn.layers import Conv2D, Dense, Flatten, ReLU
from fastcnn.training.loop import predict_stream

N, SHAPE, CLASSES = 24, (1, 5, 5), 3


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, *SHAPE)).astype(np.float32)
    return x, rng.integers(0, CLASSES, N)


def _model(conv=True, loss="cross_entropy"):
    fastcnn.seed(0)
    layers = ([Conv2D(2, 3), ReLU(), Flatten(), Dense(CLASSES)] if conv
              else [Flatten(), Dense(CLASSES)])
    model = Sequential(layers, input_shape=SHAPE)
    model.compile("sgd", loss, ["accuracy"] if loss == "cross_entropy" else None)
    return model


def _same_weights(a, b):
    return all(np.array_equal(p, q) for p, q in
               zip(a.get_weights(), b.get_weights(), strict=True))


def _slices(x, y, batch, w=None):
    for begin in range(0, len(x), batch):
        part = slice(begin, begin + batch)
        yield (x[part], y[part]) if w is None else (x[part], y[part], w[part])


# ---------------------------------------------------------------- equal to arrays


@pytest.mark.parametrize("make", [
    lambda x, y: Loader(x, y, 8, shuffle=False),
    lambda x, y: list(_slices(x, y, 8)),
])
def test_reiterable_stream_fit_equals_array_fit_bitwise(make):
    x, y = _data()
    ref, model = _model(), _model()
    h_ref = ref.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    h = model.fit(make(x, y), epochs=3, verbose=0)
    assert _same_weights(ref, model)
    assert h.history == h_ref.history
    assert h.iterations == h_ref.iterations


def test_generator_is_consumed_across_epochs_with_steps_per_epoch():
    x, y = _data()
    ref, model = _model(), _model()
    ref.fit(x, y, epochs=2, batch_size=6, shuffle=False, verbose=0)

    def two_epochs():
        yield from _slices(x, y, 6)
        yield from _slices(x, y, 6)

    history = model.fit(two_epochs(), epochs=2, steps_per_epoch=4, verbose=0)
    assert _same_weights(ref, model)
    assert len(history.history["loss"]) == 2


def test_generator_running_dry_warns_and_stops_like_keras():
    x, y = _data()
    model = _model()
    with pytest.warns(UserWarning, match="ran out of data at the start of epoch 2"):
        history = model.fit(_slices(x, y, 8), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 1 and model.epoch == 1
    model = _model()
    with pytest.warns(UserWarning, match="after 1 of steps_per_epoch=2 batches of "
                                         "epoch 2/3"):
        history = model.fit(_slices(x, y, 8), epochs=3, steps_per_epoch=2,
                            verbose=0)
    # The short epoch still counts (its logs are over the batch it had).
    assert len(history.history["loss"]) == 2 and model.epoch == 2


def test_reiterable_longer_than_steps_restarts_every_epoch():
    x, y = _data()
    seen = []

    class Count(Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(logs["size"])

    model = _model()
    model.fit(Loader(x, y, 5, shuffle=False), epochs=3, steps_per_epoch=2,
              verbose=0, callbacks=[Count()])
    assert seen == [5] * 6
    with pytest.warns(UserWarning, match="ran out of data after 5 of "
                                         "steps_per_epoch=7"):
        model.fit(Loader(x, y, 5), epochs=2, steps_per_epoch=7, verbose=0)


def test_seeded_loader_fit_is_reproducible_and_resumable():
    x, y = _data()
    transform = Compose([RandomCrop(padding=1), RandomFlip()])

    def loader(seed):
        return Loader(x, y, 8, transform=transform, seed=seed)

    a, b, c = _model(), _model(), _model()
    a.fit(loader(4), epochs=2, verbose=0)
    b.fit(loader(4), epochs=2, verbose=0)
    assert _same_weights(a, b)
    c.fit(loader(5), epochs=2, verbose=0)
    assert not _same_weights(a, c)
    # fit tells the loader its epoch: a resumed run sees the same batches.
    resumed = _model()
    resumed.fit(loader(4), epochs=1, verbose=0)
    resumed.fit(loader(4), epochs=2, initial_epoch=1, verbose=0)
    assert _same_weights(a, resumed)


def test_stream_builds_an_unbuilt_model_and_validates():
    x, y = _data()
    fastcnn.seed(0)
    model = Sequential([Flatten(), Dense(CLASSES)])
    model.compile("sgd", "cross_entropy", ["accuracy"])
    history = model.fit(Loader(x, y, 8, seed=0), epochs=2, verbose=2,
                        validation_data=Loader(x, y, 10, shuffle=False),
                        validation_steps=2)
    assert model.built and model.input_shape == SHAPE
    assert len(history.history["val_loss"]) == 2
    history = model.fit(Loader(x, y, 8), epochs=1, verbose=0,
                        validation_data=(x[:5], y[:5]))
    assert history.history["val_loss"][0] == pytest.approx(
        model.evaluate(x[:5], y[:5])["loss"])
    history = model.fit(x, y, epochs=1, verbose=0,
                        validation_data=list(_slices(x[:9], y[:9], 3)))
    assert history.history["val_loss"][0] == pytest.approx(
        model.evaluate(x[:9], y[:9], batch_size=3)["loss"], rel=1e-6)


def test_progress_bar_of_a_generator_without_length(capsys):
    x, y = _data()
    _model().fit(_slices(x, y, 8), epochs=1, verbose=1)
    assert "Epoch 1/1" in capsys.readouterr().err


def test_evaluate_and_predict_on_streams():
    x, y = _data()
    model = _model()
    expected = model.evaluate(x, y, batch_size=8)
    assert model.evaluate(Loader(x, y, 8, shuffle=False)) == expected
    assert model.evaluate(_slices(x, y, 8)) == expected
    assert model.evaluate(Loader(x, y, 8, shuffle=False), steps=1) == \
        model.evaluate(x[:8], y[:8])
    out = model.predict(x)
    np.testing.assert_array_equal(
        model.predict(Loader(x, batch_size=7, shuffle=False)), out)
    np.testing.assert_array_equal(model.predict(_slices(x, y, 5)), out)
    np.testing.assert_array_equal(predict_stream(model, [(x[:4],), (x[4:],)]), out)
    assert model.predict(_slices(x, y, 5), steps=2).shape == (10, CLASSES)
    with pytest.raises(ValueError, match="steps applies to a stream"):
        model.predict(x, steps=2)


# ------------------------------------------------------------------ sample weights


def test_sample_weight_array_equals_stream_third_element():
    x, y = _data()
    w = np.random.default_rng(1).random(N)
    a, b = _model(), _model()
    a.fit(x, y, epochs=2, batch_size=8, shuffle=False, sample_weight=w, verbose=0)
    b.fit(list(_slices(x, y, 8, w)), epochs=2, verbose=0)
    assert _same_weights(a, b)
    assert a.evaluate(x, y, batch_size=8, sample_weight=w) == \
        b.evaluate(_slices(x, y, 8, w))


def test_sample_weight_normalises_by_the_sum_of_weights():
    """J = sum w_i L_i / sum w_i: a weight of 2 is the sample counted twice."""
    x, y = _data()
    dup, weighted = _model(False), _model(False)
    xs = np.concatenate([x[:1], x[:4]])
    ys = np.concatenate([y[:1], y[:4]])
    loss_dup = dup.train_step(xs, ys)
    loss_w = weighted.train_step(x[:4], y[:4],
                                 sample_weight=np.array([2.0, 1, 1, 1]))
    assert loss_w == pytest.approx(loss_dup, rel=1e-6)
    for p, q in zip(dup.get_weights(), weighted.get_weights(), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-7)
    ones = _model(False)
    assert ones.train_step(x[:4], y[:4], sample_weight=np.ones(4)) == \
        pytest.approx(_model(False).train_step(x[:4], y[:4]), rel=1e-6)


@pytest.mark.skipif(not fastcnn.backend.cuda_available(),
                    reason="no CUDA GPU, and the simulator is off")
@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "bce_with_logits"])
def test_sample_weight_on_cuda_matches_the_cpu(loss):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    y = (rng.integers(0, 3, 6) if loss == "cross_entropy"
         else rng.random((6, 3)).astype(np.float32))
    w = rng.random(6)
    runs = []
    for device in ("cpu", "cuda"):
        fastcnn.seed(0)
        model = Sequential([Dense(3)], input_shape=(4,))
        model.compile("sgd", loss)
        model.to(device)
        history = model.fit(x, y, batch_size=3, shuffle=False, sample_weight=w,
                            verbose=0)
        model.to("cpu")
        runs.append((history.iterations, model.get_weights()))
    (it_cpu, w_cpu), (it_cuda, w_cuda) = runs
    np.testing.assert_allclose(it_cuda, it_cpu, rtol=1e-5)
    for p, q in zip(w_cuda, w_cpu, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)


def test_validation_split_carries_sample_weights():
    x, y = _data()
    w = np.zeros(N)
    w[::2] = 1.0
    history = _model().fit(x, y, epochs=1, validation_split=0.25, seed=0,
                           sample_weight=w, verbose=0)
    assert np.isfinite(history.history["val_loss"][0])


# ------------------------------------------------------------------------- errors


def _one_batch(x, y, item):
    yield item


@pytest.mark.parametrize("make_item, error, match", [
    (lambda x, y: x[:4], TypeError, r"batch 0 of epoch 1 of x must be a tuple "
                                    r"\(x, y\).*y missing"),
    (lambda x, y: (x[:4], y[:4], np.ones(4), 1), TypeError, "tuple of 4 elements"),
    (lambda x, y: (x[:4], None), ValueError, "has y=None"),
    (lambda x, y: (x[:4, :, :4], y[:4]), ValueError,
     r"batch 0 of epoch 1 of x: x has per-sample shape \(1, 4, 5\)"),
    (lambda x, y: (x[:4], y[:3]), ValueError, "y must have one entry per sample"),
    (lambda x, y: (x[:4], y[:4], np.ones(3)), ValueError,
     r"sample_weight must have one weight per sample, shape \(4,\)"),
    (lambda x, y: (x[:4], y[:4], -np.ones(4)), ValueError, "finite and >= 0"),
    (lambda x, y: (np.full((4, *SHAPE), np.nan, np.float32), y[:4]), ValueError,
     "x holds NaN or infinity"),
    (lambda x, y: (x[:0], y[:0]), ValueError, "empty batch"),
])
def test_bad_batches_are_named(make_item, error, match):
    x, y = _data()
    with pytest.raises(error, match=match):
        _model().fit(_one_batch(x, y, make_item(x, y)), verbose=0)


def test_bad_batch_later_in_the_stream_names_its_index():
    x, y = _data()
    batches = [(x[:4], y[:4]), (x[:4, :, :4, :4], y[:4])]
    with pytest.raises(ValueError, match="batch 1 of epoch 1 of x"):
        _model().fit(batches, verbose=0)
    with pytest.raises(ValueError, match="evaluate: batch 1 of x"):
        _model().evaluate(batches)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"y": np.zeros(3)}, TypeError, "y must be None"),
    ({"sample_weight": np.ones(3)}, TypeError, "third element"),
    ({"distributed": True}, ValueError, "distributed=True trains on arrays only"),
    ({"validation_split": 0.2}, ValueError, "validation_split needs arrays"),
    ({"stratify": True}, ValueError, "stratify needs arrays"),
    ({"steps_per_epoch": 0}, ValueError, "steps_per_epoch must be >= 1"),
    ({"validation_data": (np.zeros(2),)}, TypeError,
     "validation_data must be a tuple"),
])
def test_bad_stream_arguments_are_named(kwargs, error, match):
    x, y = _data()
    with pytest.raises(error, match=match):
        _model().fit(Loader(x, y, 8), verbose=0, **kwargs)
    assert _loader_threads() == []


def _loader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fastcnn-loader")]


def test_no_loader_thread_outlives_fit():
    x, y = _data()
    model = _model()
    model.fit(Loader(x, y, 5), epochs=2, steps_per_epoch=2, verbose=0,
              validation_data=Loader(x, y, 5), validation_steps=1)
    assert _loader_threads() == []
    bad = Loader(x, y, 5, transform=lambda b, rng: b[:, :, :4])
    with pytest.raises(ValueError, match="per-sample shape"):
        model.fit(bad, verbose=0)
    with pytest.raises(ValueError, match="class_weight"):
        model.fit(Loader(x, y, 5), class_weight=[1.0], verbose=0)
    assert _loader_threads() == []


@pytest.mark.parametrize("kwargs, error, match", [
    ({"steps_per_epoch": 2}, ValueError, "steps_per_epoch applies to a stream"),
    ({"validation_steps": 2}, ValueError, "validation_steps applies to a stream"),
    ({"sample_weight": np.ones(5)}, ValueError, r"shape \(24,\)"),
    ({"sample_weight": [1.0] * N}, TypeError, "sample_weight must be a numpy"),
    ({"sample_weight": -np.ones(N)}, ValueError, "finite and >= 0"),
    ({"validation_data": (np.zeros((2, *SHAPE), np.float32), np.zeros(2, int),
                          np.ones(2)), "distributed": True}, ValueError,
     "distributed=True validates on arrays"),
])
def test_bad_array_arguments_are_named(kwargs, error, match):
    x, y = _data()
    with pytest.raises(error, match=match):
        _model().fit(x, y, verbose=0, **kwargs)


def test_missing_y_is_named():
    x, _ = _data()
    model = _model()
    with pytest.raises(TypeError, match="fit: y is missing"):
        model.fit(x, verbose=0)
    with pytest.raises(TypeError, match="evaluate: y is missing"):
        model.evaluate(x)


def test_empty_and_exhausted_streams_are_refused():
    x, y = _data()
    model = _model()
    with pytest.raises(ValueError, match="x .generator. yielded no batches"):
        model.fit((b for b in []), verbose=0)
    with pytest.raises(ValueError, match="yielded no batches"):
        model.evaluate([])
    with pytest.raises(ValueError, match="yielded no batches"):
        predict_stream(model, iter([]))
    gen = _slices(x, y, 8)
    model.evaluate(gen)
    with pytest.raises(ValueError, match="consumed once"):
        model.fit(x, y, epochs=1, verbose=0, validation_data=gen)


def test_sample_weight_needs_a_loss_that_takes_it():
    class Plain(fastcnn.losses.MSE):
        supports_sample_weight = False

    x, y = _data()
    model = _model(False, loss=Plain())
    with pytest.raises(ValueError, match="sample_weight needs a loss"):
        model.fit(x, np.zeros((N, CLASSES), np.float32), sample_weight=np.ones(N),
                  verbose=0)
