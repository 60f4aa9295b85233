"""What each rank runs in test_distributed.py (``mpiexec -n 2 python this.py``).

``train OUT``: two distributed fits whose results the test compares with one-process
runs (see ``reference_*`` below, which the test calls in-process); ``batchnorm OUT``:
fits of a model with BatchNorm, recording the running statistics around every
epoch's averaging; ``die``: rank 1 exits abruptly in the middle of training.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

import fastcnn
from fastcnn import layers as L
from fastcnn.callbacks import Callback, CSVLogger, LambdaCallback, ModelCheckpoint
from fastcnn.optimizers import SGD, Adam

SEED_A, SEED_B = 7, 11
CLASS_WEIGHT = {0: 2.0, 3: 0.5, 7: 0.0}


def make_model(init_seed, optimizer):
    """Conv, pooling and dense in float64, without dropout: the equivalence model."""
    fastcnn.seed(init_seed)
    model = fastcnn.Sequential(
        [L.Conv2D(3, 3, padding=1), L.ReLU(), L.MaxPool2D(2), L.Flatten(),
         L.Dense(10)],
        input_shape=(1, 6, 6), dtype="float64")
    model.compile(optimizer, "cross_entropy", metrics=["accuracy"])
    return model


def data(n, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 6, 6)), rng.integers(0, 10, n)


def data_a():
    # 149 rows: steps of 64, 64 and a ragged 21 (11 rows on rank 0, 10 on rank 1).
    return data(149, 0), data(40, 1)


def data_b():
    # 129 rows: the last step has 1 row, on rank 0; rank 1 has none.
    return data(129, 2)


def reference_a():
    (x, y), val = data_a()
    model = make_model(100, SGD(lr=0.1, momentum=0.9))
    history = model.fit(x, y, epochs=2, batch_size=64, seed=SEED_A, verbose=0,
                        validation_data=val)
    return model, history


def reference_b():
    x, y = data_b()
    model = make_model(100, Adam(lr=0.01))
    model.train_step(x[:16], y[:16])
    history = model.fit(x, y, epochs=2, batch_size=64, seed=SEED_B, verbose=0,
                        class_weight=CLASS_WEIGHT)
    return model, history


def _record_rows(x, log):
    """Wrap DataParallel.train_batch to log the row numbers each step trains on."""
    from fastcnn.distributed import DataParallel

    index = {row.tobytes(): i for i, row in enumerate(x)}
    original = DataParallel.train_batch

    def train_batch(self, xb, yb, class_weight=None):
        log.append([index[row.tobytes()] for row in xb])
        return original(self, xb, yb, class_weight)

    DataParallel.train_batch = train_batch
    return lambda: setattr(DataParallel, "train_batch", original)


class RankZeroOnly(Callback):
    rank_zero_only = True

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_train_end(self, logs=None):
        Path(self.path).write_text("ran")


def train(out: Path):
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    result = {}

    # Fit A: every rank starts from different weights (seed 100 + rank): rank 0's
    # must win. Ragged last step, validation data, printing, checkpoints.
    (x, y), val = data_a()
    rows = []
    stop_recording = _record_rows(x, rows)
    model = make_model(100 + rank, SGD(lr=0.1, momentum=0.9))
    callbacks = [
        ModelCheckpoint(out / f"ckpt-rank{rank}-{{epoch}}.zip", monitor="loss"),
        CSVLogger(out / f"log-rank{rank}.csv"),
        RankZeroOnly(out / f"zero-only-rank{rank}.txt"),
        LambdaCallback(on_epoch_end=lambda epoch, logs: print(f"callback {epoch}")),
    ]
    history = model.fit(x, y, epochs=2, batch_size=32, seed=SEED_A, verbose=2,
                        validation_data=val, callbacks=callbacks, distributed=True)
    stop_recording()
    np.savez(out / f"a-rank{rank}.npz", **model.state_dict())
    result["a"] = {"history": history.history, "iterations": history.iterations,
                   "rows": rows}

    # Resume from rank 0's checkpoint of epoch 1, on every rank.
    resumed = fastcnn.load_model(out / "ckpt-rank0-1.zip")
    resumed.fit(x, y, epochs=2, batch_size=32, initial_epoch=resumed.epoch,
                verbose=0, validation_data=val, distributed=True)
    np.savez(out / f"resumed-rank{rank}.npz", **resumed.state_dict())

    # Fit B: rank 0 alone took one Adam step first (its optimizer state must reach
    # rank 1); class weights make the ranks' shares unequal; an empty last share.
    x, y = data_b()
    model = make_model(100 + rank, Adam(lr=0.01))
    if rank == 0:
        model.train_step(x[:16], y[:16])
    history = model.fit(x, y, epochs=2, batch_size=32, seed=SEED_B, verbose=0,
                        class_weight=CLASS_WEIGHT, distributed=True)
    np.savez(out / f"b-rank{rank}.npz", **model.state_dict())
    result["b"] = {"history": history.history, "iterations": history.iterations}
    (out / f"result-rank{rank}.json").write_text(json.dumps(result))


SEED_BN = 5
BN_STEPS_PER_EPOCH = 3  # 45 rows, 8 per rank: 16 + 16 + a ragged 7 + 6


def make_bn_model(init_seed, lr):
    """BatchNorm after a convolution and after a dense layer, in float64."""
    fastcnn.seed(init_seed)
    model = fastcnn.Sequential(
        [L.Conv2D(3, 3, padding=1), L.BatchNorm2D(momentum=0.3), L.ReLU(),
         L.Flatten(), L.Dense(5), L.BatchNorm1D(), L.ReLU(), L.Dense(3)],
        input_shape=(1, 4, 4), dtype="float64")
    model.compile(SGD(lr=lr, momentum=0.9), "cross_entropy")
    return model


def data_bn():
    rng = np.random.default_rng(9)
    # Rows of different scales, so that the two ranks' batch statistics differ.
    x = rng.standard_normal((45, 1, 4, 4)) * rng.uniform(0.2, 3.0, (45, 1, 1, 1))
    return x + rng.standard_normal((45, 1, 1, 1)), rng.integers(0, 3, 45)


def _record_averaging(log):
    """Wrap DataParallel.average_buffers to log the buffers before and after."""
    from fastcnn.distributed import DataParallel

    original = DataParallel.average_buffers

    def average_buffers(self):
        before = {k: v.tolist() for k, v in self._buffers.items()}
        original(self)
        log.append({"before": before,
                    "after": {k: v.tolist() for k, v in self._buffers.items()}})

    DataParallel.average_buffers = average_buffers
    return lambda: setattr(DataParallel, "average_buffers", original)


def batchnorm(out: Path):
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    x, y = data_bn()
    result = {}
    # lr 0: the weights stay rank 0's initial ones, so the test can recompute each
    # rank's running statistics from the rows it trained on. lr 0.1: real training.
    for run, lr in (("frozen", 0.0), ("trained", 0.1)):
        rows, averaging = [], []
        stop_rows = _record_rows(x, rows)
        stop_averaging = _record_averaging(averaging)
        model = make_bn_model(200 + rank, lr)
        model.fit(x, y, epochs=2, batch_size=8, seed=SEED_BN, verbose=0,
                  distributed=True)
        stop_rows()
        stop_averaging()
        result[run] = {"rows": rows, "averaging": averaging,
                       "state": {k: v.tolist() for k, v in
                                 model.state_dict().items()}}
    (out / f"bn-rank{rank}.json").write_text(json.dumps(result))


def die(out: Path):
    """Rank 1 exits with status 1 at its third step; rank 0 would go on for 50
    epochs if nobody stopped it. Marker files say what happened (the launcher may
    drop a dying rank's output)."""
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    (x, y), _ = data_a()
    model = make_model(100, SGD(lr=0.1))

    def maybe_die(batch, logs):
        if rank == 1 and batch == 2:
            (out / "rank1-exits-now").write_text("")
            os._exit(1)

    model.fit(x, y, epochs=50, batch_size=8, seed=SEED_A, verbose=0,
              callbacks=[LambdaCallback(on_batch_end=maybe_die)], distributed=True)
    (out / f"rank{rank}-finished-training").write_text("")


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(Path(sys.argv[2]))
    elif sys.argv[1] == "batchnorm":
        batchnorm(Path(sys.argv[2]))
    elif sys.argv[1] == "die":
        die(Path(sys.argv[2]))
    else:
        raise SystemExit(f"unknown scenario {sys.argv[1]!r}")
