"""Losses: per-element (or per-sample) values and gradients, and their reduction.

Shared conventions
------------------
- Per-sample losses are written in parallel into a buffer; :func:`sum_in_order`
  then reduces it serially in index order, so a mean or sum is bitwise the same for
  any thread count (a parallel tree reduction would not be).
- Gradient kernels take ``scale`` (``1 / count`` for a mean, ``1`` for a sum) and
  give the gradient of the reduced loss directly.
- Scalar hyper-parameters arrive already cast to the arrays' dtype, so float32 stays
  float32.
"""

import math

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


@cpu_helper
def _log_sum_exp_parts(row):
    # log(sum(exp(row))) = m + log(s) with m the row max: exp never sees a positive
    # argument, so logits of +-1e4 stay finite. A NaN anywhere makes s NaN.
    m = row[0]
    for j in range(1, row.size):
        if row[j] > m:
            m = row[j]
    s = row.dtype.type(0)
    for j in range(row.size):
        s += math.exp(row[j] - m)
    return m, s


@cpu_kernel
def cross_entropy_forward(logits, labels, weight, keep, spread, losses):
    """Per-sample cross-entropy from logits, with class weights and label smoothing.

    ``losses[i] = keep * w[t] * (lse - z[t]) + spread * sum_c w[c] * (lse - z[c])``
    with ``z = logits[i]``, ``t = labels[i]``, ``lse = log(sum(exp(z)))``,
    ``keep = 1 - label_smoothing`` and ``spread = label_smoothing / C``; the
    smoothing sum is skipped when ``spread == 0`` (so ``-inf`` logits stay harmless).

    Shape: logits (N, C), labels (N,) int64, weight (C,), losses (N,). Parallel over
    ``N``.
    """
    n_batch, n_classes = logits.shape
    zero = losses.dtype.type(0)
    for i in prange(n_batch):
        z = logits[i]
        t = labels[i]
        m, s = _log_sum_exp_parts(z)
        log_s = math.log(s)
        loss = keep * weight[t] * (log_s - (z[t] - m))
        if spread != zero:
            smooth = zero
            for c in range(n_classes):
                smooth += weight[c] * (log_s - (z[c] - m))
            loss += spread * smooth
        losses[i] = loss


@cpu_kernel
def cross_entropy_backward(logits, labels, weight, keep, spread, scale, dlogits):
    """Gradient of ``scale * sum_i losses[i]`` (see :func:`cross_entropy_forward`).

    ``dlogits[i, j] = scale * (S * p[j] - keep * w[t] * [j == t] - spread * w[j])``
    with ``p = softmax(z)`` and ``S = keep * w[t] + spread * sum_c w[c]``.

    Shape: logits (N, C), labels (N,) int64, weight (C,), dlogits (N, C). Parallel
    over ``N``.
    """
    n_batch, n_classes = logits.shape
    zero = dlogits.dtype.type(0)
    weight_total = zero
    for c in range(n_classes):
        weight_total += weight[c]
    for i in prange(n_batch):
        z = logits[i]
        t = labels[i]
        dst = dlogits[i]
        m, s = _log_sum_exp_parts(z)
        hit = keep * weight[t]
        total = hit
        if spread != zero:
            total += spread * weight_total
        for j in range(n_classes):
            dst[j] = total * (math.exp(z[j] - m) / s)
        if spread != zero:
            for j in range(n_classes):
                dst[j] -= spread * weight[j]
        dst[t] -= hit
        for j in range(n_classes):
            dst[j] *= scale


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
