"""NumPy ``.npz`` weights: one ``<key>.npy`` member per tensor, never pickled.

Reading checks each member's header before reading its data: the dtype must be
numeric, and the size the header claims must equal the bytes the member really holds
and fit in ``max_bytes``, so a lying or hostile file cannot make us allocate more
than it contains.
"""

from __future__ import annotations

import io
import math
import os
import zipfile

import numpy as np

from ._budget import Budget
from ._zip import ZIP_ERRORS


def _header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version in ((2, 0), (3, 0)):
        return np.lib.format.read_array_header_2_0(member)
    raise ValueError(f"unknown .npy version {version}")


def read_npz(path: str | os.PathLike, max_bytes: int,
             op: str = "load_weights") -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file (as written by :func:`numpy.savez`).

    Shape: each array as stored.
    """
    path = os.fspath(path)
    budget = Budget(op, path, max_bytes)
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"{op}: {path} holds {info.filename!r}, which "
                                     f"is not an .npy array.")
                key = info.filename[: -len(".npy")]
                with archive.open(info) as member:
                    try:
                        shape, fortran, dtype = _header(member)
                    except ValueError as error:
                        raise ValueError(f"{op}: {path}: {key!r} has a bad .npy "
                                         f"header ({error}).") from None
                    if dtype.kind not in "biuf" or dtype.hasobject:
                        raise ValueError(f"{op}: {path}: {key!r} has dtype {dtype}; "
                                         f"only numeric arrays are read.")
                    nbytes = math.prod(shape) * dtype.itemsize
                    if nbytes != info.file_size - member.tell():
                        raise ValueError(
                            f"{op}: {path}: {key!r} claims shape {shape} "
                            f"({nbytes} bytes) but holds "
                            f"{info.file_size - member.tell()} bytes."
                        )
                    budget.take(nbytes, f"array {key!r}")
                    raw = member.read(nbytes)
                array = np.frombuffer(raw, dtype=dtype).reshape(
                    shape, order="F" if fortran else "C")
                out[key] = np.array(array, dtype=dtype.newbyteorder("="), order="C")
    except ZIP_ERRORS as error:
        raise ValueError(f"{op}: {path} is not a readable .npz file "
                         f"({type(error).__name__}: {error}).") from None
    return out


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of an ``.npz`` file (uncompressed, no pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
