"""CUDA twins of :mod:`fastcnn.kernels.cpu.loss` (same conventions: per-sample
losses into a buffer, reduced by :func:`sum_in_order`; gradient kernels take
``scale``; scalars in the arrays' dtype).

Cross-entropy kernels run one thread per position of their (N, C, S) logits (the
log-sum-exp over the classes serially, in the CPU's order); the elementwise losses
one thread per element.
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
def _softmax_parts(logits, n, s):
    # Twin of the CPU helper at position s of sample n: (max, sum(exp(z - max))),
    # over the classes in the CPU's order.
    n_classes = logits.shape[1]
    m = logits[n, 0, s]
    for c in range(1, n_classes):
        if logits[n, c, s] > m:
            m = logits[n, c, s]
    total = logits.dtype.type(0)
    for c in range(n_classes):
        total += math.exp(logits[n, c, s] - m)
    return m, total


@cuda_kernel
def _cross_entropy_forward(logits, labels, weight, keep, spread, ignore_index,
                           losses):
    i = cuda.grid(1)
    n_batch, n_classes, n_positions = logits.shape
    if i >= n_batch * n_positions:
        return
    n = i // n_positions
    s = i % n_positions
    zero = losses.dtype.type(0)
    t = labels[n, s]
    if t == ignore_index:
        losses[n, s] = zero
        return
    m, total = _softmax_parts(logits, n, s)
    log_total = math.log(total)
    loss = keep * weight[t] * (log_total - (logits[n, t, s] - m))
    if spread != zero:
        smooth = zero
        for c in range(n_classes):
            smooth += weight[c] * (log_total - (logits[n, c, s] - m))
        loss += spread * smooth
    losses[n, s] = loss


def cross_entropy_forward(logits, labels, weight, keep, spread, ignore_index, losses):
    """Per-position cross-entropy from logits and class indices, with class weights,
    label smoothing and an ignored label (see the CPU kernel for the formula).

    Shape: logits (N, C, S) with C >= 1, labels (N, S) int64, weight (C,), losses
    (N, S). Grid: one thread per position.
    """
    _run(_cross_entropy_forward, logits.shape[0] * logits.shape[2], logits, labels,
         weight, keep, spread, ignore_index, losses)


@cuda_kernel
def _cross_entropy_backward(logits, labels, weight, keep, spread, ignore_index, scale,
                            dlogits):
    i = cuda.grid(1)
    n_batch, n_classes, n_positions = logits.shape
    if i >= n_batch * n_positions:
        return
    n = i // n_positions
    s = i % n_positions
    zero = dlogits.dtype.type(0)
    t = labels[n, s]
    if t == ignore_index:
        for c in range(n_classes):
            dlogits[n, c, s] = zero
        return
    weight_total = zero
    for c in range(n_classes):
        weight_total += weight[c]
    m, total = _softmax_parts(logits, n, s)
    hit = keep * weight[t]
    mass = hit
    if spread != zero:
        mass += spread * weight_total
    for c in range(n_classes):
        dlogits[n, c, s] = mass * (math.exp(logits[n, c, s] - m) / total)
    if spread != zero:
        for c in range(n_classes):
            dlogits[n, c, s] -= spread * weight[c]
    dlogits[n, t, s] -= hit
    for c in range(n_classes):
        dlogits[n, c, s] *= scale


def cross_entropy_backward(logits, labels, weight, keep, spread, ignore_index, scale,
                           dlogits):
    """Gradient of ``scale * sum losses`` (see the CPU kernel for the formula).

    Shape: logits (N, C, S) with C >= 1, labels (N, S) int64, weight (C,), dlogits
    (N, C, S). Grid: one thread per position.
    """
    _run(_cross_entropy_backward, logits.shape[0] * logits.shape[2], logits, labels,
         weight, keep, spread, ignore_index, scale, dlogits)


@cuda_device
def _row_softmax_parts(logits, n):
    # Twin of the CPU helper on row n of (N, C) logits: (max, sum(exp(z - max))).
    top = logits[n, 0]
    for c in range(1, logits.shape[1]):
        if logits[n, c] > top:
            top = logits[n, c]
    total = logits.dtype.type(0)
    for c in range(logits.shape[1]):
        total += math.exp(logits[n, c] - top)
    return top, total


@cuda_kernel
def _cross_entropy_plain_forward(logits, labels, losses):
    n = cuda.grid(1)
    if n >= logits.shape[0]:
        return
    top, total = _row_softmax_parts(logits, n)
    losses[n] = math.log(total) - (logits[n, labels[n]] - top)


def cross_entropy_plain_forward(logits, labels, losses):
    """Cross-entropy of one position per sample, no weights, smoothing or ignored
    label (see the CPU kernel).

    Shape: logits (N, C) with C >= 1, labels (N,) int64 in ``[0, C)``, losses (N,).
    Grid: one thread per sample.
    """
    _run(_cross_entropy_plain_forward, logits.shape[0], logits, labels, losses)


@cuda_kernel
def _cross_entropy_plain_backward(logits, labels, scale, dlogits):
    n = cuda.grid(1)
    if n >= logits.shape[0]:
        return
    n_classes = logits.shape[1]
    top, total = _row_softmax_parts(logits, n)
    for c in range(n_classes):
        dlogits[n, c] = math.exp(logits[n, c] - top) / total
    dlogits[n, labels[n]] -= 1
    for c in range(n_classes):
        dlogits[n, c] *= scale


def cross_entropy_plain_backward(logits, labels, scale, dlogits):
    """Gradient of ``scale * sum losses`` (see the CPU kernel).

    Shape: logits (N, C) with C >= 1, labels (N,) int64 in ``[0, C)``, dlogits
    (N, C). Grid: one thread per sample.
    """
    _run(_cross_entropy_plain_backward, logits.shape[0], logits, labels, scale,
         dlogits)


@cuda_kernel
def _cross_entropy_plain_forward_backward(logits, labels, scale, losses, total,
                                          dlogits):
    # One block: its threads take rows n = tid, tid + width, ...; thread 0 then sums
    # the losses in row order, as sum_in_order does.
    tid = cuda.threadIdx.x
    n_batch, n_classes = logits.shape
    for n in range(tid, n_batch, cuda.blockDim.x):
        top, parts = _row_softmax_parts(logits, n)
        label = labels[n]
        losses[n] = math.log(parts) - (logits[n, label] - top)
        for c in range(n_classes):
            dlogits[n, c] = math.exp(logits[n, c] - top) / parts
        dlogits[n, label] -= 1
        for c in range(n_classes):
            dlogits[n, c] *= scale
    cuda.syncthreads()  # every row's loss is written (and visible to the block)
    if tid == 0:
        acc = total.dtype.type(0)
        for n in range(n_batch):
            acc += losses[n]
        total[0] = acc


def cross_entropy_plain_forward_backward(logits, labels, scale, losses, total,
                                        dlogits):
    """The plain cross-entropy's losses, their sum in row order and its gradient
    times ``scale``, in one launch (see the CPU twin).

    Shape: logits (N, C) with N, C >= 1, labels (N,) int64 in ``[0, C)``, losses
    (N,), total (1,), dlogits (N, C). Grid: one block of up to THREADS_PER_BLOCK
    threads, a row per thread at a time (a classifier's N x C is small beside the
    network; the block keeps the sum in one fixed order without a second launch).
    """
    threads = min(THREADS_PER_BLOCK, logits.shape[0])
    with _launch.staged(logits, labels, losses, total, dlogits,
                        out=(2, 3, 4)) as args:
        _launch.launch(_cross_entropy_plain_forward_backward, 1, threads,
                       (args[0], args[1], scale, *args[2:]))


@cuda_kernel
def _cross_entropy_prob_forward(logits, target, weight, keep, spread, losses):
    i = cuda.grid(1)
    n_batch, n_classes, n_positions = logits.shape
    if i >= n_batch * n_positions:
        return
    n = i // n_positions
    s = i % n_positions
    m, total = _softmax_parts(logits, n, s)
    log_total = math.log(total)
    loss = losses.dtype.type(0)
    for c in range(n_classes):
        q = keep * target[n, c, s] + spread
        loss += weight[c] * q * (log_total - (logits[n, c, s] - m))
    losses[n, s] = loss


def cross_entropy_prob_forward(logits, target, weight, keep, spread, losses):
    """Per-position cross-entropy from logits and class probabilities (see the CPU
    kernel for the formula).

    Shape: logits (N, C, S) with C >= 1, target (N, C, S), weight (C,), losses
    (N, S). Grid: one thread per position.
    """
    _run(_cross_entropy_prob_forward, logits.shape[0] * logits.shape[2], logits,
         target, weight, keep, spread, losses)


@cuda_kernel
def _cross_entropy_prob_backward(logits, target, weight, keep, spread, scale,
                                 dlogits):
    i = cuda.grid(1)
    n_batch, n_classes, n_positions = logits.shape
    if i >= n_batch * n_positions:
        return
    n = i // n_positions
    s = i % n_positions
    m, total = _softmax_parts(logits, n, s)
    mass = dlogits.dtype.type(0)
    for c in range(n_classes):
        mass += weight[c] * (keep * target[n, c, s] + spread)
    for c in range(n_classes):
        p = math.exp(logits[n, c, s] - m) / total
        q = keep * target[n, c, s] + spread
        dlogits[n, c, s] = scale * (mass * p - weight[c] * q)


def cross_entropy_prob_backward(logits, target, weight, keep, spread, scale,
                                dlogits):
    """Gradient of ``scale * sum losses`` (see the CPU kernel for the formula).

    Shape: logits (N, C, S) with C >= 1, target (N, C, S), weight (C,), dlogits
    (N, C, S). Grid: one thread per position.
    """
    _run(_cross_entropy_prob_backward, logits.shape[0] * logits.shape[2], logits,
         target, weight, keep, spread, scale, dlogits)


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
