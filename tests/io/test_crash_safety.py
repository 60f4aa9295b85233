"""Crash safety: checkpoint writes are atomic and durable, and a training process
killed with SIGKILL (inside a checkpoint write, or anywhere) always leaves a loadable
last checkpoint from which training resumes bitwise identically.

The subprocess machinery is ``tools/kill_trials.py`` (which runs 100 kills and
more); here a short chain runs in the default suite: two kills, then a resumed run
to the end.
"""

import os
import stat

import numpy as np
import pytest

from fastcnn import saving
from fastcnn.layers import Dense, Flatten
from fastcnn.model import Sequential
from tools import kill_trials


def test_model_writes_are_fsynced_renamed_then_the_directory_fsynced(tmp_path,
                                                                    monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        calls.append(("fsync", kind))
        real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", os.path.basename(src).startswith(".m.zip.")))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    Sequential([Flatten(), Dense(2)], input_shape=(1, 2, 2)).save(tmp_path / "m.zip")
    assert calls == [("fsync", "file"), ("replace", True), ("fsync", "dir")]
    assert [p.name for p in tmp_path.iterdir()] == ["m.zip"]
    assert stat.S_IMODE((tmp_path / "m.zip").stat().st_mode) == 0o644 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sigkill_during_and_between_checkpoint_writes(tmp_path):
    epochs, write_delay = 4, 0.05
    reference = tmp_path / "reference"
    reference.mkdir()
    # The uninterrupted run, in this process: the resumed one runs in children, so
    # this also checks that results do not depend on the process.
    kill_trials.child(str(reference), epochs, 0.0)
    with np.load(reference / kill_trials.FINAL) as f:
        expected = {k: f[k] for k in f.files}

    chain = str(tmp_path / "chain")
    os.mkdir(chain)
    rng = np.random.default_rng(0)
    # A write sleeps 8 x write_delay at least; the kill falls in its first half.
    inside = kill_trials.one_kill(chain, epochs, write_delay, True, 4 * write_delay,
                                  rng, nth_write=2)
    assert not inside["finished"] and inside["during_write"], inside
    assert inside["loaded"] == 1 and not inside["lost"], inside
    assert inside["temp_files"] == 1  # the interrupted write's, never the target

    anywhere = kill_trials.one_kill(chain, epochs, write_delay, False, 1.5, rng)
    assert not anywhere["lost"] and anywhere["error"] is None, anywhere
    assert anywhere["finished"] or anywhere["loaded"] >= 1

    proc = kill_trials.start_child(chain, epochs, write_delay)
    _, stderr = proc.communicate(timeout=kill_trials.CHILD_TIMEOUT_S)
    assert proc.returncode == 0, stderr.decode()
    assert kill_trials.same_weights(chain, expected)
    last = saving.load_model(os.path.join(chain, kill_trials.CHECKPOINT))
    assert last.epoch == epochs


@pytest.mark.slow
def test_many_kills(tmp_path):
    tally = kill_trials.run_trials(20, epochs=6, workdir=str(tmp_path))
    assert tally["failures"] == [] and tally["checkpoints_lost"] == 0
    assert tally["during_write"] > 0
    assert tally["chains_bitwise_identical"] == tally["chains"]
