"""Data-parallel scaling on MPI: 1 rank x 1 thread against N ranks x 1 thread.

Usage::

    python tools/mpi_scaling.py               # LeNet-5, simple_cnn; 1 and 2 ranks
    python tools/mpi_scaling.py --ranks 1 2 4 --batch 64 --steps 30
    python tools/mpi_scaling.py --launcher-args="-bind-to core"
    python tools/mpi_scaling.py --smoke       # a few tiny steps: does it run?

For every model and rank count this launches ``mpiexec -n R python
mpi_scaling.py --worker ...`` with one Numba (and BLAS) thread per rank. Every rank
trains through :class:`fastcnn.distributed.DataParallel` at the same per-rank batch
(weak scaling: R ranks take R times the images per step) on seeded synthetic data
of the model's input shape, in float32. After warm-up steps (which compile), each
round times ``--steps`` steps after a barrier; a round's time is the slowest rank's.
Reported, from the median round:

- images/s: ``R * batch * steps / time``;
- scaling efficiency: ``images/s(R) / (R * images/s(1))``;
- allreduce share: the time spent inside the gradient allreduce (which includes
  waiting for a slower rank) divided by the step time, averaged over ranks;
- the size of the one flat buffer each step reduces.

Compare numbers only from one run on a quiet machine: other processes competing for
the cores change them a lot.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {"lenet5": (1, 28, 28), "simple_cnn": (3, 32, 32)}
ONE_THREAD = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _mpiexec() -> str:
    beside = Path(sys.executable).with_name("mpiexec")
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        raise SystemExit("mpi_scaling: no mpiexec found; pip install 'fastcnn[mpi]'")
    return found


# ------------------------------------------------------------------ each rank


def worker(args) -> None:
    """Runs on every rank: warm up, then time rounds of training steps."""
    import numpy as np
    from mpi4py import MPI

    import fastcnn
    from fastcnn import models
    from fastcnn.distributed import DataParallel

    comm = MPI.COMM_WORLD
    fastcnn.seed(0)
    shape = MODELS[args.model]
    model = getattr(models, args.model)(input_shape=shape, num_classes=10)
    model.compile(fastcnn.optimizers.SGD(lr=0.01, momentum=0.9), "cross_entropy",
                  metrics=["accuracy"])
    trainer = DataParallel(model)
    rng = np.random.default_rng(comm.Get_rank())
    batches = [(rng.standard_normal((args.batch, *shape)).astype(np.float32),
                rng.integers(0, 10, args.batch)) for _ in range(4)]
    for i in range(args.warmup):
        trainer.train_batch(*batches[i % 4])
    rounds = []
    for _ in range(args.repeats):
        comm.Barrier()
        before = trainer.allreduce_seconds
        start = time.perf_counter()
        for i in range(args.steps):
            trainer.train_batch(*batches[i % 4])
        elapsed = time.perf_counter() - start
        rounds.append((elapsed, trainer.allreduce_seconds - before))
    everyone = comm.gather(rounds, root=0)
    if comm.Get_rank() == 0:
        per_round = []
        for r in range(args.repeats):
            times = [ranks[r][0] for ranks in everyone]
            shares = [ranks[r][1] / ranks[r][0] for ranks in everyone]
            per_round.append({"seconds": max(times),
                              "allreduce_share": statistics.fmean(shares)})
        result = {"model": args.model, "ranks": comm.Get_size(), "batch": args.batch,
                  "steps": args.steps, "rounds": per_round,
                  "buffer_bytes": int(trainer._grads.array.nbytes)}
        Path(args.output).write_text(json.dumps(result))


# ----------------------------------------------------------------- the driver


def measure(model: str, ranks: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "result.json"
        command = [_mpiexec(), *shlex.split(args.launcher_args), "-n", str(ranks),
                   sys.executable, str(Path(__file__).resolve()), "--worker",
                   "--model", model,
                   "--batch", str(args.batch), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--repeats", str(args.repeats),
                   "--output", str(output)]
        done = subprocess.run(command, env={**os.environ, **ONE_THREAD},
                              capture_output=True, text=True, timeout=args.timeout)
        if done.returncode != 0:
            raise SystemExit(f"mpi_scaling: {' '.join(command)} failed:\n"
                             f"{done.stdout}{done.stderr}")
        result = json.loads(output.read_text())
    median = sorted(result["rounds"], key=lambda r: r["seconds"])[
        len(result["rounds"]) // 2]
    result["images_per_s"] = ranks * args.batch * args.steps / median["seconds"]
    result["step_ms"] = 1e3 * median["seconds"] / args.steps
    result["allreduce_share"] = median["allreduce_share"]
    return result


def table(results: list[dict]) -> str:
    lines = ["| model | ranks x threads | batch per rank | images/s | step (ms) "
             "| scaling efficiency | allreduce share of step | allreduce buffer |",
             "|---|---|---|---|---|---|---|---|"]
    base = {r["model"]: r["images_per_s"] for r in results if r["ranks"] == 1}
    for r in results:
        one = base.get(r["model"])
        efficiency = ("n/a" if one is None else
                      f"{r['images_per_s'] / (r['ranks'] * one):.1%}")
        lines.append(
            f"| {r['model']} | {r['ranks']} x 1 | {r['batch']} | "
            f"{r['images_per_s']:.0f} | {r['step_ms']:.1f} | {efficiency} | "
            f"{r['allreduce_share']:.1%} | {r['buffer_bytes'] / 1024:.0f} KiB |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=sorted(MODELS),
                   default=["lenet5", "simple_cnn"])
    p.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    p.add_argument("--batch", type=int, default=64, help="images per rank per step")
    p.add_argument("--steps", type=int, default=20, help="steps per timed round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds")
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--launcher-args", default="",
                   help="extra mpiexec options in one string, e.g. "
                   "--launcher-args='-bind-to core' (hydra)")
    p.add_argument("--smoke", action="store_true",
                   help="2 tiny steps per case: checks that everything runs")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.smoke:
        args.batch, args.steps, args.warmup, args.repeats = 4, 2, 1, 1
    results = [measure(model, ranks, args) for model in args.models
               for ranks in sorted(set(args.ranks))]
    print(f"MPI data-parallel scaling ({os.cpu_count()} cores, one thread per rank, "
          f"float32, SGD with momentum; {args.steps} steps x {args.repeats} rounds"
          f"{', SMOKE RUN: not a measurement' if args.smoke else ''})\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
