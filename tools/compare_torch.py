"""fastcnn against PyTorch on the CPU, and against the machine's measured FMA peak.

Usage::

    python tools/compare_torch.py                 # everything, < 5 minutes
    python tools/compare_torch.py --quick         # fewer repeats (a smoke run)
    python tools/compare_torch.py --only conv --only model --output /tmp/b.md

Prints a Markdown report and writes it to ``BENCHMARKS.md`` at the repository root
(``--output`` elsewhere). Both libraries run in this one process on the same number
of threads (``--threads``, default 2: ``fastcnn.set_num_threads`` and
``torch.set_num_threads``), in float32, on the same seeded inputs; models start from
the same weights (fastcnn's state dict copied into an equivalent
``torch.nn.Sequential``) and train with plain SGD. Each time is the median of
repeated calls after a warm-up call (which compiles); the calls of the two libraries
alternate in two blocks so that both see the same background load. Ratios are
torch time / fastcnn time: above 1, fastcnn is faster.

PyTorch is also timed a second time in a subprocess with glibc's allocator tuned
(``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736``): without it, each large
fresh output tensor pays page faults, which flatters any competitor.

Without torch installed, the report has fastcnn's numbers only. The shapes, inputs
and models are those of the asv suites (``benchmarks/_common.py``).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# Run as a script, sys.path[0] is tools/; appended, not prepended, so that the
# fastcnn under test stays the one the environment (or PYTHONPATH) provides.
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from benchmarks import _common as common  # noqa: E402

SECTIONS = ("conv", "pool", "model", "memory", "startup")
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}


# ----------------------------------------------------------------------- timing


class Budget:
    """How long to time each measurement: the full run fits in five minutes when
    fastcnn's kernels are about as fast as PyTorch's."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.seconds = 0.25 if quick else 1.0  # per function, over both blocks
        self.min_reps = 3 if quick else 7
        self.max_reps = 40 if quick else 400
        self.startup_runs = 2 if quick else 5
        self.epoch_samples = 1024 if quick else 8192


def _call_samples(fn, seconds: float, min_reps: int, max_reps: int,
                  warmup: bool) -> list[float]:
    """Seconds per call of ``fn``: at least ``min_reps`` calls (fewer only when one
    call takes longer than the whole budget), at most ``max_reps``."""
    if warmup:
        fn()
    gc.collect()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < max_reps:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        spent = time.perf_counter() - start
        if spent >= seconds and (len(samples) >= min_reps or spent >= 3 * seconds):
            break
    return samples


def measure(fns: dict, budget: Budget) -> dict:
    """Median seconds per call of each function (None where a function is None or
    raised; the error is kept under ``"<name>.error"``).

    The functions are timed in turn, twice over (two blocks, each after its own
    warm-up call), unless one call takes longer than the whole budget.
    """
    samples = {name: [] for name in fns}
    result: dict = {}
    live = {name: fn for name, fn in fns.items() if fn is not None}
    for block in range(2):
        for name, fn in list(live.items()):
            slow = bool(samples[name]) and min(samples[name]) > budget.seconds / 2
            if block == 1 and slow:
                continue
            try:
                samples[name] += _call_samples(
                    fn, budget.seconds / 2, max(2, budget.min_reps // 2),
                    budget.max_reps // 2, warmup=True)
            except Exception as exc:  # a broken kernel must not end the report
                result[f"{name}.error"] = f"{type(exc).__name__}: {exc}"
                del live[name]
    for name in fns:
        ok = samples[name] and f"{name}.error" not in result
        result[name] = statistics.median(samples[name]) if ok else None
    return result


# ------------------------------------------------------------------ environment


def _cpu_info() -> dict:
    info = {"name": platform.processor() or platform.machine(), "flags": set()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            info["name"] = value
        elif key in ("cpu family", "model", "stepping", "cpu MHz"):
            info.setdefault(key, value)
        elif key == "flags":
            info["flags"] = set(value.split())
    return info


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip()
                                  else "")


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _machine_rows(threads: int, torch, load_start: str) -> list[tuple[str, str]]:
    import numba

    import fastcnn

    cpu = _cpu_info()
    isa = [f for f in ("avx2", "fma", "avx512f") if f in cpu["flags"]]
    family = ", ".join(f"{k} {cpu[k]}" for k in ("cpu family", "model", "stepping")
                       if k in cpu)
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "not yet initialised"
    rows = [
        ("CPU", f"{cpu['name']} ({family}); {', '.join(isa) or 'no AVX2/FMA'}"),
        ("cores", f"{os.cpu_count()} logical, {affinity} usable by this process"),
        ("load average (1, 5, 15 min) at start", load_start),
        ("OS", platform.platform()),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
        ("numba", f"{numba.__version__} (threading layer: {layer})"),
        ("torch", torch.__version__ if torch else "not installed"),
        ("fastcnn", f"{fastcnn.__version__}, commit {_git_commit()}"),
        ("threads", f"{threads} (numba: {numba.get_num_threads()}"
                    + (f", torch: {torch.get_num_threads()})" if torch else ")")),
    ]
    return rows


def set_threads(threads: int, torch) -> int:
    import numba

    import fastcnn

    threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    fastcnn.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    return threads


# -------------------------------------------------------------------- FMA peak


def _fma_kernel():
    """A parallel Numba kernel of independent FMA chains on float32 vectors.

    Each thread owns one row (4 KiB, in L1) and sweeps it: every element goes
    through 8 dependent ``v * mul + add`` between its load and its store. LLVM
    vectorises the loop over elements into ``vfmadd`` on ymm or zmm registers (8 or
    16 float32 lanes, as it chooses for the CPU; ``contract`` lets it
    fuse the multiply and the add) and unrolls it, so many independent chains hide
    the FMA latency while loads and stores stay rare. 2 flops per lane per FMA.
    """
    import numba

    @numba.njit(parallel=True, fastmath={"contract"}, cache=False)
    def fma_chains(buf, mul, add, sweeps):
        for t in numba.prange(buf.shape[0]):
            row = buf[t]
            for _ in range(sweeps):
                for j in range(row.shape[0]):
                    v = row[j]
                    v = v * mul + add
                    v = v * mul + add
                    v = v * mul + add
                    v = v * mul + add
                    v = v * mul + add
                    v = v * mul + add
                    v = v * mul + add
                    v = v * mul + add
                    row[j] = v

    return fma_chains


def measure_fma_peak(threads: int, budget: Budget) -> dict:
    """Best GFLOP/s of the FMA kernel on ``threads`` threads and on one thread."""
    import re

    import numba

    kernel = _fma_kernel()
    mul, add = np.float32(0.999), np.float32(0.001)  # converges to 1: no denormals
    kernel(np.ones((1, 1024), np.float32), mul, add, 1)
    asm = kernel.inspect_asm(kernel.signatures[0])
    # LLVM picks the vector width for the CPU (ymm on AVX2, often zmm on AVX-512):
    # count both, so the report says which instructions the peak was measured with.
    result = {f"vfmadd_{reg}": len(re.findall(rf"vfmadd\w*ps\s+%{reg}", asm))
              for reg in ("ymm", "zmm")}
    before = numba.get_num_threads()
    for n in sorted({1, threads}):
        numba.set_num_threads(n)
        buf = np.ones((n, 1024), np.float32)
        flops_per_sweep = 2 * 8 * buf.size
        sweeps = 200
        while True:  # calibrate: one call of about 0.1 s
            t0 = time.perf_counter()
            kernel(buf, mul, add, sweeps)
            dt = time.perf_counter() - t0
            if dt > 0.05:
                break
            sweeps *= 4
        best = 0.0
        for _ in range(3 if budget.quick else 7):
            t0 = time.perf_counter()
            kernel(buf, mul, add, sweeps)
            dt = time.perf_counter() - t0
            best = max(best, flops_per_sweep * sweeps / dt / 1e9)
        result[n] = best
    numba.set_num_threads(before)
    return result


# ------------------------------------------------------------------------- conv


def _torch_conv_fns(torch, case, x, w, b, dy):
    tF = torch.nn.functional
    tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
    gx, gw, gb = (t.clone().requires_grad_(True) for t in (tx, tw, tb))
    s, p, g = case.stride, case.padding, case.groups

    def forward():
        return tF.conv2d(tx, tw, tb, stride=s, padding=p, groups=g)

    def forward_backward():
        y = tF.conv2d(gx, gw, gb, stride=s, padding=p, groups=g)
        return torch.autograd.grad(y, (gx, gw, gb), tdy)

    return forward, forward_backward


def _fastcnn_conv_fns(case, x, w, b, dy):
    import fastcnn.functional as F

    kw = {"stride": case.stride, "padding": case.padding, "groups": case.groups}

    def forward():
        return F.conv2d(x, w, b, **kw)

    def forward_backward():
        F.conv2d(x, w, b, **kw)
        return F.conv2d_backward(dy, x, w, **kw)

    return forward, forward_backward


def run_conv_torch_only(budget: Budget) -> dict:
    """PyTorch's conv times alone (the tuned-allocator subprocess runs this)."""
    import torch

    out = {}
    for label, case in common.CONV_CASES.items():
        fwd, fwd_bwd = _torch_conv_fns(torch, case, *common.conv_inputs(case))
        out[label] = measure({"fwd": fwd, "fwd_bwd": fwd_bwd}, budget)
    return out


def run_conv(budget: Budget, torch, checks: list) -> dict:
    results = {}
    for label, case in common.CONV_CASES.items():
        arrays = common.conv_inputs(case)
        fns = dict(zip(("fc_fwd", "fc_fwd_bwd"), _fastcnn_conv_fns(case, *arrays),
                       strict=True))
        if torch is not None:
            t_fwd, t_fwd_bwd = _torch_conv_fns(torch, case, *arrays)
            fns.update(t_fwd=t_fwd, t_fwd_bwd=t_fwd_bwd)
            try:
                ours = fns["fc_fwd"]()
                diff = float(np.max(np.abs(ours - t_fwd().numpy())))
                scale = float(np.max(np.abs(ours)))
                checks.append(("conv " + label, diff / max(scale, 1e-30)))
            except Exception as exc:
                checks.append(("conv " + label, f"{type(exc).__name__}: {exc}"))
        results[label] = measure(fns, budget)
        _progress(f"conv {label}", results[label])
    return results


def run_worker(kind: str, payload: dict) -> dict:
    budget = Budget(payload["quick"])
    if kind == "torch-conv":
        import torch

        torch.set_num_threads(payload["threads"])
        return run_conv_torch_only(budget)
    if kind == "memory":  # import torch only in torch's process
        torch = _import_torch() if payload["library"] == "torch" else None
        return memory_epoch(payload, torch)
    raise ValueError(f"unknown worker {kind!r}")


def _in_subprocess(kind: str, payload: dict, env: dict | None = None,
                   timeout: float = 600) -> dict:
    """Run this script as a worker in a fresh process; its last stdout line is JSON."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind,
           "--payload", json.dumps(payload)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if proc.returncode:
        raise RuntimeError(f"worker {kind} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- pool


def run_pool(budget: Budget, torch, checks: list) -> dict:
    import fastcnn.functional as F

    x, dy = common.pool_inputs()
    k = common.POOL_KERNEL
    results = {}
    for op in ("max", "avg"):
        fwd = {"max": F.max_pool2d, "avg": F.avg_pool2d}[op]
        bwd = {"max": F.max_pool2d_backward, "avg": F.avg_pool2d_backward}[op]
        fns = {"fc_fwd": lambda fwd=fwd: fwd(x, k),
               "fc_fwd_bwd": lambda fwd=fwd, bwd=bwd: (fwd(x, k), bwd(dy, x, k))}
        if torch is not None:
            t_op = {"max": torch.nn.functional.max_pool2d,
                    "avg": torch.nn.functional.avg_pool2d}[op]
            tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
            gx = tx.clone().requires_grad_(True)

            def t_fwd_bwd(t_op=t_op, gx=gx, tdy=tdy):
                return torch.autograd.grad(t_op(gx, k), gx, tdy)

            fns.update(t_fwd=lambda t_op=t_op, tx=tx: t_op(tx, k),
                       t_fwd_bwd=t_fwd_bwd)
            try:
                diff = np.max(np.abs(fwd(x, k) - t_op(tx, k).numpy()))
                checks.append((f"{op}-pool", float(diff)))
            except Exception as exc:
                checks.append((f"{op}-pool", f"{type(exc).__name__}: {exc}"))
        results[op] = measure(fns, budget)
        _progress(f"{op} pool", results[op])
    return results


# ------------------------------------------------------------------------ model


def torch_spec(model) -> list:
    """fastcnn layers as (torch module name, args, kwargs), JSON-serialisable, so a
    process without fastcnn can build the same network. Hyper-parameters pass through
    as given (torch takes the same ints, pairs, strings and None)."""

    def js(value):
        return list(value) if isinstance(value, tuple) else value

    spec = []
    for layer in model.layers:
        c, kind = layer.get_config(), type(layer).__name__
        if kind == "Conv2D":
            spec.append(("Conv2d", [layer.input_shape[0], c["out_channels"],
                                    js(c["kernel_size"])],
                         {k: js(c[k]) for k in ("stride", "padding", "dilation",
                                                 "groups", "bias")}))
        elif kind == "Dense":
            spec.append(("Linear", [layer.input_shape[0], c["out_features"]],
                         {"bias": c["bias"]}))
        elif kind == "MaxPool2D":
            spec.append(("MaxPool2d", [js(c["kernel_size"])],
                         {k: js(c[k]) for k in ("stride", "padding", "dilation",
                                                 "ceil_mode")}))
        elif kind == "AvgPool2D":
            spec.append(("AvgPool2d", [js(c["kernel_size"])],
                         {k: js(c[k]) for k in ("stride", "padding", "ceil_mode",
                                                 "count_include_pad")}))
        elif kind == "BatchNorm2D":
            spec.append(("BatchNorm2d", [layer.input_shape[0]],
                         {k: c[k] for k in ("eps", "momentum", "affine")}))
        elif kind == "GlobalAvgPool2D":
            spec.append(("GlobalAvgPool", [], {}))
        elif kind == "Dropout":
            spec.append(("Dropout", [c["p"]], {}))
        elif kind in ("ReLU", "Flatten", "Tanh", "Sigmoid"):
            spec.append((kind, [], {}))
        else:
            raise NotImplementedError(f"no torch equivalent for {kind} here")
    return spec


def torch_from_spec(torch, spec):
    nn = torch.nn
    mods = []
    for name, args, kw in spec:
        if name == "GlobalAvgPool":
            mods.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        else:
            args = [tuple(a) if isinstance(a, list) else a for a in args]
            kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
            mods.append(getattr(nn, name)(*args, **kw))
    return nn.Sequential(*mods)


def torch_twin(torch, model):
    """An equivalent torch.nn.Sequential holding a copy of ``model``'s weights."""
    tmodel = torch_from_spec(torch, torch_spec(model))
    state = {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}
    missing = tmodel.load_state_dict(state, strict=False).missing_keys
    if any(not k.endswith("num_batches_tracked") for k in missing):
        raise RuntimeError(f"torch twin lacks weights for {missing}")
    return tmodel


def _torch_train_step(torch, tmodel, tx, ty):
    opt = torch.optim.SGD(tmodel.parameters(), lr=common.LR)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(tmodel(tx), ty)
        loss.backward()
        opt.step()
        return loss.item()

    return step


MODEL_CASES = [  # (row label, model, batch, what)
    ("LeNet-5 train_step, batch 1", "lenet5", 1, "train"),
    ("LeNet-5 train_step, batch 64", "lenet5", 64, "train"),
    ("LeNet-5 train_step, batch 256", "lenet5", 256, "train"),
    ("simple_cnn train_step, batch 64", "simple_cnn", 64, "train"),
    ("LeNet-5 predict, batch 1", "lenet5", 1, "predict"),
    ("LeNet-5 predict, batch 256", "lenet5", 256, "predict"),
    ("MobileNetV2 train_step, batch 32", "mobilenet_v2", 32, "train"),
    ("EfficientNet-lite0 train_step, batch 32", "efficientnet_lite0", 32, "train"),
    ("ConvNeXt (32-256 wide) train_step, batch 32", "convnext", 32, "train"),
]


def run_models(budget: Budget, torch, checks: list) -> dict:
    results = {}
    for label, name, batch, what in MODEL_CASES:
        model = common.build_model(name)
        x, y = common.model_batch(name, batch)
        fns = {}
        tmodel = None
        if torch is not None:
            try:
                if hasattr(model, "inbound"):  # a graph model (the modern zoo)
                    from tests.model.torch_twin import TorchGraph

                    tmodel = TorchGraph(model, random_dropout=True)
                else:
                    tmodel = torch_twin(torch, model)
                tx, ty = torch.from_numpy(x), torch.from_numpy(y)
                tmodel.eval()
                with torch.no_grad():
                    ref = tmodel(tx).numpy()
                diff = np.max(np.abs(model.forward(x, training=False) - ref))
                checks.append((f"{label}: logits", float(diff)))
            except Exception as exc:
                checks.append((label, f"{type(exc).__name__}: {exc}"))
                tmodel = None
        if what == "train":
            fns["fc"] = lambda m=model, x=x, y=y: m.train_step(x, y)
            if tmodel is not None:
                tmodel.train()
                fns["t"] = _torch_train_step(torch, tmodel, tx, ty)
                dropout = any(type(la).__name__ == "Dropout" for la in model.layers)
                if not dropout:  # dropout masks differ between the libraries
                    try:
                        diff = abs(fns["fc"]() - fns["t"]())
                        checks.append((f"{label}: loss of the first step", diff))
                    except Exception as exc:
                        checks.append((label, f"{type(exc).__name__}: {exc}"))
        else:
            fns["fc"] = lambda m=model, x=x, b=batch: m.predict(x, batch_size=b)
            if tmodel is not None:
                def t_predict(tmodel=tmodel, tx=tx):
                    with torch.no_grad():
                        return tmodel(tx)

                fns["t"] = t_predict
        results[label] = measure(fns, budget)
        results[label]["kernels"] = count_parallel_calls(fns["fc"])
        _progress(label, results[label])
    return results


def count_parallel_calls(fn) -> dict:
    """How many parallel CPU kernels one call of ``fn`` launches, and how many
    ``prange`` loops (parallel regions) they run: every ``parallel=True`` dispatcher
    in ``fastcnn.kernels.cpu`` is wrapped by a counter for the one call (the Python
    dispatchers there call them through module globals, so the wrappers see
    every launch). A kernel's regions are the ``prange`` loops in its source."""
    import importlib
    import inspect
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import fastcnn.kernels.cpu as cpu

    calls = {"kernels": 0, "regions": 0}
    patched = []

    def counting(dispatcher, loops):
        def call(*args):
            calls["kernels"] += 1
            calls["regions"] += loops
            return dispatcher(*args)
        return call

    for info in pkgutil.iter_modules(cpu.__path__):
        module = importlib.import_module(f"{cpu.__name__}.{info.name}")
        for name, value in list(vars(module).items()):
            # Patched wherever bound (conv.py calls the Winograd kernels through
            # its own imports of them); each launch passes one binding.
            if isinstance(value, CPUDispatcher) \
                    and value.targetoptions.get("parallel"):
                loops = inspect.getsource(value.py_func).count("prange(")
                patched.append((module, name, value))
                setattr(module, name, counting(value, loops))
    try:
        fn()
    finally:
        for module, name, value in patched:
            setattr(module, name, value)
    return calls


# ----------------------------------------------------------------------- memory


def _rss_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_epoch(payload: dict, torch) -> dict:
    """One LeNet-5 training epoch (batch 64, shuffled, plain SGD) on seeded MNIST-
    sized data in this (fresh) process; peak RSS from the kernel's high-water mark,
    reset just before the epoch (``/proc/self/clear_refs``), or getrusage."""
    import resource

    n, batch, threads = payload["samples"], payload["batch"], payload["threads"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, common.NUM_CLASSES, n)
    order = rng.permutation(n)
    if torch is None:
        set_threads(threads, None)
        model = common.build_model("lenet5")

        def step(idx):
            return model.train_step(x[idx], y[idx])
    else:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        tmodel = torch_from_spec(torch, payload["spec"]).train()
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        opt = torch.optim.SGD(tmodel.parameters(), lr=common.LR)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(idx):
            idx = torch.from_numpy(idx)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(tmodel(tx[idx]), ty[idx])
            loss.backward()
            opt.step()
            return loss.item()

    step(order[:batch])  # warm-up: compile / load kernels, first allocations
    gc.collect()
    before = _rss_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM
        method = "VmHWM after clear_refs"
    except OSError:
        method = "ru_maxrss (includes start-up)"
    t0 = time.perf_counter()
    for b in range(0, n, batch):
        step(order[b:b + batch])
    seconds = time.perf_counter() - t0
    peak = _rss_kib("VmHWM") if method.startswith("VmHWM") else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"before_kib": before, "peak_kib": peak, "method": method,
            "seconds": seconds}


def run_memory(budget: Budget, torch, threads: int) -> dict:
    import fastcnn  # noqa: F401  (fills the cache so the worker only loads it)

    model = common.build_model("lenet5")
    model.train_step(*common.model_batch("lenet5", 64))
    payload = {"samples": budget.epoch_samples, "batch": 64, "threads": threads,
               "quick": budget.quick, "spec": torch_spec(model)}
    out = {}
    for library in ("fastcnn", "torch") if torch is not None else ("fastcnn",):
        try:
            out[library] = _in_subprocess("memory", {**payload, "library": library})
        except Exception as exc:
            out[library] = {"error": str(exc)}
        _progress(f"memory {library}", out[library])
    return out


# ---------------------------------------------------------------------- startup

_FIRST_STEP_CODE = """
import json, time
t0 = time.perf_counter()
import fastcnn
t1 = time.perf_counter()
import numba
from numba.core import event
compile_seconds, open_compiles = {{}}, []
class CompileTimer(event.Listener):
    # Exclusive seconds per function: a helper compiled inside a kernel's compile
    # is counted for the helper, not twice.
    def on_start(self, ev):
        open_compiles.append([ev.data["dispatcher"].py_func, time.perf_counter(), 0.0])
    def on_end(self, ev):
        func, start, nested = open_compiles.pop()
        total = time.perf_counter() - start
        if open_compiles:
            open_compiles[-1][2] += total
        name = func.__module__.removeprefix("fastcnn.") + "." + func.__qualname__
        compile_seconds[name] = compile_seconds.get(name, 0.0) + total - nested
if {cold}:
    event.register("numba:compile", CompileTimer())
import numpy as np
from fastcnn import models, optimizers
fastcnn.set_num_threads(min({threads}, numba.config.NUMBA_NUM_THREADS))
rng = np.random.default_rng(1)
def first(name, shape):
    x = rng.standard_normal((64, *shape), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    t = time.perf_counter()
    fastcnn.seed(0)
    model = getattr(models, name)(input_shape=shape)
    model.compile(optimizers.SGD(lr={lr}), "cross_entropy")
    model.train_step(x, y)
    t_step = time.perf_counter() - t
    t = time.perf_counter()
    model.predict(x, batch_size=64)
    return t_step, time.perf_counter() - t
out = {{"import": t1 - t0}}
out["lenet5_step"], out["lenet5_predict"] = first("lenet5", (1, 28, 28))
if {cold}:
    out["lenet5_compile"] = dict(compile_seconds)
    compile_seconds.clear()
    out["simple_cnn_step"], out["simple_cnn_predict"] = first("simple_cnn", (3, 32, 32))
    out["simple_cnn_compile"] = dict(compile_seconds)
print(json.dumps(out))
"""

_COLD_WARMUP_CODE = """
import json, time
t0 = time.perf_counter()
import fastcnn
import numpy as np
from fastcnn import models, optimizers
rng = np.random.default_rng(1)
x = rng.standard_normal((64, 1, 28, 28), dtype=np.float32)
y = rng.integers(0, 10, 64)
fastcnn.seed(0)
model = models.lenet5(input_shape=(1, 28, 28))
model.compile(optimizers.SGD(lr={lr}), "cross_entropy")
t1 = time.perf_counter()
fastcnn.warmup(model, batch_size=64, verbose=False)
t2 = time.perf_counter()
model.train_step(x, y)
t3 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "warmup": t2 - t1, "step": t3 - t2}}))
"""

_TORCH_FIRST_STEP_CODE = """
import json, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
torch.set_num_threads({threads})
torch.manual_seed(0)
nn = torch.nn
model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                      nn.Linear(84, 10))
opt = torch.optim.SGD(model.parameters(), lr={lr})
x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
loss = nn.functional.cross_entropy(model(x), y)
loss.backward()
opt.step()
loss.item()
print(json.dumps({{"import": t1 - t0, "lenet5_step": time.perf_counter() - t1}}))
"""


def _python_json(code: str, env: dict | None = None, timeout: float = 600) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=timeout, cwd=tempfile.gettempdir(),
                          env={**os.environ, **(env or {})})
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_runs(code: str, runs: int, env=None) -> dict:
    _python_json(code, env)  # warm-up: disk cache, Numba cache filled
    rows = [_python_json(code, env) for _ in range(runs)]
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def run_startup(budget: Budget, torch, threads: int) -> dict:
    fmt = {"threads": threads, "lr": common.LR}
    out: dict = {}
    try:
        out["warm"] = _median_runs(_FIRST_STEP_CODE.format(cold=False, **fmt),
                                   budget.startup_runs)
    except Exception as exc:
        out["warm"] = {"error": str(exc)}
    _progress("warm start-up", out["warm"])
    if torch is not None:
        try:
            out["torch"] = _median_runs(_TORCH_FIRST_STEP_CODE.format(**fmt),
                                        budget.startup_runs)
        except Exception as exc:
            out["torch"] = {"error": str(exc)}
        _progress("torch start-up", out["torch"])
    with tempfile.TemporaryDirectory(prefix="fastcnn-cold-cache-") as cache:
        try:
            out["cold"] = _python_json(_FIRST_STEP_CODE.format(cold=True, **fmt),
                                       env={"NUMBA_CACHE_DIR": cache})
        except Exception as exc:
            out["cold"] = {"error": str(exc)}
    _progress("cold compile", out["cold"])
    with tempfile.TemporaryDirectory(prefix="fastcnn-cold-cache-") as cache:
        try:
            out["cold_warmup"] = _python_json(_COLD_WARMUP_CODE.format(**fmt),
                                              env={"NUMBA_CACHE_DIR": cache})
        except Exception as exc:
            out["cold_warmup"] = {"error": str(exc)}
    _progress("cold compile with warmup", out["cold_warmup"])
    return out


# ----------------------------------------------------------------------- report


_T0 = time.perf_counter()


def _progress(what: str, values) -> None:
    def short(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {short(x)}" for k, x in v.items()) + "}"
        return str(v)[:200]

    print(f"  [{time.perf_counter() - _T0:6.1f} s] {what}: {short(values)}",
          file=sys.stderr, flush=True)


def _ms(seconds) -> str:
    if seconds is None:
        return "–"
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def _ratio(torch_s, ours_s) -> str:
    if torch_s is None or ours_s is None:
        return "–"
    return f"{torch_s / ours_s:.2f}x"


def _table(header: list[str], rows: list[list[str]], numeric: bool = True) -> str:
    """A Markdown table; ``numeric``: right-align every column but the first."""
    align = ["---"] + ["---:" if numeric else "---"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _compile_table(cold: dict, top: int = 12) -> list[str]:
    """The cold run's compile seconds per function, most expensive first."""
    lenet, simple = cold.get("lenet5_compile"), cold.get("simple_cnn_compile")
    if not lenet and not simple:
        return []
    lenet, simple = lenet or {}, simple or {}
    names = sorted(set(lenet) | set(simple),
                   key=lambda n: -(lenet.get(n, 0) + simple.get(n, 0)))

    def cell(d, n):
        return f"{d[n]:.1f}" if n in d else "–"

    rows = [[f"`{n}`", cell(lenet, n), cell(simple, n)] for n in names[:top]]
    rest = names[top:]
    rows.append([f"{len(rest)} others", f"{sum(lenet.get(n, 0) for n in rest):.1f}",
                 f"{sum(simple.get(n, 0) for n in rest):.1f}"])
    rows.append(["**all compiles**", f"**{sum(lenet.values()):.1f}**",
                 f"**{sum(simple.values()):.1f}**"])
    return ["### Compile seconds per function, cold run", "",
            "Exclusive seconds (a helper's compile counted for the helper, where it "
            "first compiles) from Numba's `numba:compile` events. The simple_cnn "
            "column runs after LeNet-5 in the same process, so it lists only what "
            "LeNet-5 did not compile already.", "",
            _table(["function", "LeNet-5 first step", "simple_cnn after it"], rows),
            ""]


def _errors(results: dict) -> list[str]:
    return [f"- {label} `{key[:-6]}`: {msg}" for label, r in results.items()
            for key, msg in r.items() if key.endswith(".error")]


def render(meta: dict, peak: dict | None, conv, tuned, pool, models, memory,
           startup, checks) -> str:
    out = ["# fastcnn against PyTorch on the CPU", "",
           f"Generated by `{meta['command']}` on {meta['date']} in "
           f"{meta['seconds']:.0f} s. Medians of repeated calls after a warm-up "
           f"(which compiles); float32; same process, same thread count. "
           f"**Ratio = PyTorch time / fastcnn time: above 1, fastcnn is faster.** "
           f"On a shared, loaded machine these times can move 2x between runs: "
           f"compare ratios from one run, never absolute times across runs.", "",
           "## Machine", "",
           _table(["", ""], [list(r) for r in meta["machine"]], numeric=False), ""]
    if meta.get("load_end"):
        out += [f"Load average at the end: {meta['load_end']}.", ""]
    if not meta["torch"]:
        out += ["**PyTorch is not installed: fastcnn's numbers only.**", ""]
    if peak:
        threads = meta["threads"]
        out += ["## Measured FMA peak", "",
                f"A Numba kernel of independent float32 FMA chains (`vfmadd…ps` in "
                f"its machine code: {peak['vfmadd_zmm']} on zmm, 16 lanes, and "
                f"{peak['vfmadd_ymm']} on ymm, 8 lanes), 2 flops per lane: "
                f"**{peak[threads]:.0f} GFLOP/s on {threads} "
                f"threads**, {peak[1]:.0f} GFLOP/s on one. Best of several calls"
                + (" (before and after the conv timings)." if conv else "."),
                ""]
    peak_gflops = peak[meta["threads"]] if peak else None
    if conv:
        tuned = tuned or {}
        tuned_err = tuned.pop("error", None) if isinstance(tuned, dict) else None
        fwd_rows, bwd_rows = [], []
        for label, r in conv.items():
            case = common.CONV_CASES[label]
            tr = tuned.get(label, {})
            for rows, key, flops in ((fwd_rows, "fwd", case.forward_flops),
                                     (bwd_rows, "fwd_bwd",
                                      case.forward_flops + case.backward_flops)):
                ours = r.get(f"fc_{key}")
                gflops = flops / ours / 1e9 if ours else None
                rows.append([
                    label, _ms(ours), _ms(r.get(f"t_{key}")),
                    _ratio(r.get(f"t_{key}"), ours), _ms(tr.get(key)),
                    _ratio(tr.get(key), ours),
                    "–" if gflops is None else f"{gflops:.1f}",
                    "–" if gflops is None or not peak_gflops
                    else f"{100 * gflops / peak_gflops:.0f}%"])
        header = ["shape", "fastcnn ms", "torch ms", "ratio", "torch tuned-malloc ms",
                  "ratio (tuned)", "fastcnn GFLOP/s", "% of FMA peak"]
        out += ["## (a) conv2d", "",
                "Shapes: number, input (N,C,H,W), output channels, kernel, stride, "
                "padding. \"torch tuned-malloc\": PyTorch alone in a subprocess with "
                "`MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736`. "
                "Forward+backward computes dx, dweight and dbias (GFLOP/s counts 3x "
                "the forward's flops).", "",
                "### Forward", "", _table(header, fwd_rows), "",
                "### Forward + all gradients", "", _table(header, bwd_rows), ""]
        if tuned_err:
            out += [f"Tuned-allocator run failed: {tuned_err}", ""]
        out += _errors(conv)
    if pool:
        rows = []
        for op, r in pool.items():
            for key, what in (("fwd", "forward"), ("fwd_bwd", "forward+backward")):
                rows.append([f"{op} pool 2x2 {what}", _ms(r.get(f"fc_{key}")),
                             _ms(r.get(f"t_{key}")),
                             _ratio(r.get(f"t_{key}"), r.get(f"fc_{key}"))])
        shape = ",".join(map(str, common.POOL_SHAPE))
        out += [f"## (b) pooling on ({shape}), stride 2", "",
                _table(["op", "fastcnn ms", "torch ms", "ratio"], rows), ""]
        out += _errors(pool)
    if models:
        rows = [[label, _ms(r.get("fc")), _ms(r.get("t")), _ratio(r.get("t"),
                                                                 r.get("fc")),
                 str(r.get("kernels", {}).get("kernels", "–")),
                 str(r.get("kernels", {}).get("regions", "–"))]
                for label, r in models.items()]
        out += ["## (c) models", "",
                "fastcnn `Sequential.train_step` (forward, cross-entropy, backward, "
                "SGD lr 0.01) against `torch.nn.Sequential` with the same initial "
                "weights (state dict copied), `CrossEntropyLoss` and "
                "`torch.optim.SGD`; `predict` against `model.eval()` under "
                "`torch.no_grad()`. \"Kernels\": parallel CPU kernels one call "
                "launches; \"regions\": the `prange` loops they run (each costs a "
                "fork-join of the thread pool).", "",
                _table(["case", "fastcnn ms", "torch ms", "ratio", "kernels",
                        "regions"], rows), ""]
        out += _errors(models)
    if memory:
        rows = []
        for library, r in memory.items():
            if "error" in r:
                rows.append([library, "error", "", "", r["error"][-200:]])
                continue
            rows.append([library, f"{r['peak_kib'] / 1024:.0f}",
                         f"{r['before_kib'] / 1024:.0f}",
                         f"{(r['peak_kib'] - r['before_kib']) / 1024:.0f}",
                         f"{r['seconds']:.2f} s"])
        method = next((r["method"] for r in memory.values() if "method" in r), "?")
        out += ["## (d) peak memory of a LeNet-5 training epoch", "",
                f"Each library alone in a fresh process: "
                f"{meta['epoch_samples']} seeded MNIST-sized samples, batch 64, "
                f"shuffled, plain SGD, after one warm-up step. Resident set size "
                f"(RSS) from the kernel ({method}), so it counts every allocation "
                f"(NumPy, Numba's runtime, PyTorch's allocator, the libraries' "
                f"code), not only NumPy arrays as tracemalloc would. \"growth\" = "
                f"peak during the epoch − RSS just before it.", "",
                _table(["library", "peak RSS MiB", "RSS before MiB", "growth MiB",
                        "epoch time"], rows), ""]
    if startup:
        warm, cold, t = (startup.get(k, {}) for k in ("warm", "cold", "torch"))

        def s(d, key):
            return "–" if key not in d else f"{d[key]:.2f} s"

        rows = [["`import fastcnn` / `import torch`", s(warm, "import"),
                 s(t, "import")],
                ["first LeNet-5 train_step (batch 64), warm cache, after import",
                 s(warm, "lenet5_step"), s(t, "lenet5_step")],
                ["import + first train_step",
                 "–" if "import" not in warm
                 else f"{warm['import'] + warm['lenet5_step']:.2f} s",
                 "–" if "import" not in t
                 else f"{t['import'] + t['lenet5_step']:.2f} s"]]
        cold_keys = ["lenet5_step", "lenet5_predict", "simple_cnn_step",
                     "simple_cnn_predict"]
        if all(k in cold for k in cold_keys):
            rows.append(["cold (empty NUMBA_CACHE_DIR): LeNet-5 first step + "
                         "predict, simple_cnn first step + predict",
                         " + ".join(f"{cold[k]:.1f}" for k in cold_keys)
                         + f" = **{sum(cold[k] for k in cold_keys):.1f} s**", "–"])
        cw = startup.get("cold_warmup", {})
        if all(k in cw for k in ("import", "warmup", "step")):
            rows.append(["cold, LeNet-5 through `fastcnn.warmup(model, batch_size=64)` "
                         "(compile workers on every core): import + warmup + first "
                         "step",
                         f"{cw['import']:.1f} + {cw['warmup']:.1f} + {cw['step']:.2f}"
                         f" = **{cw['import'] + cw['warmup'] + cw['step']:.1f} s**",
                         "–"])
        out += ["## (e) start-up", "",
                f"Fresh interpreters; medians of {meta['startup_runs']} runs after "
                f"one that fills the caches. The torch column is the same LeNet-5 "
                f"step written in torch, for scale. The cold row is one run in a "
                f"process whose Numba cache directory is new and empty: every "
                f"kernel those models need compiles.", "",
                _table(["", "fastcnn", "torch"], rows), ""]
        out += _compile_table(cold)
        for key in ("warm", "cold", "cold_warmup", "torch"):
            if "error" in startup.get(key, {}):
                out += [f"- {key} start-up failed: {startup[key]['error'][-500:]}"]
    if checks:
        rows = [[what, v if isinstance(v, str) else f"{v:.2e}"] for what, v in checks]
        out += ["", "## Checks: same results as PyTorch", "",
                "Largest difference between fastcnn's and PyTorch's outputs on the "
                "inputs timed above (conv: relative to the largest output; models: "
                "logits of the initial weights, evaluation mode).", "",
                _table(["what", "max difference"], rows), ""]
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------------- main


def _parse(argv):
    parser = argparse.ArgumentParser(
        description="fastcnn against PyTorch; writes BENCHMARKS.md.")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and a smaller epoch (a smoke run)")
    parser.add_argument("--only", action="append", default=None,
                        help=f"sections to run, repeatable or comma-separated: "
                             f"{', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--output", default=str(REPO / "BENCHMARKS.md"),
                        help="where to write the Markdown report ('-': nowhere)")
    parser.add_argument("--threads", type=int, default=common.THREADS)
    parser.add_argument("--no-tuned-malloc", action="store_true",
                        help="skip PyTorch's second run with the tuned allocator")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--payload", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only is None:
        args.only = list(SECTIONS)
    else:
        args.only = [s.strip() for item in args.only for s in item.split(",")
                     if s.strip()]
        unknown = sorted(set(args.only) - set(SECTIONS))
        if unknown:
            parser.error(f"--only: unknown section(s) {unknown}; choose from "
                         f"{', '.join(SECTIONS)}")
    return args


def main(argv=None) -> int:
    args = _parse(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, json.loads(args.payload))))
        return 0
    start = time.perf_counter()
    load_start = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    budget = Budget(args.quick)
    import fastcnn  # noqa: F401

    torch = _import_torch()
    if torch is None:
        print("torch is not installed: fastcnn-only numbers.", file=sys.stderr)
    threads = set_threads(args.threads, torch)
    print(f"compare_torch: {', '.join(args.only)} on {threads} threads"
          + (" (quick)" if args.quick else ""), file=sys.stderr)
    checks: list = []
    peak = measure_fma_peak(threads, budget)
    _progress("FMA peak", peak)
    conv = tuned = pool = models = memory = startup = None
    if "conv" in args.only:
        conv = run_conv(budget, torch, checks)
        if torch is not None and not args.no_tuned_malloc:
            try:
                tuned = _in_subprocess("torch-conv",
                                       {"threads": threads, "quick": args.quick},
                                       env=TUNED_MALLOC)
            except Exception as exc:
                tuned = {"error": str(exc)[-500:]}
            _progress("conv, torch with the tuned allocator", tuned)
        # Measure the peak again after the conv section and keep the best: a busy
        # neighbour during one measurement must not inflate "% of peak".
        again = measure_fma_peak(threads, budget)
        peak = {k: max(v, again[k]) for k, v in peak.items()}
        _progress("FMA peak, again", again)
    if "pool" in args.only:
        pool = run_pool(budget, torch, checks)
    if "model" in args.only:
        models = run_models(budget, torch, checks)
    if "memory" in args.only:
        memory = run_memory(budget, torch, threads)
    if "startup" in args.only:
        startup = run_startup(budget, torch, threads)
    command = "python tools/compare_torch.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    meta = {
        "command": command, "threads": threads, "torch": torch is not None,
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": _machine_rows(threads, torch, load_start), "seconds": 0.0,
        "epoch_samples": budget.epoch_samples, "startup_runs": budget.startup_runs,
        "load_end": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    meta["seconds"] = time.perf_counter() - start
    report = render(meta, peak, conv, tuned, pool, models, memory, startup, checks)
    print(report)
    if args.output != "-":
        Path(args.output).write_text(report)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
