"""Loader prefetch overlap: LeNet-5 epochs on MNIST-shaped data fed by a
:class:`fastcnn.datasets.Loader`, with ``prefetch`` on and off, for transforms of
different costs.

The transforms: ``none``; ``crop+flip`` (``RandomCrop(padding=2)`` and
``RandomFlip``, NumPy work that holds the GIL part of the time); ``numpy`` (that
plus a few ms of NumPy arithmetic per batch); ``sleep`` (crop+flip plus a fixed
wait that releases the GIL, standing in for reading a memmap from a slow disk).
Each row reports the transform's own time per batch, the epoch time with and
without prefetching (the fastest of ``--repeats`` epochs, run alternately, after
one warm-up epoch each),
and the time saved as a share of the transform's total: 100% is a transform
hidden entirely behind the training step.

Run: ``python -m tools.loader_overlap [--samples 4096] [--batch 64] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _transforms(sleep_ms: float, work: int):
    from fastcnn.datasets import Compose, RandomCrop, RandomFlip

    base = Compose([RandomCrop(padding=2), RandomFlip()])

    def heavy(x, rng):
        x = base(x, rng)
        acc = x
        for _ in range(work):  # a few ms of elementwise NumPy work per batch
            acc = np.tanh(acc * np.float32(0.9) + x)
        return x + np.float32(0.0) * acc

    def slow_io(x, rng):
        time.sleep(sleep_ms / 1000.0)
        return base(x, rng)

    return {"none": None, "crop+flip": base, "numpy": heavy, "sleep": slow_io}


def _cost_ms(transform, x, batch: int) -> float:
    if transform is None:
        return 0.0
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(20):
        transform(x[(i * batch) % (len(x) - batch):][:batch], rng)
    return (time.perf_counter() - start) / 20 * 1000


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sleep-ms", type=float, default=4.0)
    parser.add_argument("--work", type=int, default=6)
    args = parser.parse_args(argv)

    import fastcnn
    from fastcnn.datasets import Loader

    rng = np.random.default_rng(0)
    x = rng.random((args.samples, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, args.samples)
    steps = -(-args.samples // args.batch)
    import numba

    print(f"LeNet-5, {args.samples} MNIST-shaped samples, batch {args.batch} "
          f"({steps} steps/epoch), {numba.get_num_threads()} Numba threads")
    print("| transform | transform ms/batch | epoch s, prefetch off | epoch s, "
          "prefetch on | saved | share of transform hidden |")
    print("|---|---|---|---|---|---|")
    for name, transform in _transforms(args.sleep_ms, args.work).items():
        cost = _cost_ms(transform, x, args.batch)
        runs = {}
        for prefetch in (False, True):
            fastcnn.seed(0)
            model = fastcnn.models.lenet5()
            model.compile("sgd", "cross_entropy")
            loader = Loader(x, y, args.batch, transform=transform, seed=0,
                            prefetch=prefetch)
            model.fit(loader, epochs=1, verbose=0)  # warm-up: kernels, buffers
            runs[prefetch] = (model, loader, [])
        for _ in range(args.repeats):  # interleaved, so load changes hit both
            for model, loader, epochs in runs.values():
                start = time.perf_counter()
                model.fit(loader, epochs=1, verbose=0)
                epochs.append(time.perf_counter() - start)
        # The fastest epoch: on a shared machine, load only ever adds time.
        times = {key: min(run[2]) for key, run in runs.items()}
        saved = times[False] - times[True]
        hidden = (f"{saved / (cost * steps / 1000):.0%}" if cost > 0 else "-")
        print(f"| {name} | {cost:.2f} | {times[False]:.3f} | {times[True]:.3f} | "
              f"{saved:+.3f} s | {hidden} |")


if __name__ == "__main__":
    main()
