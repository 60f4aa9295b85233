"""The kernel suites again with Numba's bounds checks on (``NUMBA_BOUNDSCHECK=1``).

Kernels index without checks: an array that is one element short is written past
silently (or the interpreter dies). Under ``NUMBA_BOUNDSCHECK=1`` every such access
raises IndexError instead, so running the kernel tests that way proves that the
validation in front of the kernels hands them arrays of the sizes they index.

The flag is read when numba is imported and cached machine code compiled without it
would be reused, so the suites run in a child pytest with its own empty
``NUMBA_CACHE_DIR``: every kernel compiles afresh, which takes long. The test is
marked ``boundscheck`` and deselected by default; run it with::

    NUMBA_ENABLE_CUDASIM=1 .venv/bin/python -m pytest -m boundscheck
"""

import os
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Every suite that runs the CPU kernels through the public ops, the layers and the
#: model, hostile inputs (the fuzz suites, hostile model files) included.
KERNEL_SUITES = [
    "tests/ops/test_conv.py", "tests/ops/test_pool.py", "tests/ops/test_linear.py",
    "tests/ops/test_norm.py", "tests/ops/test_activation.py", "tests/ops/test_loss.py",
    "tests/ops/test_dropout.py", "tests/ops/test_optim_kernels.py",
    "tests/ops/test_fuzz_conv.py", "tests/ops/test_fuzz_pool.py",
    "tests/ops/test_fuzz_linear_norm.py", "tests/ops/test_fuzz_activation.py",
    "tests/ops/test_fuzz_loss.py", "tests/ops/test_structure_ops.py",
    "tests/ops/test_fuzz_structure.py", "tests/layers/test_layers.py",
    "tests/layers/test_fuzz_layers.py", "tests/model/test_optimizers.py",
    "tests/model/test_model_state_fuzz.py", "tests/model/test_training_guards.py",
]

#: Seconds the child pytest may take (every kernel compiles cold, on 2 cores).
CHILD_TIMEOUT_S = 3 * 3600


def _env(cache_dir) -> dict:
    return {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(cache_dir),
            "NUMBA_ENABLE_CUDASIM": "1"}


def _bounds_checks_are_on(env) -> None:
    """An out-of-bounds write under the same environment raises IndexError: the
    flag really reaches the compiler (a stray early numba import, or a cache hit,
    would silently run unchecked code)."""
    script = textwrap.dedent("""
        import numpy as np
        from fastcnn.kernels import _jit

        @_jit.cpu_kernel
        def poke(a, i):
            a[i] = 1.0

        try:
            poke(np.zeros(3), 3)
        except IndexError:
            print("checked")
        else:
            print("unchecked")
    """)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "checked", done.stdout


@pytest.mark.boundscheck
def test_kernel_suites_pass_with_bounds_checks(tmp_path):
    env = _env(tmp_path / "numba-cache")
    _bounds_checks_are_on(env)
    # -m "not slow": the child must not select this test again (it is not listed
    # anyway) nor the long runs.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-m", "not slow and not boundscheck", *KERNEL_SUITES]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT_S)
    tail = done.stdout[-6000:] + done.stderr[-3000:]
    # Exit status 0 is every test passing; a crash (a negative status) or an
    # IndexError from a kernel fails here with the child's summary.
    assert done.returncode == 0, tail
    summary = re.findall(r"^=*\s*(\d+ passed.*)$", done.stdout, re.MULTILINE)
    assert summary, tail
    assert "IndexError" not in done.stdout, tail
    print(f"\nunder NUMBA_BOUNDSCHECK=1: {summary[-1].strip('= ')}")  # with -s
