"""Round trips with PyTorch on real MNIST: train in one library, move the weights
through a file, and get the same logits from the other (max abs diff <= 1e-5 on
1,000 test images).

- fastcnn -> torch: LeNet-5 trained in fastcnn, written as .safetensors and .npz,
  loaded into an equivalent torch.nn.Sequential with a strict load_state_dict;
- torch -> fastcnn: LeNet-5 trained in torch, torch.save(state_dict) to .pth, read
  by fastcnn.io in a process where torch cannot be imported;
- a BatchNorm model (running statistics, num_batches_tracked, Dense after Flatten)
  both ways.

Skipped without torch or without the MNIST files ($FASTCNN_DATA/mnist, or
../shared/data/mnist next to the repository). Run with -s to see the differences.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastcnn
from fastcnn import datasets, models, optimizers
from fastcnn.io import load_weights, save_weights
from fastcnn.layers import (
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    ReLU,
)

from ..data_paths import DATA

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
nn = torch.nn

pytestmark = pytest.mark.torch

TOL = 1e-5
N_COMPARE = 1000
BATCH = 32
STEPS = [50, pytest.param(300, marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def mnist():
    try:
        return datasets.load_mnist(path=DATA / "mnist", download=False, verbose=False)
    except FileNotFoundError:
        pytest.skip(f"MNIST not found in {DATA / 'mnist'}: set FASTCNN_DATA to the "
                    f"folder holding mnist/.")


def _batches(x, y, steps, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(x), BATCH)
        yield x[idx], y[idx]


def torch_lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


def _torch_logits(tmodel, x) -> np.ndarray:
    tmodel.eval()
    with torch.no_grad():
        return tmodel(torch.from_numpy(x)).numpy()


def _train_torch(tmodel, x, y, steps, seed):
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
    tmodel.train()
    for xb, yb in _batches(x, y, steps, seed):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(tmodel(torch.from_numpy(xb)),
                                           torch.from_numpy(yb).long())
        loss.backward()
        optimizer.step()


def _train_fastcnn(model, x, y, steps, seed):
    model.compile(optimizer=optimizers.Adam(lr=1e-3), loss="cross_entropy")
    for xb, yb in _batches(x, y, steps, seed):
        model.train_step(xb, yb)


def _report(what: str, diff: float, accuracy: float) -> None:
    print(f"\n{what}: max |logit diff| = {diff:.3g} over {N_COMPARE} MNIST test "
          f"images (fastcnn accuracy {accuracy:.3f})")


@pytest.mark.parametrize("steps", STEPS)
def test_lenet5_trained_in_fastcnn_loads_into_torch(tmp_path, mnist, steps):
    (x_train, y_train), (x_test, y_test) = mnist
    x, labels = x_test[:N_COMPARE], y_test[:N_COMPARE]
    fastcnn.seed(0)
    model = models.lenet5()
    initial = model.state_dict()
    _train_fastcnn(model, x_train, y_train, steps, seed=0)
    assert not np.array_equal(model.state_dict()["0.weight"], initial["0.weight"])
    ours = model.predict(x, batch_size=250)
    accuracy = float((ours.argmax(1) == labels).mean())
    assert accuracy > 0.5  # it did learn

    save_weights(tmp_path / "lenet.safetensors", model)
    save_weights(tmp_path / "lenet.npz", model)
    with np.load(tmp_path / "lenet.npz") as npz:
        from_npz = {k: torch.from_numpy(v) for k, v in npz.items()}
    sources = {
        "safetensors": safetensors_torch.load_file(tmp_path / "lenet.safetensors"),
        "npz": from_npz,
        "state_dict": {k: torch.from_numpy(v) for k, v in model.state_dict().items()},
    }
    for name, state in sources.items():
        tmodel = torch_lenet5()
        result = tmodel.load_state_dict(state, strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        for key, value in model.state_dict().items():  # bitwise the same weights
            np.testing.assert_array_equal(tmodel.state_dict()[key].numpy(), value)
        diff = float(np.abs(_torch_logits(tmodel, x) - ours).max())
        _report(f"fastcnn -> torch via {name}, {steps} steps", diff, accuracy)
        assert diff <= TOL


_LOAD_WITHOUT_TORCH = """
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")

sys.meta_path.insert(0, BlockTorch())
import numpy as np
from fastcnn import models
from fastcnn.io import load_weights

model = models.lenet5()
model.load_state_dict(load_weights(sys.argv[1]), strict=True)
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), batch_size=250))
assert "torch" not in sys.modules
"""


@pytest.mark.parametrize("steps", STEPS)
def test_lenet5_trained_in_torch_loads_into_fastcnn_without_torch(tmp_path, mnist,
                                                                    steps):
    (x_train, y_train), (x_test, y_test) = mnist
    x, labels = x_test[:N_COMPARE], y_test[:N_COMPARE]
    torch.manual_seed(0)
    tmodel = torch_lenet5()
    _train_torch(tmodel, x_train, y_train, steps, seed=0)
    theirs = _torch_logits(tmodel, x)
    torch.save(tmodel.state_dict(), tmp_path / "lenet.pth")
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_LOAD_WITHOUT_TORCH),
         str(tmp_path / "lenet.pth"), str(tmp_path / "x.npy"),
         str(tmp_path / "ours.npy")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    ours = np.load(tmp_path / "ours.npy")
    accuracy = float((ours.argmax(1) == labels).mean())
    assert accuracy > 0.5
    diff = float(np.abs(ours - theirs).max())
    _report(f"torch -> fastcnn via .pth (torch blocked), {steps} steps", diff,
            accuracy)
    assert diff <= TOL


def _bn_model():
    return fastcnn.Sequential([
        Conv2D(4, 3, padding=1, bias=False), BatchNorm2D(), ReLU(), MaxPool2D(2),
        Conv2D(8, 3), ReLU(), MaxPool2D(2),
        Flatten(), Dense(32), BatchNorm1D(), ReLU(), Dense(10),
    ], input_shape=(1, 28, 28))


def _torch_bn_model():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(4, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.BatchNorm1d(32), nn.ReLU(),
        nn.Linear(32, 10))


def test_batchnorm_model_round_trip_both_ways(tmp_path, mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    x, labels = x_test[:N_COMPARE], y_test[:N_COMPARE]
    fastcnn.seed(1)
    model = _bn_model()
    _train_fastcnn(model, x_train, y_train, 30, seed=1)
    state = model.state_dict()
    assert not np.allclose(state["1.running_mean"], 0)  # the statistics moved
    ours = model.predict(x, batch_size=250)

    # fastcnn -> torch: a strict load, num_batches_tracked included.
    save_weights(tmp_path / "bn.safetensors", model)
    tmodel = _torch_bn_model()
    tmodel.load_state_dict(safetensors_torch.load_file(tmp_path / "bn.safetensors"))
    diff = float(np.abs(_torch_logits(tmodel, x) - ours).max())
    _report("BatchNorm model fastcnn -> torch via safetensors", diff,
            float((ours.argmax(1) == labels).mean()))
    assert diff <= TOL

    # torch -> fastcnn: train on in torch (new statistics, counters), .pth back.
    _train_torch(tmodel, x_train, y_train, 30, seed=2)
    assert int(tmodel.state_dict()["1.num_batches_tracked"]) == 30
    torch.save(tmodel.state_dict(), tmp_path / "bn.pth")
    loaded = load_weights(tmp_path / "bn.pth")
    assert int(loaded["9.num_batches_tracked"]) == 30
    back = _bn_model()
    result = back.load_state_dict(loaded, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key in ("1.running_mean", "1.running_var", "9.running_mean", "9.running_var"):
        np.testing.assert_array_equal(back.state_dict()[key],
                                      tmodel.state_dict()[key].numpy())
    ours = back.predict(x, batch_size=250)
    diff = float(np.abs(_torch_logits(tmodel, x) - ours).max())
    _report("BatchNorm model torch -> fastcnn via .pth", diff,
            float((ours.argmax(1) == labels).mean()))
    assert diff <= TOL
