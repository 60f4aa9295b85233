"""The byte budget of one load: hostile files must not make us allocate freely."""

from __future__ import annotations

import os

#: The most a load may materialise by default (``max_bytes=None``): 4 GiB.
DEFAULT_MAX_BYTES = 4 * 2**30
#: By default a load may also materialise at most this many times the file's size
#: plus :data:`SLACK`: bfloat16 widened to float32 (2x) on top of the storages it
#: was read from (1x), with room to spare.
AMPLIFICATION = 4
#: What even a tiny file may use by default (a compressed ``.npz`` member, a
#: small tensor viewed many times); as ``fastcnn._safezip.MAX_INFLATION``.
SLACK = 64 << 20


def default_max_bytes(file_size: int) -> int:
    """``max_bytes`` for ``max_bytes=None``: output never much larger than the
    file, and never over :data:`DEFAULT_MAX_BYTES`."""
    return min(DEFAULT_MAX_BYTES, AMPLIFICATION * file_size + SLACK)


class Budget:
    """Counts the bytes a load materialises and refuses to pass ``max_bytes``.

    Every allocation is charged when it is made and never given back, so ``used``
    bounds the load's peak memory from above. ``max_bytes=None`` is
    :func:`default_max_bytes` of the file's size.
    """

    def __init__(self, op: str, path: str, max_bytes: int | None):
        self.op, self.path, self.used = op, path, 0
        self.default = max_bytes is None
        self.max_bytes = (default_max_bytes(os.path.getsize(path)) if self.default
                          else max_bytes)

    def take(self, nbytes: int, what: str) -> None:
        self.used += nbytes
        if self.used > self.max_bytes:
            why = (f"the default max_bytes={self.max_bytes}, {AMPLIFICATION}x "
                   f"the file's size plus {SLACK >> 20} MiB" if self.default
                   else f"max_bytes={self.max_bytes}")
            raise ValueError(
                f"{self.op}: {self.path} needs more than {why} (at {what}); pass "
                f"a larger max_bytes if you trust the file."
            )
