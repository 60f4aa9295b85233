"""Reading the ``.npy`` arrays of ``.npz`` archives that may be hostile.

The one implementation behind fastcnn's model files (:mod:`fastcnn.saving`) and
:func:`fastcnn.io.load_weights`'s ``.npz`` files; the archives themselves are opened
and vetted by :mod:`fastcnn._safezip`. Members are parsed here, not by ``np.load``:
object dtypes (which need pickle) and non-numeric dtypes are refused, and the shape
in each header must account for exactly the member's bytes *before* the array is
allocated, so a header claiming 10**12 items allocates nothing.

Every error is a ``ValueError`` whose message starts with the caller's label.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Callable
from typing import BinaryIO

import numpy as np

from . import _safezip

_NUMERIC_KINDS = "biuf"
_MAX_NDIM = 64 if int(np.__version__.split(".")[0]) >= 2 else 32  # NumPy's limit


def _npy_header(stream: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    if version == (1, 0):
        return fmt.read_array_header_1_0(stream)
    # 3.0 differs from 2.0 only in allowing UTF-8 field names, and fields are
    # refused below anyway.
    if version in ((2, 0), (3, 0)):
        return fmt.read_array_header_2_0(stream)
    raise ValueError(f"unsupported .npy format version {version}")


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str,
              take: Callable[[int, str], None] | None) -> np.ndarray:
    name = info.filename
    with archive.open(info) as stream:
        try:
            shape, fortran, dtype = _npy_header(stream)
        except (ValueError, SyntaxError, TypeError, RecursionError) as error:
            raise ValueError(
                f"{label}: {name!r:.200} has no valid .npy header ({error})."
            ) from None
        if dtype.hasobject:
            raise ValueError(
                f"{label}: {name!r:.200} holds an object array, which only a pickle "
                f"can restore; fastcnn never unpickles (allow_pickle=False)."
            )
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields or dtype.shape:
            raise ValueError(
                f"{label}: {name!r:.200} has dtype {dtype}; only plain bool, integer "
                f"and float arrays are read."
            )
        if len(shape) > _MAX_NDIM or any(d < 0 for d in shape) or (
            math.prod(max(d, 1) for d in shape) * dtype.itemsize >= 2**63
        ):  # NumPy could not make such an array, even an empty one
            raise ValueError(f"{label}: {name!r:.200} claims shape "
                             f"{str(shape)[:200]} of {dtype}.")
        nbytes = math.prod(shape) * dtype.itemsize
        offset = stream.tell()
        if offset + nbytes != info.file_size:
            raise ValueError(
                f"{label}: {name!r:.200} claims shape {shape} of {dtype} "
                f"({nbytes} bytes) but holds {info.file_size - offset} bytes of data."
            )
        if take is not None:
            take(nbytes, f"array {name[:-4]!r:.200}")
        # Allocated only now that the member is known to hold exactly this much.
        out = np.empty(nbytes, dtype=np.uint8)
        _safezip.read_into(stream, memoryview(out), label, name)
        stream.read(1)  # reach the end, where zipfile checks the CRC
    return out.view(dtype).reshape(shape, order="F" if fortran else "C")


def read_arrays(archive: zipfile.ZipFile, label: str,
                take: Callable[[int, str], None] | None = None
                ) -> dict[str, np.ndarray]:
    """The arrays of an opened, vetted ``.npz`` archive, keyed as ``np.savez``
    named them. ``take(nbytes, what)`` is told each array's size before it is
    allocated, and may refuse it (a byte budget)."""
    arrays = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise ValueError(
                f"{label}: member {info.filename!r:.200} is not an .npy array."
            )
        try:
            arrays[info.filename[:-4]] = _read_npy(archive, info, label, take)
        except _safezip.ZIP_ERRORS as error:
            raise ValueError(
                f"{label}: {info.filename!r:.200} is corrupt ({error})."
            ) from None
    return arrays


def read_npz(archive: zipfile.ZipFile, name: str, label: str
             ) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` member ``name`` of ``archive``."""
    inner_label = f"{label}: {name}"
    raw = _safezip.read_member(archive, name, label)
    with _safezip.open_zip(io.BytesIO(raw), inner_label) as inner:
        return read_arrays(inner, inner_label)
