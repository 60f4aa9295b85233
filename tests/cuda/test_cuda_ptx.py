"""Every CUDA kernel compiles to PTX for compute capability 9.0, in float32 and
float64, without a GPU.

The simulator runs kernels as Python, so it accepts code that numba cannot compile
for a GPU (builtins ``min``/``max`` on numba 0.68's CUDA target, a 3-D array
indexed with two indices, a dtype the target does not know...). This test compiles
the real thing with ``numba.cuda.compile_ptx`` in a subprocess WITHOUT
``NUMBA_ENABLE_CUDASIM``. It needs the CUDA toolkit's NVVM and libdevice (found by
numba under ``CUDA_HOME`` or ``/usr/local/cuda``), not a driver; it skips where they
are absent.

Argument types come from the launchers themselves: with
``fastcnn.kernels.cuda._launch.RECORDER`` set, each launcher runs on the shared tiny
cases (``tests/cuda/cuda_cases.py``) and records ``(kernel, numba.typeof(args))``
instead of launching, so every code path the cases reach (tiled and direct convolution,
split and unsplit weight gradient, ...) is compiled with the types it really gets.
The test also checks that every kernel decorated with ``cuda_kernel`` was reached.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_CODE = 77

SCRIPT = textwrap.dedent(
    r"""
    import importlib, sys
    from types import SimpleNamespace

    import numpy as np
    import numba
    from numba import cuda

    try:
        from numba.cuda.cudadrv.nvvm import NVVM
        NVVM()
    except Exception as exc:  # no toolkit: nothing to compile with
        print(f"NVVM unavailable: {exc}")
        sys.exit(__SKIP__)

    # Device functions compile for "the current device" (numba asks the driver for
    # its compute capability even inside compile_ptx); without a GPU, say 9.0.
    # (numba 0.68's built-in target; the numba-cuda package may not need this.)
    import numba.cuda.dispatcher as dispatcher
    if hasattr(dispatcher, "get_current_device"):
        dispatcher.get_current_device = lambda: SimpleNamespace(
            compute_capability=__CC__
        )

    from fastcnn.kernels import _jit
    from fastcnn.kernels.cuda import _launch
    from tests.cuda.cuda_cases import CASES

    seen = {}

    def record(kernel, args):
        seen.setdefault((kernel, tuple(numba.typeof(a) for a in args)), None)

    _launch.RECORDER = record
    modules = {}
    for (module, function), builders in CASES.items():
        mod = modules.setdefault(
            module, importlib.import_module(f"fastcnn.kernels.cuda.{module}")
        )
        # Small tiles, so that the multi-block paths (split weight gradient) run.
        for name in ("TILE", "TILE_H", "TILE_W"):
            if hasattr(mod, name):
                setattr(mod, name, 2)
        for build in builders:
            for dtype in (np.float32, np.float64):
                args, _ = build(np.random.default_rng(0), dtype)
                getattr(mod, function)(*args)
    # The untiled convolution, for shapes whose tile does not fit in shared memory.
    _launch.MAX_SHARED_BYTES = 0
    for dtype in (np.float32, np.float64):
        args, _ = CASES[("conv", "conv2d_forward")][0](np.random.default_rng(0), dtype)
        modules["conv"].conv2d_forward(*args)
    # The op layer's device-side plumbing.
    layout = importlib.import_module("fastcnn.kernels.cuda._layout")
    for dtype in (np.float32, np.float64):
        x = np.zeros((1, 2, 3, 4), dtype)
        xp = np.zeros((1, 2, 5, 6), dtype)
        layout.pad2d(x, xp, 1, 1)
        layout.crop2d(xp, x, 1, 1)
        layout.transpose2d(np.zeros((3, 4), dtype), np.zeros((4, 3), dtype))

    failures = []
    for kernel, types in seen:
        try:
            cuda.compile_ptx(kernel.py_func, types, cc=__CC__)
        except Exception as exc:
            failures.append(f"{kernel.py_func.__module__}.{kernel.py_func.__name__}"
                            f"{types}: {type(exc).__name__}: {exc}")
    reached = {kernel for kernel, _ in seen}
    missing = [f"{k.py_func.__module__}.{k.py_func.__name__}"
               for k in _jit.CUDA_KERNELS if k not in reached]
    print(f"compiled {len(seen) - len(failures)} of {len(seen)} specialisations of "
          f"{len(reached)} kernels")
    for line in failures:
        print("FAILED", line)
    for name in missing:
        print("NOT REACHED", name)
    sys.exit(1 if failures or missing else 0)
    """
)


def _toolkit_present() -> bool:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    return any(Path(p).is_dir() for p in (home, "/usr/local/cuda") if p)


# Not marked slow (~25 s): it is the only check in CI that the kernels compile for a
# GPU, so it runs on every commit.
def test_every_kernel_compiles_to_ptx_for_sm90():
    if not _toolkit_present():
        pytest.skip("no CUDA toolkit (CUDA_HOME or /usr/local/cuda) to compile with")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NUMBA_ENABLE_CUDASIM"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    script = SCRIPT.replace("__SKIP__", str(SKIP_CODE)).replace("__CC__", "(9, 0)")
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode == SKIP_CODE:
        pytest.skip(output.strip().splitlines()[-1])
    assert proc.returncode == 0, output
    assert "compiled" in proc.stdout
