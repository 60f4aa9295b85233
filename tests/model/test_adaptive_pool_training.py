"""A Sequential with AdaptiveAvgPool2D (uneven bins, and the 1x1 global form) takes
the same training steps as the same torch.nn.Sequential: same initial weights
(through the state dict), same batches, same losses and weights after each step
(the method of tests/model/test_training_torch.py)."""

import numpy as np
import pytest

import fastcnn
from fastcnn import optimizers
from fastcnn.layers import AdaptiveAvgPool2D, Conv2D, Dense, Flatten, ReLU
from fastcnn.model import Sequential

torch = pytest.importorskip("torch")
nn = torch.nn

pytestmark = pytest.mark.torch

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
TOL = {np.float32: 1e-4, np.float64: 1e-9}
SHAPE = (2, 9, 7)


def _models(dtype, output_size):
    fastcnn.seed(3)
    ours = Sequential([Conv2D(4, 3, padding=1), ReLU(), AdaptiveAvgPool2D(output_size),
                       Conv2D(5, 1), ReLU(), Flatten(), Dense(3)],
                      input_shape=SHAPE, dtype=dtype)
    oh, ow = ours.layers[2].output_shape[1:]
    theirs = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(output_size), nn.Conv2d(4, 5, 1),
                           nn.ReLU(), nn.Flatten(), nn.Linear(5 * oh * ow, 3))
    theirs = theirs.to(TORCH_DTYPE[dtype])
    result = theirs.load_state_dict(
        {k: torch.from_numpy(v) for k, v in ours.state_dict().items()}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return ours, theirs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output_size", [(4, 3), 1, (None, 2)])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_steps_match_torch(dtype, output_size, optimizer):
    ours, theirs = _models(dtype, output_size)
    if optimizer == "sgd":
        ours.compile(optimizers.SGD(0.05, momentum=0.9), "cross_entropy")
        topt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
    else:
        ours.compile(optimizers.Adam(1e-2), "cross_entropy")
        topt = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    rng = np.random.default_rng(42)
    before = ours.state_dict()
    theirs.train()
    for _ in range(5):
        x = rng.standard_normal((6, *SHAPE)).astype(dtype)
        y = rng.integers(0, 3, 6)
        loss = ours.train_step(x, y)
        topt.zero_grad()
        tloss = nn.functional.cross_entropy(theirs(torch.from_numpy(x)),
                                            torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert abs(loss - tloss.item()) < TOL[dtype]
        expected = {k: v.detach().numpy() for k, v in theirs.state_dict().items()}
        ours_now = ours.state_dict()
        err = max(float(np.max(np.abs(ours_now[k] - expected[k]))) for k in ours_now)
        assert err < TOL[dtype], err
    # Not a vacuous pass: every weight moved.
    after = ours.state_dict()
    assert all(np.max(np.abs(after[k] - before[k])) > 1e-6 for k in before)
