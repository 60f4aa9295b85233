"""The one place that owns every JIT option.

Kernels are decorated with :func:`cpu_kernel` (a parallel kernel) or
:func:`cpu_helper` (a serial function inlined into kernels); nothing else in the package
calls ``numba.njit`` directly, so the options below are the options everywhere.

Compilation is lazy: the decorators give no signature, so ``import fastcnn`` compiles
nothing and each kernel compiles on its first call for the dtypes it is given (float32
and float64 each get their own specialisation).
"""

from __future__ import annotations

import numba

from .._config import settings

#: No fastmath: kernels must agree with PyTorch and with finite differences, propagate
#: NaN and inf as IEEE arithmetic says, and give the same bits for any thread count.
FASTMATH = False

_BASE_OPTIONS = {"fastmath": FASTMATH, "nogil": True, "error_model": "numpy"}


def _with_cache(options: dict, function):
    """Apply ``numba.njit`` with ``cache=True`` where the cache directory is writable.

    Numba decides at decoration time whether it can find a writable cache location
    (next to the source, or in the user cache directory); where it cannot, it raises
    ``RuntimeError``. A read-only install must still import, so fall back to no cache.
    """
    if settings.cache:
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError:
            pass
    return numba.njit(cache=False, **options)(function)


def cpu_kernel(function):
    """Decorate a parallel CPU kernel (``prange`` loops become threaded)."""
    return _with_cache({**_BASE_OPTIONS, "parallel": True}, function)


def cpu_helper(function):
    """Decorate a serial helper that kernels call (LLVM inlines the small ones)."""
    return _with_cache(dict(_BASE_OPTIONS), function)
