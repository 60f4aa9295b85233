"""Training with the new cross-entropy targets: a fully-convolutional model whose
output is (N, C, H, W) trained on per-pixel labels (N, H, W) with ignore_index,
class and sample weights, step for step against PyTorch; fit with probability
(mixup) and one-hot targets; per-pixel and probability-target accuracy; and the
batch weights that data-parallel training combines ranks by."""

import numpy as np
import pytest

import fastcnn
from fastcnn import Sequential, losses, metrics
from fastcnn.layers import Conv2D, Dense, ReLU
from fastcnn.optimizers import SGD

torch = pytest.importorskip("torch")
nn = torch.nn
tF = torch.nn.functional

pytestmark = pytest.mark.torch

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
TOL = {np.float32: 1e-4, np.float64: 1e-10}
IGNORE = 255


def segmenter(dtype) -> Sequential:
    """Conv 3x3 -> ReLU -> conv 1x1: (2, 5, 6) images to 3 class scores per pixel."""
    fastcnn.seed(0)
    return Sequential([Conv2D(4, 3, padding=1), ReLU(), Conv2D(3, 1)],
                      input_shape=(2, 5, 6), dtype=dtype)


def torch_twin(model: Sequential, dtype):
    twin = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))
    twin = twin.to(TORCH_DTYPE[dtype])
    twin.load_state_dict({k: torch.from_numpy(v.copy())
                          for k, v in model.state_dict().items()})
    return twin


def pixel_data(dtype, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2, 5, 6)).astype(dtype)
    y = rng.integers(0, 3, (n, 5, 6)).astype(np.uint8)
    y[rng.random(y.shape) < 0.25] = IGNORE
    return x, y


def assert_same_weights(model, twin, tol, what):
    theirs = twin.state_dict()
    for key, value in model.state_dict().items():
        np.testing.assert_allclose(value, theirs[key].detach().numpy(), rtol=tol,
                                   atol=tol, err_msg=f"{what} {key}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("class_weight", [None, [1.0, 2.5, 0.4]])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_per_pixel_step_with_ignore_index_matches_torch(dtype, class_weight,
                                                        smoothing):
    model = segmenter(dtype)
    model.compile(SGD(0.5), losses.CrossEntropy(label_smoothing=smoothing,
                                                ignore_index=IGNORE))
    twin = torch_twin(model, dtype)
    opt = torch.optim.SGD(twin.parameters(), lr=0.5)
    weight = (None if class_weight is None
              else torch.tensor(class_weight, dtype=TORCH_DTYPE[dtype]))
    for step in range(3):
        x, y = pixel_data(dtype, seed=step)
        loss = model.train_step(x, y, class_weight=class_weight)
        opt.zero_grad()
        t_loss = tF.cross_entropy(twin(torch.from_numpy(x)),
                                  torch.from_numpy(y.astype(np.int64)), weight,
                                  ignore_index=IGNORE, label_smoothing=smoothing)
        t_loss.backward()
        opt.step()
        assert loss == pytest.approx(t_loss.item(), rel=TOL[dtype])
        assert_same_weights(model, twin, TOL[dtype], f"step {step}")


@pytest.mark.parametrize("class_weight", [None, [1.0, 2.5, 0.4]])
def test_per_pixel_step_with_sample_weights_matches_torch(class_weight):
    # J = sum_i s_i sum_p L_ip / sum_i s_i sum_{p kept} w[y_ip].
    dtype = np.float64
    model = segmenter(dtype)
    model.compile(SGD(0.5), losses.CrossEntropy(ignore_index=IGNORE))
    twin = torch_twin(model, dtype)
    opt = torch.optim.SGD(twin.parameters(), lr=0.5)
    x, y = pixel_data(dtype)
    s = np.random.default_rng(3).random(len(x))
    loss = model.train_step(x, y, class_weight=class_weight, sample_weight=s)
    w = np.ones(3) if class_weight is None else np.asarray(class_weight)
    per = tF.cross_entropy(twin(torch.from_numpy(x)),
                           torch.from_numpy(y.astype(np.int64)),
                           None if class_weight is None else torch.tensor(w),
                           ignore_index=IGNORE, reduction="none")
    kept = y != IGNORE
    shares = np.where(kept, w[np.where(kept, y, 0)], 0.0).sum(axis=(1, 2))
    t_loss = (torch.tensor(s)[:, None, None] * per).sum() / float(s @ shares)
    opt.zero_grad()
    t_loss.backward()
    opt.step()
    assert loss == pytest.approx(t_loss.item(), rel=1e-10)
    assert_same_weights(model, twin, 1e-10, "sample-weighted step")


def test_fit_on_per_pixel_labels_learns_and_reports_pixel_accuracy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 2, 5, 6)).astype(np.float32)
    # A pixel's class is decided by its two channels: learnable by the 1x1 path.
    y = (x[:, 0] > 0).astype(np.uint8) + (x[:, 1] > 0.5).astype(np.uint8)
    y[rng.random(y.shape) < 0.2] = IGNORE
    model = segmenter(np.float32)
    model.compile(SGD(0.3, momentum=0.9), losses.CrossEntropy(ignore_index=IGNORE),
                  ["accuracy"])
    assert model.metrics[0].ignore_index == IGNORE
    history = model.fit(x, y, epochs=8, batch_size=8, verbose=0, seed=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    result = model.evaluate(x, y, batch_size=32)
    predicted = model.predict(x).argmax(axis=1)
    kept = y != IGNORE
    assert result["accuracy"] == pytest.approx(np.mean(predicted[kept] == y[kept]),
                                               rel=1e-6)
    assert result["accuracy"] > 0.8


def test_warmup_compiles_a_per_pixel_cross_entropy():
    model = segmenter(np.float32)
    model.compile(SGD(0.1), losses.CrossEntropy(ignore_index=IGNORE))
    assert fastcnn.warmup(model, workers=1) >= 0


# ------------------------------------------------------------ probability targets


def blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = rng.standard_normal((3, 4)) * 3
    return (centres[y] + rng.standard_normal((n, 4)) * 0.5).astype(np.float32), y


def classifier(dtype=np.float32):
    fastcnn.seed(0)
    return Sequential([Dense(8), ReLU(), Dense(3)], input_shape=(4,), dtype=dtype)


def test_mixup_step_matches_torch():
    x, y = blobs()
    rng = np.random.default_rng(4)
    perm = rng.permutation(len(x))
    lam = rng.beta(0.4, 0.4, (len(x), 1))
    x_mix = (lam * x + (1 - lam) * x[perm]).astype(np.float64)
    y_mix = lam * np.eye(3)[y] + (1 - lam) * np.eye(3)[y[perm]]
    model = classifier(np.float64)
    model.compile(SGD(0.2), losses.CrossEntropy(label_smoothing=0.1))
    twin = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    twin.load_state_dict({k: torch.from_numpy(v.copy())
                          for k, v in model.state_dict().items()})
    opt = torch.optim.SGD(twin.parameters(), lr=0.2)
    for _ in range(3):
        loss = model.train_step(x_mix, y_mix, class_weight=[1.0, 0.5, 2.0])
        opt.zero_grad()
        t_loss = tF.cross_entropy(twin(torch.from_numpy(x_mix)),
                                  torch.from_numpy(y_mix),
                                  torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64),
                                  label_smoothing=0.1)
        t_loss.backward()
        opt.step()
        assert loss == pytest.approx(t_loss.item(), rel=1e-10)
    assert_same_weights(model, twin, 1e-10, "mixup")


def test_fit_with_mixup_probability_targets_learns():
    x, y = blobs()
    rng = np.random.default_rng(5)
    perm = rng.permutation(len(x))
    lam = rng.beta(0.4, 0.4, (len(x), 1))
    x_mix = (lam * x + (1 - lam) * x[perm]).astype(np.float32)
    y_mix = lam * np.eye(3)[y] + (1 - lam) * np.eye(3)[y[perm]]  # float64 targets
    model = classifier()
    model.compile(SGD(0.1, momentum=0.9), "cross_entropy", ["accuracy"])
    history = model.fit(x_mix, y_mix, epochs=15, batch_size=12, verbose=0, seed=0,
                        validation_data=(x, np.eye(3)[y]))
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]
    # Accuracy against probability targets is against their arg-max.
    assert history.history["val_accuracy"][-1] == pytest.approx(
        model.evaluate(x, y)["accuracy"])
    assert history.history["val_accuracy"][-1] > 0.9


def test_integer_one_hot_targets_equal_class_indices():
    x, y = blobs(n=12)
    runs = []
    for target in (y, np.eye(3, dtype=np.int64)[y], np.eye(3, dtype=bool)[y]):
        model = classifier()
        model.compile(SGD(0.1), "cross_entropy", ["accuracy"])
        runs.append(model.fit(x, target, epochs=2, batch_size=4, verbose=0,
                              seed=0).history)
    for other in runs[1:]:
        assert other["loss"] == pytest.approx(runs[0]["loss"], rel=1e-5)
        assert other["accuracy"] == runs[0]["accuracy"]


def test_probability_targets_refuse_a_non_negative_ignore_index():
    x, y = blobs(n=6)
    model = classifier()
    model.compile(SGD(0.1), losses.CrossEntropy(ignore_index=0))
    with pytest.raises(ValueError, match=r"cross_entropy: ignore_index=0 applies to "
                       r"class indices, not to class probabilities"):
        model.train_step(x, np.eye(3)[y])


# --------------------------------------------------------- metrics and the loss


def test_accuracy_per_pixel_with_probabilities_and_ignore_index():
    rng = np.random.default_rng(0)
    out = rng.standard_normal((3, 4, 2, 5))
    y = rng.integers(0, 4, (3, 2, 5))
    y[0, 0, :3] = IGNORE
    predicted = out.argmax(axis=1)
    kept = y != IGNORE
    acc = metrics.Accuracy(ignore_index=IGNORE)(out, y)
    assert acc == pytest.approx(np.mean(predicted[kept] == y[kept]))
    # Without ignore_index the ignored pixels count as misses.
    assert metrics.accuracy(out, y) == pytest.approx(np.mean(predicted == y))
    probs = np.moveaxis(np.eye(4)[np.where(kept, y, 0)], -1, 1) * 0.7 + 0.05
    assert metrics.accuracy(out, probs) == pytest.approx(
        np.mean(predicted == np.where(kept, y, 0)))
    assert np.isnan(metrics.Accuracy(ignore_index=1)(out[:1, :, :1, :1],
                                                     np.ones((1, 1, 1), int)))
    top2 = metrics.TopKAccuracy(2, ignore_index=IGNORE)(out, y)
    order = np.argsort(-out, axis=1)[:, :2]
    hits = (order == y[:, None]).any(axis=1)
    assert top2 == pytest.approx(np.mean(hits[kept]))
    assert metrics.TopKAccuracy(4)(out, y) == pytest.approx(np.mean(kept))


def test_accuracy_rejects_targets_that_fit_neither_way():
    with pytest.raises(ValueError, match=r"accuracy: target must hold one class "
                       r"index per position, shape \(2, 3\), or probabilities of "
                       r"the output's shape \(2, 4, 3\); got shape \(2, 4\)"):
        metrics.accuracy(np.zeros((2, 4, 3)), np.zeros((2, 4)))
    with pytest.raises(TypeError, match=r"Accuracy: ignore_index must be an int"):
        metrics.Accuracy(ignore_index=1.5)


def test_cross_entropy_loss_object_config_and_errors():
    loss = losses.CrossEntropy(label_smoothing=0.1, ignore_index=IGNORE)
    config = {"label_smoothing": 0.1, "ignore_index": IGNORE}
    assert loss.get_config() == config
    again = losses.from_config({"class_name": "CrossEntropy", "config": config})
    assert again.get_config() == config
    assert losses.CrossEntropy().ignore_index == -100
    with pytest.raises(TypeError, match=r"CrossEntropy: ignore_index must be an int"):
        losses.CrossEntropy(ignore_index=2.0)
    with pytest.raises(ValueError, match=r"CrossEntropy: ignore_index must fit in "
                       r"int64"):
        losses.CrossEntropy(ignore_index=2**63)


def test_saved_model_keeps_ignore_index(tmp_path):
    model = segmenter(np.float32)
    model.compile(SGD(0.1), losses.CrossEntropy(ignore_index=IGNORE), ["accuracy"])
    model.save(tmp_path / "m.fcnn")
    again = fastcnn.load_model(tmp_path / "m.fcnn")
    assert again.loss.ignore_index == IGNORE
    assert again.metrics[0].ignore_index == IGNORE


@pytest.mark.parametrize("kind", ["pixels", "probabilities"])
def test_batch_weights_combine_two_halves_into_the_whole_batch(kind):
    # What data-parallel training relies on: (J1 W1 + J2 W2) / (W1 + W2) is the J
    # of the whole batch, and likewise for the gradients.
    rng = np.random.default_rng(7)
    out = rng.standard_normal((6, 3, 2, 2))
    if kind == "pixels":
        y = rng.integers(0, 3, (6, 2, 2))
        y[rng.random(y.shape) < 0.3] = -100
    else:
        y = rng.random(out.shape)
    s = rng.random(6)
    cw = np.array([1.0, 2.0, 0.5])
    loss = losses.CrossEntropy(label_smoothing=0.1)
    whole = loss.forward(out, y, cw, s)
    whole_grad = loss.backward(out, y, cw, s)
    parts, grads, total = 0.0, [], 0.0
    for rows in (slice(0, 2), slice(2, 6)):
        weight = loss.batch_weight(out[rows], y[rows], cw, s[rows])
        parts += loss.forward(out[rows], y[rows], cw, s[rows]) * weight
        grads.append(loss.backward(out[rows], y[rows], cw, s[rows]) * weight)
        total += weight
    assert parts / total == pytest.approx(whole, rel=1e-12)
    np.testing.assert_allclose(np.concatenate(grads) / total, whole_grad, rtol=1e-12,
                               atol=1e-16)
    if kind == "pixels":
        assert loss.batch_weight(out, y, cw) == pytest.approx(
            cw[y[y != -100]].sum())
