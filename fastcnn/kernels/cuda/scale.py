"""CUDA twins of :mod:`fastcnn.kernels.cpu.scale` (the same ``(N, C, S)`` views)."""

from numba import cuda

from .._jit import cuda_kernel
from . import _launch

#: Threads per block (patched small by tests).
THREADS_PER_BLOCK = 256


@cuda_kernel
def _channel_scale_forward(x, weight, y):
    i = cuda.grid(1)
    if i < y.size:
        channels, size = x.shape[1], x.shape[2]
        n = i // (channels * size)
        c = (i // size) % channels
        s = i % size
        y[n, c, s] = weight[c] * x[n, c, s]


def channel_scale_forward(x, weight, y):
    """``y[n, c, s] = weight[c] * x[n, c, s]`` (also the input gradient).

    Shape: x, y (N, C, S), weight (C,). Grid: one thread per element of y.
    """
    _launch.run_threads(_channel_scale_forward, y.size, THREADS_PER_BLOCK,
                        (x, weight, y))


@cuda_kernel
def _channel_scale_backward_weight(dy, x, dweight):
    c = cuda.grid(1)
    if c < dweight.size:
        acc = 0.0
        for n in range(x.shape[0]):
            for s in range(x.shape[2]):
                acc += float(dy[n, c, s]) * float(x[n, c, s])
        dweight[c] = acc


def channel_scale_backward_weight(dy, x, dweight):
    """``dweight[c]``: the sum of ``dy * x`` over n and s, in float64, in (n, s)
    order (the CPU kernel's vectorised dots may differ in the last bits).

    Shape: dy, x (N, C, S), dweight (C,). Grid: one thread per channel.
    """
    _launch.run_threads(_channel_scale_backward_weight, dweight.size,
                        THREADS_PER_BLOCK, (dy, x, dweight))
