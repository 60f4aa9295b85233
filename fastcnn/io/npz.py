"""NumPy ``.npz`` weights: one ``<key>.npy`` member per tensor, never pickled.

The archive is vetted by :mod:`fastcnn._safezip` and its arrays are read by
:mod:`fastcnn._safenpy`, the code that reads fastcnn's own model files: each
member's header is checked before its data is read (numeric dtype, a size equal to
the bytes the member really holds), and every array is counted against
``max_bytes``, so a lying or hostile file cannot make us allocate more than it
contains. ``max_bytes`` also bounds how far the archive may inflate, so that large
``np.savez_compressed`` files load.
"""

from __future__ import annotations

import io
import os

import numpy as np

from .._safenpy import read_arrays
from .._safezip import open_zip
from ._budget import Budget


def read_npz(path: str | os.PathLike, max_bytes: int,
             op: str = "load_weights") -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file (as written by :func:`numpy.savez`).

    Returns C-contiguous arrays in native byte order.

    Shape: each array as stored.
    """
    path = os.fspath(path)
    label = f"{op}: {path}"
    budget = Budget(op, path, max_bytes)
    with open(path, "rb") as file, open_zip(file, label, max_inflation=max_bytes,
                                            kind="a readable .npz file") as archive:
        arrays = read_arrays(archive, label, budget.take)
    return {key: np.asarray(array, dtype=array.dtype.newbyteorder("="), order="C")
            for key, array in arrays.items()}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of an ``.npz`` file (uncompressed, no pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
