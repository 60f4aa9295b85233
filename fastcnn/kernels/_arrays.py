"""Which arrays are CUDA device arrays, decided without importing ``numba.cuda``
(so :mod:`fastcnn.backend` can ask on every op and ``import fastcnn`` stays light).
The CUDA launchers use the same predicate to tell what to stage."""

from __future__ import annotations

import numpy as np


def is_device_array(value) -> bool:
    """True for a CUDA device array: numba's (or the simulator's), or any object
    exposing ``__cuda_array_interface__`` (CuPy, PyTorch)."""
    if value is None or isinstance(value, np.ndarray):
        return False
    return bool(getattr(value, "__cuda_ndarray__", False)) or hasattr(
        value, "__cuda_array_interface__"
    )
