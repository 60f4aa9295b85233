"""CUDA twins of :mod:`fastcnn.kernels.cpu.norm` (same conventions: ``(N, C, S)``
views, float64 statistics and float64 accumulation whatever the data's dtype).

Statistics and the backward run one block per channel: the block's threads stride
over the channel's ``M = N * S`` values, then a fixed-order tree reduction in shared
memory gives the sums (the same from run to run; not the CPU's serial order, so
equal to it within float64 rounding). The normalising transform runs one thread per
element.
"""

import numpy as np
from numba import cuda, float64

from .._jit import cuda_kernel
from . import _launch
from ._device import block_sum

#: Threads per block (patched small by tests; rounded down to a power of two for the
#: per-channel reductions).
THREADS_PER_BLOCK = 256


def _channel_launch(kernel, n_chan, args, staged_arrays, out):
    tpb = _launch.pow2_floor(THREADS_PER_BLOCK)
    with _launch.staged(*staged_arrays, out=out) as device:
        _launch.launch(kernel, n_chan, tpb, args(*device), tpb * 8)


@cuda_kernel
def _stats(x, mean, m2):
    n_batch, n_chan, s_size = x.shape
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    width = cuda.blockDim.x
    count = n_batch * s_size
    buf = cuda.shared.array(0, dtype=float64)
    acc = 0.0
    for i in range(tid, count, width):
        acc += np.float64(x[i // s_size, c, i % s_size])
    buf[tid] = acc
    mu = block_sum(buf, tid, width) / count
    acc = 0.0
    for i in range(tid, count, width):
        d = np.float64(x[i // s_size, c, i % s_size]) - mu
        acc += d * d
    buf[tid] = acc
    total = block_sum(buf, tid, width)
    if tid == 0:
        mean[c] = mu
        m2[c] = total


def batch_norm_stats(x, mean, m2):
    """Per-channel mean and sum of squared deviations from it (two passes).

    Shape: x (N, C, S), mean (C,), m2 (C,). Grid: one block per channel.
    """
    if mean.size == 0 or x.size == 0:
        return
    _channel_launch(_stats, x.shape[1], lambda *d: d, (x, mean, m2), (1, 2))


@cuda_kernel
def _apply(x, mean, invstd, weight, bias, y):
    i = cuda.grid(1)
    if i >= y.size:
        return
    n_chan, s_size = x.shape[1], x.shape[2]
    s = i % s_size
    t = i // s_size
    c = t % n_chan
    n = t // n_chan
    alpha = invstd[c] * np.float64(weight[c])
    y[n, c, s] = (x[n, c, s] - mean[c]) * alpha + np.float64(bias[c])


def batch_norm_apply(x, mean, invstd, weight, bias, y):
    """``y = (x - mean[c]) * invstd[c] * weight[c] + bias[c]``, in float64.

    Shape: x (N, C, S), mean (C,), invstd (C,), weight (C,), bias (C,),
    y (N, C, S). Grid: one thread per element.
    """
    _launch.run_threads(_apply, y.size, THREADS_PER_BLOCK,
                        (x, mean, invstd, weight, bias, y))


@cuda_kernel
def _backward(dy, x, mean, invstd, weight, training, dx, dweight, dbias):
    n_batch, n_chan, s_size = x.shape
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    width = cuda.blockDim.x
    count = n_batch * s_size
    buf = cuda.shared.array(0, dtype=float64)
    mu = mean[c]
    istd = invstd[c]
    w = np.float64(weight[c])
    acc = 0.0
    for i in range(tid, count, width):
        acc += np.float64(dy[i // s_size, c, i % s_size])
    buf[tid] = acc
    sum_dy = block_sum(buf, tid, width)
    acc = 0.0
    for i in range(tid, count, width):
        n = i // s_size
        s = i % s_size
        acc += np.float64(dy[n, c, s]) * (x[n, c, s] - mu)
    buf[tid] = acc
    sum_dy_xc = block_sum(buf, tid, width)
    dw = sum_dy_xc * istd
    if tid == 0:
        dweight[c] = dw
        dbias[c] = sum_dy
    if training:
        k = w * istd / count
        for i in range(tid, count, width):
            n = i // s_size
            s = i % s_size
            xhat = (x[n, c, s] - mu) * istd
            dx[n, c, s] = k * (count * np.float64(dy[n, c, s]) - sum_dy - xhat * dw)
    else:
        k = w * istd
        for i in range(tid, count, width):
            n = i // s_size
            s = i % s_size
            dx[n, c, s] = np.float64(dy[n, c, s]) * k


def batch_norm_backward(dy, x, mean, invstd, weight, training, dx, dweight, dbias):
    """Gradients of :func:`batch_norm_apply` with respect to x, weight and bias (see
    the CPU kernel for the formulas).

    Shape: dy, x, dx (N, C, S); mean, invstd, weight, dweight, dbias (C,).
    Grid: one block per channel.
    """
    if dweight.size == 0 or x.size == 0:
        return
    _channel_launch(
        _backward, x.shape[1],
        lambda dy_d, x_d, mean_d, invstd_d, weight_d, dx_d, dweight_d, dbias_d: (
            dy_d, x_d, mean_d, invstd_d, weight_d, bool(training), dx_d, dweight_d,
            dbias_d),
        (dy, x, mean, invstd, weight, dx, dweight, dbias), (5, 6, 7),
    )
