"""The GPU check: run the CUDA tests on a real device, time the GPU path against the
CPU path and against PyTorch/cuDNN, and print one table.

    python benchmarks/gpu_check.py            # tests + timings, a few minutes
    python benchmarks/gpu_check.py --no-tests # timings only

What it does:

1. runs ``tests/test_cuda_contract.py``, ``tests/test_cuda_kernels.py`` and
   ``tests/test_cuda_ptx.py`` with ``NUMBA_ENABLE_CUDASIM=0``, i.e. on the GPU;
2. times conv2d forward + backward (dx, dweight, dbias) on the six standard shapes:
   fastcnn on the CPU (NumPy arrays), fastcnn on the GPU (device arrays, so no
   transfers), and torch on CUDA with TF32 off (fp32 against fp32) where torch is
   importable and sees the GPU;
3. times a LeNet-5 training step (SGD) at batch 64 and 256: the CPU model's
   ``train_step``, the same step written with fastcnn.functional on device arrays
   (the model-level GPU path is not there yet; the batch is copied in once per
   step), and torch on CUDA.

It runs on a machine without a GPU too: it says so and prints the CPU column.
Timings are the best of several runs after a warm-up run (which compiles), with
``cuda.synchronize()`` / ``torch.cuda.synchronize()`` inside the timed region.
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

# Before numba is imported anywhere: this script is about the real device.
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
CUDA_TESTS = ["tests/test_cuda_contract.py", "tests/test_cuda_kernels.py",
              "tests/test_cuda_ptx.py"]
LR = 0.01


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
    ``budget`` seconds are spent (at least one, at most ``max_runs``)."""
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


# ------------------------------------------------------------------ LeNet-5 step


def lenet_batch(batch: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 1, 28, 28), dtype=np.float32)
    return x, rng.integers(0, 10, batch)


def lenet_cpu(batch: int, budget: float):
    from fastcnn import models, optimizers

    fastcnn.seed(0)
    model = models.lenet5(input_shape=(1, 28, 28), num_classes=10)
    model.compile(optimizers.SGD(lr=LR), "cross_entropy")
    x, y = lenet_batch(batch)
    return best_time(lambda: model.train_step(x, y), budget)


def _lenet_params(seed: int = 0):
    """LeNet-5's parameters (as in fastcnn.models.lenet5, 28x28 input)."""
    rng = np.random.default_rng(seed)
    shapes = {"c1w": (6, 1, 5, 5), "c1b": (6,), "c2w": (16, 6, 5, 5), "c2b": (16,),
              "d1w": (120, 400), "d1b": (120,), "d2w": (84, 120), "d2b": (84,),
              "d3w": (10, 84), "d3b": (10,)}
    params = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        params[name] = (rng.standard_normal(shape, dtype=np.float32)
                        / np.float32(np.sqrt(fan_in)))
    return params


@cuda.jit
def _sgd(param, grad, lr):
    i = cuda.grid(1)
    if i < param.size:
        param[i] -= lr * grad[i]


def lenet_gpu(batch: int, budget: float):
    """One SGD step of LeNet-5 written with fastcnn.functional on device arrays:
    parameters stay on the device, the batch is copied in once per step."""
    params = {k: cuda.to_device(v) for k, v in _lenet_params().items()}
    x_host, labels = lenet_batch(batch)
    lr = np.float32(LR)

    def step():
        p = params
        x = cuda.to_device(x_host)
        a1 = F.conv2d(x, p["c1w"], p["c1b"], padding=2)
        r1 = F.relu(a1)
        m1 = F.max_pool2d(r1, 2)
        a2 = F.conv2d(m1, p["c2w"], p["c2b"])
        r2 = F.relu(a2)
        m2 = F.max_pool2d(r2, 2)
        flat = m2.reshape(batch, 400)
        z1 = F.linear(flat, p["d1w"], p["d1b"])
        h1 = F.relu(z1)
        z2 = F.linear(h1, p["d2w"], p["d2b"])
        h2 = F.relu(z2)
        z3 = F.linear(h2, p["d3w"], p["d3b"])
        loss = F.cross_entropy(z3, labels)
        dz3 = F.cross_entropy_backward(z3, labels)
        dh2, g_d3w, g_d3b = F.linear_backward(dz3, h2, p["d3w"])
        dz2 = F.relu_backward(dh2, z2)
        dh1, g_d2w, g_d2b = F.linear_backward(dz2, h1, p["d2w"])
        dz1 = F.relu_backward(dh1, z1)
        dflat, g_d1w, g_d1b = F.linear_backward(dz1, flat, p["d1w"])
        dr2 = F.max_pool2d_backward(dflat.reshape(*m2.shape), r2, 2)
        da2 = F.relu_backward(dr2, a2)
        dm1, g_c2w, g_c2b = F.conv2d_backward(da2, m1, p["c2w"])
        dr1 = F.max_pool2d_backward(dm1, r1, 2)
        da1 = F.relu_backward(dr1, a1)
        _, g_c1w, g_c1b = F.conv2d_backward(da1, x, p["c1w"], padding=2)
        grads = {"c1w": g_c1w, "c1b": g_c1b, "c2w": g_c2w, "c2b": g_c2b,
                 "d1w": g_d1w, "d1b": g_d1b, "d2w": g_d2w, "d2b": g_d2b,
                 "d3w": g_d3w, "d3b": g_d3b}
        for name, grad in grads.items():
            param = p[name].reshape(p[name].size)
            _sgd[(param.size + 255) // 256, 256](param, grad.reshape(param.size), lr)
        cuda.synchronize()
        return loss

    return best_time(step, budget)


def lenet_torch(torch, batch: int, budget: float):
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    ).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x_host, labels = lenet_batch(batch)
    x_host = torch.from_numpy(x_host)
    y = torch.from_numpy(labels).cuda()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x_host.cuda()), y)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()

    return best_time(step, budget)


# ------------------------------------------------------------------------- table


def _ms(seconds) -> str:
    return f"{'-':>9}" if seconds is None else f"{seconds * 1e3:9.2f}"


def _ratio(numerator, denominator) -> str:
    if numerator is None or denominator is None:
        return "-"
    return f"{numerator / denominator:6.2f}x"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-tests", action="store_true",
                        help="skip running the CUDA tests on the device")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds of repeated runs per timing (default 1)")
    parser.add_argument("--test-timeout", type=int, default=300)
    parser.add_argument("--cpu-threads", type=int, default=2,
                        help="Numba threads of the CPU column (default 2: the issue's "
                             "goals compare with the 2-core CPU path)")
    args = parser.parse_args(argv)

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
    if has_gpu and not args.no_tests:
        test_line = run_tests(args.test_timeout)
    print(f"CUDA tests on the device: {test_line}\n", flush=True)

    rows = []
    for shape, c_out, k, s, p in CONV_SHAPES:
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
    for batch in (64, 256):
        label = f"LeNet-5 SGD step, batch {batch}"
        print(f"timing {label} ...", flush=True)
        cpu = _guard("cpu", partial(lenet_cpu, batch, args.budget))
        gpu_t = torch_t = None
        if has_gpu:
            gpu_t = _guard("gpu", partial(lenet_gpu, batch, args.budget))
            if torch is not None:
                torch_t = _guard("torch", partial(lenet_torch, torch, batch,
                                                  args.budget))
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
          "as fast). LeNet-5 on the GPU is the functional-level step (the model's "
          "device path is future work).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
