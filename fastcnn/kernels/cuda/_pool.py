"""Device buffers reused from step to step: the CUDA side of ``fastcnn/_buffers.py``.

Why: a training step asks for the same activations, gradients and scratch buffers
every step. A fresh ``cuda.device_array`` is a driver allocation (and numba frees
in batches, so memory use climbs between them); PyTorch keeps a caching allocator
for the same reason.

How: :func:`empty` hands out a device array of the asked shape and dtype that the
pool holds and that nothing else references, or allocates one and keeps it. "Nothing
else references" is read from reference counts, as the host pool does: of the array
object (a caller's variable, a layer's cache), and of its memory (views made by
``reshape`` or slicing hold the memory, not the array). How the memory is held
differs between numba's driver and its simulator; where the counts cannot be read
(another numba), a buffer is never handed out twice, which is safe. Reuse is safe
with respect to the GPU too: every launch and copy here goes to the default stream,
so a kernel that wrote the old contents runs before any that writes the new ones.

:func:`release` drops every idle buffer (``fastcnn.backend.cuda_device().
empty_cache()``); the pool otherwise keeps what a step used, so that the next step
allocates nothing.
"""

from __future__ import annotations

import sys
import threading

import numpy as np


def _memory_holders(array) -> tuple:
    """Objects whose reference counts say who holds ``array``'s memory, or None
    where this numba's device arrays are not understood (never reused then)."""
    wrapped = getattr(array, "_ary", None)  # the simulator: a NumPy array
    if isinstance(wrapped, np.ndarray):
        return (wrapped,)
    pointer = getattr(array, "gpu_data", None)  # numba's driver: an OwnedPointer
    memory = getattr(pointer, "_mem", None)
    if pointer is None or memory is None or not hasattr(memory, "refct"):
        return None
    return (pointer,)


def _counts(entry) -> tuple | None:
    """The counts that say whether ``entry``'s buffer is idle. Called the same way
    at allocation (when only the pool holds it) and at every lookup, so the
    interpreter's own references cancel out."""
    array, holders = entry[0], entry[1]
    if holders is None:
        return None
    counts = [sys.getrefcount(array)]
    counts.extend(sys.getrefcount(h) for h in holders)
    memory = getattr(holders[0], "_mem", None)
    if memory is not None:
        counts.append(memory.refct)  # views made by slicing own a count here
    return tuple(counts)


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (shape, dtype) -> [[array, holders, idle counts], ...]
        self._buckets: dict[tuple, list[list]] = {}

    def empty(self, shape, dtype, allocate):
        shape = (shape,) if isinstance(shape, int | np.integer) else shape
        key = (tuple(int(s) for s in shape), np.dtype(dtype).str)
        with self._lock:
            bucket = self._buckets.setdefault(key, [])
            for entry in bucket:
                if entry[2] is not None and _counts(entry) == entry[2]:
                    return entry[0]
            entry = [allocate(key[0], np.dtype(dtype)), None, None]
            entry[1] = _memory_holders(entry[0])
            bucket.append(entry)
            entry[2] = _counts(entry)  # only the pool holds it now
            return entry[0]

    def release(self) -> int:
        """Drop the idle buffers; returns how many were dropped."""
        dropped = 0
        with self._lock:
            for key in list(self._buckets):
                kept = []
                for entry in self._buckets[key]:
                    if entry[2] is not None and _counts(entry) == entry[2]:
                        dropped += 1
                    else:
                        kept.append(entry)
                if kept:
                    self._buckets[key] = kept
                else:
                    del self._buckets[key]
        return dropped

    def size(self) -> int:
        """Buffers held (idle or not)."""
        with self._lock:
            return sum(len(bucket) for bucket in self._buckets.values())


POOL = _Pool()


def empty(shape, dtype):
    """An uninitialised device array: an idle pooled one, or a new one kept."""
    from numba import cuda

    return POOL.empty(shape, dtype, lambda s, d: cuda.device_array(s, dtype=d))


def copied_in(host):
    """A pooled device array holding the NumPy array ``host`` (one copy in)."""
    out = empty(host.shape, host.dtype)
    if out.size:
        out.copy_to_device(np.ascontiguousarray(host))
    return out


def release() -> int:
    """Drop every idle pooled buffer; returns how many."""
    return POOL.release()
