"""Host-side helpers shared by the CUDA launchers: grid sizes, staging of NumPy
arrays onto the device, device scratch buffers and the one launch call.

Every launcher in this package accepts numba device arrays (kept where they are) or
NumPy arrays (copied in, and copied back into the caller's array where the launcher
writes them), so a launcher is a drop-in replacement for the CPU kernel of its name.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import numpy as np
from numba import cuda

from .._arrays import is_device_array
from . import _pool

#: When set, a callable ``(kernel, args)`` that replaces every launch, and staging
#: and scratch buffers stay NumPy: ``tools/gpu_check.py --ptx`` runs the launchers
#: this way to learn every kernel's argument types, then compiles each one to PTX.
RECORDER = None

#: Dynamic shared memory one block may use without opting in to more (bytes); a
#: launcher whose tile would need more falls back to an untiled kernel.
MAX_SHARED_BYTES = 48 * 1024


def n_blocks(count: int, per_block: int) -> int:
    """Blocks of ``per_block`` threads that cover ``count`` items (at least one)."""
    return max(1, (count + per_block - 1) // per_block)


def pow2_floor(value: int) -> int:
    """The largest power of two <= ``value`` (at least 1): block reductions halve."""
    result = 1
    while result * 2 <= value:
        result *= 2
    return result


def to_device(value):
    """A numba device array for ``value``: device arrays pass through (foreign ones
    are wrapped without a copy), NumPy arrays are copied in."""
    if RECORDER is not None:
        return value
    if isinstance(value, np.ndarray):
        return _pool.copied_in(value)
    if getattr(value, "__cuda_ndarray__", False):
        return value
    if hasattr(value, "__cuda_array_interface__"):
        return cuda.as_cuda_array(value)
    raise TypeError(
        f"expected a NumPy array or a CUDA device array, got {type(value).__name__}"
    )


def copy_back(device, host) -> None:
    """Copy ``device`` into ``host`` where ``host`` is a NumPy array (no-op where the
    caller passed a device array, which the kernel wrote directly)."""
    if device is host or not isinstance(host, np.ndarray):
        return
    if host.flags.c_contiguous:
        device.copy_to_host(host)
    else:
        host[...] = device.copy_to_host()


@contextmanager
def staged(*arrays, out=()):
    """Yield device versions of ``arrays``; on a normal exit, the ones at the
    positions in ``out`` are copied back into the caller's NumPy arrays."""
    if RECORDER is not None:
        yield arrays
        return
    device = tuple(to_device(a) for a in arrays)
    yield device
    for i in out:
        copy_back(device[i], arrays[i])


def scratch(shape, dtype):
    """An uninitialised device buffer from the pool (a NumPy one while
    recording)."""
    if RECORDER is not None:
        return np.empty(shape, dtype=dtype)
    return _pool.empty(shape, dtype)


def launch(kernel, grid, block, args, shared_bytes: int = 0) -> None:
    """``kernel[grid, block, stream 0, shared_bytes](*args)``, or a recording.

    Small grids are deliberate here (one block per channel, one thread per sample
    of a small batch), so numba's low-occupancy performance warning is switched off
    while the launch is configured (it would fire on most calls of a small model).
    """
    if RECORDER is not None:
        RECORDER(kernel, args)
        return
    config = getattr(sys.modules.get(type(kernel).__module__), "config", None)
    previous = getattr(config, "CUDA_LOW_OCCUPANCY_WARNINGS", None)
    if previous:
        config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
    try:
        configured = kernel[grid, block, 0, shared_bytes]
    finally:
        if previous:
            config.CUDA_LOW_OCCUPANCY_WARNINGS = previous
    configured(*args)


def is_array(value) -> bool:
    return isinstance(value, np.ndarray) or is_device_array(value)


def run_threads(kernel, count: int, threads_per_block: int, args, out=(-1,)) -> None:
    """Launch ``kernel(*args)`` with one thread per item of ``count``, staging the
    arrays among ``args`` (scalars pass through); the args at the positions in
    ``out`` (negative counts from the end) are the ones written."""
    if count == 0:
        return
    positions = [i for i, a in enumerate(args) if is_array(a)]
    outs = tuple(positions.index(o % len(args)) for o in out)
    with staged(*(args[i] for i in positions), out=outs) as device:
        args = list(args)
        for i, d in zip(positions, device, strict=True):
            args[i] = d
        launch(kernel, n_blocks(count, threads_per_block), threads_per_block,
               tuple(args))
