"""The one place that owns every JIT option.

Kernels are decorated with :func:`cpu_kernel` (a parallel kernel) or
:func:`cpu_helper` (a serial function inlined into kernels); nothing else in the package
calls ``numba.njit`` directly, so the options below are the options everywhere. The
CUDA twins use :func:`cuda_kernel` and :func:`cuda_device` (end of this file), which
import ``numba.cuda`` only when they run, i.e. when a CUDA kernel module is imported.

Compilation is lazy: the decorators give no signature, so ``import fastcnn`` compiles
nothing and each kernel compiles on its first call for the dtypes it is given (float32
and float64 each get their own specialisation).

Compile time (cold, measured: a LeNet-5 training step compiles in about 60 s, most of
it the convolution kernels) is kept down by three habits in the kernel files:

- Copy arrays with loops, never ``a[i:j] = b[k:l]``: an array-to-array slice
  assignment makes Numba compile its shape-mismatch error formatter (``str(int)``
  and string concatenation), about 4 s the first time in a process.
- Pass helpers one type per argument: a ``prange`` index is unsigned and a literal
  ``0`` is ``Literal[int]``, and either compiles a helper a second time next to the
  signed ``int64`` call (convert with ``np.int64(...)``).
- Choose between specialised and general kernels in Python (``pool.py``, the conv
  forward), so a network compiles only the kernels it runs; and keep one ``prange``
  per kernel where the work allows (each parallel loop costs seconds).
- Put a heavy loop body in a task (``cpu/_tasks.py``): Numba optimises and compiles
  everything a ``prange`` body calls once for each of the four modules the loop is
  built from; a task compiles once and is called through its address.
"""

from __future__ import annotations

import glob
import hashlib
import os

import numba

from .._config import settings

#: Only floating-point contraction: ``a * b + c`` may become one fused multiply-add
#: (twice the arithmetic throughput, and one rounding instead of two). Nothing that
#: breaks IEEE semantics: no reassociation (sums keep the order the code gives, so the
#: bits do not depend on vector width or thread count), NaN and inf propagate, no
#: flush-to-zero. Results still agree with PyTorch and finite differences to
#: rounding.
FASTMATH = {"contract"}

#: For dot-product helpers (:func:`cpu_reduction`) only: reassociation as well, so LLVM
#: vectorises a long sum over several lanes and adds the lanes at the end. The order
#: is still fixed by the machine code and the shapes alone (never by the thread
#: count), so results stay bitwise reproducible; they differ from a serial sum in the
#: last bits, as any BLAS does. NaN and inf still propagate (no "nnan"/"ninf").
REDUCTION_FASTMATH = {"contract", "reassoc"}

_BASE_OPTIONS = {"fastmath": FASTMATH, "nogil": True, "error_model": "numpy"}
_REDUCTION_OPTIONS = {**_BASE_OPTIONS, "fastmath": REDUCTION_FASTMATH}

#: The same without contraction either: strict IEEE arithmetic, every operation
#: rounded on its own, for kernels that must reproduce a NumPy formula bit for bit
#: (the fused optimizer updates in ``cpu/optim.py``). Element-wise kernels lose
#: nothing by it: they are bound by memory, not by arithmetic.
_STRICT_OPTIONS = {**_BASE_OPTIONS, "fastmath": False}


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


def _options_key() -> str:
    """Every option set as text that is the same in every process: fastmath flags
    are sets, whose repr order follows string hashing, which differs per process
    (a digest of the raw repr dropped the cache in about every other new process)."""
    def canonical(value):
        return sorted(value) if isinstance(value, set | frozenset) else value

    return repr([sorted((key, canonical(value)) for key, value in options.items())
                 for options in (_BASE_OPTIONS, _STRICT_OPTIONS, _REDUCTION_OPTIONS)])


def _drop_stale_cache(cpu_dir: str | None = None) -> None:
    """Delete the CPU kernels' cached machine code when any kernel source or JIT
    option has changed since it was written.

    Numba re-validates a cached function only against the modification time of the
    file that defines it. A helper imported from another kernel file, or an option
    changed in this file, would otherwise leave stale machine code in use, and the
    results would silently differ from a fresh compile. A digest of every
    ``cpu/*.py`` and of the options is kept beside the cache; a mismatch clears it.
    Read-only installs (no writable cache) have nothing to do.
    """
    if cpu_dir is None:
        cpu_dir = os.path.join(os.path.dirname(__file__), "cpu")
    cache_dir = os.path.join(cpu_dir, "__pycache__")
    digest = hashlib.sha256(_options_key().encode())
    digest.update(numba.__version__.encode())
    for path in sorted(glob.glob(os.path.join(cpu_dir, "*.py"))):
        with open(path, "rb") as source:
            digest.update(source.read())
    stamp = os.path.join(cache_dir, "fastcnn-kernels.sha256")
    try:
        with open(stamp) as file:
            if file.read() == digest.hexdigest():
                return
    except OSError:
        pass
    try:
        for pattern in ("*.nbi", "*.nbc"):
            for cached in glob.glob(os.path.join(cache_dir, pattern)):
                os.remove(cached)
        os.makedirs(cache_dir, exist_ok=True)
        with open(stamp, "w") as file:
            file.write(digest.hexdigest())
    except OSError:
        pass


if settings.cache:
    _drop_stale_cache()


def cpu_kernel(function):
    """Decorate a parallel CPU kernel (``prange`` loops become threaded)."""
    return _with_cache({**_BASE_OPTIONS, "parallel": True}, function)


def cpu_kernel_strict(function):
    """Decorate a parallel CPU kernel compiled without fused multiply-add (see
    ``_STRICT_OPTIONS``)."""
    return _with_cache({**_STRICT_OPTIONS, "parallel": True}, function)


def cpu_helper(function):
    """Decorate a serial helper that kernels call (LLVM inlines the small ones)."""
    return _with_cache(dict(_BASE_OPTIONS), function)


def cpu_reduction(function):
    """Decorate a serial dot-product helper: like :func:`cpu_helper`, with
    :data:`REDUCTION_FASTMATH` so its sums vectorise (see there)."""
    return _with_cache(dict(_REDUCTION_OPTIONS), function)


# ------------------------------------------------------------------------------ CUDA
#
# The CUDA twins in ``fastcnn/kernels/cuda/`` are decorated with :func:`cuda_kernel`
# (a ``__global__`` kernel, launched by a host-side function of the CPU kernel's
# name) and :func:`cuda_device` (a device function that kernels call). ``numba.cuda``
# is imported inside the decorators, never here at import time, so that
# ``import fastcnn`` does not import it; the decorators run only when a CUDA kernel
# module is imported, which happens only for the "cuda" device.
#
# No fastmath flags: NVVM already contracts ``a * b + c`` into one FMA by default (the
# CPU's FASTMATH = {"contract"}), and nothing else may be relaxed. No on-disk cache: a
# CUDA kernel compiles in well under a second per dtype, the cache is keyed by the
# GPU's compute capability, and the machines that run the GPU path start fresh.

CUDA_OPTIONS = {"fastmath": False}

#: Every function decorated with :func:`cuda_kernel`, in decoration order
#: (``tools/gpu_check.py --ptx`` checks that each one compiles to PTX).
CUDA_KERNELS: list = []


def cuda_kernel(function):
    """Decorate a CUDA kernel (``numba.cuda.jit``); compiled lazily per dtype."""
    from numba import cuda

    kernel = cuda.jit(**CUDA_OPTIONS)(function)
    CUDA_KERNELS.append(kernel)
    return kernel


def cuda_device(function):
    """Decorate a CUDA device function (callable from kernels only, on a GPU)."""
    from numba import cuda

    return cuda.jit(device=True, **CUDA_OPTIONS)(function)
