"""CUDA twin of :mod:`fastcnn.kernels.cpu.dropout`: the same counter-based mask, bit
for bit.

A CUDA kernel cannot call the CPU's ``@cpu_helper`` functions (numba compiles a
called dispatcher for the caller's target only when it is a CUDA one), so
:func:`splitmix64` and :func:`uniform01` are device-function twins that repeat the
same uint64 arithmetic with the same constants (imported from the CPU module, so the
two cannot drift apart). On a GPU they are callable from kernels only. In the
simulator the uint64 products wrap with NumPy's "overflow encountered" warning,
which is expected there.
"""

import numpy as np
from numba import cuda

from .._jit import cuda_device, cuda_kernel
from ..cpu.dropout import _INV_2_53, _MIX1, _MIX2, _ONE, _S11, _S27, _S30, _S31, GOLDEN
from . import _launch

#: Threads per block (patched small by tests).
THREADS_PER_BLOCK = 256


@cuda_device
def splitmix64(state):
    """SplitMix64's output function (a bijective mix) of a uint64 ``state``."""
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@cuda_device
def uniform01(seed, index):
    """Output ``index`` (0-based) of SplitMix64 seeded with ``seed``, as a float64 in
    ``[0, 1)``. Both arguments are uint64."""
    z = splitmix64(seed + (index + _ONE) * GOLDEN)
    return np.float64(z >> _S11) * _INV_2_53


@cuda_kernel
def _dropout_apply(x, y, p, scale, seed):
    i = cuda.grid(1)
    if i < x.shape[0]:
        keep = uniform01(seed, np.uint64(i)) >= p
        y[i] = x[i] * (scale if keep else y.dtype.type(0))


def dropout_apply(x, y, p, scale, seed):
    """``y[i] = x[i] * (scale if uniform01(seed, i) >= p else 0)`` (see the CPU
    kernel: forward and backward alike).

    Shape: x (M,), y (M,) (flat views). Grid: one thread per element.
    """
    _launch.run_threads(_dropout_apply, x.shape[0], THREADS_PER_BLOCK,
                        (x, y, p, scale, seed), out=(1,))


@cuda_kernel
def _dropout2d_apply(x, y, p, scale, seed):
    i = cuda.grid(1)
    if i < y.size:
        r = i // x.shape[1]
        keep = uniform01(seed, np.uint64(r)) >= p
        y[r, i % x.shape[1]] = x[r, i % x.shape[1]] * (scale if keep
                                                        else y.dtype.type(0))


def dropout2d_apply(x, y, p, scale, seed):
    """``y[r, :] = x[r, :] * (scale if uniform01(seed, r) >= p else 0)`` (see the CPU
    kernel: one mask value per row, forward and backward alike).

    Shape: x (R, S), y (R, S). Grid: one thread per element.
    """
    _launch.run_threads(_dropout2d_apply, y.size, THREADS_PER_BLOCK,
                        (x, y, p, scale, seed), out=(1,))
