"""Soak: many LeNet-5 training steps with the resident set size (RSS) sampled along
the way, to show that training does not leak memory.

Each step is ``model.train_step`` on a batch of 64 MNIST-shaped random samples
(cycling through a fixed pool of 1,024, so the data allocate nothing new). RSS is read
from ``/proc/self/statm`` every ``--every`` steps. Reported: RSS at the start (after
the first step), after the warm-up (kernels loaded, buffers and allocator pools at
their working size), at the end, the maximum, and the least-squares slope after the
warm-up in kB per 1,000 steps.

Run: ``python -m tools.soak --steps 20000 --json soak.json --markdown soak.md``.
``tests/support/test_soak.py`` runs a short version.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

BATCH = 64
POOL = 1024


def rss_bytes() -> int:
    """The process's current resident set size (Linux: /proc/self/statm; elsewhere
    the peak from getrusage, an upper bound)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak * (1 if sys.platform == "darwin" else 1024)


def soak(steps: int = 20_000, every: int = 100, warmup: int = 1_000,
         seed: int = 0, threads: int | None = 1, progress=None) -> dict:
    """Train LeNet-5 for ``steps`` steps; return the RSS curve and its summary.

    ``threads``: Numba threads (None: leave the setting). One by default: on a
    shared 2-core machine a parallel region's threads mostly wait for each other,
    and memory use does not depend on the thread count.
    """
    import fastcnn
    from fastcnn import models

    if not 0 < warmup < steps:
        raise ValueError(f"soak: warmup must be in (0, steps), got {warmup!r}.")
    if threads is not None:
        fastcnn.set_num_threads(threads)
    fastcnn.seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.random((POOL, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, POOL)
    model = models.lenet5()
    model.compile(fastcnn.optimizers.SGD(0.01, momentum=0.9), "cross_entropy")
    curve: list[tuple[int, int]] = []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        start = (step * BATCH) % POOL
        loss = model.train_step(x[start:start + BATCH], y[start:start + BATCH])
        if step == 1 or step % every == 0 or step == steps:
            curve.append((step, rss_bytes()))
            if progress:
                progress(step, curve[-1][1], loss)
    seconds = time.perf_counter() - t0
    return summarize(curve, warmup) | {"steps": steps, "batch": BATCH,
                                       "threads": threads, "seconds": seconds,
                                       "final_loss": float(loss), "curve": curve}


def summarize(curve: list[tuple[int, int]], warmup: int) -> dict:
    """Start, after warm-up, end and max RSS (bytes), and the slope after warm-up
    (bytes per 1,000 steps, least squares)."""
    steps = np.array([s for s, _ in curve], dtype=np.float64)
    rss = np.array([r for _, r in curve], dtype=np.float64)
    after = steps >= warmup
    at_warmup = int(rss[np.argmax(after)])
    slope = (np.polyfit(steps[after], rss[after], 1)[0] * 1000
             if after.sum() >= 2 else 0.0)
    return {"rss_start": int(rss[0]), "rss_after_warmup": at_warmup,
            "rss_end": int(rss[-1]), "rss_max": int(rss.max()),
            "rss_max_after_warmup": int(rss[after].max()),
            "growth_after_warmup": int(rss[-1]) - at_warmup,
            "slope_bytes_per_1000_steps": float(slope), "warmup": warmup}


def markdown(result: dict) -> str:
    mib = 1 << 20
    lines = [
        f"# Soak: LeNet-5, {result['steps']} training steps, batch {result['batch']}",
        "",
        "| | RSS (MiB) |",
        "|---|---|",
        f"| start (after step 1) | {result['rss_start'] / mib:.1f} |",
        f"| after warm-up (step {result['warmup']}) | "
        f"{result['rss_after_warmup'] / mib:.1f} |",
        f"| end (step {result['steps']}) | {result['rss_end'] / mib:.1f} |",
        f"| max | {result['rss_max'] / mib:.1f} |",
        f"| growth after warm-up | {result['growth_after_warmup'] / mib:+.2f} |",
        f"| slope after warm-up | "
        f"{result['slope_bytes_per_1000_steps'] / 1024:+.1f} kB / 1000 steps |",
        "",
        f"{result['seconds']:.0f} s on {result['threads']} Numba thread(s), final "
        f"loss {result['final_loss']:.4f}.",
        "",
        "| step | RSS (MiB) |",
        "|---|---|",
    ]
    curve = result["curve"]
    rows = curve[::max(1, len(curve) // 20)]
    if rows[-1] != curve[-1]:
        rows.append(curve[-1])
    lines += [f"| {step} | {rss / mib:.1f} |" for step, rss in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=1, help="Numba threads")
    parser.add_argument("--json", help="write the result (with the curve) here")
    parser.add_argument("--markdown", help="write a markdown table here")
    args = parser.parse_args(argv)

    def progress(step, rss, loss):
        if step == 1 or step % (args.every * 10) == 0:
            print(f"step {step:6d}  RSS {rss / (1 << 20):7.1f} MiB  loss {loss:.4f}",
                  flush=True)

    result = soak(args.steps, args.every, args.warmup, threads=args.threads,
                  progress=progress)
    text = markdown(result)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
