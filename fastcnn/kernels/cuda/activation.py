"""CUDA twins of :mod:`fastcnn.kernels.cpu.activation` (same conventions: flat
arrays for the elementwise kernels, ``(R, C)`` rows for the softmax kernels, NaN
propagating as in PyTorch, scalar hyper-parameters in the arrays' dtype).

Elementwise kernels run one thread per element. Softmax kernels run one thread per
row, taking the row's max and sum serially in index order, as the CPU does (rows
are short: classes).
"""

import math

from numba import cuda

from .._jit import cuda_device, cuda_kernel
from . import _launch

#: Threads per block (patched small by tests).
THREADS_PER_BLOCK = 256


def _run(kernel, count, *args):
    """One thread per item; the last argument is the one written."""
    _launch.run_threads(kernel, count, THREADS_PER_BLOCK, args)


@cuda_kernel
def _relu_forward(x, y):
    i = cuda.grid(1)
    if i < x.size:
        zero = y.dtype.type(0)
        v = x[i]
        y[i] = zero if v < zero else v


def relu_forward(x, y):
    """``y = max(x, 0)`` (NaN propagates).

    Shape: x (S,), y (S,). Grid: one thread per element.
    """
    _run(_relu_forward, x.size, x, y)


@cuda_kernel
def _relu_backward(dy, x, dx):
    i = cuda.grid(1)
    if i < x.size:
        zero = dx.dtype.type(0)
        dx[i] = zero if x[i] <= zero else dy[i]


def relu_backward(dy, x, dx):
    """``dx = dy where x > 0 else 0`` (PyTorch's threshold_backward at 0).

    Shape: dy (S,), x (S,), dx (S,). Grid: one thread per element.
    """
    _run(_relu_backward, x.size, dy, x, dx)


@cuda_kernel
def _leaky_relu_forward(x, slope, y):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        y[i] = v if v > y.dtype.type(0) else v * slope


def leaky_relu_forward(x, slope, y):
    """``y = x if x > 0 else slope * x``.

    Shape: x (S,), y (S,); slope a scalar of x's dtype. Grid: one thread per element.
    """
    _run(_leaky_relu_forward, x.size, x, slope, y)


@cuda_kernel
def _leaky_relu_backward(dy, x, slope, dx):
    i = cuda.grid(1)
    if i < x.size:
        g = dy[i]
        dx[i] = g if x[i] > dx.dtype.type(0) else g * slope


def leaky_relu_backward(dy, x, slope, dx):
    """``dx = dy if x > 0 else slope * dy``.

    Shape: dy (S,), x (S,), dx (S,); slope a scalar of x's dtype. Grid: one thread
    per element.
    """
    _run(_leaky_relu_backward, x.size, dy, x, slope, dx)


@cuda_device
def _sigmoid(v, one):
    """Twin of the CPU ``_sigmoid``: exp of a non-positive argument only."""
    if v >= 0:
        return one / (one + math.exp(-v))
    e = math.exp(v)
    return e / (one + e)


@cuda_kernel
def _sigmoid_forward(x, y):
    i = cuda.grid(1)
    if i < x.size:
        y[i] = _sigmoid(x[i], y.dtype.type(1))


def sigmoid_forward(x, y):
    """``y = 1 / (1 + exp(-x))``, evaluated without overflow.

    Shape: x (S,), y (S,). Grid: one thread per element.
    """
    _run(_sigmoid_forward, x.size, x, y)


@cuda_kernel
def _sigmoid_backward(dy, y, dx):
    i = cuda.grid(1)
    if i < y.size:
        v = y[i]
        dx[i] = dy[i] * (dx.dtype.type(1) - v) * v


def sigmoid_backward(dy, y, dx):
    """``dx = dy * (1 - y) * y`` from the forward output ``y``.

    Shape: dy (S,), y (S,), dx (S,). Grid: one thread per element.
    """
    _run(_sigmoid_backward, y.size, dy, y, dx)


@cuda_kernel
def _tanh_forward(x, y):
    i = cuda.grid(1)
    if i < x.size:
        y[i] = math.tanh(x[i])


def tanh_forward(x, y):
    """``y = tanh(x)``.

    Shape: x (S,), y (S,). Grid: one thread per element.
    """
    _run(_tanh_forward, x.size, x, y)


@cuda_kernel
def _tanh_backward(dy, y, dx):
    i = cuda.grid(1)
    if i < y.size:
        v = y[i]
        dx[i] = dy[i] * (dx.dtype.type(1) - v * v)


def tanh_backward(dy, y, dx):
    """``dx = dy * (1 - y * y)`` from the forward output ``y``.

    Shape: dy (S,), y (S,), dx (S,). Grid: one thread per element.
    """
    _run(_tanh_backward, y.size, dy, y, dx)


@cuda_device
def _row_max(x, r):
    """Twin of the CPU ``_row_max`` on row ``r`` of ``x``: starts from the first
    element, so NaN there stays the max."""
    m = x[r, 0]
    for j in range(1, x.shape[1]):
        if x[r, j] > m:
            m = x[r, j]
    return m


@cuda_kernel
def _softmax_forward(x, y):
    r = cuda.grid(1)
    if r >= x.shape[0]:
        return
    n_cols = x.shape[1]
    m = _row_max(x, r)
    total = y.dtype.type(0)
    for j in range(n_cols):
        e = math.exp(x[r, j] - m)
        y[r, j] = e
        total += e
    for j in range(n_cols):
        y[r, j] = y[r, j] / total


def softmax_forward(x, y):
    """``y[r] = exp(x[r] - max) / sum(exp(x[r] - max))`` along each row.

    Shape: x (R, C), y (R, C). Grid: one thread per row.
    """
    _run(_softmax_forward, x.shape[0], x, y)


@cuda_kernel
def _softmax_backward(dy, y, dx):
    r = cuda.grid(1)
    if r >= y.shape[0]:
        return
    n_cols = y.shape[1]
    dot = dx.dtype.type(0)
    for j in range(n_cols):
        dot += dy[r, j] * y[r, j]
    for j in range(n_cols):
        dx[r, j] = y[r, j] * (dy[r, j] - dot)


def softmax_backward(dy, y, dx):
    """``dx[r] = y[r] * (dy[r] - sum(dy[r] * y[r]))`` from the forward output ``y``.

    Shape: dy (R, C), y (R, C), dx (R, C). Grid: one thread per row.
    """
    _run(_softmax_backward, y.shape[0], dy, y, dx)


@cuda_kernel
def _log_softmax_forward(x, y):
    r = cuda.grid(1)
    if r >= x.shape[0]:
        return
    n_cols = x.shape[1]
    m = _row_max(x, r)
    total = y.dtype.type(0)
    for j in range(n_cols):
        shifted = x[r, j] - m
        y[r, j] = shifted
        total += math.exp(shifted)
    log_total = math.log(total)
    for j in range(n_cols):
        y[r, j] = y[r, j] - log_total


def log_softmax_forward(x, y):
    """``y[r] = (x[r] - max) - log(sum(exp(x[r] - max)))`` along each row.

    Shape: x (R, C), y (R, C). Grid: one thread per row.
    """
    _run(_log_softmax_forward, x.shape[0], x, y)


@cuda_kernel
def _log_softmax_backward(dy, y, dx):
    r = cuda.grid(1)
    if r >= y.shape[0]:
        return
    n_cols = y.shape[1]
    total = dx.dtype.type(0)
    for j in range(n_cols):
        total += dy[r, j]
    for j in range(n_cols):
        dx[r, j] = dy[r, j] - math.exp(y[r, j]) * total


def log_softmax_backward(dy, y, dx):
    """``dx[r] = dy[r] - exp(y[r]) * sum(dy[r])`` from the forward output ``y``.

    Shape: dy (R, C), y (R, C), dx (R, C). Grid: one thread per row.
    """
    _run(_log_softmax_backward, y.shape[0], dy, y, dx)


# ------------------------------------------------------------------------------------
# Twins of the CPU's smooth and piecewise-linear activations (same formulas, same
# comparisons, so NaN takes the same branch). Every backward takes the input ``x``.

_SQRT1_2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_2_OVER_PI = 0.7978845608028654
_GELU_KAPPA = 0.044715


@cuda_device
def _softplus(v):
    """Twin of the CPU ``_softplus``: log(1 + exp(v)) without overflow."""
    if v > 0:
        return v + math.log1p(math.exp(-v))
    return math.log1p(math.exp(v))


@cuda_device
def _relu6(v, zero, six):
    """Twin of the CPU ``_relu6``: min(max(v, 0), 6), NaN propagating."""
    if v < zero:
        return zero
    if v > six:
        return six
    return v


@cuda_kernel
def _gelu_forward(x, y):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        y[i] = (y.dtype.type(0.5) * v
                * math.erfc(-v * y.dtype.type(_SQRT1_2)))


def gelu_forward(x, y):
    """``y = 0.5 * x * erfc(-x / sqrt(2))`` (exact GELU).

    Shape: x (S,), y (S,). Grid: one thread per element.
    """
    _run(_gelu_forward, x.size, x, y)


@cuda_kernel
def _gelu_backward(dy, x, dx):
    i = cuda.grid(1)
    if i < x.size:
        half = dx.dtype.type(0.5)
        v = x[i]
        cdf = half * math.erfc(-v * dx.dtype.type(_SQRT1_2))
        pdf = dx.dtype.type(_INV_SQRT_2PI) * math.exp(-half * v * v)
        dx[i] = dy[i] * (cdf + v * pdf)


def gelu_backward(dy, x, dx):
    """``dx = dy * (Phi(x) + x * phi(x))``.

    Shape: dy (S,), x (S,), dx (S,). Grid: one thread per element.
    """
    _run(_gelu_backward, x.size, dy, x, dx)


@cuda_kernel
def _gelu_tanh_forward(x, y):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        u2 = y.dtype.type(2 * _SQRT_2_OVER_PI) * (
            v + y.dtype.type(_GELU_KAPPA) * v * v * v)
        y[i] = v * _sigmoid(u2, y.dtype.type(1))


def gelu_tanh_forward(x, y):
    """``y = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))``, as
    ``x * sigmoid(2 * u)``.

    Shape: x (S,), y (S,). Grid: one thread per element.
    """
    _run(_gelu_tanh_forward, x.size, x, y)


@cuda_kernel
def _gelu_tanh_backward(dy, x, dx):
    i = cuda.grid(1)
    if i < x.size:
        one = dx.dtype.type(1)
        two = dx.dtype.type(2)
        beta = dx.dtype.type(_SQRT_2_OVER_PI)
        v = x[i]
        v2 = v * v
        s = _sigmoid(two * beta * (v + dx.dtype.type(_GELU_KAPPA) * v2 * v), one)
        du = beta * (one + dx.dtype.type(3 * _GELU_KAPPA) * v2)
        dx[i] = dy[i] * (s + two * v * s * (one - s) * du)


def gelu_tanh_backward(dy, x, dx):
    """``dx = dy * (s + 2 * x * s * (1 - s) * u')``, ``s = sigmoid(2 * u)``.

    Shape: dy (S,), x (S,), dx (S,). Grid: one thread per element.
    """
    _run(_gelu_tanh_backward, x.size, dy, x, dx)


@cuda_kernel
def _silu_forward(x, y):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        y[i] = v * _sigmoid(v, y.dtype.type(1))


def silu_forward(x, y):
    """``y = x * sigmoid(x)``.

    Shape: x (S,), y (S,). Grid: one thread per element.
    """
    _run(_silu_forward, x.size, x, y)


@cuda_kernel
def _silu_backward(dy, x, dx):
    i = cuda.grid(1)
    if i < x.size:
        one = dx.dtype.type(1)
        v = x[i]
        s = _sigmoid(v, one)
        dx[i] = dy[i] * s * (one + v * (one - s))


def silu_backward(dy, x, dx):
    """``dx = dy * s * (1 + x * (1 - s))``, ``s = sigmoid(x)``.

    Shape: dy (S,), x (S,), dx (S,). Grid: one thread per element.
    """
    _run(_silu_backward, x.size, dy, x, dx)


@cuda_kernel
def _elu_forward(x, alpha, y):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        y[i] = alpha * math.expm1(v) if v <= y.dtype.type(0) else v


def elu_forward(x, alpha, y):
    """``y = x if x > 0 else alpha * expm1(x)``.

    Shape: x (S,), y (S,); alpha a scalar of x's dtype. Grid: one thread per
    element.
    """
    _run(_elu_forward, x.size, x, alpha, y)


@cuda_kernel
def _elu_backward(dy, x, alpha, dx):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        g = dy[i]
        dx[i] = g * alpha * math.exp(v) if v <= dx.dtype.type(0) else g


def elu_backward(dy, x, alpha, dx):
    """``dx = dy if x > 0 else dy * alpha * exp(x)``.

    Shape: dy (S,), x (S,), dx (S,); alpha a scalar of x's dtype. Grid: one thread
    per element.
    """
    _run(_elu_backward, x.size, dy, x, alpha, dx)


@cuda_kernel
def _softplus_forward(x, beta, threshold, y):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        z = v * beta
        y[i] = v if z > threshold else _softplus(z) / beta


def softplus_forward(x, beta, threshold, y):
    """``y = x if x * beta > threshold else log(1 + exp(beta * x)) / beta``.

    Shape: x (S,), y (S,); beta, threshold scalars of x's dtype. Grid: one thread
    per element.
    """
    _run(_softplus_forward, x.size, x, beta, threshold, y)


@cuda_kernel
def _softplus_backward(dy, x, beta, threshold, dx):
    i = cuda.grid(1)
    if i < x.size:
        z = x[i] * beta
        g = dy[i]
        dx[i] = g if z > threshold else g * _sigmoid(z, dx.dtype.type(1))


def softplus_backward(dy, x, beta, threshold, dx):
    """``dx = dy if x * beta > threshold else dy * sigmoid(beta * x)``.

    Shape: dy (S,), x (S,), dx (S,); beta, threshold scalars of x's dtype. Grid:
    one thread per element.
    """
    _run(_softplus_backward, x.size, dy, x, beta, threshold, dx)


@cuda_kernel
def _hardswish_forward(x, y):
    i = cuda.grid(1)
    if i < x.size:
        six = y.dtype.type(6)
        v = x[i]
        y[i] = v * _relu6(v + y.dtype.type(3), y.dtype.type(0), six) / six


def hardswish_forward(x, y):
    """``y = x * min(max(x + 3, 0), 6) / 6``.

    Shape: x (S,), y (S,). Grid: one thread per element.
    """
    _run(_hardswish_forward, x.size, x, y)


@cuda_kernel
def _hardswish_backward(dy, x, dx):
    i = cuda.grid(1)
    if i < x.size:
        three = dx.dtype.type(3)
        v = x[i]
        g = dy[i]
        if v <= -three:
            dx[i] = dx.dtype.type(0)
        elif v < three:
            dx[i] = g * (v / three + dx.dtype.type(0.5))
        else:
            dx[i] = g


def hardswish_backward(dy, x, dx):
    """``dx = 0 if x <= -3, dy * (x / 3 + 0.5) if x < 3, else dy``.

    Shape: dy (S,), x (S,), dx (S,). Grid: one thread per element.
    """
    _run(_hardswish_backward, x.size, dy, x, dx)


@cuda_kernel
def _hardsigmoid_forward(x, y):
    i = cuda.grid(1)
    if i < x.size:
        six = y.dtype.type(6)
        y[i] = _relu6(x[i] + y.dtype.type(3), y.dtype.type(0), six) / six


def hardsigmoid_forward(x, y):
    """``y = min(max(x + 3, 0), 6) / 6``.

    Shape: x (S,), y (S,). Grid: one thread per element.
    """
    _run(_hardsigmoid_forward, x.size, x, y)


@cuda_kernel
def _hardsigmoid_backward(dy, x, dx):
    i = cuda.grid(1)
    if i < x.size:
        three = dx.dtype.type(3)
        v = x[i]
        if v > -three and v < three:
            dx[i] = dy[i] / dx.dtype.type(6)
        else:
            dx[i] = dx.dtype.type(0)


def hardsigmoid_backward(dy, x, dx):
    """``dx = dy / 6 where -3 < x < 3, else 0``.

    Shape: dy (S,), x (S,), dx (S,). Grid: one thread per element.
    """
    _run(_hardsigmoid_backward, x.size, dy, x, dx)


@cuda_kernel
def _relu6_forward(x, y):
    i = cuda.grid(1)
    if i < x.size:
        y[i] = _relu6(x[i], y.dtype.type(0), y.dtype.type(6))


def relu6_forward(x, y):
    """``y = min(max(x, 0), 6)`` (NaN propagates).

    Shape: x (S,), y (S,). Grid: one thread per element.
    """
    _run(_relu6_forward, x.size, x, y)


@cuda_kernel
def _relu6_backward(dy, x, dx):
    i = cuda.grid(1)
    if i < x.size:
        zero = dx.dtype.type(0)
        v = x[i]
        dx[i] = zero if v <= zero or v >= dx.dtype.type(6) else dy[i]


def relu6_backward(dy, x, dx):
    """``dx = 0 where x <= 0 or x >= 6, else dy``.

    Shape: dy (S,), x (S,), dx (S,). Grid: one thread per element.
    """
    _run(_relu6_backward, x.size, dy, x, dx)


@cuda_kernel
def _mish_forward(x, y):
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        y[i] = v * math.tanh(_softplus(v))


def mish_forward(x, y):
    """``y = x * tanh(softplus(x))``.

    Shape: x (S,), y (S,). Grid: one thread per element.
    """
    _run(_mish_forward, x.size, x, y)


@cuda_kernel
def _mish_backward(dy, x, dx):
    i = cuda.grid(1)
    if i < x.size:
        one = dx.dtype.type(1)
        v = x[i]
        t = math.tanh(_softplus(v))
        dx[i] = dy[i] * (t + v * _sigmoid(v, one) * (one - t * t))


def mish_backward(dy, x, dx):
    """``dx = dy * (t + x * sigmoid(x) * (1 - t * t))``, ``t = tanh(softplus(x))``.

    Shape: dy (S,), x (S,), dx (S,). Grid: one thread per element.
    """
    _run(_mish_backward, x.size, dy, x, dx)
