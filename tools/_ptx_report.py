"""What each CUDA kernel costs on an sm_90 GPU, learned without a GPU: every kernel
compiled to PTX with ``numba.cuda.compile_ptx`` and assembled by ``ptxas -v``, which
reports registers per thread, spill stores and loads, the stack frame (local memory)
and static shared memory. ``tools/gpu_check.py --ptx`` prints the table.

The argument types are the ones the launchers really pass: with
``fastcnn.kernels.cuda._launch.RECORDER`` set, every launcher runs on the tiny cases
of ``tests/cuda/cuda_cases.py`` (float32 and float64) and records ``(kernel,
numba.typeof(args))`` instead of launching, so each code path those cases reach
(tiled and untiled convolution, split and unsplit weight gradient, ...) is compiled
with the types it gets. :func:`record_signatures` is that step.

Needs the CUDA toolkit (NVVM and libdevice, which numba finds under ``CUDA_HOME`` or
``/usr/local/cuda``, and ``ptxas``), not a driver, and must run in a process where
``NUMBA_ENABLE_CUDASIM`` is unset or 0. Numba is imported inside the functions, so
importing this module (for :func:`parse_ptxas`, say) imports nothing heavy.

Compiling is the slow part (about 0.2 s of CPU in numba's front end and NVVM per
signature, then ~80 ms in ptxas): :func:`analyse` spreads the signatures over
worker processes, each of which records the same signatures itself (recording is
deterministic and takes a fraction of a second) and compiles the ones it is handed.
"""

from __future__ import annotations

import importlib
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from types import SimpleNamespace

import numpy as np

#: The compute capability compiled for, and ptxas's name for it.
CC = (9, 0)
ARCH = f"sm_{CC[0]}{CC[1]}"
#: The exit status (and pytest's convention for "skipped") when the toolkit is absent.
SKIP_CODE = 77
DTYPES = (np.float32, np.float64)
#: Where ptxas is looked for after ``$CUDA_HOME/bin``, ``$CUDA_PATH/bin`` and PATH.
FALLBACK_BIN = "/usr/local/cuda/bin"
_PREFIX = "fastcnn.kernels.cuda."


class ToolkitMissing(RuntimeError):
    """NVVM/libdevice or ptxas is not installed: nothing to compile with."""


# ---------------------------------------------------------------------- toolkit


def find_ptxas() -> str:
    """The ptxas of the toolkit numba compiles with: ``$CUDA_HOME/bin``,
    ``$CUDA_PATH/bin``, then ``PATH``, then ``/usr/local/cuda/bin``."""
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    for home in filter(None, homes):
        candidate = Path(home) / "bin" / "ptxas"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("ptxas") or shutil.which("ptxas", path=FALLBACK_BIN)
    if found is None:
        raise ToolkitMissing(
            f"ptxas not found ($CUDA_HOME/bin, $CUDA_PATH/bin, PATH, {FALLBACK_BIN}):"
            " install the CUDA toolkit or set CUDA_HOME"
        )
    return found


def ptxas_version(ptxas: str) -> str:
    """The last line of ``ptxas --version`` ("Build cuda_13.0.r13.0/...")."""
    proc = subprocess.run([ptxas, "--version"], capture_output=True, text=True,
                          timeout=60)
    lines = proc.stdout.strip().splitlines()
    return lines[-1] if lines else "unknown version"


def check_nvvm() -> None:
    """Raise :class:`ToolkitMissing` where numba cannot load NVVM or libdevice."""
    try:
        from numba.cuda.cudadrv.nvvm import NVVM, LibDevice

        NVVM()
        LibDevice()
    except Exception as exc:  # noqa: BLE001 - any failure means "no toolkit"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ToolkitMissing(f"NVVM or libdevice unavailable: {type(exc).__name__}: "
                             f"{first}") from exc


def pretend_device(cc: tuple[int, int] = CC) -> None:
    """Let device functions compile without a GPU.

    Kernels compile for the ``cc`` given to ``compile_ptx``, but the device
    functions they call ask the driver for the current device's compute capability
    (numba 0.68's built-in CUDA target); without a GPU, answer ``cc``.
    """
    import numba.cuda.dispatcher as dispatcher

    if hasattr(dispatcher, "get_current_device"):
        dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)


# -------------------------------------------------------------------- recording


@dataclass(frozen=True)
class Signature:
    """One specialisation of a kernel: the dispatcher and its argument types."""

    kernel: object
    types: tuple
    dtype: str  # the float dtype of the case that reached it first, or "-"

    @property
    def name(self) -> str:
        return kernel_name(self.kernel)

    @property
    def tag(self) -> str:
        variant = kernel_variant(self.kernel)
        return f"{variant}:{signature_tag(self.types)}" if variant else signature_tag(
            self.types)

    @property
    def key(self) -> str:
        """What tells signatures apart across processes (dispatchers do not)."""
        return f"{self.name}|{kernel_variant(self.kernel)}|{self.types}"


def kernel_name(kernel) -> str:
    """``module.function`` of a CUDA kernel, without ``fastcnn.kernels.cuda.``; a
    kernel built by a factory is ``module.factory.function``."""
    func = kernel.py_func
    qualname = func.__qualname__.replace(".<locals>.", ".")
    return f"{func.__module__.removeprefix(_PREFIX)}.{qualname}"


def kernel_variant(kernel) -> str:
    """The compile-time constants a factory-built kernel closes over, as
    ``name=value,...`` (bools as 0/1); empty for a module-level kernel."""
    func = kernel.py_func
    cells = zip(func.__code__.co_freevars, func.__closure__ or (), strict=True)
    values = []
    for name, cell in cells:
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, bool | int | float | np.integer | np.floating):
            values.append(f"{name}={int(value) if isinstance(value, bool) else value}")
    return ",".join(values)


def _short(numba_type) -> str:
    from numba import types

    def scalar(t) -> str:
        text = str(t)
        match = re.fullmatch(r"(u?)(int|float)(\d+)", text)
        if match:
            return f"{match[1]}{'i' if match[2] == 'int' else 'f'}{match[3]}"
        return {"bool": "b"}.get(text, text.replace(" ", ""))

    if isinstance(numba_type, types.Array):
        ro = "r" if not numba_type.mutable else ""
        return f"{scalar(numba_type.dtype)}[{numba_type.ndim}{numba_type.layout}{ro}]"
    if isinstance(numba_type, types.UniTuple):
        return f"({_short(numba_type.dtype)}*{numba_type.count})"
    if isinstance(numba_type, types.BaseTuple):
        return f"({signature_tag(numba_type.types)})"
    return scalar(numba_type)


def signature_tag(types) -> str:
    """Argument types in short, without spaces: ``f32[4C],f32[1C],i64*5,b``
    (``f32[4C]`` a C-contiguous 4-D float32 array, ``i64*5`` five int64s)."""
    parts: list[list] = []
    for text in map(_short, types):
        if parts and parts[-1][0] == text:
            parts[-1][1] += 1
        else:
            parts.append([text, 1])
    return ",".join(t if n == 1 else f"{t}*{n}" for t, n in parts)


def _uses_dtype(types, dtype: str) -> bool:
    return any(str(getattr(t, "dtype", t)) == dtype for t in types)


@contextmanager
def _patched(module, **values):
    saved = {name: getattr(module, name) for name in values if hasattr(module, name)}
    for name, value in values.items():
        if name in saved:
            setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def _layout_calls(layout, dtype):
    """The op layer's device-side plumbing (pad, crop, transpose), which no case in
    ``cuda_cases.py`` reaches."""
    x = np.zeros((1, 2, 3, 4), dtype)
    xp = np.zeros((1, 2, 5, 6), dtype)
    layout.pad2d(x, xp, 1, 1)
    layout.crop2d(xp, x, 1, 1)
    layout.transpose2d(np.zeros((3, 4), dtype), np.zeros((4, 3), dtype))


def record_signatures() -> tuple[list[Signature], list[str]]:
    """Run every launcher of ``tests/cuda/cuda_cases.py`` (float32 and float64) in
    recording mode; return the distinct signatures, in the order first reached, and
    the launchers that failed (``"conv.conv2d_forward (float32): ValueError: ..."``).

    Two passes. The first runs with the block sizes as they are, so each kernel is
    recorded as a user's program builds it (a factory-built kernel closes over the
    tile, which sizes its shared memory). The second patches the tiles to 2, so the
    multi-block paths of the tiny cases run (split weight gradient), and adds only
    kernels the first pass did not reach. The untiled convolution is reached by
    setting the shared-memory limit to 0 for one more forward call.
    """
    calls, failures = _launcher_calls()
    first = _record(calls, {}, failures, "")
    second = _record(calls, {"TILE": 2}, failures,
                     ", tiles 2")
    reached = {signature.name for signature in first}
    added = [s for s in second if s.name not in reached]
    return first + added, failures


def _launcher_calls() -> tuple[list, list[str]]:
    """``(label, module, call(dtype))`` for every case, and import failures."""
    from fastcnn.kernels.cuda import _launch
    from tests.cuda.cuda_cases import CASES

    failures: list[str] = []
    calls: list[tuple[str, object, Callable[[object], object]]] = []
    modules: dict[str, object] = {}
    for (module, function), builders in CASES.items():
        if module not in modules:
            try:
                modules[module] = importlib.import_module(_PREFIX + module)
            except Exception as exc:  # noqa: BLE001 - e.g. a file mid-edit
                modules[module] = None
                failures.append(f"{module}: import failed: {type(exc).__name__}: "
                                f"{exc}".splitlines()[0])
        mod = modules[module]
        if mod is None:
            continue
        for build in builders:
            def call(dtype, mod=mod, function=function, build=build):
                args, _ = build(np.random.default_rng(0), dtype)
                getattr(mod, function)(*args)

            calls.append((f"{module}.{function}", mod, call))
    conv = modules.get("conv")
    if conv is not None:
        forward = CASES[("conv", "conv2d_forward")][0]

        def untiled(dtype):
            args, _ = forward(np.random.default_rng(0), dtype)
            with _patched(_launch, MAX_SHARED_BYTES=0):
                conv.conv2d_forward(*args)

        calls.append(("conv.conv2d_forward (untiled)", conv, untiled))
    try:
        layout = importlib.import_module(_PREFIX + "_layout")
        calls.append(("_layout", layout, partial(_layout_calls, layout)))
    except Exception as exc:  # noqa: BLE001
        failures.append(f"_layout: import failed: {type(exc).__name__}: {exc}")
    return calls, failures


def _record(calls, tiles: dict, failures: list[str], note: str) -> list[Signature]:
    import numba

    from fastcnn.kernels.cuda import _launch

    seen: dict[tuple, Signature] = {}
    dtype = "float32"  # the name of the case's dtype, read by record()

    def record(kernel, args):
        types = tuple(numba.typeof(a) for a in args)
        if (kernel, types) not in seen:
            seen[(kernel, types)] = Signature(
                kernel, types, dtype if _uses_dtype(types, dtype) else "-")

    _launch.RECORDER = record
    try:
        for label, mod, call in calls:
            with _patched(mod, **tiles):
                for numpy_dtype in DTYPES:
                    dtype = np.dtype(numpy_dtype).name
                    try:
                        call(numpy_dtype)
                    except Exception as exc:  # noqa: BLE001 - one launcher, one line
                        failures.append(f"{label} ({dtype}{note}): "
                                        f"{type(exc).__name__}: "
                                        f"{exc}".splitlines()[0])
    finally:
        _launch.RECORDER = None
    return list(seen.values())


def cuda_kernels() -> tuple[list, list[str]]:
    """Every function decorated with ``cuda_kernel``, after importing every CUDA
    kernel module (so the list is complete even where no case uses a module), and
    the modules that failed to import."""
    from fastcnn.kernels import _jit

    failures = []
    package = Path(importlib.import_module("fastcnn.kernels.cuda").__file__).parent
    for path in sorted(package.glob("*.py")):
        if path.stem != "__init__":
            try:
                importlib.import_module(_PREFIX + path.stem)
            except Exception as exc:  # noqa: BLE001 - e.g. a file mid-edit
                failures.append(f"{path.stem}: import failed: {type(exc).__name__}: "
                                f"{exc}".splitlines()[0])
    return list(_jit.CUDA_KERNELS), failures


# ---------------------------------------------------------------------- ptxas


@dataclass
class Resources:
    """What ptxas reports for one kernel (bytes, except ``registers``)."""

    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    smem: int

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PROPERTIES = re.compile(
    r"Function properties for (\S+)\s+(\d+) bytes stack frame, "
    r"(\d+) bytes spill stores, (\d+) bytes spill loads"
)
_USED = re.compile(r"Used (\d+) registers(.*)")
_SMEM = re.compile(r"(\d+) bytes smem")
_CUMULATIVE = re.compile(r"(\d+) bytes cumulative stack size")


def parse_ptxas(text: str) -> Resources:
    """Parse ``ptxas -v`` output for a module with one entry function.

    Registers and static shared memory come from the entry's ``Used ...`` line;
    spill stores and loads are summed over every function in the output (the entry
    and any device function not inlined into it); ``stack`` is the cumulative stack
    size where ptxas gives one (the entry's frame and its callees'), else the
    entry's frame.
    """
    entries = _ENTRY.findall(text)
    if len(entries) != 1:
        raise ValueError(f"expected one entry function in ptxas's output, found "
                         f"{len(entries)}:\n{text}")
    used = _USED.search(text)
    if used is None:
        raise ValueError(f"no 'Used N registers' line in ptxas's output:\n{text}")
    smem = _SMEM.search(used[2])
    stores = loads = stack = 0
    for name, frame, store, load in _PROPERTIES.findall(text):
        stores += int(store)
        loads += int(load)
        if name == entries[0]:
            stack = int(frame)
    cumulative = _CUMULATIVE.search(used[2])
    if cumulative:
        stack = int(cumulative[1])
    return Resources(int(used[1]), stores, loads, stack, int(smem[1]) if smem else 0)


def run_ptxas(ptxas: str, ptx: str, arch: str = ARCH) -> Resources:
    """Assemble ``ptx`` with ``ptxas -arch=<arch> -v`` and parse its report."""
    with tempfile.TemporaryDirectory(prefix="fastcnn-ptx-") as tmp:
        source = Path(tmp) / "kernel.ptx"
        source.write_text(ptx)
        proc = subprocess.run(
            [ptxas, f"-arch={arch}", "-v", str(source), "-o", str(Path(tmp) / "k.o")],
            capture_output=True, text=True, timeout=300,
        )
    output = f"{proc.stdout}\n{proc.stderr}"
    if proc.returncode != 0:
        errors = [line for line in output.splitlines() if "error" in line]
        raise RuntimeError((errors or output.splitlines() or ["no output"])[0])
    return parse_ptxas(output)


# -------------------------------------------------------------------- analysis


@dataclass
class Row:
    """One line of the report: a signature and its resources, or what failed."""

    name: str
    dtype: str
    tag: str
    resources: Resources | None = None
    error: str | None = None
    compile_cpu: float = 0.0  # seconds of CPU in numba and NVVM
    ptxas_cpu: float = 0.0  # seconds of CPU in ptxas


def compile_signature(signature: Signature) -> str:
    """PTX of one signature for :data:`CC`, with the kernel's own JIT options."""
    from numba import cuda

    from fastcnn.kernels._jit import CUDA_OPTIONS

    ptx, _ = cuda.compile_ptx(signature.kernel.py_func, signature.types, cc=CC,
                              **CUDA_OPTIONS)
    return ptx


def analyse_signature(signature: Signature, ptxas: str) -> Row:
    """Compile and assemble one signature; a failure becomes the row's error."""
    row = Row(signature.name, signature.dtype, signature.tag)
    start = time.process_time()
    try:
        ptx = compile_signature(signature)
    except Exception as exc:  # noqa: BLE001 - reported per kernel, never a crash
        row.error = f"compile error: {type(exc).__name__}: {exc}".splitlines()[0]
    row.compile_cpu = time.process_time() - start
    if row.error is None:
        start = _children_cpu()
        try:
            row.resources = run_ptxas(ptxas, ptx)
        except Exception as exc:  # noqa: BLE001
            row.error = f"ptxas error: {exc}".splitlines()[0]
        row.ptxas_cpu = _children_cpu() - start
    return row


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_WORKER: dict = {}


def _worker_init(ptxas: str) -> None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
    import warnings

    warnings.filterwarnings("ignore", ".*numba.cuda.*", DeprecationWarning)
    pretend_device()
    _WORKER["signatures"], _ = record_signatures()
    _WORKER["ptxas"] = ptxas


def _worker_task(index: int, expected: str) -> Row:
    signature = _WORKER["signatures"][index]
    found = signature.key
    if found != expected:  # the worker recorded something else: never guess
        return Row(signature.name, signature.dtype, signature.tag,
                   error=f"worker recorded {found}, expected {expected}")
    return analyse_signature(signature, _WORKER["ptxas"])


@dataclass
class Report:
    rows: list[Row]
    unreached: list[str]  # kernels no case reached
    failures: list[str]  # launchers that raised while recording
    ptxas: str
    jobs: int
    seconds: float
    signatures: int = field(init=False)

    def __post_init__(self):
        self.signatures = len(self.rows)

    @property
    def errors(self) -> list[Row]:
        return [row for row in self.rows if row.error is not None]

    @property
    def spilling(self) -> list[Row]:
        return [row for row in self.rows if row.resources and row.resources.spills]

    @property
    def ok(self) -> bool:
        return not (self.errors or self.unreached or self.failures)


def exit_status(report: Report, fail_on_spill: bool = False) -> int:
    """1 when a signature failed, a launcher failed or a kernel was not reached; else
    2 when ``fail_on_spill`` and any signature spills; else 0."""
    if not report.ok:
        return 1
    return 2 if fail_on_spill and report.spilling else 0


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def analyse(jobs: int | None = None) -> Report:
    """Record every signature, compile and assemble each one on ``jobs`` processes
    (default: the usable CPUs; 1 compiles in this process), and return the report.

    Raises :class:`ToolkitMissing` where NVVM or ptxas is absent.
    """
    start = time.perf_counter()
    ptxas = find_ptxas()
    check_nvvm()
    pretend_device()
    signatures, failures = record_signatures()
    # By name: the second pass builds factory kernels (for tile 2) it does not keep.
    reached = {s.name for s in signatures}
    kernels, import_failures = cuda_kernels()
    failures += [f for f in import_failures if f not in failures]
    unreached = sorted({kernel_name(k) for k in kernels} - reached)
    jobs = max(1, min(jobs or default_jobs(), len(signatures) or 1))
    if jobs == 1:
        rows = [analyse_signature(s, ptxas) for s in signatures]
    else:
        rows = _analyse_in_pool(signatures, ptxas, jobs)
    rows.sort(key=lambda r: (r.name, r.dtype, r.tag))
    return Report(rows, unreached, failures, ptxas, jobs, time.perf_counter() - start)


def _analyse_in_pool(signatures: list[Signature], ptxas: str, jobs: int) -> list[Row]:
    # Spawned, not forked: a fork would copy numba's and LLVM's state mid-flight.
    rows: list[Row | None] = [None] * len(signatures)
    # The slow signatures first, so that no worker is left with one at the end.
    order = sorted(range(len(signatures)), key=lambda i: _cost_guess(signatures[i]),
                   reverse=True)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"),
                             initializer=_worker_init, initargs=(ptxas,)) as pool:
        futures = {
            i: pool.submit(_worker_task, i, signatures[i].key) for i in order
        }
        for i, future in futures.items():
            s = signatures[i]
            try:
                rows[i] = future.result()
            except BrokenProcessPool as exc:
                rows[i] = Row(s.name, s.dtype, s.tag,
                              error=f"worker died: {exc}".splitlines()[0])
            except Exception as exc:  # noqa: BLE001
                rows[i] = Row(s.name, s.dtype, s.tag,
                              error=f"{type(exc).__name__}: {exc}".splitlines()[0])
    return rows  # type: ignore[return-value]


def _cost_guess(signature: Signature) -> int:
    """Bytecode size of the kernel: a rough stand-in for its compile time."""
    return len(signature.kernel.py_func.__code__.co_code)


# ------------------------------------------------------------------------ table

#: Column headers of :func:`format_report`'s table, for readers of its output.
COLUMNS = ("kernel", "dtype", "regs", "spill_st", "spill_ld", "stack", "smem*",
           "signature")


def format_report(report: Report) -> str:
    """The report as a table, one row per (kernel, signature), with footnotes."""
    width = max([len("kernel"), *(len(row.name) for row in report.rows)])
    header = (f"{'kernel':<{width}} {'dtype':<7} {'regs':>4} {'spill_st':>8} "
              f"{'spill_ld':>8} {'stack':>5} {'smem*':>5}  signature")
    lines = [header, "-" * len(header)]
    for row in report.rows:
        start = f"{row.name:<{width}} {row.dtype:<7}"
        r = row.resources
        if r is None:
            lines.append(f"{start} {row.error}  [{row.tag}]")
        else:
            lines.append(f"{start} {r.registers:>4} {r.spill_stores:>8} "
                         f"{r.spill_loads:>8} {r.stack:>5} {r.smem:>5}  {row.tag}")
    for name in report.unreached:
        lines.append(f"{name:<{width}} {'-':<7} not reached by any case in "
                     "tests/cuda/cuda_cases.py")
    lines += [
        "",
        "regs: registers per thread. spill_st, spill_ld: bytes of register spill",
        "  stores and loads per thread. stack: bytes of local memory per thread",
        "  (spills and local arrays, callees included).",
        "* smem: STATIC shared memory only (shared arrays of a constant size).",
        "  Dynamic shared memory, sized at launch (cuda.shared.array(0, ...), which",
        "  the tiled kernels use), is not in ptxas's report.",
        "signature: f32[4C] = C-contiguous 4-D float32 array, i64*5 = five int64s,",
        "  (i32*16) = a tuple of 16 int32s, b = bool; a factory-built kernel's",
        "  compile-time constants come first (name=value,...:).",
        f"ptxas -arch={ARCH} (default -O3) on PTX from numba.cuda.compile_ptx.",
    ]
    kernels = len({row.name for row in report.rows})
    compile_cpu = sum(row.compile_cpu for row in report.rows)
    ptxas_cpu = sum(row.ptxas_cpu for row in report.rows)
    lines.append(f"\n{report.signatures} signatures of {kernels} kernels in "
                 f"{report.seconds:.1f} s on {report.jobs} "
                 f"process{'es' if report.jobs > 1 else ''} (CPU: "
                 f"{compile_cpu:.1f} s numba + NVVM, {ptxas_cpu:.1f} s ptxas); "
                 f"ptxas: {report.ptxas}")
    for failure in report.failures:
        lines.append(f"LAUNCHER FAILED while recording: {failure}")
    if report.errors:
        lines.append(f"FAILED: {len(report.errors)} signatures did not compile or "
                     "assemble (rows above)")
    if report.unreached:
        lines.append(f"FAILED: {len(report.unreached)} kernels not reached: "
                     + ", ".join(report.unreached))
    spilling = sorted({row.name for row in report.spilling})
    lines.append(f"spilling kernels: {', '.join(spilling) if spilling else 'none'}")
    return "\n".join(lines)
