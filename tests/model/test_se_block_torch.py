"""A graph Model with a squeeze-and-excitation block (GlobalAvgPool2D, Dense, ReLU,
Dense, Sigmoid, Reshape, Multiply), ZeroPadding2D and a layer scale (Scale) against
the same network written in PyTorch with the same weights: forward, every
gradient, and two SGD steps with momentum."""

import numpy as np
import pytest

import fastcnn
from fastcnn import layers as L
from fastcnn import optimizers

torch = pytest.importorskip("torch")
nn = torch.nn

pytestmark = pytest.mark.torch


def _model(dtype):
    fastcnn.seed(3)
    x = fastcnn.Input((3, 6, 6))
    h = L.ZeroPadding2D(((1, 0), (2, 1)), name="pad")(x)
    h = L.ReLU(name="relu")(L.Conv2D(6, 3, name="conv")(h))
    g = L.Dense(3, name="fc1")(L.GlobalAvgPool2D(name="squeeze")(h))
    g = L.Sigmoid(name="gate")(L.Dense(6, name="fc2")(L.ReLU(name="relu1")(g)))
    h = L.Multiply(name="excite")([h, L.Reshape((6, 1, 1), name="shape")(g)])
    h = L.Scale(0.5, name="gamma")(h)
    out = L.Dense(4, name="head")(L.Flatten(name="flat")(h))
    model = fastcnn.Model(x, out, dtype=dtype)
    # Distinct multipliers, so a gamma applied along the wrong axis shows.
    model.layers[[la.name for la in model.layers].index("gamma")].params[
        "weight"][...] = np.linspace(0.3, 1.7, 6)
    return model


class TorchSE(nn.Module):
    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((2, 1, 1, 0))  # (left, right, top, bottom)
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc1 = nn.Linear(6, 3)
        self.fc2 = nn.Linear(3, 6)
        self.gamma = nn.Parameter(torch.ones(6))
        self.head = nn.Linear(6 * 5 * 7, 4)

    def forward(self, x):
        h = torch.relu(self.conv(self.pad(x)))
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(h.mean(dim=(2, 3))))))
        h = h * s[:, :, None, None]
        h = self.gamma[:, None, None] * h
        return self.head(h.flatten(1))


def _torch_key(key):
    return "gamma" if key == "gamma.weight" else key


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_squeeze_excitation_padding_and_layer_scale_match_torch(dtype, rng):
    model = _model(dtype)
    model.compile(optimizers.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tmodel = TorchSE().to(tdtype)
    state = {_torch_key(k): torch.from_numpy(v.copy())
             for k, v in model.state_dict().items()}
    assert set(state) == set(tmodel.state_dict())
    tmodel.load_state_dict(state)
    x = rng.standard_normal((5, 3, 6, 6)).astype(dtype)
    y = rng.integers(0, 4, 5)
    tol = 1e-10 if dtype == np.float64 else 1e-4

    # Forward and every gradient, the input's included.
    out = model.forward(x, training=True)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tout = tmodel(tx)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=tol, atol=tol)
    dy = rng.standard_normal(out.shape).astype(dtype)
    dx = model.backward(dy)
    tout.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    grads = {key: grad for key, _, grad in model._named_grads()}
    assert set(grads) == set(model.state_dict())
    for key, grad in grads.items():
        expected = dict(tmodel.named_parameters())[_torch_key(key)].grad.numpy()
        np.testing.assert_allclose(grad, expected, rtol=tol, atol=tol, err_msg=key)

    # Two training steps.
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        loss = model.train_step(x, y)
        topt.zero_grad()
        tloss = nn.functional.cross_entropy(tmodel(torch.from_numpy(x)),
                                            torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert abs(loss - tloss.item()) <= tol * max(1.0, abs(loss))
    theirs = tmodel.state_dict()
    for key, value in model.state_dict().items():
        np.testing.assert_allclose(value, theirs[_torch_key(key)].numpy(),
                                   rtol=tol * 10, atol=tol * 10, err_msg=key)
