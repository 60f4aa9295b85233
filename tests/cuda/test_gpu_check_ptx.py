"""``tools/gpu_check.py --ptx``: every CUDA kernel compiled to PTX for sm_90 and
assembled by ptxas, whose registers and spills it prints, without a GPU.

The end-to-end test runs the tool in a subprocess, as CI would, with the simulator
off; it needs the CUDA toolkit (NVVM, libdevice and ptxas) and skips only where the
tool says the toolkit is missing (exit status 77). Not marked slow: it is the check
that every kernel compiles and assembles for a real GPU, and takes about 75 s of
CPU (~40 s on two idle cores; 105-112 s measured on two cores shared with other
jobs). The other tests check the parsing of ptxas's
report and the exit status on canned data, in milliseconds.
"""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools import _ptx_report as ptx

ROOT = Path(__file__).resolve().parents[2]

ENTRY = "_ZN6cudapy7fastcnn7kernels4cuda4conv14_forward_tiledB2v3E5ArrayIfLi4E"
# ptxas 13.0 on a numba kernel forced to spill (-maxrregcount=24), stdout and
# stderr interleaved as they come back.
SPILLING = f"""\
ptxas info    : Overriding maximum register limit 256 for '{ENTRY}' with  24 of \
maxrregcount option
ptxas info    : 52 bytes gmem
ptxas info    : Compiling entry function '{ENTRY}' for 'sm_90'
ptxas info    : Function properties for {ENTRY}
    320 bytes stack frame, 596 bytes spill stores, 864 bytes spill loads
ptxas info    : Used 24 registers, used 1 barriers, 320 bytes cumulative stack size
ptxas info    : Compile time = 615.192 ms
"""
# nvcc's PTX of a kernel with a static shared array and a device function.
SHARED = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z1kPf' for 'sm_90'
ptxas info    : Function properties for _Z1kPf
    8 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 1 barriers, 1024 bytes smem, 380 bytes cmem[0]
ptxas info    : Compile time = 24.929 ms
ptxas info    : Function properties for _Z1gPfi
    16 bytes stack frame, 4 bytes spill stores, 8 bytes spill loads
"""


def test_parse_ptxas_reads_registers_spills_and_stack():
    assert ptx.parse_ptxas(SPILLING) == ptx.Resources(
        registers=24, spill_stores=596, spill_loads=864, stack=320, smem=0
    )


def test_parse_ptxas_reads_static_shared_memory_and_sums_callee_spills():
    resources = ptx.parse_ptxas(SHARED)
    assert resources == ptx.Resources(
        registers=32, spill_stores=4, spill_loads=8, stack=8, smem=1024
    )
    assert resources.spills


def test_parse_ptxas_rejects_output_without_one_entry():
    with pytest.raises(ValueError, match="one entry function"):
        ptx.parse_ptxas(SPILLING + SHARED)
    with pytest.raises(ValueError, match="one entry function"):
        ptx.parse_ptxas("ptxas info    : 0 bytes gmem\n")


def test_find_ptxas_prefers_cuda_home_and_says_when_it_is_missing(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(ptx, "FALLBACK_BIN", str(tmp_path))
    with pytest.raises(ptx.ToolkitMissing, match="ptxas not found"):
        ptx.find_ptxas()
    ptxas = tmp_path / "bin" / "ptxas"
    ptxas.parent.mkdir()
    ptxas.write_text("#!/bin/sh\n")
    ptxas.chmod(0o755)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    assert ptx.find_ptxas() == str(ptxas)


def test_signature_tag_is_short_and_has_no_spaces():
    from numba import types

    args = (types.float32[:, :, :, ::1], types.float32[:, :, :, ::1], types.int64,
            types.int64, types.UniTuple(types.int32, 16), types.boolean,
            types.float64[:])
    assert ptx.signature_tag(args) == "f32[4C]*2,i64*2,(i32*16),b,f64[1A]"


def _report(*rows, unreached=()):
    return ptx.Report(list(rows), list(unreached), [], "ptxas", 1, 0.0)


def test_exit_status_fails_on_errors_and_gates_on_spills():
    clean = ptx.Row("conv._add_bias", "float32", "f32[1C],f32[4C]",
                    ptx.Resources(28, 0, 0, 0, 0))
    spilling = ptx.Row("conv._forward_tiled", "float64", "f64[4C]",
                       ptx.parse_ptxas(SPILLING))
    broken = ptx.Row("dense._matmul", "float32", "f32[2C]",
                     error="compile error: TypingError: ...")
    assert ptx.exit_status(_report(clean, spilling)) == 0
    assert ptx.exit_status(_report(clean, spilling), fail_on_spill=True) == 2
    assert ptx.exit_status(_report(clean), fail_on_spill=True) == 0
    assert ptx.exit_status(_report(clean, broken, spilling), fail_on_spill=True) == 1
    assert ptx.exit_status(_report(clean, unreached=["loss._new"])) == 1
    table = ptx.format_report(_report(clean, spilling, broken))
    assert "dense._matmul" in table and "compile error: TypingError" in table
    assert "spilling kernels: conv._forward_tiled" in table


def _cuda_kernel_names() -> set[str]:
    """Every kernel decorated with ``cuda_kernel`` once every CUDA module is
    imported (here, on the simulator that conftest.py switches on: the names are
    the same)."""
    from fastcnn.kernels import _jit

    package = ROOT / "fastcnn" / "kernels" / "cuda"
    for path in sorted(package.glob("*.py")):
        if path.stem != "__init__":
            importlib.import_module(f"fastcnn.kernels.cuda.{path.stem}")
    return {ptx.kernel_name(kernel) for kernel in _jit.CUDA_KERNELS}


ROW = re.compile(
    r"^(?P<kernel>\S+) +(?P<dtype>float32|float64|-) +(?P<regs>\S+) +"
    r"(?P<spill_st>\S+) +(?P<spill_ld>\S+) +(?P<stack>\S+) +(?P<smem>\S+) +"
    r"(?P<signature>\S+)$"
)


def test_gpu_check_ptx_reports_every_kernel():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--ptx"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode == ptx.SKIP_CODE:
        pytest.skip(output.strip().splitlines()[-1])
    assert proc.returncode == 0, output
    assert "Traceback" not in output

    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("kernel "))
    assert lines[header].split() == list(ptx.COLUMNS), lines[header]
    assert set(lines[header + 1]) == {"-"}
    body = lines[header + 2: lines.index("", header)]
    rows = [ROW.match(line) for line in body]
    assert all(rows), [line for line, row in zip(body, rows, strict=True) if not row]
    for row in rows:
        assert int(row["regs"]) > 0, row.string
        assert int(row["spill_st"]) >= 0 and int(row["spill_ld"]) >= 0, row.string
        assert int(row["stack"]) >= 0 and int(row["smem"]) >= 0, row.string

    listed = {row["kernel"] for row in rows}
    missing = _cuda_kernel_names() - listed
    assert not missing, f"kernels missing from the table: {sorted(missing)}"
    assert {row["dtype"] for row in rows} >= {"float32", "float64"}
    assert "Dynamic shared memory" in proc.stdout  # the smem column's footnote
