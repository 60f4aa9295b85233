"""The issue's ResNet run: the zoo's CIFAR-style ResNet trained with ``fit`` on
Fashion-MNIST, padded to 32x32 as CIFAR images are sized.

The data are the original gzipped IDX files in ``$FASTCNN_FASHION_DIR`` or
``../shared/data/fashion-mnist`` next to the repository; the test skips when they
are absent. It trains a narrow ResNet-8 on a 24,000-image subset for two epochs
(a few minutes on two cores) and must pass 80% on the 10,000 test images. Measured
2026-12-06: fastcnn 81.5%; PyTorch 2.13, the same network, initial weights, data
and optimiser, another shuffle: 82.7%.
"""

import os
import time
from pathlib import Path

import numpy as np
import pytest

import fastcnn
from fastcnn import datasets, models, optimizers


def fashion_dir() -> Path | None:
    candidates = [os.environ.get("FASTCNN_FASHION_DIR"),
                  Path(__file__).resolve().parents[2] / ".." / "shared" / "data" /
                  "fashion-mnist"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "t10k-labels-idx1-ubyte.gz").is_file():
            return Path(candidate)
    return None


def padded(x: np.ndarray) -> np.ndarray:
    """28x28 images zero-padded to 32x32 (two pixels on every side)."""
    return np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))


@pytest.mark.slow
def test_a_resnet_learns_fashion_mnist():
    root = fashion_dir()
    if root is None:
        pytest.skip("Fashion-MNIST not found: set FASTCNN_FASHION_DIR")
    (x, y), (x_test, y_test) = datasets.load_fashion_mnist(root, download=False,
                                                           verbose=False)
    mean, std = float(x.mean()), float(x.std())
    x = datasets.normalize(x, mean, std)
    x_test = datasets.normalize(x_test, mean, std)
    x, x_test = padded(x[:24000]), padded(x_test)
    fastcnn.seed(0)
    model = models.resnet(8, input_shape=(1, 32, 32), width=8)
    model.compile(optimizers.Adam(2e-3), "cross_entropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x, y[:24000], epochs=2, batch_size=64, verbose=0, seed=0)
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(x_test, y_test, batch_size=500)["accuracy"]
    print(f"ResNet-8 (width 8) on Fashion-MNIST: {accuracy:.4f} test accuracy, "
          f"fit {seconds:.1f} s")
    assert accuracy >= 0.80
