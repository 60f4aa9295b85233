"""Host work per training step on the GPU, counted under the simulator: kernel
launches, copies between host and device, and device allocations.

The network is the one the GPU issue names, Conv2D(8, 3, p1)-ReLU-MaxPool2-
Conv2D(8, 3, p1)-ReLU-Flatten-Dense(10), at batch 4. Once warm, a step must take
at most 13 launches (the first ReLU's backward runs in the pool's), copy x and y
in once each, copy one number out (the loss, read at the end of the step) and
allocate nothing: the memory pool
(``fastcnn/kernels/cuda/_pool.py``) hands back the last step's buffers, the
parameters live in flat arrays that one optimizer launch updates
(``fastcnn/training/flat_params.py``), and the loss and its gradient are one launch.

The counts are taken at numba's own entry points (every launch through the
launchers, ``cuda.to_device`` / ``cuda.device_array``, and the device arrays' copy
methods), so a path that bypassed fastcnn's helpers would still be counted.
"""

import collections

import numpy as np
import pytest
from numba import config as numba_config
from numba import cuda

import fastcnn
from fastcnn import backend
from fastcnn import layers as L
from fastcnn.kernels.cuda import _launch
from fastcnn.optimizers import SGD, Adam

from .small_blocks import patch_small_blocks

pytestmark = pytest.mark.skipif(
    not (backend.cuda_available() and numba_config.ENABLE_CUDASIM),
    reason="counts are taken on the CUDA simulator",
)

SUBJECTS = ("conv", "pool", "dense", "activation", "loss", "optim", "_layout")


@pytest.fixture
def small_blocks(monkeypatch):
    patch_small_blocks(monkeypatch, SUBJECTS)


@pytest.fixture
def counts(monkeypatch):
    seen = collections.Counter()
    device_array_type = type(cuda.device_array(1))
    launch = _launch.launch

    def counting_launch(kernel, *args, **kwargs):
        seen["launches"] += 1
        return launch(kernel, *args, **kwargs)

    def wrap(owner, name, key, *, host_side=None):
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            if host_side is None or host_side(*args, **kwargs):
                seen[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    def from_host(self, source, *args, **kwargs):
        return not (getattr(source, "__cuda_ndarray__", False)
                    or hasattr(source, "__cuda_array_interface__"))

    def from_device(self, source, *args, **kwargs):
        return not from_host(self, source)

    monkeypatch.setattr(_launch, "launch", counting_launch)
    wrap(cuda, "to_device", "copies in")
    wrap(cuda, "device_array", "allocations")
    wrap(device_array_type, "copy_to_host", "copies out")
    wrap(device_array_type, "copy_to_device", "copies in", host_side=from_host)
    wrap(device_array_type, "copy_to_device", "device copies", host_side=from_device)
    return seen


def issue_net():
    model = fastcnn.Sequential(
        [L.Conv2D(8, 3, padding=1), L.ReLU(), L.MaxPool2D(2),
         L.Conv2D(8, 3, padding=1), L.ReLU(), L.Flatten(), L.Dense(10)],
        dtype="float32", device="cuda",
    )
    model.build((1, 4, 4), rng=np.random.default_rng(0))
    return model


@pytest.mark.parametrize("optimizer", [SGD(0.1, momentum=0.9), Adam(0.01)],
                         ids=["sgd_momentum", "adam"])
def test_a_warm_step_launches_13_kernels_copies_3_times_and_allocates_nothing(
        small_blocks, counts, optimizer):
    model = issue_net()
    model.compile(optimizer, "cross_entropy")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 1, 4, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    for _ in range(2):  # warm: the pool fills, the parameters are packed
        model.train_step(x, y)
    counts.clear()
    loss = model.train_step(x, y)
    assert type(loss) is float and np.isfinite(loss)
    assert counts["launches"] <= 13, dict(counts)
    assert counts["copies in"] == 2, dict(counts)  # x and y
    assert counts["copies out"] == 1, dict(counts)  # the loss
    assert counts["allocations"] == 0, dict(counts)
    assert counts["device copies"] == 0, dict(counts)


def test_metrics_add_one_copy_of_the_output(small_blocks, counts):
    model = issue_net()
    model.compile(SGD(0.1), "cross_entropy", metrics=["accuracy"])
    x = np.random.default_rng(1).standard_normal((4, 1, 4, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, shuffle=False)
    counts.clear()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    assert counts["copies out"] == 2, dict(counts)  # the loss and the output
    assert counts["allocations"] == 0, dict(counts)
