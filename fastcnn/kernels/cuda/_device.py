"""Device functions shared by the CUDA kernels.

:func:`minimum` and :func:`maximum` replace the builtins ``min``/``max`` inside
kernels: numba 0.68's built-in CUDA target cannot compile them (they are
``*args`` overloads, and its device-function compiler passes the arguments
unpacked: "Signature mismatch: 2 argument types given, but function takes 1
arguments"). The simulator accepts the builtins; ``tools/gpu_check.py --ptx``
(``tests/cuda/test_gpu_check_ptx.py``) catches them.
"""

from numba import cuda

from .._jit import cuda_device


@cuda_device
def minimum(a, b):
    """``min(a, b)`` (``a`` where they are equal or unordered)."""
    return b if b < a else a


@cuda_device
def maximum(a, b):
    """``max(a, b)`` (``a`` where they are equal or unordered)."""
    return b if b > a else a


@cuda_device
def clamp(v, lo, hi):
    """Twin of ``cpu._clamp._clamp``: ``v`` limited to ``[lo, hi]``, NaN kept."""
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


@cuda_device
def unravel4(i, size1, size2, size3):
    """The 4-D index ``(a, b, c, d)`` of flat position ``i`` in a C-ordered array
    whose last three sizes are ``size1, size2, size3`` (one thread per element)."""
    d = i % size3
    t = i // size3
    c = t % size2
    t //= size2
    return t // size1, t % size1, c, d


@cuda_device
def block_sum(buf, tid, width):
    """Sum ``buf[0:width]`` over one block in a fixed tree order and return the total
    to every thread. ``width`` (the block size) is a power of two; each thread has
    stored its partial sum in ``buf[tid]``; every thread of the block must call this.
    ``buf`` is free again when it returns.
    """
    half = width // 2
    while half > 0:
        cuda.syncthreads()
        if tid < half:
            buf[tid] += buf[tid + half]
        half //= 2
    cuda.syncthreads()
    total = buf[0]
    cuda.syncthreads()
    return total
