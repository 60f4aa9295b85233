"""fastcnn: convolutional neural networks on NumPy arrays, with Numba kernels."""

from . import functional
from ._version import __version__
from .backend import get_device, set_device

__all__ = ["__version__", "functional", "get_device", "set_device"]
