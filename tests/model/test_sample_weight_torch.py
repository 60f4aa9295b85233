"""Weighted losses against PyTorch: per-sample weights (and class weights) give
``sum_i s_i w[y_i] L_i / sum_i s_i w[y_i]``, computed in torch with
``reduction="none"`` and then weighted; and a few fit steps on weighted batches
match torch's SGD."""

import numpy as np
import pytest

import fastcnn
from fastcnn import Sequential, losses
from fastcnn.layers import Dense

torch = pytest.importorskip("torch")
tF = torch.nn.functional

pytestmark = pytest.mark.torch


def _weighted(per_sample, s, denominator):
    return (torch.as_tensor(s) * per_sample).sum() / denominator


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("with_class_weight", [False, True])
def test_cross_entropy_with_sample_weights_matches_torch(smoothing,
                                                         with_class_weight):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((9, 4))
    labels = rng.integers(0, 4, 9)
    s = rng.random(9)
    cw = rng.random(4) + 0.2 if with_class_weight else None
    z = torch.tensor(logits, requires_grad=True)
    per = tF.cross_entropy(z, torch.tensor(labels),
                           weight=None if cw is None else torch.tensor(cw),
                           reduction="none", label_smoothing=smoothing)
    picked = np.ones(9) if cw is None else cw[labels]
    expected = _weighted(per, s, float(np.sum(s * picked)))
    expected.backward()
    loss = losses.CrossEntropy(smoothing)
    assert loss.forward(logits, labels, cw, s) == pytest.approx(expected.item(),
                                                                rel=1e-12)
    np.testing.assert_allclose(loss.backward(logits, labels, cw, s), z.grad.numpy(),
                               rtol=1e-10, atol=1e-14)


def test_mse_and_bce_with_sample_weights_match_torch():
    rng = np.random.default_rng(1)
    out, target = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    s = rng.random(7)
    o = torch.tensor(out, requires_grad=True)
    expected = _weighted(((o - torch.tensor(target)) ** 2).mean(1), s, s.sum())
    expected.backward()
    mse = losses.MSE()
    assert mse.forward(out, target, None, s) == pytest.approx(expected.item(),
                                                              rel=1e-12)
    np.testing.assert_allclose(mse.backward(out, target, None, s), o.grad.numpy(),
                               rtol=1e-10)
    probs, pos_weight = rng.random((7, 3)), [1.0, 2.0, 0.5]
    o = torch.tensor(out, requires_grad=True)
    per = tF.binary_cross_entropy_with_logits(
        o, torch.tensor(probs), reduction="none",
        pos_weight=torch.tensor(pos_weight)).mean(1)
    expected = _weighted(per, s, s.sum())
    expected.backward()
    bce = losses.BCEWithLogits(pos_weight)
    assert bce.forward(out, probs, None, s) == pytest.approx(expected.item(),
                                                             rel=1e-12)
    np.testing.assert_allclose(bce.backward(out, probs, None, s), o.grad.numpy(),
                               rtol=1e-10)


def test_weighted_fit_steps_match_torch_sgd():
    """Three SGD steps on a stream of (x, y, sample_weight) batches with class
    weights, against torch's per-sample losses weighted the same way."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 5))
    y = rng.integers(0, 3, 12)
    s = rng.random(12) * 2
    cw = np.array([1.0, 0.5, 2.0])
    fastcnn.seed(0)
    model = Sequential([Dense(3)], input_shape=(5,), dtype=np.float64)
    model.compile(fastcnn.optimizers.SGD(lr=0.1), "cross_entropy")
    tmodel = torch.nn.Linear(5, 3).double()
    with torch.no_grad():
        tmodel.weight.copy_(torch.from_numpy(model.state_dict()["0.weight"]))
        tmodel.bias.copy_(torch.from_numpy(model.state_dict()["0.bias"]))
    batches = [(x[i : i + 4], y[i : i + 4], s[i : i + 4]) for i in range(0, 12, 4)]
    history = model.fit(batches, epochs=1, class_weight=cw, verbose=0)
    opt = torch.optim.SGD(tmodel.parameters(), lr=0.1)
    torch_losses = []
    for xb, yb, sb in batches:
        opt.zero_grad()
        per = tF.cross_entropy(tmodel(torch.from_numpy(xb)), torch.from_numpy(yb),
                               weight=torch.from_numpy(cw), reduction="none")
        loss = _weighted(per, sb, float(np.sum(sb * cw[yb])))
        loss.backward()
        opt.step()
        torch_losses.append(loss.item())
    np.testing.assert_allclose(history.iterations, torch_losses, rtol=1e-10)
    np.testing.assert_allclose(model.state_dict()["0.weight"],
                               tmodel.weight.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(model.state_dict()["0.bias"],
                               tmodel.bias.detach().numpy(), rtol=1e-10)
