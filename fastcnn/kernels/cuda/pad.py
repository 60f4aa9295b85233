"""CUDA twin of :mod:`fastcnn.kernels.cpu.pad` (constant padding and cropping of the
last two axes); one thread per output element."""

from numba import cuda

from .._jit import cuda_kernel
from . import _launch

#: Threads per block (patched small by tests).
THREADS_PER_BLOCK = 256


@cuda_kernel
def _pad_constant(x, y, top, left, value):
    i = cuda.grid(1)
    if i >= y.size:
        return
    rows, wo = y.shape[1], y.shape[2]
    b = i // (rows * wo)
    k = i % (rows * wo)
    r = k // wo - top
    q = k % wo - left
    if 0 <= r < x.shape[1] and 0 <= q < x.shape[2]:
        y[b, k // wo, k % wo] = x[b, r, q]
    else:
        y[b, k // wo, k % wo] = value


def pad_constant(x, y, top, left, value):
    """``y[b, i, j] = x[b, i - top, j - left]`` where that lies inside ``x``, else
    ``value`` (see the CPU kernel: padding, cropping and both backwards).

    Shape: x (B, H, W), y (B, Ho, Wo). Grid: one thread per element of y.
    """
    _launch.run_threads(_pad_constant, y.size, THREADS_PER_BLOCK,
                        (x, y, top, left, value), out=(1,))
