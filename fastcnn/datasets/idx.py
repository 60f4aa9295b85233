"""Readers for the IDX files that MNIST and Fashion-MNIST ship as, gzipped or raw.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the items in row-major order.
The header is untrusted: every size it claims is checked against what the file can
actually hold *before* anything of that size is allocated, so a corrupt or hostile
header gives a ``ValueError`` naming the file instead of a ``MemoryError`` or a hang.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from typing import BinaryIO

import numpy as np

#: Magic number of an IDX file of unsigned bytes with three dimensions (images).
IMAGES_MAGIC = 0x00000803  # 2051
#: Magic number of an IDX file of unsigned bytes with one dimension (labels).
LABELS_MAGIC = 0x00000801  # 2049

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08
# Deflate cannot expand data by more than about 1032:1 (a 258-byte match costs at least
# two bits, per RFC 1951), so a gzip file of n bytes decompresses to at most ~1032 * n
# bytes. A header claiming more than that is rejected without decompressing anything.
_MAX_DEFLATE_RATIO = 1032
# Decompress in bounded chunks: GzipFile.read(n) would allocate n bytes up front.
_CHUNK = 1 << 22


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    # Small reads only (the header): a short read means the file ends early.
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _read_payload(stream: BinaryIO, n: int, name: str, claim: str) -> np.ndarray:
    """Read exactly ``n`` bytes of payload, then insist the stream ends there."""
    out = np.empty(n, dtype=np.uint8)
    view = memoryview(out)
    pos = 0
    while pos < n:
        got = stream.readinto(view[pos : pos + _CHUNK])
        if not got:
            raise ValueError(
                f"{name}: truncated IDX file: the header claims {claim} "
                f"({n} payload bytes) but the payload has only {pos} bytes."
            )
        pos += got
    # Reading past the payload also makes GzipFile check the stream's CRC and length.
    extra = stream.read(1)
    if extra:
        raise ValueError(
            f"{name}: the file is longer than its IDX header says ({claim}, "
            f"{n} payload bytes); it has trailing data."
        )
    return out


def _parse(stream: BinaryIO, name: str, magic: int, limit: int,
           limit_why: str) -> np.ndarray:
    """Parse one IDX stream whose payload can be at most ``limit`` bytes."""
    head = _read_exact(stream, 4)
    if len(head) < 4:
        raise ValueError(f"{name}: not an IDX file: it ends inside the magic number.")
    (found,) = struct.unpack(">I", head)
    if found != magic:
        raise ValueError(
            f"{name}: wrong IDX magic number: expected {magic} (0x{magic:08x}), "
            f"got {found} (0x{found:08x})."
        )
    ndim = magic & 0xFF
    dims_raw = _read_exact(stream, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise ValueError(
            f"{name}: truncated IDX header: expected {ndim} dimension sizes."
        )
    dims = struct.unpack(f">{ndim}I", dims_raw)
    # Python integers: the product of four uint32s cannot overflow here.
    n = math.prod(dims)
    claim = f"shape {dims}"
    if n > limit:
        raise ValueError(
            f"{name}: truncated IDX file or corrupt header: the header claims "
            f"{claim}, {n} payload bytes, but {limit_why.format(limit)}."
        )
    return _read_payload(stream, n, name, claim).reshape(dims)


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes, gzipped or raw, checking every size.

    Gzip is recognised by the file's first two bytes, not by its name.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    magic : int
        The magic number the file must carry: :data:`IMAGES_MAGIC` (2051) or
        :data:`LABELS_MAGIC` (2049); its low byte is the number of dimensions.

    Returns
    -------
    numpy.ndarray
        uint8 array with the shape the header gives.

    Raises
    ------
    ValueError
        Naming the file, when the magic number is wrong, the header is cut short,
        the header claims more data than the file holds, the payload is shorter or
        longer than the header says, or the gzip stream is corrupt or truncated.

    Shape: ``(dim_0, ..., dim_k)`` as the header says, e.g. ``(N, rows, cols)``.
    """
    if (magic >> 8) != _UBYTE:
        raise ValueError(f"read_idx: only unsigned-byte IDX files are supported, "
                         f"got magic {magic!r}.")
    name = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        compressed = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        header = 4 + 4 * (magic & 0xFF)
        if not compressed:
            return _parse(f, name, magic, max(size - header, 0),
                          "the file holds only {} payload bytes")
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                why = f"a gzip file of {size} bytes cannot hold more than {{}}"
                return _parse(gz, name, magic, size * _MAX_DEFLATE_RATIO, why)
        except (EOFError, OSError, zlib.error) as exc:
            # EOFError: the compressed stream stops early; BadGzipFile (an OSError)
            # and zlib.error: bad header, bad deflate data, or a CRC mismatch.
            raise ValueError(
                f"{name}: corrupt or truncated gzip stream ({exc})."
            ) from exc


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX image file (magic 2051), gzipped or raw.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    numpy.ndarray
        uint8 images.

    Shape: ``(N, rows, cols)``.
    """
    return read_idx(path, IMAGES_MAGIC)


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX label file (magic 2049), gzipped or raw.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    numpy.ndarray
        uint8 labels.

    Shape: ``(N,)``.
    """
    return read_idx(path, LABELS_MAGIC)
