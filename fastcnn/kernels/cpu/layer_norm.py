"""Layer, group and channel-wise layer normalisation: per-sample statistics, the
normalising transforms and their gradients.

Shared conventions
------------------
- ``layer_norm_*`` take ``(R, D)`` views: each row is normalised over its ``D``
  values (the trailing ``normalized_shape`` axes, flattened); weight and bias are
  ``(D,)``.
- ``group_norm_*`` take ``(N, G, K, S)`` views: each ``(n, g)`` group of ``K``
  channels of ``S`` values is normalised together; weight and bias are ``(G, K)``
  views of the ``(C,)`` parameters.
- ``layer_norm2d_*`` take ``(N, C, S)`` views of NCHW data: each pixel ``(n, s)`` is
  normalised over its ``C`` channel values; weight and bias are ``(C,)``.
- :func:`row_stats` gives the statistics of the first two (rows of ``(R, M)``:
  ``(N * G, K * S)`` for groups). Means and inverse standard deviations
  ``1 / sqrt(var + eps)`` (biased variance, two passes) are float64 whatever the
  data's dtype, and every sum is accumulated in float64, as in ``norm.py``.

Determinism: every ``prange`` writes disjoint rows, groups, planes or pixel blocks.
The weight and bias gradients sum over all rows (pixels, samples): each parallel
task sums its own fixed share of them into its own float64 buffer, and the buffers
are added after the loop in task order. Shares are set by the shapes alone, so
results are bitwise the same for any thread count.
"""

import numpy as np
from numba import prange

from .._jit import cpu_kernel, cpu_reduction
from .norm import _plane_grad_sums, _plane_sq_dev, _plane_sum

#: Pixels per task in the channel-wise kernels (a block's running sums stay in L1).
PIXEL_BLOCK = 512
#: Values per share of the weight-gradient sums over rows (a share is at least one
#: row, and there are at most ``MAX_SHARES`` of them).
SHARE_SIZE = 4096
MAX_SHARES = 64


@cpu_reduction
def _row_grad_sums(grow, xrow, weight, mu, istd):
    """``sum(w * dy)`` and ``sum(w * dy * xhat)`` over one row, in float64."""
    sum_g = 0.0
    sum_gx = 0.0
    for d in range(grow.shape[0]):
        wg = np.float64(grow[d]) * np.float64(weight[d])
        sum_g += wg
        sum_gx += wg * ((np.float64(xrow[d]) - mu) * istd)
    return sum_g, sum_gx


@cpu_reduction
def _pixel_grad_sums(gseg, xseg, mseg, iseg):
    """``sum(dy)`` and ``sum(dy * xhat)`` over a segment of one channel plane."""
    sum_g = 0.0
    sum_gx = 0.0
    for s in range(gseg.shape[0]):
        g = np.float64(gseg[s])
        sum_g += g
        sum_gx += g * ((np.float64(xseg[s]) - mseg[s]) * iseg[s])
    return sum_g, sum_gx


@cpu_kernel
def row_stats(x, eps, mean, invstd):
    """Per-row mean and ``1 / sqrt(var + eps)`` (biased variance, two passes).

    Shape: x (R, M), mean (R,), invstd (R,); eps a float. Parallel over ``R``.
    """
    n_rows, m = x.shape
    for r in prange(n_rows):
        mu = _plane_sum(x[r]) / m
        var = _plane_sq_dev(x[r], mu) / m
        mean[r] = mu
        invstd[r] = 1.0 / np.sqrt(var + eps)


@cpu_kernel
def layer_norm_apply(x, mean, invstd, weight, bias, y):
    """``y = (x - mean[r]) * invstd[r] * weight[d] + bias[d]``, in float64.

    Shape: x (R, D), mean (R,), invstd (R,), weight (D,), bias (D,), y (R, D).
    Parallel over ``R``.
    """
    n_rows, d_size = x.shape
    for r in prange(n_rows):
        mu = mean[r]
        istd = invstd[r]
        src = x[r]
        dst = y[r]
        for d in range(d_size):
            dst[d] = ((src[d] - mu) * istd) * np.float64(weight[d]) + bias[d]


@cpu_kernel
def layer_norm_backward(dy, x, mean, invstd, weight, dx, dweight, dbias):
    """Gradients of :func:`layer_norm_apply` through the row statistics.

    With ``xhat = (x - mean) * invstd`` and ``g = weight * dy``, per row
    ``dx = invstd / D * (D * g - sum(g) - xhat * sum(g * xhat))``; over all rows
    ``dweight = sum(dy * xhat)`` and ``dbias = sum(dy)``.

    Shape: dy, x, dx (R, D); mean, invstd (R,); weight, dweight, dbias (D,).
    Parallel over fixed shares of rows, whose float64 weight-gradient sums are
    added in share order after the loop.
    """
    n_rows, d_size = x.shape
    n_shares = min(n_rows, MAX_SHARES, max(1, n_rows * d_size // SHARE_SIZE))
    partial = np.empty((n_shares, 2, d_size))
    for p in prange(n_shares):
        part_w = partial[p, 0]
        part_b = partial[p, 1]
        for d in range(d_size):
            part_w[d] = 0.0
            part_b[d] = 0.0
        for r in range(p * n_rows // n_shares, (p + 1) * n_rows // n_shares):
            mu = mean[r]
            istd = invstd[r]
            grow = dy[r]
            xrow = x[r]
            drow = dx[r]
            sum_g, sum_gx = _row_grad_sums(grow, xrow, weight, mu, istd)
            k = istd / d_size
            for d in range(d_size):
                g = np.float64(grow[d])
                xhat = (xrow[d] - mu) * istd
                drow[d] = k * (d_size * g * weight[d] - sum_g - xhat * sum_gx)
                part_w[d] += g * xhat
                part_b[d] += g
    for d in range(d_size):
        acc_w = 0.0
        acc_b = 0.0
        for p in range(n_shares):
            acc_w += partial[p, 0, d]
            acc_b += partial[p, 1, d]
        dweight[d] = acc_w
        dbias[d] = acc_b


@cpu_kernel
def group_norm_apply(x, mean, invstd, weight, bias, y):
    """``y = (x - mean[n, g]) * invstd[n, g] * weight[g, k] + bias[g, k]``.

    Shape: x (N, G, K, S), mean (N, G), invstd (N, G), weight (G, K), bias (G, K),
    y (N, G, K, S). Parallel over ``N * G * K`` (one channel plane each).
    """
    n_batch, n_groups, k_size, s_size = x.shape
    for task in prange(n_batch * n_groups * k_size):
        k = task % k_size
        t = task // k_size
        g = t % n_groups
        n = t // n_groups
        mu = mean[n, g]
        alpha = invstd[n, g] * np.float64(weight[g, k])
        beta = np.float64(bias[g, k])
        src = x[n, g, k]
        dst = y[n, g, k]
        for s in range(s_size):
            dst[s] = (src[s] - mu) * alpha + beta


@cpu_kernel
def group_norm_backward(dy, x, mean, invstd, weight, dx, dweight, dbias):
    """Gradients of :func:`group_norm_apply` through the group statistics.

    Per channel plane ``a = sum(dy)`` and ``b = sum(dy * (x - mean))``; per group
    ``sum_g = sum(weight * a)``, ``sum_gx = invstd * sum(weight * b)`` and, with
    ``M = K * S``, ``dx = invstd / M * (M * weight * dy - sum_g - xhat * sum_gx)``;
    ``dweight[g, k] = sum_n invstd * b`` and ``dbias[g, k] = sum_n a``.

    Shape: dy, x, dx (N, G, K, S); mean, invstd (N, G); weight, dweight, dbias
    (G, K). Parallel over ``N * G`` groups; the per-plane sums are kept in float64
    and added over ``N`` in order after the loop.
    """
    n_batch, n_groups, k_size, s_size = x.shape
    m = k_size * s_size
    sums = np.empty((n_batch, n_groups, k_size, 2))
    for task in prange(n_batch * n_groups):
        g = task % n_groups
        n = task // n_groups
        mu = mean[n, g]
        istd = invstd[n, g]
        sum_g = 0.0
        sum_gx = 0.0
        for k in range(k_size):
            a, b = _plane_grad_sums(dy[n, g, k], x[n, g, k], mu)
            sums[n, g, k, 0] = a
            sums[n, g, k, 1] = b
            w = np.float64(weight[g, k])
            sum_g += w * a
            sum_gx += w * b
        sum_gx *= istd
        scale = istd / m
        for k in range(k_size):
            w = np.float64(weight[g, k])
            grow = dy[n, g, k]
            xrow = x[n, g, k]
            drow = dx[n, g, k]
            for s in range(s_size):
                xhat = (xrow[s] - mu) * istd
                drow[s] = scale * (m * w * grow[s] - sum_g - xhat * sum_gx)
    for g in range(n_groups):
        for k in range(k_size):
            acc_w = 0.0
            acc_b = 0.0
            for n in range(n_batch):
                acc_w += sums[n, g, k, 1] * invstd[n, g]
                acc_b += sums[n, g, k, 0]
            dweight[g, k] = acc_w
            dbias[g, k] = acc_b


@cpu_kernel
def layer_norm2d_stats(x, eps, mean, invstd):
    """Per-pixel mean over the channels and ``1 / sqrt(var + eps)`` (biased, two
    passes), each pixel's sums taken in channel order.

    Shape: x (N, C, S), mean (N, S), invstd (N, S); eps a float. Parallel over
    ``N`` times blocks of :data:`PIXEL_BLOCK` pixels.
    """
    n_batch, n_chan, s_size = x.shape
    n_blocks = (s_size + PIXEL_BLOCK - 1) // PIXEL_BLOCK
    for task in prange(n_batch * n_blocks):
        n = task // n_blocks
        s0 = (task % n_blocks) * PIXEL_BLOCK
        s1 = min(s0 + PIXEL_BLOCK, s_size)
        mseg = mean[n, s0:s1]
        iseg = invstd[n, s0:s1]
        width = s1 - s0
        for s in range(width):
            mseg[s] = 0.0
            iseg[s] = 0.0
        for c in range(n_chan):
            src = x[n, c, s0:s1]
            for s in range(width):
                mseg[s] += src[s]
        for s in range(width):
            mseg[s] /= n_chan
        for c in range(n_chan):
            src = x[n, c, s0:s1]
            for s in range(width):
                diff = src[s] - mseg[s]
                iseg[s] += diff * diff
        for s in range(width):
            iseg[s] = 1.0 / np.sqrt(iseg[s] / n_chan + eps)


@cpu_kernel
def layer_norm2d_apply(x, mean, invstd, weight, bias, y):
    """``y = (x - mean[n, s]) * invstd[n, s] * weight[c] + bias[c]``, in float64.

    Shape: x (N, C, S), mean (N, S), invstd (N, S), weight (C,), bias (C,),
    y (N, C, S). Parallel over ``N * C`` (one plane each).
    """
    n_batch, n_chan, s_size = x.shape
    for task in prange(n_batch * n_chan):
        n = task // n_chan
        c = task % n_chan
        w = np.float64(weight[c])
        b = np.float64(bias[c])
        src = x[n, c]
        dst = y[n, c]
        mrow = mean[n]
        irow = invstd[n]
        for s in range(s_size):
            dst[s] = ((src[s] - mrow[s]) * irow[s]) * w + b


@cpu_kernel
def layer_norm2d_backward(dy, x, mean, invstd, weight, dx, dweight, dbias):
    """Gradients of :func:`layer_norm2d_apply` through the pixel statistics.

    Per pixel, over the channels, with ``g = weight * dy``:
    ``dx = invstd / C * (C * g - sum(g) - xhat * sum(g * xhat))``; over all pixels
    ``dweight[c] = sum(dy * xhat)`` and ``dbias[c] = sum(dy)``.

    Shape: dy, x, dx (N, C, S); mean, invstd (N, S); weight, dweight, dbias (C,).
    Parallel over ``N`` times blocks of :data:`PIXEL_BLOCK` pixels; each block's
    float64 weight-gradient sums are added in block order after the loop.
    """
    n_batch, n_chan, s_size = x.shape
    n_blocks = (s_size + PIXEL_BLOCK - 1) // PIXEL_BLOCK
    n_tasks = n_batch * n_blocks
    partial = np.empty((n_tasks, 2, n_chan))
    for task in prange(n_tasks):
        n = task // n_blocks
        s0 = (task % n_blocks) * PIXEL_BLOCK
        s1 = min(s0 + PIXEL_BLOCK, s_size)
        width = s1 - s0
        mseg = mean[n, s0:s1]
        iseg = invstd[n, s0:s1]
        sum_g = np.zeros(width)
        sum_gx = np.zeros(width)
        for c in range(n_chan):
            w = np.float64(weight[c])
            gseg = dy[n, c, s0:s1]
            xseg = x[n, c, s0:s1]
            plane_g, plane_gx = _pixel_grad_sums(gseg, xseg, mseg, iseg)
            partial[task, 0, c] = plane_gx
            partial[task, 1, c] = plane_g
            for s in range(width):
                wg = w * gseg[s]
                sum_g[s] += wg
                sum_gx[s] += wg * ((xseg[s] - mseg[s]) * iseg[s])
        for c in range(n_chan):
            w = np.float64(weight[c])
            gseg = dy[n, c, s0:s1]
            xseg = x[n, c, s0:s1]
            dseg = dx[n, c, s0:s1]
            for s in range(width):
                xhat = (xseg[s] - mseg[s]) * iseg[s]
                dseg[s] = iseg[s] / n_chan * (
                    n_chan * w * gseg[s] - sum_g[s] - xhat * sum_gx[s])
    for c in range(n_chan):
        acc_w = 0.0
        acc_b = 0.0
        for t in range(n_tasks):
            acc_w += partial[t, 0, c]
            acc_b += partial[t, 1, c]
        dweight[c] = acc_w
        dbias[c] = acc_b
