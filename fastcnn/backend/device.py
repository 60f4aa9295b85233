"""The interface every device implements: kernel lookup, allocation, copies in and
out, and the one layout operation (transpose) the ops need; padding is the
convolution kernels' own.

An op asks once where its arrays live (:func:`fastcnn.backend.device_of`) and then
speaks only to the device it got, so a third device is one new subclass.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class Device:
    """Where arrays live and which kernels run on them.

    Attributes
    ----------
    name : str
        ``"cpu"`` or ``"cuda"``: where this device's arrays live.
    kernel_package : str
        The package under ``fastcnn.kernels`` whose modules :meth:`kernels` returns.
    """

    name: str = ""

    def __init__(self, kernel_package: str) -> None:
        self.kernel_package = kernel_package
        self._modules: dict[str, ModuleType] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernel_package={self.kernel_package!r})"

    def kernels(self, subject: str) -> ModuleType:
        """The kernel module of ``subject`` (``"conv"``, ``"pool"``, ...)."""
        module = self._modules.get(subject)
        if module is None:
            # Imported on first use: a CUDA module imports numba.cuda.
            module = importlib.import_module(
                f"fastcnn.kernels.{self.kernel_package}.{subject}"
            )
            self._modules[subject] = module
        return module

    # -- allocation -----------------------------------------------------------------

    def empty(self, shape, dtype):
        """An uninitialised array on this device."""
        raise NotImplementedError

    def zeros(self, shape, dtype):
        raise NotImplementedError

    def ones(self, shape, dtype):
        raise NotImplementedError

    def empty_like(self, array):
        return self.empty(array.shape, array.dtype)

    # -- copies ---------------------------------------------------------------------

    def holds(self, array) -> bool:
        """True where ``array`` lives on this device."""
        raise NotImplementedError

    def native(self, array):
        """``array`` (on this device) as the array type this device's kernels take,
        without a copy."""
        return array

    def to_host(self, array):
        """A NumPy array with ``array``'s contents (NumPy arrays and None pass
        through)."""
        raise NotImplementedError

    def move_in(self, array):
        """``array`` on this device, copied only where it lives elsewhere."""
        raise NotImplementedError

    def copy(self, array):
        """A new array with ``array``'s contents, on this device."""
        raise NotImplementedError

    def copy_into(self, destination, source) -> None:
        """Copy ``source`` (either side) into ``destination`` (on this device, same
        shape and dtype) in place."""
        raise NotImplementedError

    def contiguous(self, array):
        """``array`` C-contiguous."""
        raise NotImplementedError

    # -- layout ---------------------------------------------------------------------

    def transpose(self, a):
        """``a.T`` of a 2-D array, C-contiguous."""
        raise NotImplementedError
