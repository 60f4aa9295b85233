"""CUDA twins of :mod:`fastcnn.kernels.cpu.layer_norm` (same views and the same
float64 statistics and accumulation whatever the data's dtype).

Row and group statistics, and the row and group input gradients, run one block
per row (group): its threads stride over the values, then a fixed-order tree
reduction in shared memory gives the sums. The channel-wise (``layer_norm2d``)
statistics and input gradients run one thread per pixel, summing its channels
serially in the CPU's order. The weight and bias gradients run one thread per
parameter, summing over rows (samples, pixels) serially in order. Every result is
the same from run to run; sums are not in the CPU's order everywhere, so they
equal it within float64 rounding.
"""

import math

import numpy as np
from numba import cuda, float64

from .._jit import cuda_kernel
from . import _launch
from ._device import block_sum, unravel4

#: Threads per block (patched small by tests; rounded down to a power of two for
#: the per-row reductions).
THREADS_PER_BLOCK = 256


def _block_launch(kernel, n_blocks, args):
    """One block per row (group) with a float64 shared buffer per thread."""
    tpb = _launch.pow2_floor(THREADS_PER_BLOCK)
    _launch.launch(kernel, n_blocks, tpb, args, tpb * 8)


def _thread_launch(kernel, count, args):
    _launch.launch(kernel, _launch.n_blocks(count, THREADS_PER_BLOCK),
                   THREADS_PER_BLOCK, args)


# ----------------------------------------------------------------- statistics


@cuda_kernel
def _row_stats(x, eps, mean, invstd):
    m = x.shape[1]
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    width = cuda.blockDim.x
    buf = cuda.shared.array(0, dtype=float64)
    acc = 0.0
    for i in range(tid, m, width):
        acc += np.float64(x[r, i])
    buf[tid] = acc
    mu = block_sum(buf, tid, width) / m
    acc = 0.0
    for i in range(tid, m, width):
        d = np.float64(x[r, i]) - mu
        acc += d * d
    buf[tid] = acc
    var = block_sum(buf, tid, width) / m
    if tid == 0:
        mean[r] = mu
        invstd[r] = 1.0 / math.sqrt(var + eps)


def row_stats(x, eps, mean, invstd):
    """Per-row mean and ``1 / sqrt(var + eps)`` (biased variance, two passes).

    Shape: x (R, M), mean (R,), invstd (R,); eps a float. Grid: one block per row.
    """
    if x.size == 0:
        return
    with _launch.staged(x, mean, invstd, out=(1, 2)) as (x_d, mean_d, invstd_d):
        _block_launch(_row_stats, x.shape[0], (x_d, float(eps), mean_d, invstd_d))


@cuda_kernel
def _pixel_stats(x, eps, mean, invstd):
    i = cuda.grid(1)
    if i >= mean.size:
        return
    n_chan, s_size = x.shape[1], x.shape[2]
    n = i // s_size
    s = i % s_size
    acc = 0.0
    for c in range(n_chan):
        acc += np.float64(x[n, c, s])
    mu = acc / n_chan
    acc = 0.0
    for c in range(n_chan):
        d = np.float64(x[n, c, s]) - mu
        acc += d * d
    mean[n, s] = mu
    invstd[n, s] = 1.0 / math.sqrt(acc / n_chan + eps)


def layer_norm2d_stats(x, eps, mean, invstd):
    """Per-pixel mean over the channels and ``1 / sqrt(var + eps)`` (biased, two
    passes, channel order).

    Shape: x (N, C, S), mean (N, S), invstd (N, S); eps a float. Grid: one thread
    per pixel.
    """
    if x.size == 0:
        return
    with _launch.staged(x, mean, invstd, out=(1, 2)) as (x_d, mean_d, invstd_d):
        _thread_launch(_pixel_stats, mean.size, (x_d, float(eps), mean_d, invstd_d))


# --------------------------------------------------------------------- layer_norm


@cuda_kernel
def _ln_apply(x, mean, invstd, weight, bias, y):
    i = cuda.grid(1)
    if i >= y.size:
        return
    d_size = x.shape[1]
    r = i // d_size
    d = i % d_size
    y[r, d] = ((x[r, d] - mean[r]) * invstd[r]) * np.float64(weight[d]) + bias[d]


def layer_norm_apply(x, mean, invstd, weight, bias, y):
    """``y = (x - mean[r]) * invstd[r] * weight[d] + bias[d]``, in float64.

    Shape: x (R, D), mean (R,), invstd (R,), weight (D,), bias (D,), y (R, D).
    Grid: one thread per element.
    """
    _launch.run_threads(_ln_apply, y.size, THREADS_PER_BLOCK,
                        (x, mean, invstd, weight, bias, y))


@cuda_kernel
def _ln_backward_input(dy, x, mean, invstd, weight, dx):
    d_size = x.shape[1]
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    width = cuda.blockDim.x
    buf = cuda.shared.array(0, dtype=float64)
    mu = mean[r]
    istd = invstd[r]
    acc = 0.0
    for d in range(tid, d_size, width):
        acc += np.float64(dy[r, d]) * np.float64(weight[d])
    buf[tid] = acc
    sum_g = block_sum(buf, tid, width)
    acc = 0.0
    for d in range(tid, d_size, width):
        wg = np.float64(dy[r, d]) * np.float64(weight[d])
        acc += wg * ((x[r, d] - mu) * istd)
    buf[tid] = acc
    sum_gx = block_sum(buf, tid, width)
    k = istd / d_size
    for d in range(tid, d_size, width):
        xhat = (x[r, d] - mu) * istd
        dx[r, d] = k * (d_size * np.float64(dy[r, d]) * weight[d] - sum_g
                        - xhat * sum_gx)


@cuda_kernel
def _ln_backward_params(dy, x, mean, invstd, dweight, dbias):
    d = cuda.grid(1)
    if d >= dweight.size:
        return
    acc_w = 0.0
    acc_b = 0.0
    for r in range(x.shape[0]):
        g = np.float64(dy[r, d])
        acc_w += g * ((x[r, d] - mean[r]) * invstd[r])
        acc_b += g
    dweight[d] = acc_w
    dbias[d] = acc_b


def layer_norm_backward(dy, x, mean, invstd, weight, dx, dweight, dbias):
    """Gradients of :func:`layer_norm_apply` through the row statistics (see the
    CPU kernel for the formulas).

    Shape: dy, x, dx (R, D); mean, invstd (R,); weight, dweight, dbias (D,).
    Grid: one block per row for dx, then one thread per column for dweight and
    dbias.
    """
    if x.size == 0:
        return
    with _launch.staged(dy, x, mean, invstd, weight, dx, dweight, dbias,
                        out=(5, 6, 7)) as d:
        _block_launch(_ln_backward_input, x.shape[0], d[:6])
        _thread_launch(_ln_backward_params, x.shape[1], (*d[:4], d[6], d[7]))


# --------------------------------------------------------------------- group_norm


@cuda_kernel
def _gn_apply(x, mean, invstd, weight, bias, y):
    i = cuda.grid(1)
    if i >= y.size:
        return
    n_groups, k_size, s_size = x.shape[1], x.shape[2], x.shape[3]
    n, g, k, s = unravel4(i, n_groups, k_size, s_size)
    alpha = invstd[n, g] * np.float64(weight[g, k])
    y[n, g, k, s] = (x[n, g, k, s] - mean[n, g]) * alpha + np.float64(bias[g, k])


def group_norm_apply(x, mean, invstd, weight, bias, y):
    """``y = (x - mean[n, g]) * invstd[n, g] * weight[g, k] + bias[g, k]``.

    Shape: x (N, G, K, S), mean (N, G), invstd (N, G), weight (G, K), bias (G, K),
    y (N, G, K, S). Grid: one thread per element.
    """
    _launch.run_threads(_gn_apply, y.size, THREADS_PER_BLOCK,
                        (x, mean, invstd, weight, bias, y))


@cuda_kernel
def _gn_backward_input(dy, x, mean, invstd, weight, sums, dx):
    n_groups, k_size, s_size = x.shape[1], x.shape[2], x.shape[3]
    b = cuda.blockIdx.x
    n = b // n_groups
    g = b % n_groups
    tid = cuda.threadIdx.x
    width = cuda.blockDim.x
    buf = cuda.shared.array(0, dtype=float64)
    mu = mean[n, g]
    istd = invstd[n, g]
    sum_g = 0.0
    sum_gx = 0.0
    for k in range(k_size):
        acc = 0.0
        for s in range(tid, s_size, width):
            acc += np.float64(dy[n, g, k, s])
        buf[tid] = acc
        plane_g = block_sum(buf, tid, width)
        acc = 0.0
        for s in range(tid, s_size, width):
            acc += np.float64(dy[n, g, k, s]) * (x[n, g, k, s] - mu)
        buf[tid] = acc
        plane_gx = block_sum(buf, tid, width)
        if tid == 0:
            sums[n, g, k, 0] = plane_g
            sums[n, g, k, 1] = plane_gx
        w = np.float64(weight[g, k])
        sum_g += w * plane_g
        sum_gx += w * plane_gx
    sum_gx *= istd
    m = k_size * s_size
    scale = istd / m
    for i in range(tid, m, width):
        k = i // s_size
        s = i % s_size
        xhat = (x[n, g, k, s] - mu) * istd
        dx[n, g, k, s] = scale * (m * np.float64(weight[g, k]) * dy[n, g, k, s]
                                  - sum_g - xhat * sum_gx)


@cuda_kernel
def _gn_backward_params(invstd, sums, dweight, dbias):
    i = cuda.grid(1)
    if i >= dweight.size:
        return
    k_size = dweight.shape[1]
    g = i // k_size
    k = i % k_size
    acc_w = 0.0
    acc_b = 0.0
    for n in range(sums.shape[0]):
        acc_w += sums[n, g, k, 1] * invstd[n, g]
        acc_b += sums[n, g, k, 0]
    dweight[g, k] = acc_w
    dbias[g, k] = acc_b


def group_norm_backward(dy, x, mean, invstd, weight, dx, dweight, dbias):
    """Gradients of :func:`group_norm_apply` through the group statistics (see the
    CPU kernel for the formulas).

    Shape: dy, x, dx (N, G, K, S); mean, invstd (N, G); weight, dweight, dbias
    (G, K). Grid: one block per group for dx (its per-plane sums kept in a float64
    scratch buffer), then one thread per channel for dweight and dbias.
    """
    if x.size == 0:
        return
    n_batch, n_groups, k_size = x.shape[:3]
    with _launch.staged(dy, x, mean, invstd, weight, dx, dweight, dbias,
                        out=(5, 6, 7)) as d:
        sums = _launch.scratch((n_batch, n_groups, k_size, 2), np.float64)
        _block_launch(_gn_backward_input, n_batch * n_groups, (*d[:5], sums, d[5]))
        _thread_launch(_gn_backward_params, n_groups * k_size,
                       (d[3], sums, d[6], d[7]))


# ------------------------------------------------------------------- layer_norm2d


@cuda_kernel
def _ln2d_apply(x, mean, invstd, weight, bias, y):
    i = cuda.grid(1)
    if i >= y.size:
        return
    n_chan, s_size = x.shape[1], x.shape[2]
    s = i % s_size
    t = i // s_size
    c = t % n_chan
    n = t // n_chan
    y[n, c, s] = ((x[n, c, s] - mean[n, s]) * invstd[n, s]) * np.float64(
        weight[c]) + np.float64(bias[c])


def layer_norm2d_apply(x, mean, invstd, weight, bias, y):
    """``y = (x - mean[n, s]) * invstd[n, s] * weight[c] + bias[c]``, in float64.

    Shape: x (N, C, S), mean (N, S), invstd (N, S), weight (C,), bias (C,),
    y (N, C, S). Grid: one thread per element.
    """
    _launch.run_threads(_ln2d_apply, y.size, THREADS_PER_BLOCK,
                        (x, mean, invstd, weight, bias, y))


@cuda_kernel
def _ln2d_backward_input(dy, x, mean, invstd, weight, dx):
    i = cuda.grid(1)
    if i >= mean.size:
        return
    n_chan, s_size = x.shape[1], x.shape[2]
    n = i // s_size
    s = i % s_size
    mu = mean[n, s]
    istd = invstd[n, s]
    sum_g = 0.0
    sum_gx = 0.0
    for c in range(n_chan):
        wg = np.float64(weight[c]) * dy[n, c, s]
        sum_g += wg
        sum_gx += wg * ((x[n, c, s] - mu) * istd)
    k = istd / n_chan
    for c in range(n_chan):
        xhat = (x[n, c, s] - mu) * istd
        dx[n, c, s] = k * (n_chan * np.float64(weight[c]) * dy[n, c, s] - sum_g
                           - xhat * sum_gx)


@cuda_kernel
def _ln2d_backward_params(dy, x, mean, invstd, dweight, dbias):
    c = cuda.grid(1)
    if c >= dweight.size:
        return
    acc_w = 0.0
    acc_b = 0.0
    for n in range(x.shape[0]):
        for s in range(x.shape[2]):
            g = np.float64(dy[n, c, s])
            acc_w += g * ((x[n, c, s] - mean[n, s]) * invstd[n, s])
            acc_b += g
    dweight[c] = acc_w
    dbias[c] = acc_b


def layer_norm2d_backward(dy, x, mean, invstd, weight, dx, dweight, dbias):
    """Gradients of :func:`layer_norm2d_apply` through the pixel statistics (see
    the CPU kernel for the formulas).

    Shape: dy, x, dx (N, C, S); mean, invstd (N, S); weight, dweight, dbias (C,).
    Grid: one thread per pixel for dx, then one thread per channel for dweight
    and dbias.
    """
    if x.size == 0:
        return
    with _launch.staged(dy, x, mean, invstd, weight, dx, dweight, dbias,
                        out=(5, 6, 7)) as d:
        _thread_launch(_ln2d_backward_input, mean.size, d[:6])
        _thread_launch(_ln2d_backward_params, x.shape[1], (*d[:4], d[6], d[7]))
