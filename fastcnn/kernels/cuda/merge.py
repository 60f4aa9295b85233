"""CUDA twins of :mod:`fastcnn.kernels.cpu.merge` (same views: flat ``(S,)`` for the
sum, ``(outer, channels, inner)`` for concatenation); one thread per element
written."""

from numba import cuda

from .._jit import cuda_kernel
from . import _launch

#: Threads per block (patched small by tests).
THREADS_PER_BLOCK = 256


@cuda_kernel
def _add_forward(a, b, y):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = a[i] + b[i]


def add_forward(a, b, y):
    """``y = a + b``.

    Shape: a (S,), b (S,), y (S,). Grid: one thread per element.
    """
    _launch.run_threads(_add_forward, y.size, THREADS_PER_BLOCK, (a, b, y))


@cuda_kernel
def _channel_copy_in(part, offset, y):
    i = cuda.grid(1)
    outer, channels, inner = part.shape
    if i < outer * channels * inner:
        o = i // (channels * inner)
        c = (i // inner) % channels
        k = i % inner
        y[o, offset + c, k] = part[o, c, k]


def channel_copy_in(part, offset, y):
    """``y[:, offset:offset + part.shape[1], :] = part``.

    Shape: part (O, Cp, I), y (O, Cy, I). Grid: one thread per element of part.
    """
    _launch.run_threads(_channel_copy_in, part.size, THREADS_PER_BLOCK,
                        (part, offset, y))


@cuda_kernel
def _channel_copy_out(y, offset, part):
    i = cuda.grid(1)
    outer, channels, inner = part.shape
    if i < outer * channels * inner:
        o = i // (channels * inner)
        c = (i // inner) % channels
        k = i % inner
        part[o, c, k] = y[o, offset + c, k]


def channel_copy_out(y, offset, part):
    """``part = y[:, offset:offset + part.shape[1], :]``.

    Shape: y (O, Cy, I), part (O, Cp, I). Grid: one thread per element of part.
    """
    _launch.run_threads(_channel_copy_out, part.size, THREADS_PER_BLOCK,
                        (y, offset, part))
