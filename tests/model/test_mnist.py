"""The issue's acceptance run: LeNet-5 trained with ``fit`` on MNIST reaches >= 98.5%
test accuracy within 3 epochs.

The data are the original gzipped IDX files, found in ``$FASTCNN_DATA/mnist`` or
``../shared/data/mnist`` next to the repository; the test skips when they are absent.
"""

import gzip
import time
from pathlib import Path

import numpy as np
import pytest

import fastcnn
from fastcnn.callbacks import LearningRateScheduler
from fastcnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from fastcnn.model import Sequential
from fastcnn.optimizers import Adam
from fastcnn.schedules import OneCycle

from ..data_paths import DATA

FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def mnist_dir() -> Path | None:
    folder = DATA / "mnist"
    return folder if all((folder / f).is_file() for f in FILES.values()) else None


def read_idx(path: Path) -> np.ndarray:
    """A minimal IDX reader: magic (0, 0, dtype code, ndim), big-endian int32 dims,
    then the data (MNIST uses code 0x08, unsigned bytes)."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(tuple(int(d) for d in dims))


def lenet5() -> Sequential:
    return Sequential([
        Conv2D(6, 5, padding=2), ReLU(), MaxPool2D(2),
        Conv2D(16, 5), ReLU(), MaxPool2D(2),
        Flatten(), Dense(120), ReLU(), Dense(84), ReLU(), Dense(10),
    ], input_shape=(1, 28, 28))


@pytest.mark.slow
def test_lenet5_reaches_98_5_percent_in_3_epochs():
    root = mnist_dir()
    if root is None:
        pytest.skip("MNIST not found: set FASTCNN_DATA to the folder holding mnist/ "
                    "with the gzipped IDX files")
    data = {key: read_idx(root / name) for key, name in FILES.items()}
    assert data["x_train"].shape == (60000, 28, 28)

    def prepare(images):
        # Scale to [0, 1] and standardise with MNIST's usual mean and std.
        x = images.astype(np.float32)[:, None] / 255.0
        return (x - np.float32(0.1307)) / np.float32(0.3081)

    x_train, x_test = prepare(data["x_train"]), prepare(data["x_test"])
    fastcnn.seed(0)
    model = lenet5()
    model.compile(Adam(1e-3), "cross_entropy", ["accuracy"])
    # One-cycle policy per batch (torch's OneCycleLR): a constant Adam 1e-3 ends
    # near 98.2-98.6% after 3 epochs (both here and in PyTorch), too close to call.
    epochs, batch_size = 3, 64
    steps = epochs * -(-len(x_train) // batch_size)
    schedule = LearningRateScheduler(OneCycle(3e-3, total_steps=steps), per="batch")
    start = time.perf_counter()
    history = model.fit(x_train, data["y_train"], epochs=epochs,
                        batch_size=batch_size, seed=0, verbose=0,
                        callbacks=[schedule])
    train_time = time.perf_counter() - start
    result = model.evaluate(x_test, data["y_test"], batch_size=500)
    print(f"\nLeNet-5 on MNIST: test accuracy {result['accuracy']:.4f}, "
          f"train accuracy per epoch {history.history['accuracy']}, "
          f"fit time {train_time:.0f} s")
    assert result["accuracy"] >= 0.985
