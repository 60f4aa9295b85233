"""tools/gpu_check.py runs end to end: its smoke mode (tiny shapes, one run
each) on the CUDA simulator, in a subprocess as a user would run it."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_smoke_mode_runs_on_the_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--smoke"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "GPU: the CUDA simulator" in proc.stdout
    rows = [line.split() for line in proc.stdout.splitlines()
            if line.startswith(("conv f+b", "simple_cnn train_step"))]
    assert len(rows) == 2, proc.stdout
    for row in rows:
        # CPU ms and GPU ms are numbers (torch is absent here: "-").
        cpu_ms, gpu_ms, torch_ms = row[-5:-2]
        assert float(cpu_ms) > 0 and float(gpu_ms) > 0 and torch_ms == "-", row
    assert "Traceback" not in output
