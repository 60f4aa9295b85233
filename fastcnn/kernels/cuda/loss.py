"""CUDA twins of :mod:`fastcnn.kernels.cpu.loss` (same conventions: per-sample
losses into a buffer, reduced by :func:`sum_in_order`; gradient kernels take
``scale``; scalars in the arrays' dtype).

Cross-entropy kernels run one thread per sample (its row's log-sum-exp serially, in
the CPU's order); the elementwise losses one thread per element.
:func:`sum_in_order` runs ONE thread that adds the values in index order: the same
sum, bit for bit, as the CPU's, which a tree reduction would not give. The buffers
it reduces hold one value per sample (or per output element), so it stays cheap.
"""

import math

from numba import cuda

from .._jit import cuda_device, cuda_kernel
from . import _launch
from ._device import maximum
from .activation import _sigmoid

#: Threads per block (patched small by tests).
THREADS_PER_BLOCK = 256


def _run(kernel, count, *args):
    """One thread per item; the last argument is the one written."""
    _launch.run_threads(kernel, count, THREADS_PER_BLOCK, args)


@cuda_kernel
def _sum_serial(values, out):
    if cuda.grid(1) == 0:
        acc = out.dtype.type(0)
        for i in range(values.size):
            acc += values[i]
        out[0] = acc


def sum_in_order(values, out):
    """``out[0] = values[0] + values[1] + ...`` in index order (serial on purpose).

    Shape: values (S,), out (1,). Grid: one thread.
    """
    with _launch.staged(values, out, out=(1,)) as (values_d, out_d):
        _launch.launch(_sum_serial, 1, 1, (values_d, out_d))


@cuda_device
def _log_sum_exp_parts(z, i):
    # Twin of the CPU helper on row i of z: (max, sum(exp(z - max))).
    n_classes = z.shape[1]
    m = z[i, 0]
    for j in range(1, n_classes):
        if z[i, j] > m:
            m = z[i, j]
    s = z.dtype.type(0)
    for j in range(n_classes):
        s += math.exp(z[i, j] - m)
    return m, s


@cuda_kernel
def _cross_entropy_forward(logits, labels, weight, keep, spread, losses):
    i = cuda.grid(1)
    if i >= logits.shape[0]:
        return
    n_classes = logits.shape[1]
    zero = losses.dtype.type(0)
    t = labels[i]
    m, s = _log_sum_exp_parts(logits, i)
    log_s = math.log(s)
    loss = keep * weight[t] * (log_s - (logits[i, t] - m))
    if spread != zero:
        smooth = zero
        for c in range(n_classes):
            smooth += weight[c] * (log_s - (logits[i, c] - m))
        loss += spread * smooth
    losses[i] = loss


def cross_entropy_forward(logits, labels, weight, keep, spread, losses):
    """Per-sample cross-entropy from logits, with class weights and label smoothing
    (see the CPU kernel for the formula).

    Shape: logits (N, C), labels (N,) int64, weight (C,), losses (N,). Grid: one
    thread per sample.
    """
    _run(_cross_entropy_forward, logits.shape[0], logits, labels, weight, keep,
         spread, losses)


@cuda_kernel
def _cross_entropy_backward(logits, labels, weight, keep, spread, scale, dlogits):
    i = cuda.grid(1)
    if i >= logits.shape[0]:
        return
    n_classes = logits.shape[1]
    zero = dlogits.dtype.type(0)
    weight_total = zero
    for c in range(n_classes):
        weight_total += weight[c]
    t = labels[i]
    m, s = _log_sum_exp_parts(logits, i)
    hit = keep * weight[t]
    total = hit
    if spread != zero:
        total += spread * weight_total
    for j in range(n_classes):
        dlogits[i, j] = total * (math.exp(logits[i, j] - m) / s)
    if spread != zero:
        for j in range(n_classes):
            dlogits[i, j] -= spread * weight[j]
    dlogits[i, t] -= hit
    for j in range(n_classes):
        dlogits[i, j] *= scale


def cross_entropy_backward(logits, labels, weight, keep, spread, scale, dlogits):
    """Gradient of ``scale * sum_i losses[i]`` (see the CPU kernel for the formula).

    Shape: logits (N, C), labels (N,) int64, weight (C,), dlogits (N, C). Grid: one
    thread per sample.
    """
    _run(_cross_entropy_backward, logits.shape[0], logits, labels, weight, keep,
         spread, scale, dlogits)


@cuda_kernel
def _mse_forward(x, target, losses):
    i = cuda.grid(1)
    if i < x.size:
        d = x[i] - target[i]
        losses[i] = d * d


def mse_forward(x, target, losses):
    """``losses = (x - target) ** 2`` elementwise.

    Shape: x (S,), target (S,), losses (S,). Grid: one thread per element.
    """
    _run(_mse_forward, x.size, x, target, losses)


@cuda_kernel
def _mse_backward(x, target, scale, dx):
    i = cuda.grid(1)
    if i < x.size:
        dx[i] = scale * (x[i] - target[i])


def mse_backward(x, target, scale, dx):
    """``dx = scale * (x - target)`` (``scale`` includes the factor 2).

    Shape: x (S,), target (S,), dx (S,). Grid: one thread per element.
    """
    _run(_mse_backward, x.size, x, target, scale, dx)


@cuda_kernel
def _bce_forward(x, target, weight, pos_weight, losses):
    i = cuda.grid(1)
    n = x.size
    if i >= n:
        return
    w_step = 1 if weight.size == n else 0
    p_step = 1 if pos_weight.size == n else 0
    one = losses.dtype.type(1)
    zero = losses.dtype.type(0)
    v = x[i]
    t = target[i]
    log_weight = one + (pos_weight[i * p_step] - one) * t
    softplus_neg = math.log1p(math.exp(-abs(v))) + maximum(-v, zero)
    losses[i] = weight[i * w_step] * ((one - t) * v + log_weight * softplus_neg)


def bce_with_logits_forward(x, target, weight, pos_weight, losses):
    """Binary cross-entropy from logits, without overflow (see the CPU kernel).

    Shape: x (S,), target (S,), losses (S,); weight and pos_weight are (S,) or (1,).
    Grid: one thread per element.
    """
    _run(_bce_forward, x.size, x, target, weight, pos_weight, losses)


@cuda_kernel
def _bce_backward(x, target, weight, pos_weight, scale, dx):
    i = cuda.grid(1)
    n = x.size
    if i >= n:
        return
    w_step = 1 if weight.size == n else 0
    p_step = 1 if pos_weight.size == n else 0
    one = dx.dtype.type(1)
    t = target[i]
    pw = pos_weight[i * p_step]
    log_weight = one + (pw - one) * t
    grad = log_weight * _sigmoid(x[i], one) - pw * t
    dx[i] = scale * weight[i * w_step] * grad


def bce_with_logits_backward(x, target, weight, pos_weight, scale, dx):
    """Gradient of ``scale * sum(losses)`` (see the CPU kernel).

    Shape: x (S,), target (S,), dx (S,); weight and pos_weight are (S,) or (1,).
    Grid: one thread per element.
    """
    _run(_bce_backward, x.size, x, target, weight, pos_weight, scale, dx)
