"""The one place that knows about devices: which device arrays live on, and the
:class:`~fastcnn.backend.device.Device` object that allocates, copies and looks
up kernels there.

An op asks once, ``dev = backend.device_of(x, weight)``, and then speaks only to
``dev``. The data's location decides, as in PyTorch: any CUDA device array among
the inputs means the CUDA device; NumPy inputs stay NumPy and run the current
default device's kernels (on "cuda" the launchers copy them in and the results
out). ``numba.cuda`` is imported only when a device array is seen or "cuda" is
asked for, so ``import fastcnn`` never imports it.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from .._config import settings
from ..kernels._arrays import is_device_array
from .cpu import CpuDevice
from .device import Device

__all__ = [
    "DEVICES",
    "Device",
    "cuda_available",
    "cuda_device",
    "device",
    "device_of",
    "get_device",
    "is_device_array",
    "kernels",
    "kernels_for",
    "resolve_device",
    "set_device",
    "to_host",
]

DEVICES = ("cpu", "cuda", "auto")

#: The default device's name, and the device NumPy inputs get: the host, with
#: the default device's kernels.
_device = "cpu"
_CPU = CpuDevice("cpu")
_host: Device = _CPU
_cuda: Device | None = None


def _resolve(device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise RuntimeError(
            "device='cuda' was requested but no CUDA GPU is available "
            "(install fastcnn[cuda12] or fastcnn[cuda13] on a machine with an NVIDIA "
            "GPU, or set NUMBA_ENABLE_CUDASIM=1 for the simulator); use 'cpu' or "
            "'auto'."
        )
    return device


def resolve_device(device: str | None) -> str:
    """The device a ``device=`` argument names: ``"cpu"`` or ``"cuda"`` (``None``:
    the current default device; ``"auto"``: cuda where available). ``"cuda"``
    without a GPU raises the same clear error as :func:`set_device`."""
    return _device if device is None else _resolve(device)


def cuda_available() -> bool:
    """True where numba.cuda can run kernels (a GPU, or the simulator)."""
    try:
        from numba import cuda
    except Exception:  # noqa: BLE001 - any import failure means "no CUDA"
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


def set_device(device: str) -> str:
    """Set the default device (``"cpu"``, ``"cuda"`` or ``"auto"``); returns the one
    in use."""
    global _device, _host
    _device = _resolve(device)
    _host = _CPU if _device == "cpu" else CpuDevice(_device)
    return _device


def get_device() -> str:
    """The device kernels currently run on: ``"cpu"`` or ``"cuda"``."""
    return _device


def cuda_device() -> Device:
    """The CUDA device (imports ``numba.cuda`` on first use)."""
    global _cuda
    if _cuda is None:
        from .cuda import CudaDevice

        _cuda = CudaDevice()
    return _cuda


def device(name: str | None = None) -> Device:
    """The device whose memory ``name`` names (``"cpu"``, ``"cuda"``, ``"auto"``;
    None: the default device): where a model's arrays are placed."""
    name = _device if name is None else _resolve(name)
    return cuda_device() if name == "cuda" else _CPU


def device_of(*arrays) -> Device:
    """The device an op on ``arrays`` (None skipped) runs on: CUDA where any is a
    CUDA device array, else the host with the default device's kernels."""
    for array in arrays:
        # NumPy arrays are the common case and are decided by the first test.
        if (array.__class__ is not np.ndarray and array is not None
                and is_device_array(array)):
            return cuda_device()
    return _host


def to_host(array):
    """A NumPy array with ``array``'s contents: device arrays are copied out,
    NumPy arrays (and None) pass through."""
    if is_device_array(array):
        return cuda_device().to_host(array)
    return array


def kernels(subject: str, device: str | None = None) -> ModuleType:
    """The kernel module for ``subject`` on ``device`` (default: the current one)."""
    name = _device if device is None else _resolve(device)
    return (_CPU if name == "cpu" else cuda_device()).kernels(subject)


def kernels_for(subject: str, *arrays) -> ModuleType:
    """The kernel module for ``subject`` where ``arrays`` live: CUDA's when any of
    them is a device array, else the current device's."""
    return device_of(*arrays).kernels(subject)


if settings.device != "cpu":
    # FASTCNN_DEVICE=cuda|auto picks the default device; the CUDA import it may cause
    # happens only here, on request.
    set_device(settings.device)
