"""Where the dataset loaders look for their files, and the verified download cache
they share: ``path=``, then ``FASTCNN_DATA``, then the cache (re-verified on every
load), then a download into it."""

from __future__ import annotations

import os
import sys

from .._config import settings
from . import download as _download


def search_roots(path) -> list[tuple[str, str]]:
    """``(label, folder)`` to look in before the cache, in order: ``path``, then
    ``FASTCNN_DATA`` (``settings.data_dir``)."""
    roots = []
    if path is not None:
        roots.append(("path", os.path.expanduser(os.fspath(path))))
    if settings.data_dir:
        roots.append(("FASTCNN_DATA", os.path.expanduser(settings.data_dir)))
    return roots


def cache_folder(cache_dir, subdir: str) -> str:
    """The dataset's folder in the cache: ``cache_dir`` (default
    ``settings.cache_dir``) / ``subdir``."""
    root = os.fspath(cache_dir) if cache_dir is not None else settings.cache_dir
    return os.path.join(os.path.expanduser(root), subdir)


def cached_file(filename: str, sha256: str, size: int, folder: str, download: bool,
                mirrors, verbose: bool, what: str) -> str | None:
    """``folder/filename`` once its sha256 matches: a cached file is re-verified (a
    cache written by something else, or damaged on disk, must not be trusted for
    its name), a corrupt one is replaced when ``download`` allows (else
    ``ValueError`` naming ``what``), a missing one downloaded; None when it is
    missing and ``download`` is false."""
    full = os.path.join(folder, filename)
    if os.path.isfile(full):
        got = _download.sha256_of(full)
        if got == sha256:
            return full
        if not download:
            raise ValueError(
                f"{full}: cached {what} is corrupt (sha256 {got}, expected "
                f"{sha256}). Delete it, or call with download=True to replace it."
            )
        if verbose:
            print(f"fastcnn: replacing corrupt cached file {full}", file=sys.stderr)
        os.remove(full)
    if not download:
        return None
    return _download.download_file(filename, sha256, mirrors, folder, size=size,
                                   verbose=verbose)
