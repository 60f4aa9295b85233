"""A CUDA GPU (or numba's simulator): numba device arrays, the CUDA kernels, and
a device-side transpose (``fastcnn/kernels/cuda/_layout.py``).

Imported only when a device array is seen or device "cuda" is asked for: this is
where ``numba.cuda`` comes in. Small host-side arguments (a bias of zeros, class
weights, labels) may stay NumPy: the CUDA launchers copy NumPy arguments in.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..kernels._arrays import is_device_array
from ..kernels.cuda import _layout, _pool
from .device import Device


class CudaDevice(Device):
    """numba device arrays in GPU memory; foreign ones (CuPy, PyTorch) are taken
    through ``__cuda_array_interface__`` without a copy."""

    name = "cuda"

    def __init__(self) -> None:
        super().__init__("cuda")

    def empty(self, shape, dtype):
        # Pooled: a step's activations and gradients reuse the last step's memory.
        return _pool.empty(shape, dtype)

    def empty_cache(self) -> int:
        """Free the pooled device buffers nothing uses (``torch.cuda.empty_cache``);
        returns how many were freed."""
        return _pool.release()

    def zeros(self, shape, dtype):
        return cuda.to_device(np.zeros(shape, dtype=dtype))

    def ones(self, shape, dtype):
        return cuda.to_device(np.ones(shape, dtype=dtype))

    def holds(self, array) -> bool:
        return is_device_array(array)

    def native(self, array):
        """A device array numba's kernels take (foreign ones wrapped, no copy)."""
        if getattr(array, "__cuda_ndarray__", False):
            return array
        return cuda.as_cuda_array(array)

    def to_host(self, array):
        if is_device_array(array):
            return self.native(array).copy_to_host()
        return array

    def move_in(self, array):
        if is_device_array(array):
            return array
        return _pool.copied_in(array)

    def copy(self, array):
        out = _pool.empty(array.shape, array.dtype)
        # An empty array has nothing to copy, and numba compares the strides of
        # the two sides, which differ for empty arrays (a reshaped view of one).
        if array.size:
            out.copy_to_device(array)
        return out

    def copy_into(self, destination, source) -> None:
        if destination.size == 0:
            return  # nothing to copy (and numba would compare empty strides)
        if is_device_array(source):
            source = self.native(source)
        else:
            source = np.ascontiguousarray(source)
        self.native(destination).copy_to_device(source)

    def contiguous(self, array):
        # Device arrays reaching the layers are C-contiguous already: the ops make
        # them so, and the op layer refuses any other.
        return array

    def transpose(self, a):
        out = _pool.empty((a.shape[1], a.shape[0]), a.dtype)
        _layout.transpose2d(a, out)
        return out
