"""The host: NumPy arrays, with large outputs taken from the buffer pool
(``fastcnn/_buffers.py``) so a training step does not page-fault on fresh memory.

With the default device "cuda", NumPy inputs still live here but the kernels are
the CUDA launchers (``CpuDevice("cuda")``), which copy the arrays in and the
results back out.
"""

from __future__ import annotations

import numpy as np

from .. import _buffers
from ..kernels._arrays import is_device_array
from .device import Device


class CpuDevice(Device):
    """NumPy arrays in host memory."""

    name = "cpu"

    def __init__(self, kernel_package: str = "cpu") -> None:
        super().__init__(kernel_package)

    def empty(self, shape, dtype):
        """``np.empty``, or an idle pooled buffer where one fits."""
        return _buffers.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def ones(self, shape, dtype):
        return np.ones(shape, dtype=dtype)

    def holds(self, array) -> bool:
        return isinstance(array, np.ndarray)

    def to_host(self, array):
        if is_device_array(array):
            # Here only: a device array means numba.cuda is loaded already.
            from .cuda import CudaDevice

            return CudaDevice().to_host(array)
        return array

    def move_in(self, array):
        return self.to_host(array)

    def copy(self, array):
        return array.copy()

    def copy_into(self, destination, source) -> None:
        np.copyto(destination, source)

    def contiguous(self, array):
        return np.ascontiguousarray(array)

    def transpose(self, a):
        return np.ascontiguousarray(a.T)
