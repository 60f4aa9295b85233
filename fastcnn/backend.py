"""The one dispatch point between the op layer and the kernels.

:func:`kernels` returns the kernel module of a given subject (``"conv"``, ``"pool"``,
...) for the current device. CPU modules are plain imports; CUDA modules are imported
only when the device is ``"cuda"``, so ``import fastcnn`` never imports ``numba.cuda``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

from ._config import settings

DEVICES = ("cpu", "cuda", "auto")
_device = "cpu"


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
    global _device
    _device = _resolve(device)
    return _device


def get_device() -> str:
    """The device kernels currently run on: ``"cpu"`` or ``"cuda"``."""
    return _device


def kernels(subject: str, device: str | None = None) -> ModuleType:
    """The kernel module for ``subject`` on ``device`` (default: the current one)."""
    name = _device if device is None else _resolve(device)
    return importlib.import_module(f"fastcnn.kernels.{name}.{subject}")



# ---------------------------------------------------------------- device arrays
# An op whose inputs include a CUDA device array runs the CUDA kernels whatever the
# current device (the data's location decides, as in PyTorch); NumPy inputs run on
# the current device. Neither check imports numba.cuda.


def is_device_array(value) -> bool:
    """True for a CUDA device array: numba's (or the simulator's), or any object
    exposing ``__cuda_array_interface__`` (CuPy, PyTorch)."""
    if value is None or isinstance(value, np.ndarray):
        return False
    return bool(getattr(value, "__cuda_ndarray__", False)) or hasattr(
        value, "__cuda_array_interface__"
    )


def kernels_for(subject: str, *arrays) -> ModuleType:
    """The kernel module for ``subject`` where ``arrays`` live: CUDA's when any of
    them is a device array, else the current device's."""
    if any(is_device_array(a) for a in arrays):
        return importlib.import_module(f"fastcnn.kernels.cuda.{subject}")
    return kernels(subject)


if settings.device != "cpu":
    # FASTCNN_DEVICE=cuda|auto picks the default device; the CUDA import it may cause
    # happens only here, on request.
    set_device(settings.device)
