"""Losses: per-element (or per-sample) values and gradients, and their reduction.

Shared conventions
------------------
- Per-sample losses are written in parallel into a buffer; :func:`sum_in_order`
  then reduces it serially in index order, so a mean or sum is bitwise the same for
  any thread count (a parallel tree reduction would not be).
- Gradient kernels take ``scale`` (``1 / count`` for a mean, ``1`` for a sum) and
  give the gradient of the reduced loss directly.
- Scalar hyper-parameters arrive already cast to the arrays' dtype, so float32 stays
  float32 (``ignore_index`` as int64, the labels' type).
- Cross-entropy reads logits as (N, C, S): a (N, C) batch is S = 1 and an
  (N, C, d1, d2, ...) one a free reshape, per position along S.
"""

import math

import numpy as np
from numba import prange

from .._jit import cpu_helper, cpu_kernel
from .activation import _sigmoid


@cpu_helper
def sum_in_order(values, out):
    """``out[0] = values[0] + values[1] + ...`` in index order (serial on purpose).

    Shape: values (S,), out (1,). Serial.
    """
    acc = out.dtype.type(0)
    for i in range(values.size):
        acc += values[i]
    out[0] = acc


#: Positions per task of the cross-entropy kernels, along the trailing axis ``S``
#: of their (N, C, S) logits: each task runs its class loops over up to this many
#: contiguous positions of one sample (inner loops that vectorise, and no transposed
#: copy of the logits). The split depends on the shapes alone, never on the thread
#: count.
SPAN = 64


@cpu_helper
def _position_task(task, blocks, n_positions):
    """Sample ``n`` and positions ``[s0, s1)`` of task number ``task``."""
    n = task // blocks
    s0 = (task % blocks) * SPAN
    return n, s0, min(s0 + SPAN, n_positions)


@cpu_helper
def _softmax_parts(logits, n, s0, s1, parts):
    """``parts[0, k]`` = the max over classes and ``parts[1, k]`` = the sum of
    ``exp(z - max)`` at position ``s0 + k`` of sample ``n``: log-sum-exp is
    ``max + log(sum)``, and exp never sees a positive argument, so logits of +-1e4
    stay finite. A NaN among the classes makes the sum NaN."""
    width = s1 - s0
    top = parts[0, :width]
    total = parts[1, :width]
    first = logits[n, 0, s0:s1]
    for k in range(width):
        top[k] = first[k]
        total[k] = 0
    for c in range(1, logits.shape[1]):
        z = logits[n, c, s0:s1]
        for k in range(width):
            if z[k] > top[k]:
                top[k] = z[k]
    for c in range(logits.shape[1]):
        z = logits[n, c, s0:s1]
        for k in range(width):
            total[k] += math.exp(z[k] - top[k])


@cpu_kernel
def cross_entropy_forward(logits, labels, weight, keep, spread, ignore_index, losses):
    """Per-position cross-entropy from logits and class indices, with class weights,
    label smoothing and an ignored label.

    ``losses[n, s] = keep * w[t] * (lse - z[t]) + spread * sum_c w[c] * (lse - z[c])``
    with ``z = logits[n, :, s]``, ``t = labels[n, s]``, ``lse = log(sum(exp(z)))``,
    ``keep = 1 - label_smoothing`` and ``spread = label_smoothing / C``; 0 where
    ``t == ignore_index``. The smoothing sum is skipped when ``spread == 0`` (so
    ``-inf`` logits stay harmless, as in PyTorch).

    Shape: logits (N, C, S) with C >= 1, labels (N, S) int64, weight (C,), losses
    (N, S). Parallel over ``N`` times blocks of :data:`SPAN` positions.
    """
    n_batch, n_classes, n_positions = logits.shape
    blocks = (n_positions + SPAN - 1) // SPAN
    cols = min(SPAN, n_positions)
    zero = losses.dtype.type(0)
    for task in prange(n_batch * blocks):
        n, s0, s1 = _position_task(np.int64(task), blocks, n_positions)
        width = s1 - s0
        parts = np.empty((3, cols), dtype=losses.dtype)
        _softmax_parts(logits, n, s0, s1, parts)
        top = parts[0, :width]
        log_total = parts[1, :width]
        smooth = parts[2, :width]
        for k in range(width):
            log_total[k] = math.log(log_total[k])
            smooth[k] = zero
        if spread != zero:
            for c in range(n_classes):
                z = logits[n, c, s0:s1]
                w = weight[c]
                for k in range(width):
                    smooth[k] += w * (log_total[k] - (z[k] - top[k]))
        targets = labels[n, s0:s1]
        out = losses[n, s0:s1]
        for k in range(width):
            t = targets[k]
            if t == ignore_index:
                out[k] = zero
                continue
            loss = keep * weight[t] * (log_total[k] - (logits[n, t, s0 + k] - top[k]))
            if spread != zero:
                loss += spread * smooth[k]
            out[k] = loss


@cpu_kernel
def cross_entropy_backward(logits, labels, weight, keep, spread, ignore_index, scale,
                           dlogits):
    """Gradient of ``scale * sum losses`` (see :func:`cross_entropy_forward`).

    ``dlogits[n, j, s] = scale * (M * p[j] - spread * w[j] - keep * w[t] * [j == t])``
    with ``p = softmax(z)`` and ``M = keep * w[t] + spread * sum_c w[c]``; 0 at an
    ignored position.

    Shape: logits (N, C, S) with C >= 1, labels (N, S) int64, weight (C,), dlogits
    (N, C, S). Parallel over ``N`` times blocks of :data:`SPAN` positions.
    """
    n_batch, n_classes, n_positions = logits.shape
    blocks = (n_positions + SPAN - 1) // SPAN
    cols = min(SPAN, n_positions)
    zero = dlogits.dtype.type(0)
    weight_total = zero
    for c in range(n_classes):
        weight_total += weight[c]
    for task in prange(n_batch * blocks):
        n, s0, s1 = _position_task(np.int64(task), blocks, n_positions)
        width = s1 - s0
        parts = np.empty((4, cols), dtype=dlogits.dtype)
        _softmax_parts(logits, n, s0, s1, parts)
        top = parts[0, :width]
        total = parts[1, :width]
        hit = parts[2, :width]
        mass = parts[3, :width]
        targets = labels[n, s0:s1]
        for k in range(width):
            h = zero
            if targets[k] != ignore_index:
                h = keep * weight[targets[k]]
            hit[k] = h
            mass[k] = h
            if spread != zero:
                mass[k] += spread * weight_total
        for c in range(n_classes):
            z = logits[n, c, s0:s1]
            dst = dlogits[n, c, s0:s1]
            for k in range(width):
                dst[k] = mass[k] * (math.exp(z[k] - top[k]) / total[k])
            if spread != zero:
                sub = spread * weight[c]
                for k in range(width):
                    dst[k] -= sub
        for k in range(width):
            t = targets[k]
            if t != ignore_index:
                dlogits[n, t, s0 + k] -= hit[k]
        for c in range(n_classes):
            dst = dlogits[n, c, s0:s1]
            for k in range(width):
                dst[k] *= scale
        for k in range(width):
            if targets[k] == ignore_index:
                # Zeroed last, not computed: a NaN logit at an ignored position, or
                # the NaN scale of a mean over no kept position, must not leak into
                # the gradient (0 * NaN).
                for c in range(n_classes):
                    dlogits[n, c, s0 + k] = zero


@cpu_helper
def _row_softmax_parts(z):
    """``(max(z), sum(exp(z - max)))`` over a row of class scores, in the order
    :func:`_softmax_parts` sums them (the same bits)."""
    top = z[0]
    for c in range(1, z.size):
        if z[c] > top:
            top = z[c]
    total = z.dtype.type(0)
    for c in range(z.size):
        total += math.exp(z[c] - top)
    return top, total


@cpu_kernel
def cross_entropy_plain_forward(logits, labels, losses):
    """:func:`cross_entropy_forward` in its common case, one position per sample
    with no class weights, no smoothing and no ignored label: ``losses[n] = lse -
    z[t]``, computed as that kernel computes it (the same bits), in a kernel with
    far less to compile (about 0.3 s cold against 1.3 s).

    Shape: logits (N, C) with C >= 1, labels (N,) int64 in ``[0, C)``, losses (N,).
    Parallel over ``N``.
    """
    for n in prange(logits.shape[0]):
        z = logits[n]
        top, total = _row_softmax_parts(z)
        losses[n] = math.log(total) - (z[labels[n]] - top)


@cpu_kernel
def cross_entropy_plain_backward(logits, labels, scale, dlogits):
    """Gradient of ``scale * sum losses`` (see :func:`cross_entropy_plain_forward`):
    ``dlogits[n, j] = scale * (p[j] - [j == t])`` with ``p = softmax(z)``, the same
    bits as :func:`cross_entropy_backward` gives in that case.

    Shape: logits (N, C) with C >= 1, labels (N,) int64 in ``[0, C)``, dlogits
    (N, C). Parallel over ``N``.
    """
    n_batch, n_classes = logits.shape
    for n in prange(n_batch):
        z = logits[n]
        dst = dlogits[n]
        top, total = _row_softmax_parts(z)
        for c in range(n_classes):
            dst[c] = math.exp(z[c] - top) / total
        dst[labels[n]] -= 1
        for c in range(n_classes):
            dst[c] *= scale


def cross_entropy_plain_forward_backward(logits, labels, scale, losses, total,
                                        dlogits):
    """:func:`cross_entropy_plain_forward`, the sum of its losses and
    :func:`cross_entropy_plain_backward` in one call: ``losses[n]`` as the forward
    kernel, ``total[0] = losses[0] + losses[1] + ...`` in index order, ``dlogits``
    the gradient of ``scale * total``. Here a plain composition of those kernels
    (nothing new to compile); the CUDA twin does it in one launch, so that a
    training step's loss costs one kernel and one read of ``total``.

    Shape: logits (N, C) with N, C >= 1, labels (N,) int64 in ``[0, C)``, losses
    (N,), total (1,), dlogits (N, C).
    """
    cross_entropy_plain_forward(logits, labels, losses)
    sum_in_order(losses, total)
    cross_entropy_plain_backward(logits, labels, scale, dlogits)


@cpu_kernel
def cross_entropy_prob_forward(logits, target, weight, keep, spread, losses):
    """Per-position cross-entropy from logits and class probabilities.

    ``losses[n, s] = sum_c w[c] * q[c] * (lse - z[c])`` with ``z = logits[n, :, s]``,
    ``lse = log(sum(exp(z)))`` and the smoothed target ``q = keep * target[n, :, s]
    + spread`` (``keep = 1 - label_smoothing``, ``spread = label_smoothing / C``).

    Shape: logits (N, C, S) with C >= 1, target (N, C, S), weight (C,), losses
    (N, S). Parallel over ``N`` times blocks of :data:`SPAN` positions.
    """
    n_batch, n_classes, n_positions = logits.shape
    blocks = (n_positions + SPAN - 1) // SPAN
    cols = min(SPAN, n_positions)
    for task in prange(n_batch * blocks):
        n, s0, s1 = _position_task(np.int64(task), blocks, n_positions)
        width = s1 - s0
        parts = np.empty((2, cols), dtype=losses.dtype)
        _softmax_parts(logits, n, s0, s1, parts)
        top = parts[0, :width]
        log_total = parts[1, :width]
        out = losses[n, s0:s1]
        for k in range(width):
            log_total[k] = math.log(log_total[k])
            out[k] = 0
        for c in range(n_classes):
            z = logits[n, c, s0:s1]
            q = target[n, c, s0:s1]
            w = weight[c]
            for k in range(width):
                out[k] += w * (keep * q[k] + spread) * (log_total[k] - (z[k] - top[k]))


@cpu_kernel
def cross_entropy_prob_backward(logits, target, weight, keep, spread, scale,
                                dlogits):
    """Gradient of ``scale * sum losses`` (see :func:`cross_entropy_prob_forward`).

    ``dlogits[n, j, s] = scale * (M * p[j] - w[j] * q[j])`` with ``p = softmax(z)``
    and ``M = sum_c w[c] * q[c]``.

    Shape: logits (N, C, S) with C >= 1, target (N, C, S), weight (C,), dlogits
    (N, C, S). Parallel over ``N`` times blocks of :data:`SPAN` positions.
    """
    n_batch, n_classes, n_positions = logits.shape
    blocks = (n_positions + SPAN - 1) // SPAN
    cols = min(SPAN, n_positions)
    for task in prange(n_batch * blocks):
        n, s0, s1 = _position_task(np.int64(task), blocks, n_positions)
        width = s1 - s0
        parts = np.empty((3, cols), dtype=dlogits.dtype)
        _softmax_parts(logits, n, s0, s1, parts)
        top = parts[0, :width]
        total = parts[1, :width]
        mass = parts[2, :width]
        for k in range(width):
            mass[k] = 0
        for c in range(n_classes):
            q = target[n, c, s0:s1]
            w = weight[c]
            for k in range(width):
                mass[k] += w * (keep * q[k] + spread)
        for c in range(n_classes):
            z = logits[n, c, s0:s1]
            q = target[n, c, s0:s1]
            dst = dlogits[n, c, s0:s1]
            w = weight[c]
            for k in range(width):
                p = math.exp(z[k] - top[k]) / total[k]
                dst[k] = scale * (mass[k] * p - w * (keep * q[k] + spread))


@cpu_kernel
def mse_forward(x, target, losses):
    """``losses = (x - target) ** 2`` elementwise.

    Shape: x (S,), target (S,), losses (S,). Parallel over ``S``.
    """
    for i in prange(x.size):
        d = x[i] - target[i]
        losses[i] = d * d


@cpu_kernel
def mse_backward(x, target, scale, dx):
    """``dx = scale * (x - target)`` (``scale`` includes the factor 2).

    Shape: x (S,), target (S,), dx (S,). Parallel over ``S``.
    """
    for i in prange(x.size):
        dx[i] = scale * (x[i] - target[i])


@cpu_kernel
def bce_with_logits_forward(x, target, weight, pos_weight, losses):
    """Binary cross-entropy from logits, without overflow.

    ``losses = w * ((1 - t) * x + (1 + (pw - 1) * t) * (log1p(exp(-|x|)) +
    max(-x, 0)))``: PyTorch's formula; with ``pw = 1`` it is
    ``max(x, 0) - x * t + log1p(exp(-|x|))``.

    Shape: x (S,), target (S,), losses (S,); weight and pos_weight are (S,) or (1,)
    (one value for every element). Parallel over ``S``.
    """
    n = x.size
    w_step = 1 if weight.size == n else 0
    p_step = 1 if pos_weight.size == n else 0
    one = losses.dtype.type(1)
    zero = losses.dtype.type(0)
    for i in prange(n):
        v = x[i]
        t = target[i]
        log_weight = one + (pos_weight[i * p_step] - one) * t
        softplus_neg = math.log1p(math.exp(-abs(v))) + max(-v, zero)
        losses[i] = weight[i * w_step] * ((one - t) * v + log_weight * softplus_neg)


@cpu_kernel
def bce_with_logits_backward(x, target, weight, pos_weight, scale, dx):
    """Gradient of ``scale * sum(losses)`` (see :func:`bce_with_logits_forward`).

    ``dx = scale * w * ((1 + (pw - 1) * t) * sigmoid(x) - pw * t)``, which is
    ``scale * w * (sigmoid(x) - t)`` when ``pw = 1``.

    Shape: x (S,), target (S,), dx (S,); weight and pos_weight are (S,) or (1,).
    Parallel over ``S``.
    """
    n = x.size
    w_step = 1 if weight.size == n else 0
    p_step = 1 if pos_weight.size == n else 0
    one = dx.dtype.type(1)
    for i in prange(n):
        t = target[i]
        pw = pos_weight[i * p_step]
        log_weight = one + (pw - one) * t
        grad = log_weight * _sigmoid(x[i], one) - pw * t
        dx[i] = scale * weight[i * w_step] * grad
