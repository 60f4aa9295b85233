"""The one helper every op test uses: forward and every gradient against references.

``check_op`` (after tinygrad's ``helper_test_op``) takes float64 inputs, the op's
forward and backward, and checks

1. every gradient the backward returns against central finite differences of
   ``sum(forward(...) * dy)`` for a random ``dy``;
2. optionally forward and gradients against a reference (naive NumPy or PyTorch).
"""

from __future__ import annotations

import numpy as np


def numeric_gradient(scalar_fn, array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of ``scalar_fn()`` with respect to ``array`` (in place)."""
    grad = np.zeros_like(array)
    flat = array.reshape(-1)
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = scalar_fn()
        flat[i] = old - eps
        down = scalar_fn()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def assert_close(actual, expected, rtol, atol, what=""):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{what}: shape {actual.shape} != {expected.shape}"
    )
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def max_rel_error(actual, expected) -> float:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    return float(np.max(np.abs(actual - expected))) / scale if actual.size else 0.0


def check_finite_differences(forward, backward, inputs: dict, grad_names,
                             rng, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Check ``backward(dy, **inputs)`` (a tuple in ``grad_names`` order, or one
    array) against finite differences of ``sum(forward(**inputs) * dy)``.

    Every input must be float64. Names in ``grad_names`` that are None are skipped
    (gradients the op returns but that have no input, e.g. dbias with no bias).
    """
    y = forward(**inputs)
    dy = rng.standard_normal(np.shape(y))
    grads = backward(dy, **inputs)
    if not isinstance(grads, tuple):
        grads = (grads,)
    assert len(grads) == len(grad_names)
    for name, grad in zip(grad_names, grads, strict=True):
        if name is None:
            continue
        target = inputs[name]

        def scalar():
            return float(np.sum(forward(**inputs) * dy))

        expected = numeric_gradient(scalar, target, eps)
        assert_close(grad, expected, rtol, atol, what=f"d{name}")
