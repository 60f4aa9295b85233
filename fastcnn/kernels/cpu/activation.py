"""Activations and their gradients.

Shared conventions
------------------
- Elementwise kernels take flat (``ravel()``-ed, contiguous) arrays of ``S`` elements
  and run ``prange`` over them: every output element is written by one iteration.
- Softmax kernels take a 2-D ``(R, C)`` view whose rows are the vectors normalised
  (the caller moves the softmax axis last) and run ``prange`` over rows; each row's
  max and sum are taken serially in index order.
- Comparisons are written so that NaN falls through to the arithmetic branch and
  propagates, matching PyTorch (``relu(nan) = nan``).
- Scalar hyper-parameters arrive already cast to the arrays' dtype, so float32 stays
  float32.

Every kernel is bitwise the same for any thread count.
"""

import math

from numba import prange

from .._jit import cpu_helper, cpu_kernel


@cpu_kernel
def relu_forward(x, y):
    """``y = max(x, 0)`` (NaN propagates).

    Shape: x (S,), y (S,). Parallel over ``S``.
    """
    zero = y.dtype.type(0)
    for i in prange(x.size):
        v = x[i]
        y[i] = zero if v < zero else v


@cpu_kernel
def relu_backward(dy, x, dx):
    """``dx = dy where x > 0 else 0`` (PyTorch's threshold_backward at 0).

    Shape: dy (S,), x (S,), dx (S,). Parallel over ``S``.
    """
    zero = dx.dtype.type(0)
    for i in prange(x.size):
        dx[i] = zero if x[i] <= zero else dy[i]


@cpu_kernel
def leaky_relu_forward(x, slope, y):
    """``y = x if x > 0 else slope * x``.

    Shape: x (S,), y (S,); slope a scalar of x's dtype. Parallel over ``S``.
    """
    zero = y.dtype.type(0)
    for i in prange(x.size):
        v = x[i]
        y[i] = v if v > zero else v * slope


@cpu_kernel
def leaky_relu_backward(dy, x, slope, dx):
    """``dx = dy if x > 0 else slope * dy``.

    Shape: dy (S,), x (S,), dx (S,); slope a scalar of x's dtype. Parallel over
    ``S``.
    """
    zero = dx.dtype.type(0)
    for i in prange(x.size):
        g = dy[i]
        dx[i] = g if x[i] > zero else g * slope


@cpu_helper
def _sigmoid(v, one):
    # exp of a non-positive argument only: never overflows, and the negative tail
    # keeps its relative precision. ``one`` carries the dtype (float32 stays float32).
    if v >= 0:
        return one / (one + math.exp(-v))
    e = math.exp(v)
    return e / (one + e)


@cpu_kernel
def sigmoid_forward(x, y):
    """``y = 1 / (1 + exp(-x))``, evaluated without overflow.

    Shape: x (S,), y (S,). Parallel over ``S``.
    """
    one = y.dtype.type(1)
    for i in prange(x.size):
        y[i] = _sigmoid(x[i], one)


@cpu_kernel
def sigmoid_backward(dy, y, dx):
    """``dx = dy * (1 - y) * y`` from the forward output ``y``.

    Shape: dy (S,), y (S,), dx (S,). Parallel over ``S``.
    """
    one = dx.dtype.type(1)
    for i in prange(y.size):
        v = y[i]
        dx[i] = dy[i] * (one - v) * v


@cpu_kernel
def tanh_forward(x, y):
    """``y = tanh(x)``.

    Shape: x (S,), y (S,). Parallel over ``S``.
    """
    for i in prange(x.size):
        y[i] = math.tanh(x[i])


@cpu_kernel
def tanh_backward(dy, y, dx):
    """``dx = dy * (1 - y * y)`` from the forward output ``y``.

    Shape: dy (S,), y (S,), dx (S,). Parallel over ``S``.
    """
    one = dx.dtype.type(1)
    for i in prange(y.size):
        v = y[i]
        dx[i] = dy[i] * (one - v * v)


@cpu_helper
def _row_max(row):
    # Starts from the first element, not -inf, so a NaN there stays the max and a
    # later NaN turns exp(x - m) into NaN: either way the row comes out NaN.
    m = row[0]
    for j in range(1, row.size):
        if row[j] > m:
            m = row[j]
    return m


@cpu_kernel
def softmax_forward(x, y):
    """``y[r] = exp(x[r] - max) / sum(exp(x[r] - max))`` along each row.

    Shape: x (R, C), y (R, C). Parallel over ``R``.
    """
    n_rows, n_cols = x.shape
    for r in prange(n_rows):
        src = x[r]
        dst = y[r]
        m = _row_max(src)
        total = y.dtype.type(0)
        for j in range(n_cols):
            e = math.exp(src[j] - m)
            dst[j] = e
            total += e
        for j in range(n_cols):
            dst[j] = dst[j] / total


@cpu_kernel
def softmax_backward(dy, y, dx):
    """``dx[r] = y[r] * (dy[r] - sum(dy[r] * y[r]))`` from the forward output ``y``.

    Shape: dy (R, C), y (R, C), dx (R, C). Parallel over ``R``.
    """
    n_rows, n_cols = y.shape
    for r in prange(n_rows):
        g = dy[r]
        out = y[r]
        dot = dx.dtype.type(0)
        for j in range(n_cols):
            dot += g[j] * out[j]
        dst = dx[r]
        for j in range(n_cols):
            dst[j] = out[j] * (g[j] - dot)


@cpu_kernel
def log_softmax_forward(x, y):
    """``y[r] = (x[r] - max) - log(sum(exp(x[r] - max)))`` along each row.

    Shape: x (R, C), y (R, C). Parallel over ``R``.
    """
    n_rows, n_cols = x.shape
    for r in prange(n_rows):
        src = x[r]
        dst = y[r]
        m = _row_max(src)
        total = y.dtype.type(0)
        for j in range(n_cols):
            shifted = src[j] - m
            dst[j] = shifted
            total += math.exp(shifted)
        log_total = math.log(total)
        for j in range(n_cols):
            dst[j] = dst[j] - log_total


@cpu_kernel
def log_softmax_backward(dy, y, dx):
    """``dx[r] = dy[r] - exp(y[r]) * sum(dy[r])`` from the forward output ``y``.

    Shape: dy (R, C), y (R, C), dx (R, C). Parallel over ``R``.
    """
    n_rows, n_cols = y.shape
    for r in prange(n_rows):
        g = dy[r]
        out = y[r]
        total = dx.dtype.type(0)
        for j in range(n_cols):
            total += g[j]
        dst = dx[r]
        for j in range(n_cols):
            dst[j] = g[j] - math.exp(out[j]) * total
