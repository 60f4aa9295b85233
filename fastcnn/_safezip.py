"""Reading zip archives, ``.npz`` files and JSON members that may be hostile.

fastcnn's model files are zips of JSON and ``.npz`` members (see
:mod:`fastcnn.saving`). Everything here treats them as untrusted:

- nothing is extracted to disk, so member names cannot write anywhere; names that
  would be unsafe to extract (absolute, ``..``, backslashes, NUL) and duplicate names
  (two readers could see different members) are refused all the same;
- only stored and deflated members are read, never encrypted ones;
- memory is bounded before decompressing: the declared sizes may inflate the file by
  at most :data:`MAX_INFLATION` bytes in all, and members are read in chunks that stop
  at the declared size, so a zip bomb or a member that lies about its size is refused
  without being expanded;
- ``.npy`` members are parsed here, not by ``np.load``: object dtypes (which need
  pickle) and non-numeric dtypes are refused, and the shape in each header must
  account for exactly the member's bytes *before* the array is allocated, so a
  header claiming 10**12 items allocates nothing.

Every error is a ``ValueError`` whose message starts with the caller's label (the
function and the file).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
import zlib
from typing import Any, BinaryIO

import numpy as np

#: How many bytes all members of one archive may decompress to beyond their
#: compressed size (fastcnn stores its arrays uncompressed; only JSON is deflated).
MAX_INFLATION = 64 << 20
#: The largest JSON member read (configs and training state are a few kB).
MAX_JSON_BYTES = 16 << 20
# Decompress in bounded steps: ZipExtFile.read() with no size inflates everything.
_CHUNK = 1 << 20
# Errors a corrupt archive raises from zipfile and zlib while reading (OSError: a
# corrupt offset makes zipfile seek before the start of the file).
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError,
            NotImplementedError, OverflowError, OSError)
_NUMERIC_KINDS = "biuf"


def _unsafe_name(name: str) -> bool:
    parts = name.split("/")
    return (name.startswith("/") or "\\" in name or "\0" in name or ":" in parts[0]
            or ".." in parts)


def check_members(archive: zipfile.ZipFile, label: str) -> None:
    """Refuse duplicate or unsafe names, encrypted or exotically compressed members,
    and declared sizes that inflate the archive by more than :data:`MAX_INFLATION`."""
    seen: set[str] = set()
    inflation = 0
    for info in archive.infolist():
        name = info.filename
        if name in seen:
            raise ValueError(f"{label}: the archive holds {name!r:.200} twice.")
        seen.add(name)
        if _unsafe_name(name):
            raise ValueError(f"{label}: unsafe member name {name!r:.200}.")
        if info.flag_bits & 0x1:
            raise ValueError(f"{label}: member {name!r:.200} is encrypted.")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ValueError(
                f"{label}: member {name!r:.200} uses compression method "
                f"{info.compress_type}; only stored and deflated members are read."
            )
        if info.compress_type == zipfile.ZIP_STORED and (
                info.file_size != info.compress_size):
            raise ValueError(
                f"{label}: stored member {name!r:.200} declares {info.file_size} "
                f"bytes but occupies {info.compress_size}."
            )
        inflation += max(info.file_size - info.compress_size, 0)
        if inflation > MAX_INFLATION:
            raise ValueError(
                f"{label}: the members decompress to {inflation} bytes more than "
                f"they occupy (by {name!r:.200}), over the limit of {MAX_INFLATION}: "
                f"a zip bomb or not a fastcnn file."
            )


def open_zip(file: BinaryIO, label: str) -> zipfile.ZipFile:
    """Open and vet an archive (:func:`check_members`); ``ValueError`` if it is not
    a zip or is corrupt."""
    try:
        archive = zipfile.ZipFile(file)
    except (*_CORRUPT, ValueError) as error:
        raise ValueError(f"{label}: not a zip archive or a corrupt one ({error}).") \
            from None
    try:
        check_members(archive, label)
    except BaseException:
        archive.close()
        raise
    return archive


def _read_into(stream: BinaryIO, out: memoryview, label: str, name: str) -> None:
    pos = 0
    while pos < len(out):
        chunk = stream.read(min(_CHUNK, len(out) - pos))
        if not chunk:
            raise ValueError(f"{label}: member {name!r:.200} ends early.")
        out[pos:pos + len(chunk)] = chunk
        pos += len(chunk)


def read_member(archive: zipfile.ZipFile, name: str, label: str,
                limit: int | None = None) -> bytearray:
    """The bytes of member ``name``, at most ``limit`` of them (checked against the
    declared size before reading anything)."""
    info = archive.getinfo(name)
    if limit is not None and info.file_size > limit:
        raise ValueError(
            f"{label}: member {name!r} declares {info.file_size} bytes, over the "
            f"limit of {limit} for it."
        )
    out = bytearray(info.file_size)
    try:
        with archive.open(info) as stream:
            _read_into(stream, memoryview(out), label, name)
            # Past the declared size: zipfile stops there and checks the CRC.
            if stream.read(1):
                raise ValueError(f"{label}: member {name!r} is longer than declared.")
    except _CORRUPT as error:
        raise ValueError(f"{label}: member {name!r} is corrupt ({error}).") from None
    return out


def read_json(archive: zipfile.ZipFile, name: str, label: str) -> Any:
    """A JSON member, at most :data:`MAX_JSON_BYTES` long, parsed."""
    raw = read_member(archive, name, label, MAX_JSON_BYTES)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as error:
        # ValueError covers JSONDecodeError, bad UTF-8 and over-long integers.
        raise ValueError(f"{label}: {name!r} is not valid JSON ({error}).") from None


def _npy_header(stream: BinaryIO, label: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return shape, fortran, dtype


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str
              ) -> np.ndarray:
    name = info.filename
    with archive.open(info) as stream:
        try:
            shape, fortran, dtype = _npy_header(stream, label)
        except (ValueError, SyntaxError, TypeError) as error:
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
        if any(d < 0 for d in shape):
            raise ValueError(f"{label}: {name!r:.200} claims shape {shape}.")
        nbytes = math.prod(shape) * dtype.itemsize
        offset = stream.tell()
        if offset + nbytes != info.file_size:
            raise ValueError(
                f"{label}: {name!r:.200} claims shape {shape} of {dtype} "
                f"({nbytes} bytes) but holds {info.file_size - offset} bytes of data."
            )
        # Allocated only now that the member is known to hold exactly this much.
        out = np.empty(nbytes, dtype=np.uint8)
        _read_into(stream, memoryview(out), label, name)
        stream.read(1)  # reach the end, where zipfile checks the CRC
    return out.view(dtype).reshape(shape, order="F" if fortran else "C")


def read_npz(archive: zipfile.ZipFile, name: str, label: str
             ) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` member, keyed as ``np.savez`` named them."""
    inner_label = f"{label}: {name}"
    raw = read_member(archive, name, label)
    with open_zip(io.BytesIO(raw), inner_label) as inner:
        arrays = {}
        for info in inner.infolist():
            if not info.filename.endswith(".npy"):
                raise ValueError(
                    f"{inner_label}: member {info.filename!r:.200} is not a .npy "
                    f"array."
                )
            try:
                arrays[info.filename[:-4]] = _read_npy(inner, info, inner_label)
            except _CORRUPT as error:
                raise ValueError(
                    f"{inner_label}: {info.filename!r:.200} is corrupt ({error})."
                ) from None
        return arrays
