"""CIFAR-10 from its official *binary* archive: find it, or download it, and load it.

The archive (``cifar-10-binary.tar.gz``, Krizhevsky 2009) holds five training
batches and one test batch, each a run of 3073-byte records: one label byte, then
the 32x32 image as 1024 red, 1024 green and 1024 blue bytes, rows top to bottom.
The pickled "python version" is never read: unpickling runs code.

Lookup order, as for MNIST: the ``path`` argument, then ``FASTCNN_DATA``
(``settings.data_dir``), each directly or in a ``cifar-10/`` subfolder, holding
the archive or its extracted ``cifar-10-batches-bin/`` files; then the download
cache (``cache_dir`` or ``settings.cache_dir``), then a download into the cache.
The archive in the cache is sha256-verified on every load; files found under
``path`` or ``FASTCNN_DATA`` are checked for shape and labels only (a user may
hold a subset of their own). Only the six batch files are read from an archive,
by name, into memory: nothing is extracted to disk, so a hostile archive cannot
write anywhere.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass

import numpy as np

from ._lookup import cache_folder, cached_file, search_roots

#: Base URLs tried in order for the archive (the dataset author's site).
CIFAR10_MIRRORS: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)

#: The class names, in label order.
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)


@dataclass(frozen=True)
class Archive:
    """A published archive: its file name, sha256 and size in bytes."""

    filename: str
    sha256: str
    size: int


#: The official binary archive (its md5, c32a1d4ab5d03f1284b67883e8d87530, is the
#: one the dataset's page lists). Read at call time, so tests can patch it.
CIFAR10_ARCHIVE = Archive(
    "cifar-10-binary.tar.gz",
    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    170052171,
)

#: Folder the archive's members sit in, and the batch files in load order.
MEMBER_DIR = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"

_SUBDIR = "cifar-10"
_SIDE = 32
_CHANNELS = 3
_RECORD = 1 + _CHANNELS * _SIDE * _SIDE  # 3073 bytes: label, then R, G, B planes
#: Largest batch file accepted (the published ones hold 10,000 records): bounds
#: what a hostile archive member can make us allocate.
_MAX_BATCH_BYTES = 20_000 * _RECORD


def _parse_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (n, 3, 32, 32), labels int64 (n,))`` of one batch file."""
    if len(data) == 0 or len(data) % _RECORD:
        raise ValueError(
            f"{name}: not a CIFAR-10 binary batch: {len(data)} bytes is not a "
            f"positive multiple of the {_RECORD}-byte record (1 label byte, "
            f"then 3x32x32 pixels)."
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CIFAR10_CLASSES):
        raise ValueError(
            f"{name}: CIFAR-10 labels must lie in 0..{len(CIFAR10_CLASSES) - 1}, "
            f"got {int(labels.max())}: is this the CIFAR-100 archive?"
        )
    images = records[:, 1:].reshape(-1, _CHANNELS, _SIDE, _SIDE)
    return images, labels


def _read_folder(folder: str) -> list[tuple[bytes, str]] | None:
    """The six batch files of an extracted archive in ``folder`` (directly or in
    ``cifar-10-batches-bin/``), or None unless all are there."""
    for base in (os.path.join(folder, MEMBER_DIR), folder):
        paths = [os.path.join(base, f) for f in (*TRAIN_FILES, TEST_FILE)]
        if all(os.path.isfile(p) for p in paths):
            out = []
            for p in paths:
                size = os.path.getsize(p)
                if size > _MAX_BATCH_BYTES:
                    raise ValueError(
                        f"{p}: {size} bytes is more than a CIFAR-10 batch holds "
                        f"(at most {_MAX_BATCH_BYTES})."
                    )
                with open(p, "rb") as f:
                    out.append((f.read(), p))
            return out
    return None


def _read_archive(path: str) -> list[tuple[bytes, str]]:
    """The six batch files of the archive at ``path``, read by name into memory."""
    out = []
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for filename in (*TRAIN_FILES, TEST_FILE):
                name = f"{MEMBER_DIR}/{filename}"
                label = f"{path}:{name}"
                try:
                    member = tar.getmember(name)
                except KeyError:
                    raise ValueError(
                        f"{path}: not the CIFAR-10 binary archive: it has no "
                        f"{name}."
                    ) from None
                if not member.isfile():
                    raise ValueError(f"{label}: is not a regular file in the archive.")
                if member.size > _MAX_BATCH_BYTES:
                    raise ValueError(
                        f"{label}: {member.size} bytes is more than a CIFAR-10 batch "
                        f"holds (at most {_MAX_BATCH_BYTES})."
                    )
                stream = tar.extractfile(member)
                out.append((stream.read(), label))
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(
            f"{path}: not a readable CIFAR-10 archive (gzipped tar): {exc}"
        ) from exc
    return out


def _search(root: str, archive: Archive, looked: list[str], label: str):
    for folder in (os.path.join(root, _SUBDIR), root):
        candidate = os.path.join(folder, archive.filename)
        if os.path.isfile(candidate):
            return _read_archive(candidate)
        files = _read_folder(folder)
        if files is not None:
            return files
        looked.append(f"{folder} ({label})")
    return None


def _locate(path, download: bool, cache_dir, mirrors, verbose: bool):
    archive = CIFAR10_ARCHIVE  # a module global, read now: tests may patch it
    looked: list[str] = []
    for label, root in search_roots(path):
        files = _search(root, archive, looked, label)
        if files is not None:
            return files
    folder = cache_folder(cache_dir, _SUBDIR)
    if mirrors is None:
        mirrors = CIFAR10_MIRRORS
    found = cached_file(archive.filename, archive.sha256, archive.size, folder,
                        download, mirrors, verbose, "CIFAR-10 archive")
    if found is not None:
        return _read_archive(found)
    looked.append(f"{folder} (cache)")
    raise FileNotFoundError(
        f"CIFAR-10 not found. Looked for {archive.filename} or an extracted "
        f"{MEMBER_DIR}/ in: " + "; ".join(looked)
        + f". Set FASTCNN_DATA to a folder holding one (directly or in a "
        f"'{_SUBDIR}/' subfolder), pass path=, or call with download=True."
    )


def _to_float(parts: list[tuple[bytes, str]], dtype):
    images, labels = zip(*(_parse_batch(data, name) for data, name in parts),
                         strict=True)
    count = sum(len(y) for y in labels)
    out = np.empty((count, _CHANNELS, _SIDE, _SIDE), dtype=dtype)
    at = 0
    for batch in images:
        # Straight from uint8 into the output dtype, no float64 temporary.
        np.divide(batch, out.dtype.type(255), out=out[at : at + len(batch)])
        at += len(batch)
    return out, np.concatenate(labels)


def load_cifar10(
    path: str | os.PathLike | None = None,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
    dtype=np.float32,
    *,
    mirrors: tuple[str, ...] | list[str] | None = None,
    verbose: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load CIFAR-10 (32x32 colour images, 10 classes) as float images in [0, 1]
    and int64 labels.

    Read from the official binary archive (never the pickled version), or from
    its extracted batch files. Looked for in ``path``, then ``FASTCNN_DATA``,
    then the cache; when none holds it and ``download`` is true, the archive
    (170 MB) is downloaded from :data:`CIFAR10_MIRRORS`, sha256-verified, into
    the cache. Class names are :data:`CIFAR10_CLASSES`.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A folder holding ``cifar-10-binary.tar.gz`` or the extracted
        ``cifar-10-batches-bin/`` files, directly or in a ``cifar-10/`` subfolder.
    download : bool
        Download the archive into the cache when it is nowhere. With False, a
        missing archive raises ``FileNotFoundError``.
    cache_dir : str or os.PathLike, optional
        The cache root (default ``FASTCNN_CACHE_DIR`` or ``~/.cache/fastcnn``);
        the archive goes in its ``cifar-10/`` subfolder.
    dtype : numpy dtype
        Floating dtype of the images (default float32).
    mirrors : sequence of str, optional
        Base URLs to download from instead of :data:`CIFAR10_MIRRORS`.
    verbose : bool
        Show download progress on stderr.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        50,000 training and 10,000 test items (the five training batches in
        order, then the test batch).

    Raises
    ------
    FileNotFoundError
        The data is nowhere and ``download`` is false; says where it looked.
    ValueError
        A file is corrupt, truncated or of the wrong kind; names the file.
    fastcnn.datasets.DownloadError
        No mirror delivered the archive with the right sha256.

    Shape: x ``(N, 3, 32, 32)`` (channels R, G, B), y ``(N,)``.
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"load_cifar10: dtype must be a floating type, got {dtype}.")
    parts = _locate(path, download, cache_dir, mirrors, verbose)
    train = _to_float(parts[:5], dtype)
    test = _to_float(parts[5:], dtype)
    return train, test
