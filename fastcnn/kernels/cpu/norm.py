"""Batch normalisation: per-channel statistics, the normalising transform and its
gradients.

Shared conventions
------------------
- ``x``, ``y``, ``dy``, ``dx`` have shape ``(N, C, S)``: the caller views ``(N, C)``
  input as ``S = 1`` and ``(N, C, H, W)`` input as ``S = H * W``. A channel's
  ``M = N * S`` values are its statistics' sample.
- ``mean``, ``m2`` and ``invstd`` are float64 ``(C,)`` whatever the data's dtype, and
  every sum is accumulated in float64 (as PyTorch's CPU kernels do): a float32 sum
  over a large batch of images would lose digits the statistics need. Results are
  rounded to the data's dtype once, when stored.
- ``weight`` and ``bias`` have the data's dtype, shape ``(C,)`` (ones and zeros where
  the layer has none).

Each kernel's ``prange`` runs over channels (or ``N * C`` planes for the elementwise
transform). A channel's sums run plane by plane (``n``) inside one iteration, each
plane's sum vectorised over ``s`` by the reduction helpers (:func:`_plane_sum` and
its kin, compiled with reassociation: a serial float64 sum waits 4 cycles per
element on the add before it, and made the statistics the slowest part of a
BatchNorm layer). The order is fixed by the shapes and the machine code, never by
the thread count, so results are bitwise the same for any thread count.
"""

import numpy as np
from numba import prange

from .._jit import cpu_kernel, cpu_reduction


@cpu_reduction
def _plane_sum(row):
    """``sum(row)`` in float64."""
    acc = 0.0
    for s in range(row.shape[0]):
        acc += np.float64(row[s])
    return acc


@cpu_reduction
def _plane_sq_dev(row, mu):
    """``sum((row - mu) ** 2)`` in float64."""
    acc = 0.0
    for s in range(row.shape[0]):
        d = np.float64(row[s]) - mu
        acc += d * d
    return acc


@cpu_reduction
def _plane_grad_sums(grow, xrow, mu):
    """``sum(dy)`` and ``sum(dy * (x - mu))`` in float64."""
    sum_dy = 0.0
    sum_dy_xc = 0.0
    for s in range(grow.shape[0]):
        g = np.float64(grow[s])
        sum_dy += g
        sum_dy_xc += g * (np.float64(xrow[s]) - mu)
    return sum_dy, sum_dy_xc


@cpu_kernel
def batch_norm_stats(x, mean, m2):
    """Per-channel mean and sum of squared deviations from it (two passes, which is
    accurate where the mean is large against the spread).

    Shape: x (N, C, S), mean (C,), m2 (C,). Parallel over ``C``.
    """
    n_batch, n_chan, s_size = x.shape
    count = n_batch * s_size
    for c in prange(n_chan):
        acc = 0.0
        for n in range(n_batch):
            acc += _plane_sum(x[n, c])
        mu = acc / count
        acc = 0.0
        for n in range(n_batch):
            acc += _plane_sq_dev(x[n, c], mu)
        mean[c] = mu
        m2[c] = acc


@cpu_kernel
def batch_norm_apply(x, mean, invstd, weight, bias, y):
    """``y = (x - mean[c]) * invstd[c] * weight[c] + bias[c]``, in float64.

    Shape: x (N, C, S), mean (C,), invstd (C,), weight (C,), bias (C,),
    y (N, C, S). Parallel over ``N * C`` (one plane each).
    """
    n_batch, n_chan, s_size = x.shape
    for task in prange(n_batch * n_chan):
        n = task // n_chan
        c = task % n_chan
        mu = mean[c]
        alpha = invstd[c] * np.float64(weight[c])
        beta = np.float64(bias[c])
        src = x[n, c]
        dst = y[n, c]
        for s in range(s_size):
            dst[s] = (src[s] - mu) * alpha + beta


@cpu_kernel
def batch_norm_backward(dy, x, mean, invstd, weight, training, dx, dweight, dbias):
    """Gradients of :func:`batch_norm_apply` with respect to x, weight and bias.

    ``dweight[c] = sum(dy * xhat)`` and ``dbias[c] = sum(dy)`` with
    ``xhat = (x - mean) * invstd``. With ``training`` the mean and invstd are the
    batch's own, so the gradient flows through them:
    ``dx = weight * invstd / M * (M * dy - dbias - xhat * dweight)``; otherwise they
    are constants and ``dx = dy * weight * invstd``.

    Shape: dy, x, dx (N, C, S); mean, invstd, weight, dweight, dbias (C,).
    Parallel over ``C``.
    """
    n_batch, n_chan, s_size = x.shape
    count = n_batch * s_size
    for c in prange(n_chan):
        mu = mean[c]
        istd = invstd[c]
        w = np.float64(weight[c])
        sum_dy = 0.0
        sum_dy_xc = 0.0
        for n in range(n_batch):
            plane_dy, plane_dy_xc = _plane_grad_sums(dy[n, c], x[n, c], mu)
            sum_dy += plane_dy
            sum_dy_xc += plane_dy_xc
        dw = sum_dy_xc * istd
        dweight[c] = dw
        dbias[c] = sum_dy
        if training:
            k = w * istd / count
            for n in range(n_batch):
                grow = dy[n, c]
                xrow = x[n, c]
                drow = dx[n, c]
                for s in range(s_size):
                    xhat = (xrow[s] - mu) * istd
                    drow[s] = k * (count * np.float64(grow[s]) - sum_dy - xhat * dw)
        else:
            k = w * istd
            for n in range(n_batch):
                grow = dy[n, c]
                drow = dx[n, c]
                for s in range(s_size):
                    drow[s] = np.float64(grow[s]) * k
