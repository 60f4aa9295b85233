"""The CUDA kernels mirror the CPU kernels by file, name and positional signature;
``import fastcnn`` never imports numba.cuda; asking for "cuda" without a GPU fails
clearly and "auto" falls back to the CPU."""

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .cuda_cases import CASES, DEVICE_HELPERS

ROOT = Path(__file__).resolve().parents[2]
SUBJECTS = sorted(
    p.stem for p in (ROOT / "fastcnn" / "kernels" / "cpu").glob("*.py")
    if not p.stem.startswith("_")
)


def _public_functions(module) -> dict:
    """Public callables defined in ``module`` (numba dispatchers included)."""
    found = {}
    for name, obj in vars(module).items():
        if name.startswith("_") or not callable(obj) or inspect.isclass(obj):
            continue
        func = getattr(obj, "py_func", obj)
        if getattr(func, "__module__", None) == module.__name__:
            found[name] = obj
    return found


def test_every_cpu_kernel_file_has_a_cuda_twin():
    assert SUBJECTS == sorted(
        ["activation", "conv", "dense", "dropout", "layer_norm", "loss", "merge",
         "norm", "optim", "pad",
         "pool", "pool_more", "scale"]
    )
    for subject in SUBJECTS:
        assert (ROOT / "fastcnn" / "kernels" / "cuda" / f"{subject}.py").is_file()


@pytest.mark.parametrize("subject", SUBJECTS)
def test_cuda_module_mirrors_cpu_signatures(subject):
    cpu = importlib.import_module(f"fastcnn.kernels.cpu.{subject}")
    gpu = importlib.import_module(f"fastcnn.kernels.cuda.{subject}")
    cpu_functions = _public_functions(cpu)
    assert cpu_functions, f"no public kernels found in {cpu.__name__}"
    gpu_functions = _public_functions(gpu)
    missing = sorted(set(cpu_functions) - set(gpu_functions))
    assert not missing, f"{gpu.__name__} lacks {missing}"
    for name, function in cpu_functions.items():
        expected = inspect.signature(function)
        actual = inspect.signature(gpu_functions[name])
        assert actual == expected, f"{subject}.{name}: cuda {actual} != cpu {expected}"


@pytest.mark.parametrize("subject", SUBJECTS)
def test_every_kernel_has_a_test_case(subject):
    cpu = importlib.import_module(f"fastcnn.kernels.cpu.{subject}")
    for name in _public_functions(cpu):
        if (subject, name) not in DEVICE_HELPERS:
            assert (subject, name) in CASES, f"tests/cuda/cuda_cases.py lacks {name}"


def _run(code: str, **env_overrides) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_overrides}
    for key in [k for k, v in env_overrides.items() if v is None]:
        env.pop(key)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_fastcnn_does_not_import_numba_cuda():
    code = (
        "import sys, numpy as np, fastcnn, fastcnn.functional as F\n"
        "F.relu(np.ones(3))\n"
        "assert fastcnn.get_device() == 'cpu'\n"
        "bad = sorted(m for m in sys.modules if m.startswith('numba.cuda'))\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    proc = _run(code, FASTCNN_DEVICE=None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "clean" in proc.stdout


def test_cuda_without_a_gpu_fails_clearly_and_auto_falls_back():
    code = (
        "import fastcnn\n"
        "from fastcnn import backend\n"
        "if backend.cuda_available():\n"
        "    print('has-gpu'); raise SystemExit(0)\n"
        "assert fastcnn.set_device('auto') == 'cpu'\n"
        "try:\n"
        "    fastcnn.set_device('cuda')\n"
        "except RuntimeError as exc:\n"
        "    print('error:', exc)\n"
        "assert fastcnn.get_device() == 'cpu'\n"
    )
    proc = _run(code, NUMBA_ENABLE_CUDASIM="0", FASTCNN_DEVICE=None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if "has-gpu" in proc.stdout:
        pytest.skip("a CUDA GPU is present here")
    assert "error: device='cuda' was requested but no CUDA GPU is available" in (
        proc.stdout
    )
