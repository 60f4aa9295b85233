"""cross_entropy with per-position logits, probability targets and ignore_index, and
linear on N-D inputs, through the op layer with CUDA device arrays: results stay on
the device and match the CPU and tests/naive.py. Kernel-level CPU/CUDA comparisons
are in test_cuda_kernels.py (cases in cuda_cases.py). Tiny shapes: the simulator
runs a few thousand threads a second."""

import numpy as np
import pytest
from numba import cuda

import fastcnn.functional as F
from fastcnn import backend
from fastcnn.kernels.cuda import dense as cuda_dense
from fastcnn.kernels.cuda import loss as cuda_loss

from .. import naive

pytestmark = pytest.mark.skipif(
    not backend.cuda_available(), reason="no CUDA GPU, and the simulator is off"
)

REDUCTIONS = ("mean", "sum", "none")


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """A few threads per block: several blocks even on these shapes."""
    monkeypatch.setattr(cuda_loss, "THREADS_PER_BLOCK", 4)
    monkeypatch.setattr(cuda_dense, "THREADS_PER_BLOCK", 4)


def _host(value):
    return value.copy_to_host() if backend.is_device_array(value) else value


def _targets(rng, dtype):
    """(logits (2, 3, 2, 2), class indices with ignored positions, probabilities)."""
    logits = (2 * rng.standard_normal((2, 3, 2, 2))).astype(dtype)
    labels = rng.integers(0, 3, (2, 2, 2)).astype(np.uint8)
    labels[0, 1, 0] = labels[1, 0, 1] = 255
    target = rng.random(logits.shape).astype(dtype)
    return logits, labels, target


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["indices", "probabilities"])
def test_cross_entropy_on_device_arrays_matches_cpu_and_naive(kind, reduction, dtype):
    rng = np.random.default_rng(4)
    logits, labels, target = _targets(rng, dtype)
    weight = rng.uniform(0.5, 2, 3).astype(dtype)
    y, ignore = (labels, 255) if kind == "indices" else (target, -100)
    kwargs = {"reduction": reduction, "label_smoothing": 0.2, "ignore_index": ignore}
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for y_on in (y, cuda.to_device(y)):
        loss = F.cross_entropy(cuda.to_device(logits), y_on, cuda.to_device(weight),
                               **kwargs)
        want = F.cross_entropy(logits, y, weight, **kwargs)
        if reduction == "none":
            assert backend.is_device_array(loss) and loss.shape == (2, 2, 2)
        np.testing.assert_allclose(_host(loss), want, tol, tol)
        np.testing.assert_allclose(
            want, naive.cross_entropy_targets(logits, y, weight, reduction, 0.2,
                                              ignore), tol, tol)
        grad = F.cross_entropy_backward(cuda.to_device(logits), y_on, weight,
                                        **kwargs)
        assert backend.is_device_array(grad) and grad.shape == logits.shape
        want = F.cross_entropy_backward(logits, y, weight, **kwargs)
        np.testing.assert_allclose(_host(grad), want, tol, tol)
        if kind == "indices":
            assert not _host(grad)[0, :, 1, 0].any()


def test_every_position_ignored_on_the_device():
    logits = np.random.default_rng(1).standard_normal((1, 3, 2))
    labels = np.full((1, 2), -100)
    assert np.isnan(F.cross_entropy(cuda.to_device(logits), labels))
    grad = F.cross_entropy_backward(cuda.to_device(logits), labels)
    np.testing.assert_array_equal(_host(grad), np.zeros((1, 3, 2)))


def test_unbatched_logits_on_the_device():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal(4)
    label = np.array(2)
    loss = F.cross_entropy(cuda.to_device(logits), label, reduction="none")
    assert loss.shape == ()
    np.testing.assert_allclose(_host(loss), F.cross_entropy(logits, label,
                                                            reduction="none"))
    np.testing.assert_allclose(
        _host(F.cross_entropy_backward(cuda.to_device(logits), label)),
        F.cross_entropy_backward(logits, label), 1e-13, 1e-13)


@pytest.mark.parametrize("leading", [(), (2, 3)])
def test_linear_on_nd_device_arrays(leading):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((*leading, 4))
    w = rng.standard_normal((3, 4))
    b = rng.standard_normal(3)
    y = F.linear(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b))
    assert backend.is_device_array(y) and y.shape == (*leading, 3)
    np.testing.assert_allclose(_host(y), F.linear(x, w, b), 1e-12, 1e-12)
    dy = rng.standard_normal((*leading, 3))
    got = F.linear_backward(cuda.to_device(dy), cuda.to_device(x), cuda.to_device(w))
    want = F.linear_backward(dy, x, w)
    for g, e in zip(got, want, strict=True):
        assert backend.is_device_array(g) and g.shape == e.shape
        np.testing.assert_allclose(_host(g), e, 1e-12, 1e-12)
