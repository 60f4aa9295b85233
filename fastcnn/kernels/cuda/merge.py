"""CUDA twins of :mod:`fastcnn.kernels.cpu.merge` (same views: flat ``(S,)`` for the
sum, ``(outer, channels, inner)`` for concatenation, flat operands with int64
stride tables for the broadcast product); one thread per element written."""

from numba import cuda

from .._jit import cuda_device, cuda_kernel
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


@cuda_device
def _offsets(index, dims, a_strides, b_strides):
    """The offsets in ``a`` and ``b`` of output element ``index`` (C order over
    ``dims``)."""
    oa = 0
    ob = 0
    for d in range(dims.shape[0] - 1, -1, -1):
        q = index % dims[d]
        index //= dims[d]
        oa += q * a_strides[d]
        ob += q * b_strides[d]
    return oa, ob


@cuda_kernel
def _multiply_forward(a, a_strides, b, b_strides, dims, y):
    i = cuda.grid(1)
    if i < y.size:
        oa, ob = _offsets(i, dims, a_strides, b_strides)
        y[i] = a[oa] * b[ob]


def multiply_forward(a, a_strides, b, b_strides, dims, y):
    """``y = a * b`` with broadcasting (see the CPU kernel for the stride tables).

    Shape: a (A,), b (B,), y (prod(dims),) flat; a_strides, b_strides, dims (D,)
    int64. Grid: one thread per element of y.
    """
    _launch.run_threads(_multiply_forward, y.size, THREADS_PER_BLOCK,
                        (a, a_strides, b, b_strides, dims, y))


@cuda_device
def _part_offsets(index, dims, b_strides, a_strides, kept, skip):
    """As the CPU helper: offsets in ``dy`` and ``b`` of ``index`` counted over the
    axes where ``a`` is kept (``kept == 1``) or broadcast (``kept == 0``), axis
    ``skip`` left out."""
    oy = 0
    ob = 0
    step = 1
    for d in range(dims.shape[0] - 1, -1, -1):
        n = dims[d]
        if d != skip and (a_strides[d] != 0) == (kept == 1):
            q = index % n
            index //= n
            oy += q * step
            ob += q * b_strides[d]
        step *= n
    return oy, ob


@cuda_kernel
def _multiply_backward(dy, b, b_strides, a_strides, dims, da):
    j = cuda.grid(1)
    if j >= da.size:
        return
    ndim = dims.shape[0]
    last = -1
    for d in range(ndim):
        if a_strides[d] == 0:
            last = d
    inner = 1
    y_inner = 0
    b_inner = 0
    outer = 1
    step = 1
    for d in range(ndim - 1, -1, -1):
        if d == last:
            inner = dims[d]
            y_inner = step
            b_inner = b_strides[d]
        elif a_strides[d] == 0:
            outer *= dims[d]
        step *= dims[d]
    oy, ob = _part_offsets(j, dims, b_strides, a_strides, 1, last)
    acc = 0.0
    for r in range(outer):
        ry, rb = _part_offsets(r, dims, b_strides, a_strides, 0, last)
        for k in range(inner):
            acc += float(dy[oy + ry + k * y_inner]) * float(b[ob + rb + k * b_inner])
    da[j] = acc


def multiply_backward(dy, b, b_strides, a_strides, dims, da):
    """The gradient of ``a`` in ``y = a * b``: ``dy * b`` summed in float64 over
    the positions that read each element of ``a``, in C order (the CPU kernel's
    vectorised dots may differ in the last bits).

    Shape: dy (prod(dims),), b (B,), da (A,) flat; b_strides, a_strides, dims (D,)
    int64. Grid: one thread per element of da.
    """
    _launch.run_threads(_multiply_backward, da.size, THREADS_PER_BLOCK,
                        (dy, b, b_strides, a_strides, dims, da))
