"""The GPU check: run the CUDA tests on a real device, time the GPU path against the
CPU path and against PyTorch/cuDNN, and print one table.

    python tools/gpu_check.py            # tests + timings, a few minutes
    python tools/gpu_check.py --no-tests # timings only
    python tools/gpu_check.py --smoke    # tiny shapes, one run each (CI)
    python tools/gpu_check.py --ptx      # registers and spills per kernel, no GPU

What it does:

1. runs ``tests/cuda/test_cuda_contract.py``, ``tests/cuda/test_cuda_kernels.py``,
   ``tests/cuda/test_cuda_model.py`` and ``tests/cuda/test_gpu_check_ptx.py`` with
   ``NUMBA_ENABLE_CUDASIM=0``, i.e. on the GPU;
2. times conv2d forward + backward (dx, dweight, dbias) on the six standard shapes:
   fastcnn on the CPU (NumPy arrays), fastcnn on the GPU (device arrays, so no
   transfers), and torch on CUDA with TF32 off (fp32 against fp32) where torch is
   importable and sees the GPU;
3. times a training step (SGD with momentum) of LeNet-5 on 1x28x28 inputs and of
   simple_cnn on 3x32x32 inputs at batch 64 and 256, through the model API:
   ``model.train_step`` of the model on the CPU and of the same model after
   ``model.to("cuda")`` (the batch is copied in once per step, the loss comes back
   as a float), and the same network in torch on CUDA.

It runs on a machine without a GPU too: it says so and prints the CPU column.
Timings are the best of several runs after a warm-up run (which compiles), with
``cuda.synchronize()`` / ``torch.cuda.synchronize()`` inside the timed region.

``--smoke`` proves the script runs, in seconds, where no GPU is: tiny shapes, a
batch of 2, one timed run, no tests, and small CUDA block sizes; unless
``NUMBA_ENABLE_CUDASIM`` says otherwise it runs on numba's simulator
(``tests/cuda/test_gpu_check.py`` runs it in CI). Its numbers mean nothing.

``--ptx`` needs no GPU, only the CUDA toolkit (NVVM for numba, and ``ptxas``, looked
up in ``$CUDA_HOME/bin``, ``$CUDA_PATH/bin``, ``PATH``, ``/usr/local/cuda/bin``), and
runs with the simulator off whatever ``NUMBA_ENABLE_CUDASIM`` says. It compiles every
CUDA kernel (``fastcnn.kernels._jit.CUDA_KERNELS``) to PTX for sm_90 with the
argument types its launcher really passes (learned by running the launchers on
``tests/cuda/cuda_cases.py`` in recording mode, float32 and float64: see
``tools/_ptx_report.py``), assembles each with ``ptxas -arch=sm_90 -v`` and prints
one row per (kernel, signature): registers per thread, spill stores and loads, stack
frame and static shared memory (dynamic shared memory, sized at launch, is not in
ptxas's report). About 75 s of CPU time for ~200 signatures, spread over ``--jobs``
processes (default: every usable CPU): ~40 s on two idle cores. Exit status: 0; 1
when a kernel fails to compile or assemble (its row says why), a launcher fails
while recording, or no case reaches a kernel; 2 with ``--ptx-fail-on-spill`` (which
implies ``--ptx``) when any kernel spills registers, for CI to gate on; 77 when the
toolkit is missing (``tests/cuda/test_gpu_check_ptx.py`` runs it in CI and skips
only on 77).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

# Before numba is imported anywhere: this script is about the real device (or, with
# --ptx, the real compiler), except in smoke mode, which runs on the simulator unless
# told otherwise.
PTX = any(arg.startswith("--ptx") for arg in sys.argv[1:])
SMOKE = "--smoke" in sys.argv[1:] and not PTX
if SMOKE:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
else:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "0"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

import fastcnn  # noqa: E402
import fastcnn.functional as F  # noqa: E402
from fastcnn import backend  # noqa: E402

#: (x shape, output channels, kernel, stride, padding): the six standard shapes.
CONV_SHAPES = [
    ((64, 1, 28, 28), 6, 5, 1, 0),
    ((64, 6, 12, 12), 16, 5, 1, 0),
    ((64, 3, 32, 32), 32, 3, 1, 1),
    ((64, 32, 16, 16), 64, 3, 1, 1),
    ((32, 64, 56, 56), 64, 3, 1, 1),
    ((32, 64, 56, 56), 128, 3, 2, 1),
]
#: The smoke mode's one conv shape.
SMOKE_CONV_SHAPES = [((1, 2, 4, 4), 2, 3, 1, 1)]
#: (label, builder name, per-sample input shape, keyword arguments).
MODELS = [("LeNet-5", "lenet5", (1, 28, 28), {}),
          ("simple_cnn", "simple_cnn", (3, 32, 32), {})]
#: LeNet-5 is left out of smoke mode: its fixed 120- and 84-unit dense layers take
#: minutes on the simulator, and its step runs the same code as simple_cnn's.
SMOKE_MODELS = [("simple_cnn", "simple_cnn", (1, 4, 4), {"width": 1})]
CUDA_TESTS = ["tests/cuda/test_cuda_contract.py", "tests/cuda/test_cuda_kernels.py",
              "tests/cuda/test_cuda_model.py", "tests/cuda/test_gpu_check_ptx.py"]
LR = 0.01
MOMENTUM = 0.9


# ------------------------------------------------------------------- environment


def gpu_status() -> tuple[bool, str]:
    """(usable, description) of the CUDA device numba sees."""
    if not backend.cuda_available():
        return False, "no CUDA GPU present (numba.cuda.is_available() is False)"
    from numba import config

    if config.ENABLE_CUDASIM:
        return True, "the CUDA simulator (NUMBA_ENABLE_CUDASIM=1), not a GPU"
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    cc = ".".join(map(str, device.compute_capability))
    return True, f"{name} (compute capability {cc})"


def torch_cuda():
    """torch, configured for fp32 without TF32, where it is importable and sees a
    GPU; else None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return torch


def run_tests(timeout: int) -> str:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           *CUDA_TESTS]
    print("$ NUMBA_ENABLE_CUDASIM=0 " + " ".join(cmd[2:]), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    print("\n".join(lines[-25:]), flush=True)
    return lines[-1] if lines else f"exit code {proc.returncode}"


# ------------------------------------------------------------------------ timing


def best_time(fn, budget: float, max_runs: int = 50) -> float:
    """Best wall time of ``fn()`` in seconds: one warm-up run, then runs until
    ``budget`` seconds are spent (at least one, at most ``max_runs``; exactly one
    and no warm-up in smoke mode)."""
    if SMOKE:
        max_runs, budget = 1, 0.0
    else:
        fn()
    best = float("inf")
    spent = 0.0
    runs = 0
    while runs < max_runs and (runs == 0 or spent < budget):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
        runs += 1
    return best


def _guard(label: str, fn):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a failed cell must not stop the table
        print(f"  {label}: {type(exc).__name__}: {exc}".splitlines()[0], flush=True)
        return None


def conv_inputs(shape, c_out, k, seed=0):
    rng = np.random.default_rng(seed)
    n, c_in, h, w = shape
    x = rng.standard_normal(shape, dtype=np.float32)
    weight = (rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
              / np.float32(np.sqrt(c_in * k * k)))
    bias = rng.standard_normal(c_out, dtype=np.float32) / np.float32(10)
    return x, weight, bias


def conv_cpu(shape, c_out, k, s, p, budget):
    x, w, b = conv_inputs(shape, c_out, k)
    dy = np.ones_like(F.conv2d(x, w, b, s, p))

    def step():
        F.conv2d(x, w, b, s, p)
        F.conv2d_backward(dy, x, w, s, p)

    return best_time(step, budget)


def conv_gpu(shape, c_out, k, s, p, budget):
    x, w, b = (cuda.to_device(a) for a in conv_inputs(shape, c_out, k))
    y = F.conv2d(x, w, b, s, p)
    dy = cuda.to_device(np.ones(y.shape, np.float32))

    def step():
        F.conv2d(x, w, b, s, p)
        F.conv2d_backward(dy, x, w, s, p)
        cuda.synchronize()

    return best_time(step, budget)


def conv_torch(torch, shape, c_out, k, s, p, budget):
    x, w, b = (torch.from_numpy(a).cuda() for a in conv_inputs(shape, c_out, k))
    for t in (x, w, b):
        t.requires_grad_(True)
    dy = torch.ones_like(torch.nn.functional.conv2d(x, w, b, s, p))

    def step():
        y = torch.nn.functional.conv2d(x, w, b, s, p)
        y.backward(dy)
        torch.cuda.synchronize()

    return best_time(step, budget)


# -------------------------------------------------------------- training steps


def model_batch(input_shape, batch: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *input_shape), dtype=np.float32)
    return x, rng.integers(0, 10, batch)


def build_model(name: str, input_shape, kwargs):
    from fastcnn import models, optimizers

    fastcnn.seed(0)
    model = models.get(name)(input_shape=input_shape, num_classes=10, **kwargs)
    model.compile(optimizers.SGD(lr=LR, momentum=MOMENTUM), "cross_entropy")
    return model


def step_cpu(name, input_shape, kwargs, batch: int, budget: float):
    """``train_step`` of the model on the CPU (NumPy arrays)."""
    model = build_model(name, input_shape, kwargs).to("cpu")
    x, y = model_batch(input_shape, batch)
    return best_time(lambda: model.train_step(x, y), budget)


def step_gpu(name, input_shape, kwargs, batch: int, budget: float):
    """``train_step`` of the same model after ``model.to("cuda")``: parameters,
    gradients and optimizer state stay on the device; the batch (NumPy) is copied
    in once per step and the loss comes back as a float."""
    model = build_model(name, input_shape, kwargs).to("cuda")
    x, y = model_batch(input_shape, batch)

    def step():
        model.train_step(x, y)
        cuda.synchronize()

    return best_time(step, budget)


def torch_model(torch, name: str, input_shape, kwargs):
    """The torch twin of ``fastcnn.models.<name>`` (same layers, torch's init)."""
    nn = torch.nn
    c, h, w = input_shape
    if name == "lenet5":
        pad2 = 0 if min(h, w) // 2 >= 10 else 2
        flat = 16 * ((h // 2 + 2 * pad2 - 4) // 2) * ((w // 2 + 2 * pad2 - 4) // 2)
        return nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=pad2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84),
            nn.ReLU(), nn.Linear(84, 10),
        )
    width = kwargs.get("width", 32)
    layers, c_in = [], c
    for channels in (width, 2 * width):
        layers += [nn.Conv2d(c_in, channels, 3, padding=1, bias=False),
                   nn.BatchNorm2d(channels), nn.ReLU(),
                   nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                   nn.MaxPool2d(2)]
        c_in = channels
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(0.25), nn.Linear(c_in, 10))


def step_torch(torch, name, input_shape, kwargs, batch: int, budget: float):
    nn = torch.nn
    torch.manual_seed(0)
    model = torch_model(torch, name, input_shape, kwargs).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x_host, labels = model_batch(input_shape, batch)
    x_host = torch.from_numpy(x_host)
    y = torch.from_numpy(labels).cuda()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x_host.cuda()), y)
        loss.backward()
        opt.step()
        loss.item()  # as train_step returns a float
        torch.cuda.synchronize()

    return best_time(step, budget)


def _small_blocks() -> None:
    """Smoke mode: small CUDA blocks, as the tests use (the simulator runs every
    thread of a block in Python, idle ones included), and quiet about the uint64
    wrap-around of dropout's hash that the simulator reports."""
    import importlib
    import warnings

    warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)

    for subject in ("conv", "pool", "dense", "activation", "loss", "dropout", "norm",
                    "optim", "_layout"):
        module = importlib.import_module(f"fastcnn.kernels.cuda.{subject}")
        module.THREADS_PER_BLOCK = 4
        for name in ("TILE",):
            if hasattr(module, name):
                setattr(module, name, 4)


# ------------------------------------------------------------------------- table


def _ms(seconds) -> str:
    return f"{'-':>9}" if seconds is None else f"{seconds * 1e3:9.2f}"


def _ratio(numerator, denominator) -> str:
    if numerator is None or denominator is None:
        return "-"
    return f"{numerator / denominator:6.2f}x"


def ptx_main(jobs: int | None, fail_on_spill: bool) -> int:
    """``--ptx``: the ptxas report of every kernel (see the module docstring)."""
    from tools import _ptx_report

    try:
        report = _ptx_report.analyse(jobs)
    except _ptx_report.ToolkitMissing as exc:
        print(f"gpu_check --ptx: the CUDA toolkit is missing: {exc}", file=sys.stderr)
        return _ptx_report.SKIP_CODE
    print(f"PTX for compute capability {'.'.join(map(str, _ptx_report.CC))}, "
          f"assembled by {_ptx_report.ptxas_version(report.ptxas)}\n")
    print(_ptx_report.format_report(report))
    status = _ptx_report.exit_status(report, fail_on_spill)
    if status == 2:
        print(f"FAILED (--ptx-fail-on-spill): {len(report.spilling)} signatures "
              "spill registers")
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-tests", action="store_true",
                        help="skip running the CUDA tests on the device")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds of repeated runs per timing (default 1)")
    parser.add_argument("--test-timeout", type=int, default=300)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes, batch 2, one run each, no tests, small "
                        "CUDA blocks, on the simulator unless NUMBA_ENABLE_CUDASIM=0: "
                        "proves the script runs; the numbers mean nothing")
    parser.add_argument("--cpu-threads", type=int, default=2,
                        help="Numba threads of the CPU column (default 2: the issue's "
                             "goals compare with the 2-core CPU path)")
    parser.add_argument("--ptx", action="store_true",
                        help="no GPU needed: compile every CUDA kernel to PTX for "
                        "sm_90 and print ptxas's registers, spills, stack and "
                        "static shared memory per kernel and signature")
    parser.add_argument("--ptx-fail-on-spill", action="store_true",
                        help="with --ptx (implies it): exit 2 when any kernel spills")
    parser.add_argument("--jobs", type=int, default=None,
                        help="--ptx: compiling processes (default: usable CPUs)")
    args = parser.parse_args(argv)
    if args.ptx or args.ptx_fail_on_spill:
        return ptx_main(args.jobs, args.ptx_fail_on_spill)

    import numba

    has_gpu, gpu = gpu_status()
    torch = torch_cuda() if has_gpu else None
    print(f"python {platform.python_version()}, numba {numba.__version__}, "
          f"numpy {np.__version__}, fastcnn {fastcnn.__version__}, "
          f"{os.cpu_count()} CPU cores")
    fastcnn.set_num_threads(min(args.cpu_threads, numba.config.NUMBA_NUM_THREADS))
    threads = fastcnn.get_num_threads()
    print(f"CPU column: {threads} Numba threads")
    print(f"GPU: {gpu}")
    if has_gpu:
        print("torch on CUDA: " + (f"{torch.__version__} (TF32 off)" if torch
                                   else "not available"))

    test_line = "skipped (no GPU)" if not has_gpu else "skipped (--no-tests)"
    if args.smoke:
        test_line = "skipped (--smoke)"
        _small_blocks()
    elif has_gpu and not args.no_tests:
        test_line = run_tests(args.test_timeout)
    print(f"CUDA tests on the device: {test_line}\n", flush=True)

    rows = []
    for shape, c_out, k, s, p in SMOKE_CONV_SHAPES if args.smoke else CONV_SHAPES:
        label = f"conv f+b {shape}->{c_out} k{k}" + (f"s{s}" if s > 1 else "") + (
            f"p{p}" if p else "")
        print(f"timing {label} ...", flush=True)
        conv = (shape, c_out, k, s, p, args.budget)
        cpu = _guard("cpu", partial(conv_cpu, *conv))
        gpu_t = torch_t = None
        if has_gpu:
            gpu_t = _guard("gpu", partial(conv_gpu, *conv))
            if torch is not None:
                torch_t = _guard("torch", partial(conv_torch, torch, *conv))
        rows.append((label, cpu, gpu_t, torch_t))
    for title, name, input_shape, kwargs in SMOKE_MODELS if args.smoke else MODELS:
        for batch in (2,) if args.smoke else (64, 256):
            label = f"{title} train_step, batch {batch}"
            print(f"timing {label} ...", flush=True)
            case = (name, input_shape, kwargs, batch, args.budget)
            cpu = _guard("cpu", partial(step_cpu, *case))
            gpu_t = torch_t = None
            if has_gpu:
                gpu_t = _guard("gpu", partial(step_gpu, *case))
                if torch is not None:
                    torch_t = _guard("torch", partial(step_torch, torch, *case))
            rows.append((label, cpu, gpu_t, torch_t))

    print()
    print(f"GPU: {gpu}")
    header = (f"{'case':<44} {'CPU ms':>9} {'GPU ms':>9} {'torch ms':>9} "
              f"{'GPU vs CPU':>10} {'torch/GPU':>9}")
    print(header)
    print("-" * len(header))
    for label, cpu, gpu_t, torch_t in rows:
        print(f"{label:<44} {_ms(cpu)} {_ms(gpu_t)} {_ms(torch_t)} "
              f"{_ratio(cpu, gpu_t):>10} {_ratio(torch_t, gpu_t):>9}")
    print("\nCPU: fastcnn on NumPy arrays; GPU: fastcnn on numba device arrays; "
          "torch: torch on CUDA, fp32 without TF32.\n'GPU vs CPU' is the GPU's "
          "speed-up; 'torch/GPU' is fastcnn's fraction of torch's speed (1.00x = "
          "as fast). Training steps: model.train_step (SGD, momentum 0.9), the "
          "batch copied in from NumPy each step.")
    failed = [label for label, cpu, gpu_t, _ in rows
              if cpu is None or (has_gpu and gpu_t is None)]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
