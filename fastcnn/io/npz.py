"""NumPy ``.npz`` weights: one ``<key>.npy`` member per tensor, never pickled.

The archive is vetted by :mod:`fastcnn._safezip` and its arrays are read by
:mod:`fastcnn._safenpy`, the code that reads fastcnn's own model files: each
member's header is checked before its data is read (numeric dtype, a size equal to
the bytes the member really holds), and every array is counted against
``max_bytes``, so a lying or hostile file cannot make us allocate more than it
contains. ``max_bytes`` also bounds how far the archive may inflate, so that large
``np.savez_compressed`` files load when the caller allows it. Arrays are put in
native byte order in place; the one copy made, of a Fortran-ordered array into C
order, is charged too.
"""

from __future__ import annotations

import io
import os

import numpy as np

from .._safenpy import read_arrays
from .._safezip import open_zip
from ._budget import Budget


def _native_c(array: np.ndarray, budget: Budget, key: str) -> np.ndarray:
    """``array`` in native byte order (swapped in place) and C order (a charged
    copy where it is Fortran-ordered)."""
    if not array.dtype.isnative:
        array.byteswap(inplace=True)
        array = array.view(array.dtype.newbyteorder("="))
    if not array.flags.c_contiguous:
        budget.take(array.nbytes, f"a C-ordered copy of array {key!r:.200}")
        array = np.ascontiguousarray(array)
    return array


def read_npz(path: str | os.PathLike, max_bytes: int | None,
             op: str = "load_weights") -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file (as written by :func:`numpy.savez`).

    Returns C-contiguous arrays in native byte order.

    Shape: each array as stored.
    """
    path = os.fspath(path)
    label = f"{op}: {path}"
    budget = Budget(op, path, max_bytes)
    with open(path, "rb") as file, open_zip(
        file, label, max_inflation=budget.max_bytes, kind="a readable .npz file"
    ) as archive:
        arrays = read_arrays(archive, label, budget.take)
    return {key: _native_c(array, budget, key) for key, array in arrays.items()}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of an ``.npz`` file (uncompressed, no pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
