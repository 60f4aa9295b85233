"""``cross_entropy_with_grad`` gives bitwise what ``cross_entropy`` and
``cross_entropy_backward`` give, and the loss objects' ``forward_backward`` what
their ``forward`` and ``backward`` give."""

import numpy as np
import pytest

from fastcnn import functional as F
from fastcnn import losses
from fastcnn.kernels.cpu import loss as cpu_loss

CASES = {
    "plain": {},
    "smoothing": {"label_smoothing": 0.1},
    "sum": {"reduction": "sum"},
    "ignored": {"ignore_index": 1},
}


def logits_and_labels(dtype, n=6, classes=4):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((n, classes)).astype(dtype) * 4
    z[0, 0] = 1e4  # large logits stay finite through the log-sum-exp
    return z, rng.integers(0, classes, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_with_grad_equals_the_two_calls(dtype, name):
    z, labels = logits_and_labels(dtype)
    kwargs = CASES[name]
    loss, grad = F.cross_entropy_with_grad(z, labels, **kwargs)
    assert float(loss) == F.cross_entropy(z, labels, **kwargs)
    np.testing.assert_array_equal(grad, F.cross_entropy_backward(z, labels, **kwargs))


def test_reduction_none_returns_the_losses():
    z, labels = logits_and_labels(np.float64)
    loss, grad = F.cross_entropy_with_grad(z, labels, reduction="none")
    np.testing.assert_array_equal(loss, F.cross_entropy(z, labels, reduction="none"))
    np.testing.assert_array_equal(
        grad, F.cross_entropy_backward(z, labels, reduction="none"))


def test_non_finite_logits_give_the_same_non_finite_loss():
    z, labels = logits_and_labels(np.float32)
    z[2, 1] = np.nan
    loss, grad = F.cross_entropy_with_grad(z, labels)
    assert np.isnan(float(loss)) and np.isnan(F.cross_entropy(z, labels))
    np.testing.assert_array_equal(grad, F.cross_entropy_backward(z, labels))


def test_bad_labels_are_refused_as_cross_entropy_refuses_them():
    z, _ = logits_and_labels(np.float64)
    with pytest.raises(ValueError, match="labels"):
        F.cross_entropy_with_grad(z, np.full(6, 9))


def test_fused_kernel_is_the_two_kernels_and_the_sum_in_order():
    z, labels = logits_and_labels(np.float64)
    losses, total, grad = np.empty(6), np.empty(1), np.empty((6, 4))
    cpu_loss.cross_entropy_plain_forward_backward(z, labels, 0.5, losses, total, grad)
    ref = np.empty(6)
    cpu_loss.cross_entropy_plain_forward(z, labels, ref)
    np.testing.assert_array_equal(losses, ref)
    acc = 0.0
    for value in ref:
        acc += value
    assert total[0] == acc
    ref_grad = np.empty((6, 4))
    cpu_loss.cross_entropy_plain_backward(z, labels, 0.5, ref_grad)
    np.testing.assert_array_equal(grad, ref_grad)


@pytest.mark.parametrize("loss", [losses.CrossEntropy(), losses.CrossEntropy(0.2),
                                  losses.MSE()], ids=repr)
def test_loss_objects_forward_backward(loss):
    z, labels = logits_and_labels(np.float64)
    target = labels if isinstance(loss, losses.CrossEntropy) else z[::-1].copy()
    value, grad = loss.forward_backward(z, target)
    assert float(value) == loss.forward(z, target)
    np.testing.assert_array_equal(grad, loss.backward(z, target))
    weights = np.linspace(0.5, 2, 6)
    if loss.supports_sample_weight:
        value, grad = loss.forward_backward(z, target, None, weights)
        assert float(value) == loss.forward(z, target, None, weights)
        np.testing.assert_array_equal(grad, loss.backward(z, target, None, weights))
