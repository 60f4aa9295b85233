"""Where an op's arrays live, and the few array operations the ops need on either
side.

The ops take NumPy arrays or CUDA device arrays. With NumPy inputs every helper
here makes exactly the NumPy call the ops always made (so the CPU path is unchanged)
and the kernels are the current device's: on "cuda" the launchers copy the arrays in
and the results out. With any device-array input, outputs are allocated on the
device, the CUDA kernels run, and the results stay there (see
:func:`fastcnn.backend.kernels_for`). Small host-side parameters (a bias of zeros,
class weights, labels) may stay NumPy: the CUDA launchers copy NumPy arguments in.

``numba.cuda`` is imported only where a device array is present.
"""

from __future__ import annotations

import numpy as np

from .. import _buffers, backend


def on_device(*arrays) -> bool:
    """True where any of ``arrays`` (None skipped) is a CUDA device array."""
    return any(backend.is_device_array(a) for a in arrays)


def kernels(subject: str, *arrays):
    """The kernel module for ``subject`` where ``arrays`` live."""
    return backend.kernels_for(subject, *arrays)


def _cuda():
    from numba import cuda

    return cuda


def as_numba(value):
    """A device array numba's kernels take (foreign ones wrapped without a copy)."""
    if getattr(value, "__cuda_ndarray__", False):
        return value
    return _cuda().as_cuda_array(value)


def empty(shape, dtype, *like):
    """``np.empty`` (an idle buffer reused where one fits: ``fastcnn/_buffers.py``),
    or a device array where any of ``like`` is on the device."""
    if on_device(*like):
        return _cuda().device_array(shape, dtype=dtype)
    return _buffers.empty(shape, dtype)


def empty_like(array):
    return empty(array.shape, array.dtype, array)


def zeros(shape, dtype, *like):
    if on_device(*like):
        return _cuda().to_device(np.zeros(shape, dtype=dtype))
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype, *like):
    if on_device(*like):
        return _cuda().to_device(np.ones(shape, dtype=dtype))
    return np.ones(shape, dtype=dtype)


def to_host(array):
    """A NumPy copy of a device array; NumPy arrays (and None) pass through."""
    if on_device(array):
        return as_numba(array).copy_to_host()
    return array


def to_device_like(array, *like):
    """``array`` (NumPy) copied to the device where any of ``like`` is there."""
    if on_device(*like) and not on_device(array):
        return _cuda().to_device(np.ascontiguousarray(array))
    return array


def move(array, to_device: bool):
    """``array`` on the device (``to_device``) or on the host, copied only where it
    lives on the other side."""
    if to_device:
        if on_device(array):
            return array
        return _cuda().to_device(np.ascontiguousarray(array))
    return to_host(array)


def copy(array):
    """A new array with ``array``'s contents, on the same side."""
    if on_device(array):
        out = _cuda().device_array(array.shape, dtype=array.dtype)
        # An empty array has nothing to copy, and numba compares the strides of
        # the two sides, which differ for empty arrays (a reshaped view of one).
        if array.size:
            out.copy_to_device(array)
        return out
    return array.copy()


def copy_into(destination, source) -> None:
    """Copy ``source`` into ``destination`` in place (same shape and dtype):
    ``np.copyto`` on the host; into a device array from either side."""
    if on_device(destination):
        if destination.size == 0:
            return  # nothing to copy (and numba would compare empty strides)
        source = as_numba(source) if on_device(source) else np.ascontiguousarray(source)
        as_numba(destination).copy_to_device(source)
    else:
        np.copyto(destination, source)


def contiguous(array):
    """``array`` C-contiguous, on its side (``np.ascontiguousarray`` for NumPy;
    device arrays reaching the layers are C-contiguous already: the ops make
    them so, and the op layer refuses any other)."""
    if on_device(array):
        return array
    return np.ascontiguousarray(array)


def pad(x, pad_h, pad_w):
    """``x`` (N, C, H, W) zero-padded by ``(before, after)`` pairs."""
    if not on_device(x):
        # np.pad's result, in a pooled buffer (np.pad allocates fresh pages and
        # costs tens of microseconds of Python besides).
        n, c, h, w = x.shape
        (top, bottom), (left, right) = pad_h, pad_w
        xp = _buffers.empty((n, c, h + top + bottom, w + left + right), x.dtype)
        xp[:, :, :top] = 0
        xp[:, :, top + h :] = 0
        xp[:, :, top : top + h, :left] = 0
        xp[:, :, top : top + h, left + w :] = 0
        xp[:, :, top : top + h, left : left + w] = x
        return xp
    n, c, h, w = x.shape
    xp = _cuda().device_array((n, c, h + sum(pad_h), w + sum(pad_w)), dtype=x.dtype)
    _layout().pad2d(x, xp, pad_h[0], pad_w[0])
    return xp


def crop(xp, pad_h, pad_w, h: int, w: int):
    """The ``(h, w)`` window of ``xp`` after the leading padding, C-contiguous."""
    if not on_device(xp):
        window = xp[:, :, pad_h[0] : pad_h[0] + h, pad_w[0] : pad_w[0] + w]
        out = _buffers.empty(window.shape, xp.dtype)
        np.copyto(out, window)
        return out
    if xp.shape[2] == h and xp.shape[3] == w:
        return xp
    x = _cuda().device_array((*xp.shape[:2], h, w), dtype=xp.dtype)
    _layout().crop2d(xp, x, pad_h[0], pad_w[0])
    return x


def transpose(a):
    """``a.T`` of a 2-D array, C-contiguous."""
    if not on_device(a):
        return np.ascontiguousarray(a.T)
    out = _cuda().device_array((a.shape[1], a.shape[0]), dtype=a.dtype)
    _layout().transpose2d(a, out)
    return out


def _layout():
    from ..kernels.cuda import _layout

    return _layout
