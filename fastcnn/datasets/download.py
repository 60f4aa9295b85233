"""Download a file from a list of mirrors into a cache, verified by sha256.

Only :mod:`urllib` is used (no extra dependency). The file is streamed into a
temporary file inside the destination folder and moved into place with
:func:`os.replace` only after its sha256 matches, so an interrupted, failed or
mismatched download never leaves a file under the final name: the cache is never
poisoned, and a concurrent reader sees either no file or the whole verified one.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from .._version import __version__

#: Tries per mirror for transient failures (connection errors, timeouts, HTTP 5xx).
RETRIES = 3
#: Seconds to wait before the second try of a mirror; doubled before each later one.
BACKOFF_S = 0.5
#: Seconds any single socket operation may block (connect or read).
TIMEOUT_S = 30.0

_CHUNK = 1 << 16
# HTTP statuses worth asking the same mirror again for; any other 4xx is final.
_TRANSIENT_HTTP = {408, 425, 429}


class DownloadError(OSError):
    """No mirror delivered a file whose sha256 matched."""


class _ChecksumMismatch(Exception):
    pass


def sha256_of(path: str | os.PathLike) -> str:
    """The hex sha256 digest of a file, read in chunks.

    Shape: no arrays.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class _PlainBar:
    """A byte counter on stderr for when tqdm is not installed."""

    def __init__(self, total: int | None, desc: str):
        self.total = total
        self.desc = desc
        self.n = 0
        self._last = 0.0

    def update(self, n: int) -> None:
        self.n += n
        now = time.monotonic()
        # Redraw at most a few times a second: stderr may be a slow terminal or a log.
        if now - self._last >= 0.25:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        if self.total:
            pct = 100.0 * self.n / self.total
            text = f"{_human(self.n)} of {_human(self.total)} ({pct:3.0f}%)"
        else:
            text = _human(self.n)
        print(f"\r{self.desc}: {text}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._draw()
        print(file=sys.stderr, flush=True)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int | None, desc: str, verbose: bool):
    if not verbose:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainBar(total, desc)
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, file=sys.stderr, leave=False)


def _fetch(url: str, tmp, sha256: str, size: int | None, timeout: float,
           verbose: bool, desc: str) -> None:
    """Stream ``url`` into the open file ``tmp``; raise unless the sha256 matches."""
    request = urllib.request.Request(
        url, headers={"User-Agent": f"fastcnn/{__version__}"}
    )
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else size
        bar = _progress(total, desc, verbose)
        try:
            while chunk := response.read(_CHUNK):
                received += len(chunk)
                # A server sending more than the known size cannot be sending the
                # right file; stop before it fills the disk.
                if size is not None and received > size:
                    raise _ChecksumMismatch(
                        f"more than the expected {size} bytes"
                    )
                digest.update(chunk)
                tmp.write(chunk)
                bar.update(len(chunk))
        finally:
            bar.close()
    got = digest.hexdigest()
    if got != sha256:
        raise _ChecksumMismatch(
            f"sha256 mismatch: expected {sha256}, got {got} ({received} bytes)"
        )


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in _TRANSIENT_HTTP
    # URLError (refused, DNS), socket timeouts, resets, short bodies.
    return isinstance(exc, OSError | http.client.HTTPException)


def download_file(
    filename: str,
    sha256: str,
    mirrors: Sequence[str],
    dest_dir: str | os.PathLike,
    *,
    size: int | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    timeout: float | None = None,
    verbose: bool = True,
) -> str:
    """Download ``filename`` from the first mirror that serves it with the right hash.

    Each mirror is tried up to ``retries`` times for transient failures (connection
    errors, timeouts, HTTP 5xx, 408 and 429), with a doubling ``backoff``; a checksum
    mismatch or another HTTP error moves straight on to the next mirror.

    Parameters
    ----------
    filename : str
        The file's name; the URL is ``mirror + filename``.
    sha256 : str
        Expected hex sha256 digest of the file.
    mirrors : sequence of str
        Base URLs, each ending in ``/``, in the order to try them.
    dest_dir : str or os.PathLike
        Folder to put the file in (created if missing).
    size : int, optional
        Expected size in bytes: bounds how much is read from a misbehaving server.
    retries, backoff, timeout : optional
        Tries per mirror, the first wait in seconds, and the socket timeout in
        seconds; default to :data:`RETRIES`, :data:`BACKOFF_S`, :data:`TIMEOUT_S`.
    verbose : bool
        Show a progress bar on stderr (tqdm when installed).

    Returns
    -------
    str
        Path of the verified file, ``dest_dir/filename``.

    Raises
    ------
    DownloadError
        When no mirror delivered the file; the message lists every attempt.

    Shape: no arrays.
    """
    retries = RETRIES if retries is None else retries
    backoff = BACKOFF_S if backoff is None else backoff
    timeout = TIMEOUT_S if timeout is None else timeout
    if retries < 1:
        raise ValueError(f"download_file: retries must be >= 1, got {retries!r}.")
    if not mirrors:
        raise ValueError("download_file: mirrors is empty.")
    dest_dir = os.fspath(dest_dir)
    os.makedirs(dest_dir, exist_ok=True)
    final = os.path.join(dest_dir, filename)
    failures: list[str] = []
    for mirror in mirrors:
        url = mirror + filename
        for attempt in range(retries):
            if attempt:
                time.sleep(backoff * 2 ** (attempt - 1))
            # The temporary file lives in dest_dir so that os.replace is an atomic
            # rename on one file system; its dot-prefixed name is never looked up.
            fd, tmp_path = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part",
                                            dir=dest_dir)
            try:
                with os.fdopen(fd, "wb") as tmp:
                    _fetch(url, tmp, sha256, size, timeout, verbose, filename)
                os.replace(tmp_path, final)
                return final
            except _ChecksumMismatch as exc:
                failures.append(f"{url}: {exc}")
                break
            except Exception as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    # An HTTPError holds the open response: close it now rather
                    # than leave the socket to the garbage collector.
                    exc.close()
                if not _is_transient(exc):
                    if isinstance(exc, urllib.error.HTTPError):
                        failures.append(f"{url}: {exc}")
                        break
                    raise
                failures.append(f"{url} (try {attempt + 1}/{retries}): {exc}")
            finally:
                # Whatever went wrong, leave nothing half-written behind.
                if os.path.exists(tmp_path):
                    os.remove(tmp_path)
    raise DownloadError(
        f"could not download {filename} (sha256 {sha256}) from any mirror:\n  "
        + "\n  ".join(failures)
    )
