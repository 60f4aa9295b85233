"""The byte budget of one load: hostile files must not make us allocate freely."""

from __future__ import annotations

#: Default ``max_bytes`` of :func:`fastcnn.io.load_weights`: 4 GiB of tensors.
DEFAULT_MAX_BYTES = 4 * 2**30


class Budget:
    """Counts the bytes a load allocates and refuses to pass ``max_bytes``."""

    def __init__(self, op: str, path: str, max_bytes: int):
        self.op, self.path, self.max_bytes, self.used = op, path, max_bytes, 0

    def take(self, nbytes: int, what: str) -> None:
        self.used += nbytes
        if self.used > self.max_bytes:
            raise ValueError(
                f"{self.op}: {self.path} needs more than max_bytes={self.max_bytes} "
                f"bytes (at {what}); pass a larger max_bytes if you trust the file."
            )
