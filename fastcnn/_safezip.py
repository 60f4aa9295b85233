"""Opening zip archives that may be hostile, and reading their members.

The one implementation behind fastcnn's model files (:mod:`fastcnn.saving`) and the
``.npz`` and ``.pth`` weight files of :mod:`fastcnn.io`; ``.npy`` members are parsed
by :mod:`fastcnn._safenpy`. Everything here treats the archive as untrusted:

- nothing is extracted to disk, so member names cannot write anywhere; names that
  would be unsafe to extract (absolute, ``..``, backslashes, NUL) and duplicate names
  (two readers could see different members) are refused all the same;
- only stored and deflated members are read, never encrypted ones;
- memory is bounded before decompressing: the declared sizes may inflate the file by
  at most ``max_inflation`` bytes in all, and members are read in chunks that stop
  at the declared size, so a zip bomb or a member that lies about its size is refused
  without being expanded.

Every error is a ``ValueError`` whose message starts with the caller's label (the
function and the file).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from typing import Any, BinaryIO

#: The default of :func:`open_zip`'s ``max_inflation``, used for model files: how many
#: bytes all members may decompress to beyond their compressed size (fastcnn stores
#: its arrays uncompressed; only JSON is deflated). Weight files, which may be
#: ``np.savez_compressed`` output, pass their ``max_bytes`` instead.
MAX_INFLATION = 64 << 20
#: The largest JSON member read (configs and training state are a few kB).
MAX_JSON_BYTES = 16 << 20
# Decompress in bounded steps: ZipExtFile.read() with no size inflates everything.
_CHUNK = 1 << 20
#: What zipfile and zlib raise on a corrupt archive: mangled headers surface as
#: unsupported versions, methods or flags (NotImplementedError), "encrypted" members
#: (RuntimeError), seeks before the start of the file (OSError), short reads
#: (EOFError), bad deflate streams (zlib.error) and absurd sizes (LargeZipFile,
#: OverflowError).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError,
              NotImplementedError, RuntimeError, OverflowError, OSError)


def _unsafe_name(name: str) -> bool:
    parts = name.split("/")
    return (name.startswith("/") or "\\" in name or "\0" in name or ":" in parts[0]
            or ".." in parts)


def check_members(archive: zipfile.ZipFile, label: str,
                  max_inflation: int = MAX_INFLATION) -> None:
    """Refuse duplicate or unsafe names, encrypted or exotically compressed members,
    and declared sizes that inflate the archive by more than ``max_inflation``."""
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
        if inflation > max_inflation:
            raise ValueError(
                f"{label}: the members decompress to {inflation} bytes more than "
                f"they occupy (by {name!r:.200}), over the limit of {max_inflation}: "
                f"a zip bomb, or more than this reader is allowed to inflate."
            )


def open_zip(file: BinaryIO, label: str, *, max_inflation: int = MAX_INFLATION,
             kind: str = "a zip archive") -> zipfile.ZipFile:
    """Open and vet an archive (:func:`check_members`); ``ValueError`` if it is not
    a zip or is corrupt, saying it is not ``kind``.

    ``file`` is an open binary file: opening a path is the caller's job, so that a
    missing file stays an ``OSError``.
    """
    try:
        archive = zipfile.ZipFile(file)
    except (*ZIP_ERRORS, ValueError) as error:
        raise ValueError(f"{label}: not {kind} or a corrupt one ({error}).") \
            from None
    try:
        check_members(archive, label, max_inflation)
    except BaseException:
        archive.close()
        raise
    return archive


def read_into(stream: BinaryIO, out: memoryview, label: str, name: str) -> None:
    """Fill ``out`` from ``stream`` in bounded chunks; ``ValueError`` if it ends
    early."""
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
            read_into(stream, memoryview(out), label, name)
            # Past the declared size: zipfile stops there and checks the CRC.
            if stream.read(1):
                raise ValueError(f"{label}: member {name!r} is longer than declared.")
    except ZIP_ERRORS as error:
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
