"""Device-side array plumbing for the op layer's device-array path (no CPU twin:
on the CPU, NumPy does these): zero padding and cropping of NCHW batches, and a
contiguous 2-D transpose.
"""

from numba import cuda

from .._jit import cuda_kernel
from . import _launch
from ._device import unravel4

#: Threads per block (patched small by tests).
THREADS_PER_BLOCK = 256


@cuda_kernel
def _pad(x, xp, top, left):
    i = cuda.grid(1)
    if i >= xp.size:
        return
    channels, hp, wp = xp.shape[1], xp.shape[2], xp.shape[3]
    h, w = x.shape[2], x.shape[3]
    n, c, ih, iw = unravel4(i, channels, hp, wp)
    r = ih - top
    q = iw - left
    if 0 <= r < h and 0 <= q < w:
        xp[n, c, ih, iw] = x[n, c, r, q]
    else:
        xp[n, c, ih, iw] = xp.dtype.type(0)


def pad2d(x, xp, top, left):
    """``xp`` = ``x`` placed at ``(top, left)`` in zeros.

    Shape: x (N, C, H, W), xp (N, C, Hp, Wp). Grid: one thread per element of xp.
    """
    _launch.run_threads(_pad, xp.size, THREADS_PER_BLOCK, (x, xp, top, left),
                        out=(1,))


@cuda_kernel
def _crop(xp, x, top, left):
    i = cuda.grid(1)
    if i >= x.size:
        return
    channels, h, w = x.shape[1], x.shape[2], x.shape[3]
    n, c, ih, iw = unravel4(i, channels, h, w)
    x[n, c, ih, iw] = xp[n, c, ih + top, iw + left]


def crop2d(xp, x, top, left):
    """``x`` = the window of ``xp`` at ``(top, left)`` of x's size.

    Shape: xp (N, C, Hp, Wp), x (N, C, H, W). Grid: one thread per element of x.
    """
    _launch.run_threads(_crop, x.size, THREADS_PER_BLOCK, (xp, x, top, left),
                        out=(1,))


@cuda_kernel
def _transpose(a, out):
    i = cuda.grid(1)
    if i >= out.size:
        return
    cols = out.shape[1]
    out[i // cols, i % cols] = a[i % cols, i // cols]


def transpose2d(a, out):
    """``out = a.T`` (contiguous).

    Shape: a (R, C), out (C, R). Grid: one thread per element.
    """
    _launch.run_threads(_transpose, out.size, THREADS_PER_BLOCK, (a, out))
