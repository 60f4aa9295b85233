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
