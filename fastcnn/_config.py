"""Every ``FASTCNN_*`` environment setting, read here and nowhere else.

Settings are read once, at import, into :data:`settings`; code elsewhere reads the
attributes of that object, so a test can patch one attribute instead of the process
environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be one of 1/0/true/false/yes/no/on/off, got {raw!r}")


def _non_negative(name: str, default: float, unit: str) -> float:
    """A finite number >= 0 from the environment (``unit`` names it in the error)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a number of {unit} >= 0, got {raw!r}")
    return value


@dataclass
class Settings:
    """The process-wide settings, with the environment variable each comes from."""

    #: FASTCNN_CACHE: cache compiled kernels on disk (falls back to no cache where the
    #: cache directory is read-only).
    cache: bool = field(default_factory=lambda: _flag("FASTCNN_CACHE", True))
    #: FASTCNN_DEVICE: the default device, "cpu", "cuda" or "auto".
    device: str = field(
        default_factory=lambda: os.environ.get("FASTCNN_DEVICE", "cpu").strip() or "cpu"
    )
    #: FASTCNN_DATA: a folder searched for dataset files before the download cache.
    data_dir: str | None = field(
        default_factory=lambda: os.environ.get("FASTCNN_DATA") or None
    )
    #: FASTCNN_CACHE_DIR: where downloaded datasets are kept (default ~/.cache/fastcnn).
    cache_dir: str = field(
        default_factory=lambda: os.environ.get("FASTCNN_CACHE_DIR")
        or os.path.join(os.path.expanduser("~"), ".cache", "fastcnn")
    )
    #: FASTCNN_DIST_TIMEOUT: seconds a rank of fastcnn.distributed waits in one
    #: collective before it decides another rank has died and aborts the MPI job
    #: (0: wait forever).
    dist_timeout: float = field(
        default_factory=lambda: _non_negative("FASTCNN_DIST_TIMEOUT", 300.0, "seconds")
    )
    #: FASTCNN_BUFFER_POOL_MB: the most memory, in MiB, that the ops keep in idle
    #: output buffers for reuse (see ``fastcnn/_buffers.py``; 0: no reuse).
    buffer_pool_mb: float = field(
        default_factory=lambda: _non_negative("FASTCNN_BUFFER_POOL_MB", 512.0, "MiB")
    )


settings = Settings()
