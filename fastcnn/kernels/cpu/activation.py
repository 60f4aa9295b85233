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

import numpy as np
from numba import prange

from .._jit import cpu_helper, cpu_kernel
from ._fast_math import _erfc_from_gauss, _exp_nonpositive


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


def _by_precision(fast, exact, *arrays):
    """Run ``fast`` (the :mod:`._fast_math` kernel) where the output, the last
    array, is float32, else ``exact`` (the C library's functions)."""
    (fast if arrays[-1].dtype == np.float32 else exact)(*arrays)


@cpu_helper
def _sigmoid_fast(v):
    """:func:`_sigmoid` of a float64 ``v`` through the vectorised exp of
    :mod:`._fast_math` (the float32 kernels' path): one exponential of
    ``-|v|``, then the branch's formula as a select."""
    e = _exp_nonpositive(-abs(v))
    return 1.0 / (1.0 + e) if v >= 0.0 else e / (1.0 + e)


def sigmoid_forward(x, y):
    """``y = 1 / (1 + exp(-x))``, evaluated without overflow (float32 through
    :mod:`._fast_math`, vectorised; float64 through the C library's exp).

    Shape: x (S,), y (S,). Parallel over ``S``.
    """
    _by_precision(_sigmoid_forward_fast, _sigmoid_forward_exact, x, y)


@cpu_kernel
def _sigmoid_forward_exact(x, y):
    one = y.dtype.type(1)
    for i in prange(x.size):
        y[i] = _sigmoid(x[i], one)


@cpu_kernel
def _sigmoid_forward_fast(x, y):
    for i in prange(x.size):
        y[i] = _sigmoid_fast(np.float64(x[i]))


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


# ------------------------------------------------------------------------------------
# Smooth and piecewise-linear activations of modern CNNs. Every backward takes the
# forward INPUT ``x``. Constants are cast through the output's dtype; comparisons are
# PyTorch's own, so NaN lands in the branch PyTorch sends it to: a NaN input gives a
# NaN output everywhere; in the backwards of elu, hardswish and relu6 a NaN input
# passes ``dy`` on, in hardsigmoid's it gives 0 (PyTorch's float64 relu6 backward
# gives 0 there too, its float32 one ``dy``: relu6 follows relu here).

#: 1/sqrt(2), 1/sqrt(2*pi) and sqrt(2/pi), for gelu.
_SQRT1_2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_2_OVER_PI = 0.7978845608028654
#: The cubic coefficient of gelu's tanh approximation.
_GELU_KAPPA = 0.044715


@cpu_helper
def _softplus(v):
    # log(1 + exp(v)) without overflow: exp of a non-positive argument only. NaN
    # takes the second branch and propagates.
    if v > 0:
        return v + math.log1p(math.exp(-v))
    return math.log1p(math.exp(v))


def gelu_forward(x, y):
    """``y = x * Phi(x)``, ``Phi`` the standard normal CDF, as
    ``0.5 * x * erfc(-x / sqrt(2))`` (erfc keeps the negative tail's precision).
    float32 through :mod:`._fast_math` (vectorised), float64 through the C
    library's ``erfc``.

    Shape: x (S,), y (S,). Parallel over ``S``.
    """
    _by_precision(_gelu_forward_fast, _gelu_forward_exact, x, y)


def gelu_backward(dy, x, dx):
    """``dx = dy * (Phi(x) + x * phi(x))``, ``phi`` the standard normal density
    (float32 through :mod:`._fast_math`, as :func:`gelu_forward`).

    Shape: dy (S,), x (S,), dx (S,). Parallel over ``S``.
    """
    _by_precision(_gelu_backward_fast, _gelu_backward_exact, dy, x, dx)


@cpu_kernel
def _gelu_forward_exact(x, y):
    half = y.dtype.type(0.5)
    c = y.dtype.type(_SQRT1_2)
    for i in prange(x.size):
        v = x[i]
        y[i] = half * v * math.erfc(-v * c)


@cpu_kernel
def _gelu_backward_exact(dy, x, dx):
    half = dx.dtype.type(0.5)
    c = dx.dtype.type(_SQRT1_2)
    k = dx.dtype.type(_INV_SQRT_2PI)
    for i in prange(x.size):
        v = x[i]
        cdf = half * math.erfc(-v * c)
        pdf = k * math.exp(-half * v * v)
        dx[i] = dy[i] * (cdf + v * pdf)


@cpu_kernel
def _gelu_forward_fast(x, y):
    for i in prange(x.size):
        v = np.float64(x[i])
        gauss = _exp_nonpositive(-0.5 * v * v)  # exp(-z*z), z = -v / sqrt(2)
        y[i] = 0.5 * v * _erfc_from_gauss(-v * _SQRT1_2, gauss)


@cpu_kernel
def _gelu_backward_fast(dy, x, dx):
    for i in prange(x.size):
        v = np.float64(x[i])
        gauss = _exp_nonpositive(-0.5 * v * v)
        cdf = 0.5 * _erfc_from_gauss(-v * _SQRT1_2, gauss)
        dx[i] = np.float64(dy[i]) * (cdf + v * _INV_SQRT_2PI * gauss)


@cpu_kernel
def gelu_tanh_forward(x, y):
    """``y = 0.5 * x * (1 + tanh(u))``, ``u = sqrt(2/pi) * (x + 0.044715 * x**3)``,
    evaluated as ``x * sigmoid(2 * u)`` (the same function, no cancellation in the
    negative tail).

    Shape: x (S,), y (S,). Parallel over ``S``.
    """
    one = y.dtype.type(1)
    two_beta = y.dtype.type(2 * _SQRT_2_OVER_PI)
    kappa = y.dtype.type(_GELU_KAPPA)
    for i in prange(x.size):
        v = x[i]
        y[i] = v * _sigmoid(two_beta * (v + kappa * v * v * v), one)


@cpu_kernel
def gelu_tanh_backward(dy, x, dx):
    """``dx = dy * (s + 2 * x * s * (1 - s) * u')`` with ``s = sigmoid(2 * u)``
    (= ``(1 + tanh(u)) / 2``) and ``u' = sqrt(2/pi) * (1 + 3 * 0.044715 * x**2)``.

    Shape: dy (S,), x (S,), dx (S,). Parallel over ``S``.
    """
    one = dx.dtype.type(1)
    two = dx.dtype.type(2)
    beta = dx.dtype.type(_SQRT_2_OVER_PI)
    kappa = dx.dtype.type(_GELU_KAPPA)
    kappa3 = dx.dtype.type(3 * _GELU_KAPPA)
    for i in prange(x.size):
        v = x[i]
        v2 = v * v
        s = _sigmoid(two * beta * (v + kappa * v2 * v), one)
        du = beta * (one + kappa3 * v2)
        dx[i] = dy[i] * (s + two * v * s * (one - s) * du)


def silu_forward(x, y):
    """``y = x * sigmoid(x)`` (sigmoid without overflow; float32 through
    :mod:`._fast_math`, as :func:`sigmoid_forward`).

    Shape: x (S,), y (S,). Parallel over ``S``.
    """
    _by_precision(_silu_forward_fast, _silu_forward_exact, x, y)


def silu_backward(dy, x, dx):
    """``dx = dy * s * (1 + x * (1 - s))``, ``s = sigmoid(x)`` (float32 as
    :func:`silu_forward`).

    Shape: dy (S,), x (S,), dx (S,). Parallel over ``S``.
    """
    _by_precision(_silu_backward_fast, _silu_backward_exact, dy, x, dx)


@cpu_kernel
def _silu_forward_exact(x, y):
    one = y.dtype.type(1)
    for i in prange(x.size):
        v = x[i]
        y[i] = v * _sigmoid(v, one)


@cpu_kernel
def _silu_backward_exact(dy, x, dx):
    one = dx.dtype.type(1)
    for i in prange(x.size):
        v = x[i]
        s = _sigmoid(v, one)
        dx[i] = dy[i] * s * (one + v * (one - s))


@cpu_kernel
def _silu_forward_fast(x, y):
    for i in prange(x.size):
        v = np.float64(x[i])
        y[i] = v * _sigmoid_fast(v)


@cpu_kernel
def _silu_backward_fast(dy, x, dx):
    for i in prange(x.size):
        v = np.float64(x[i])
        s = _sigmoid_fast(v)
        dx[i] = np.float64(dy[i]) * s * (1.0 + v * (1.0 - s))


@cpu_kernel
def elu_forward(x, alpha, y):
    """``y = x if x > 0 else alpha * expm1(x)``.

    Shape: x (S,), y (S,); alpha a scalar of x's dtype. Parallel over ``S``.
    """
    zero = y.dtype.type(0)
    for i in prange(x.size):
        v = x[i]
        y[i] = alpha * math.expm1(v) if v <= zero else v


@cpu_kernel
def elu_backward(dy, x, alpha, dx):
    """``dx = dy if x > 0 else dy * alpha * exp(x)``.

    Shape: dy (S,), x (S,), dx (S,); alpha a scalar of x's dtype. Parallel over
    ``S``.
    """
    zero = dx.dtype.type(0)
    for i in prange(x.size):
        v = x[i]
        g = dy[i]
        dx[i] = g * alpha * math.exp(v) if v <= zero else g


@cpu_kernel
def softplus_forward(x, beta, threshold, y):
    """``y = x if x * beta > threshold else log(1 + exp(beta * x)) / beta``
    (PyTorch's softplus, its log evaluated without overflow).

    Shape: x (S,), y (S,); beta, threshold scalars of x's dtype. Parallel over
    ``S``.
    """
    for i in prange(x.size):
        v = x[i]
        z = v * beta
        y[i] = v if z > threshold else _softplus(z) / beta


@cpu_kernel
def softplus_backward(dy, x, beta, threshold, dx):
    """``dx = dy if x * beta > threshold else dy * sigmoid(beta * x)``.

    Shape: dy (S,), x (S,), dx (S,); beta, threshold scalars of x's dtype.
    Parallel over ``S``.
    """
    one = dx.dtype.type(1)
    for i in prange(x.size):
        z = x[i] * beta
        g = dy[i]
        dx[i] = g if z > threshold else g * _sigmoid(z, one)


@cpu_helper
def _relu6(v, zero, six):
    # min(max(v, 0), 6) with NaN propagating (PyTorch's clamp).
    if v < zero:
        return zero
    if v > six:
        return six
    return v


@cpu_kernel
def hardswish_forward(x, y):
    """``y = x * min(max(x + 3, 0), 6) / 6``.

    Shape: x (S,), y (S,). Parallel over ``S``.
    """
    zero = y.dtype.type(0)
    three = y.dtype.type(3)
    six = y.dtype.type(6)
    for i in prange(x.size):
        v = x[i]
        y[i] = v * _relu6(v + three, zero, six) / six


@cpu_kernel
def hardswish_backward(dy, x, dx):
    """``dx = 0 if x <= -3, dy * (x / 3 + 0.5) if x < 3, else dy``.

    Shape: dy (S,), x (S,), dx (S,). Parallel over ``S``.
    """
    zero = dx.dtype.type(0)
    half = dx.dtype.type(0.5)
    three = dx.dtype.type(3)
    for i in prange(x.size):
        v = x[i]
        g = dy[i]
        if v <= -three:
            dx[i] = zero
        elif v < three:
            dx[i] = g * (v / three + half)
        else:
            dx[i] = g


@cpu_kernel
def hardsigmoid_forward(x, y):
    """``y = min(max(x + 3, 0), 6) / 6``.

    Shape: x (S,), y (S,). Parallel over ``S``.
    """
    zero = y.dtype.type(0)
    three = y.dtype.type(3)
    six = y.dtype.type(6)
    for i in prange(x.size):
        y[i] = _relu6(x[i] + three, zero, six) / six


@cpu_kernel
def hardsigmoid_backward(dy, x, dx):
    """``dx = dy / 6 where -3 < x < 3, else 0``.

    Shape: dy (S,), x (S,), dx (S,). Parallel over ``S``.
    """
    zero = dx.dtype.type(0)
    three = dx.dtype.type(3)
    six = dx.dtype.type(6)
    for i in prange(x.size):
        v = x[i]
        dx[i] = dy[i] / six if v > -three and v < three else zero


@cpu_kernel
def relu6_forward(x, y):
    """``y = min(max(x, 0), 6)`` (NaN propagates).

    Shape: x (S,), y (S,). Parallel over ``S``.
    """
    zero = y.dtype.type(0)
    six = y.dtype.type(6)
    for i in prange(x.size):
        y[i] = _relu6(x[i], zero, six)


@cpu_kernel
def relu6_backward(dy, x, dx):
    """``dx = 0 where x <= 0 or x >= 6, else dy`` (PyTorch's hardtanh_backward).

    Shape: dy (S,), x (S,), dx (S,). Parallel over ``S``.
    """
    zero = dx.dtype.type(0)
    six = dx.dtype.type(6)
    for i in prange(x.size):
        v = x[i]
        dx[i] = zero if v <= zero or v >= six else dy[i]


@cpu_kernel
def mish_forward(x, y):
    """``y = x * tanh(softplus(x))`` (softplus without overflow).

    Shape: x (S,), y (S,). Parallel over ``S``.
    """
    for i in prange(x.size):
        v = x[i]
        y[i] = v * math.tanh(_softplus(v))


@cpu_kernel
def mish_backward(dy, x, dx):
    """``dx = dy * (t + x * sigmoid(x) * (1 - t * t))``, ``t = tanh(softplus(x))``.

    Shape: dy (S,), x (S,), dx (S,). Parallel over ``S``.
    """
    one = dx.dtype.type(1)
    for i in prange(x.size):
        v = x[i]
        t = math.tanh(_softplus(v))
        dx[i] = dy[i] * (t + v * _sigmoid(v, one) * (one - t * t))
