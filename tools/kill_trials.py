"""Kill a training process with SIGKILL at random moments, many times over, and check
that no checkpoint is ever lost and that resuming is bitwise identical.

A *child* process trains LeNet-5 on 64 random 28x28 samples (4 batches an epoch) with
``ModelCheckpoint`` writing ``ckpt.zip`` after every epoch; started again, it resumes
from that checkpoint with ``load_model`` and ``fit(initial_epoch=model.epoch)``. A
*chain* starts a child, kills it, checks the checkpoint, starts the next child from it,
kills it, ... until one child finishes; its final weights must equal, bit for bit,
those of one uninterrupted run (the reference).

Half of the kills are aimed at checkpoint writes (a random moment inside the
child's 1st, 2nd or 3rd write, which ``--write-delay`` stretches by sleeping between
64 KiB chunks), the others fall at a uniformly random moment of training. The child
logs ``begin <epoch>`` before and ``end <epoch>`` after each write to an append-only
journal, so the parent knows where each kill landed. After every kill:

- if any write ever completed, ``ckpt.zip`` must exist and load;
- its epoch must be at least that of the last completed write (nothing lost) and at
  most that of the last write begun.

Run: ``python -m tools.kill_trials --trials 100`` (prints a table, writes JSON
with ``--json``). ``tests/io/test_crash_safety.py`` runs a short chain of the same code.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

CHECKPOINT = "ckpt.zip"
FINAL = "final.npz"
JOURNAL = "journal"
SEED = 7
BATCH = 16
SAMPLES = 64
# Spawn timeout for one child: startup (imports, kernels from Numba's cache) and a
# few epochs take seconds; a hung child must not hang the trials.
CHILD_TIMEOUT_S = 300.0


# ---------------------------------------------------------------------- child


def _data():
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((SAMPLES, 1, 28, 28)).astype(np.float32)
    return x, rng.integers(0, 10, SAMPLES)


def _slow_writes(writer, delay: float) -> None:
    """Make every model write sleep ``delay`` seconds after each 64 KiB, so that
    kills can be aimed inside writes."""
    real = writer._atomic_write

    class SlowFile:
        def __init__(self, handle):
            self._handle = handle

        def write(self, data):
            view = memoryview(data)
            for start in range(0, len(view), 1 << 16):
                self._handle.write(view[start:start + (1 << 16)])
                self._handle.flush()
                time.sleep(delay)
            return len(view)

        def __getattr__(self, name):
            return getattr(self._handle, name)

    def slow_atomic_write(path, write):
        return real(path, lambda handle: write(SlowFile(handle)))

    writer._atomic_write = slow_atomic_write


def child(folder: str, epochs: int, write_delay: float) -> None:
    """Train (or resume) to ``epochs``, checkpointing every epoch; write the final
    weights to ``FINAL``."""
    fd = os.open(os.path.join(folder, JOURNAL), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                 0o644)

    def log(event: str) -> None:
        # One unbuffered write per line: the kernel has it even if we die next.
        os.write(fd, f"{event} {time.monotonic():.6f}\n".encode())

    try:
        _train(folder, epochs, write_delay, log)
    finally:
        os.close(fd)


def _train(folder, epochs, write_delay, log) -> None:
    import fastcnn
    from fastcnn import _model_writer, callbacks, models, saving

    if write_delay > 0:
        _slow_writes(_model_writer, write_delay)
    x, y = _data()
    ckpt = os.path.join(folder, CHECKPOINT)
    if os.path.exists(ckpt):
        model = saving.load_model(ckpt)
    else:
        fastcnn.seed(SEED)
        model = models.lenet5()
        model.compile(fastcnn.optimizers.SGD(0.05, momentum=0.9), "cross_entropy")
    initial = model.epoch
    hooks = [
        callbacks.LambdaCallback(on_train_begin=lambda logs: log(f"train {initial}"),
                                 on_epoch_end=lambda e, logs: log(f"begin {e + 1}")),
        callbacks.ModelCheckpoint(ckpt),
        callbacks.LambdaCallback(on_epoch_end=lambda e, logs: log(f"end {e + 1}")),
    ]
    if initial < epochs:
        model.fit(x, y, epochs=epochs, initial_epoch=initial, batch_size=BATCH,
                  seed=SEED, callbacks=hooks, verbose=0)
    tmp = os.path.join(folder, ".final.tmp.npz")
    np.savez(tmp, **model.state_dict())
    os.replace(tmp, os.path.join(folder, FINAL))
    log("done 0")


# --------------------------------------------------------------------- parent


def start_child(folder: str, epochs: int, write_delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "tools.kill_trials", "--child", folder,
           "--epochs", str(epochs), "--write-delay", str(write_delay)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def journal(folder: str) -> list[tuple[str, int, float]]:
    """``(event, epoch, time)`` per complete line of the journal."""
    try:
        with open(os.path.join(folder, JOURNAL)) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    lines = text.split("\n")[:-1]  # a torn last line (none expected) is dropped
    return [(e, int(n), float(t)) for e, n, t in (line.split() for line in lines)]


def _wait_for(proc, folder, count_before, event) -> bool:
    """Poll until the journal has a new ``event`` line; False if the child exited."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(e == event for e, _, _ in journal(folder)[count_before:]):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    raise RuntimeError(f"kill_trials: no {event!r} from the child within "
                       f"{CHILD_TIMEOUT_S} s")


def check_checkpoint(folder: str) -> dict:
    """After a kill: the checkpoint must load and hold no less than the last write
    that completed."""
    from fastcnn.saving import load_model

    events = journal(folder)
    ended = max((n for e, n, _ in events if e == "end"), default=0)
    begun = max((n for e, n, _ in events if e == "begin"), default=0)
    path = os.path.join(folder, CHECKPOINT)
    result = {"ended": ended, "begun": begun, "loaded": None, "lost": False,
              "error": None}
    if not os.path.exists(path):
        result["lost"] = ended > 0
        return result
    try:
        result["loaded"] = load_model(path).epoch
    except Exception as error:  # any failure to load is a lost checkpoint
        result["error"] = f"{type(error).__name__}: {error}"
        result["lost"] = True
        return result
    result["lost"] = not ended <= result["loaded"] <= max(begun, ended)
    return result


def one_kill(folder: str, epochs: int, write_delay: float, aim_at_write: bool,
             window: float, rng: np.random.Generator, nth_write: int = 1) -> dict:
    """Start a child (resuming from the folder's checkpoint), SIGKILL it at a random
    moment (within ``window`` seconds of the start of training or, aimed at a write,
    of the start of its ``nth_write``), and check what it left. ``finished`` if it
    completed first."""
    before = len(journal(folder))
    proc = start_child(folder, epochs, write_delay)
    try:
        started = _wait_for(proc, folder, before, "train")
        for _ in range(nth_write if aim_at_write else 0):
            if started:
                started = _wait_for(proc, folder, len(journal(folder)), "begin")
        delay = rng.uniform(0, window)
        if started:
            time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=CHILD_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if finished and proc.returncode != 0:
        raise RuntimeError(f"kill_trials: the child failed:\n{stderr.decode()}")
    own = journal(folder)[before:]
    last = own[-1][0] if own else None
    result = check_checkpoint(folder)
    result.update(finished=finished and proc.returncode == 0,
                  during_write=(not finished) and last == "begin",
                  aimed=aim_at_write, delay=delay,
                  temp_files=len(glob.glob(os.path.join(folder, f".{CHECKPOINT}.*"))))
    return result


def reference(folder: str, epochs: int) -> tuple[dict, float]:
    """One uninterrupted run: its final weights and its mean epoch time."""
    proc = start_child(folder, epochs, 0.0)
    _, stderr = proc.communicate(timeout=CHILD_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"kill_trials: the reference run failed:\n"
                           f"{stderr.decode()}")
    times = [t for e, _, t in journal(folder) if e in ("train", "end")]
    with np.load(os.path.join(folder, FINAL)) as f:
        weights = {k: f[k] for k in f.files}
    return weights, (times[-1] - times[0]) / epochs


def same_weights(folder: str, expected: dict) -> bool:
    with np.load(os.path.join(folder, FINAL)) as f:
        return sorted(f.files) == sorted(expected) and all(
            np.array_equal(f[k], expected[k]) for k in expected)


def run_trials(trials: int, epochs: int = 12, write_delay: float = 0.02,
               kills_per_chain: int = 5, seed: int = 0, workdir: str | None = None,
               progress=None) -> dict:
    """Run ``trials`` kills in chains of up to ``kills_per_chain``; return the tally.
    """
    rng = np.random.default_rng(seed)
    owned = workdir is None
    workdir = tempfile.mkdtemp(prefix="kill_trials_") if owned else workdir
    ref_dir = os.path.join(workdir, "reference")
    os.makedirs(ref_dir)
    expected, epoch_s = reference(ref_dir, epochs)
    # A write of LeNet-5 (~0.5 MB: weights and momentum) sleeps ~8 times.
    write_s = 8 * write_delay
    tally = {"trials": 0, "aimed_at_write": 0, "during_write": 0,
             "during_write_unaimed": 0, "checkpoints_lost": 0, "load_failures": 0,
             "no_checkpoint_yet": 0, "temp_files_left": 0, "chains": 0,
             "chains_bitwise_identical": 0, "epoch_s": epoch_s, "write_s": write_s,
             "epochs": epochs, "failures": []}
    chain_dir, kills_in_chain = None, 0
    t0 = time.monotonic()
    while tally["trials"] < trials or chain_dir is not None:
        if chain_dir is None:
            tally["chains"] += 1
            chain_dir = os.path.join(workdir, f"chain{tally['chains']}")
            os.makedirs(chain_dir)
            kills_in_chain = 0
        if tally["trials"] >= trials or kills_in_chain >= kills_per_chain:
            # Let this chain's last child run to the end and compare.
            proc = start_child(chain_dir, epochs, write_delay)
            _, stderr = proc.communicate(timeout=CHILD_TIMEOUT_S * 4)
            if proc.returncode != 0:
                raise RuntimeError(f"kill_trials: a resumed run failed:\n"
                                   f"{stderr.decode()}")
            outcome = {"finished": True}
        else:
            aim = bool(rng.integers(2))
            window = write_s if aim else 3 * (epoch_s + write_s)
            # Aimed at the 1st, 2nd or 3rd write of the child, so that the chain
            # moves on and most kills find an earlier checkpoint to check.
            outcome = one_kill(chain_dir, epochs, write_delay, aim, window, rng,
                               nth_write=int(rng.integers(1, 4)))
        if not outcome["finished"]:
            kills_in_chain += 1
            tally["trials"] += 1
            tally["aimed_at_write"] += outcome["aimed"]
            tally["during_write"] += outcome["during_write"]
            tally["during_write_unaimed"] += (outcome["during_write"]
                                              and not outcome["aimed"])
            tally["checkpoints_lost"] += outcome["lost"]
            tally["load_failures"] += outcome["error"] is not None
            tally["no_checkpoint_yet"] += outcome["loaded"] is None and \
                not outcome["lost"]
            if outcome["lost"]:
                tally["failures"].append({"chain": chain_dir, **outcome})
            if progress:
                progress(tally, outcome)
            continue
        tally["temp_files_left"] += len(glob.glob(
            os.path.join(chain_dir, f".{CHECKPOINT}.*")))
        if same_weights(chain_dir, expected):
            tally["chains_bitwise_identical"] += 1
        else:
            tally["failures"].append({"chain": chain_dir, "mismatch": True})
        chain_dir = None
    tally["wall_s"] = time.monotonic() - t0
    if owned and not tally["failures"]:
        import shutil

        shutil.rmtree(workdir)
    return tally


def _table(tally: dict) -> str:
    rows = [
        ("kills (SIGKILL trials)", tally["trials"]),
        ("  aimed at a checkpoint write", tally["aimed_at_write"]),
        ("  landed during a write (journal)", tally["during_write"]),
        ("    of them unaimed", tally["during_write_unaimed"]),
        ("  before the first checkpoint", tally["no_checkpoint_yet"]),
        ("checkpoints lost", tally["checkpoints_lost"]),
        ("checkpoints that failed to load", tally["load_failures"]),
        ("temp files left by killed writes", tally["temp_files_left"]),
        ("chains (kill, resume, ... finish)", tally["chains"]),
        ("chains bitwise identical to the reference",
         tally["chains_bitwise_identical"]),
        ("epoch time (s)", f"{tally['epoch_s']:.3f}"),
        ("write time, approx. (s)", f"{tally['write_s']:.3f}"),
        ("wall time (s)", f"{tally['wall_s']:.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--kills-per-chain", type=int, default=5)
    parser.add_argument("--write-delay", type=float, default=0.02,
                        help="seconds slept after each 64 KiB of a checkpoint write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the tally here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.epochs, args.write_delay)
        return 0

    def progress(tally, outcome):
        where = "in write" if outcome["during_write"] else "elsewhere"
        print(f"trial {tally['trials']:4d}: killed {where:9s} "
              f"ckpt epoch {outcome['loaded']} (last write done {outcome['ended']}) "
              f"{'LOST' if outcome['lost'] else 'ok'}", flush=True)

    tally = run_trials(args.trials, args.epochs, args.write_delay,
                       args.kills_per_chain, args.seed, progress=progress)
    print(_table(tally))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(tally, f, indent=2)
    return 1 if tally["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
