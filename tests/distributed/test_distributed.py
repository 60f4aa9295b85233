"""fastcnn.distributed: data-parallel training over MPI.

The pure pieces (sharding, the flat buffer, fit's distributed path with a fake
one-rank communicator) run in-process; mpi4py is never imported here (MPI would
initialise inside pytest). Everything that needs real ranks runs `mpiexec -n 2` on
tests/distributed/distributed_worker.py, one thread per rank.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastcnn
from fastcnn import distributed
from fastcnn import layers as L
from fastcnn.callbacks import (
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
)
from fastcnn.distributed import DataParallel, DistributedError, FlatBuffer
from fastcnn.distributed.data_parallel import _Silenced

from . import distributed_worker as worker

WORKER = Path(worker.__file__)


def _mpiexec() -> str | None:
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpi4py and an mpiexec (pip install 'fastcnn[mpi]')",
)


def run_ranks(*args, launcher=(), env=None, timeout=300):
    """``mpiexec -n 2 python ARGS`` with one Numba thread per rank."""
    full_env = {**os.environ, "NUMBA_NUM_THREADS": "1", **(env or {})}
    command = [MPIEXEC, *launcher, "-n", "2", sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, env=full_env,
                          timeout=timeout)


def _is_hydra() -> bool:
    probe = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True,
                           timeout=60)
    return "HYDRA" in probe.stdout


# ------------------------------------------------------------ sharding, in-process


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 129, 149])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_are_disjoint_cover_every_row_and_make_the_wide_batch(n, world):
    batch = 8
    order = np.random.default_rng(n).permutation(n)
    shards = [distributed.shard(order, r, world) for r in range(world)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    steps = distributed.num_steps(n, batch, world)
    assert steps == -(-n // (world * batch))
    for step in range(steps):
        parts = [s[step * batch : (step + 1) * batch] for s in shards]
        together = np.concatenate(parts)
        wide = order[world * batch * step : world * batch * (step + 1)]
        assert sorted(together.tolist()) == sorted(wide.tolist())
        assert len(together) == distributed.step_rows(step, n, batch, world)
    assert sum(distributed.step_rows(s, n, batch, world) for s in range(steps)) == n


@pytest.mark.parametrize("call, error, fragment", [
    (lambda: distributed.shard(np.arange(4), 2, 2), ValueError, "rank must be < world"),
    (lambda: distributed.shard(np.arange(4), 0, 0), ValueError, "world must be >= 1"),
    (lambda: distributed.shard(np.arange(4), 0.5, 2), TypeError, "rank must be an int"),
    (lambda: distributed.shard(np.zeros((2, 2)), 0, 1), ValueError, "must be 1-D"),
    (lambda: distributed.num_steps(10, 0, 2), ValueError, "batch_size must be >= 1"),
])
def test_sharding_rejects_bad_arguments(call, error, fragment):
    with pytest.raises(error, match=fragment):
        call()


# ------------------------------------------------------------ the flat buffer


def test_flat_buffer_packs_scales_and_unpacks_through_views():
    shapes = {"0.weight": (3, 2, 2), "0.bias": (3,), "4.weight": (5, 7)}
    flat = FlatBuffer(shapes, np.float64, extra=4)
    assert flat.array.shape == (12 + 3 + 35 + 4,) and flat.array.flags.c_contiguous
    assert flat.extra.shape == (4,)
    for name, view in flat.views.items():
        assert view.shape == shapes[name] and np.shares_memory(view, flat.array)
    rng = np.random.default_rng(0)
    arrays = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    flat.pack(arrays, scale=3.0)
    np.testing.assert_array_equal(flat.body,
                                  np.concatenate([a.ravel() * 3 for a in
                                                  arrays.values()]))
    flat.body /= 3.0
    out = {name: np.zeros(shape) for name, shape in shapes.items()}
    flat.unpack(out)
    for name in shapes:
        np.testing.assert_allclose(out[name], arrays[name], rtol=1e-15)
    flat.pack(arrays.items())  # pairs work too, without a scale: exact copies
    for name in shapes:
        np.testing.assert_array_equal(flat.views[name], arrays[name])


def test_flat_buffer_rejects_what_does_not_fit():
    flat = FlatBuffer({"a": (2,), "b": (3,)}, np.float32)
    with pytest.raises(ValueError, match="a has shape"):
        flat.pack({"a": np.zeros(3), "b": np.zeros(3)})
    with pytest.raises(KeyError, match="no array named 'c'"):
        flat.pack({"c": np.zeros(2)})
    with pytest.raises(ValueError, match="got 1 arrays for a buffer of 2"):
        flat.pack({"a": np.zeros(2)})
    with pytest.raises(ValueError, match="extra must be an int"):
        FlatBuffer({}, np.float32, extra=-1)


# ------------------------------------------------ fit with fake communicators


class OneRank:
    """A communicator of one rank: collectives leave the buffers as they are.
    Logs every call, with the address of the buffer."""

    rank, size = 0, 1

    def __init__(self):
        self.calls = []

    def allreduce(self, buffer, op="sum", what=""):
        self.calls.append(("allreduce", op, what, buffer.ctypes.data, buffer.size))

    def broadcast(self, buffer, what=""):
        self.calls.append(("broadcast", "", what, buffer.ctypes.data, buffer.size))


class RecordingRoot(OneRank):
    """Rank 0 of two: keeps a copy of everything it broadcasts."""

    size = 2

    def __init__(self):
        super().__init__()
        self.sent = []

    def broadcast(self, buffer, what=""):
        self.sent.append(buffer.copy())


class ReplayingRank1(OneRank):
    """Rank 1 of two, receiving what a RecordingRoot sent (ranks run in turn)."""

    rank, size = 1, 2

    def __init__(self, sent):
        super().__init__()
        self.sent = list(sent)

    def broadcast(self, buffer, what=""):
        buffer[...] = self.sent.pop(0)


def small_model(init_seed, dropout=0.0, batch_norm=False, dtype="float64",
                optimizer="sgd"):
    fastcnn.seed(init_seed)
    stack = [L.Conv2D(2, 3, padding=1)]
    stack += [L.BatchNorm2D()] if batch_norm else []
    stack += [L.ReLU(), L.MaxPool2D(2), L.Flatten()]
    stack += [L.Dropout(dropout)] if dropout else []
    stack += [L.Dense(3)]
    model = fastcnn.Sequential(stack, input_shape=(1, 4, 4), dtype=dtype)
    model.compile(optimizer, "cross_entropy", metrics=["accuracy"])
    return model


def small_data(n=37):
    rng = np.random.default_rng(5)
    return rng.standard_normal((n, 1, 4, 4)), rng.integers(0, 3, n)


def test_one_rank_fit_is_plain_fit_bit_for_bit():
    # Dropout and BatchNorm included: one rank must be exactly the ordinary path.
    # (Batches of 8 and 4 rows: scaling a gradient by its row count and back is
    # exact for powers of two, so even the weights agree bit for bit.)
    x, y = small_data()
    runs = []
    for comm in (False, OneRank()):
        model = small_model(3, dropout=0.3, batch_norm=True, optimizer="adam")
        stopper = EarlyStopping(monitor="val_loss", patience=5)
        history = model.fit(x, y, epochs=3, batch_size=8, seed=1, verbose=0,
                            validation_split=0.25, callbacks=[stopper],
                            distributed=comm)
        runs.append((model.state_dict(), history, comm))
    (plain, h_plain, _), (dist, h_dist, comm) = runs
    for key in plain:
        np.testing.assert_array_equal(dist[key], plain[key])
    assert h_dist.iterations == pytest.approx(h_plain.iterations, rel=1e-12)
    for key, values in h_plain.history.items():
        assert h_dist.history[key] == pytest.approx(values, rel=1e-12), key
    # One gradient allreduce per step, always over the same (persistent) buffer.
    steps = [c for c in comm.calls if c[2].startswith("the gradient allreduce")]
    assert len(steps) == 3 * -(-28 // 8)
    assert len({(c[3], c[4]) for c in steps}) == 1


def test_one_rank_fit_with_sample_weights_is_plain_fit():
    # A rank's weight is the sum of its rows' sample (times class) weights.
    x, y = small_data()
    w = np.random.default_rng(2).random(len(x))
    runs = []
    for comm in (False, OneRank()):
        model = small_model(3)
        history = model.fit(x, y, epochs=2, batch_size=8, seed=1, verbose=0,
                            sample_weight=w, class_weight=[1.0, 0.5, 2.0],
                            distributed=comm)
        runs.append((model.state_dict(), history))
    (plain, h_plain), (dist, h_dist) = runs
    for key in plain:
        np.testing.assert_allclose(dist[key], plain[key], rtol=1e-12, atol=1e-15)
    assert h_dist.iterations == pytest.approx(h_plain.iterations, rel=1e-12)


def test_rank_zero_state_reaches_other_ranks_and_dropout_masks_differ():
    x, y = small_data()
    root_model = small_model(1, dropout=0.5, optimizer="adam")
    root_model.train_step(x[:8], y[:8])  # rank 0 has Adam state; rank 1 will not
    root = RecordingRoot()
    root_dp = DataParallel(root_model, root, seed=42, x=x, y=y)
    other_model = small_model(2, dropout=0.5, optimizer="adam")
    other_dp = DataParallel(other_model, ReplayingRank1(root.sent), seed=99, x=x, y=y)
    assert root_dp.seed == other_dp.seed == 42
    for key, value in root_model.state_dict().items():
        np.testing.assert_array_equal(other_model.state_dict()[key], value)
    root_arrays, root_scalars = root_model.optimizer.get_state()
    other_arrays, other_scalars = other_model.optimizer.get_state()
    assert other_scalars == root_scalars and root_scalars["iterations"] == 1
    assert sorted(other_arrays) == sorted(root_arrays)
    for key, value in root_arrays.items():
        np.testing.assert_array_equal(other_arrays[key], value)
    # Same weights, same input: different dropout masks on the two ranks.
    out_root = root_model.forward(x[:8], training=True)
    out_other = other_model.forward(x[:8], training=True)
    assert not np.allclose(out_root, out_other)


def test_a_rank_with_another_model_or_data_is_told_so():
    x, y = small_data()
    root = RecordingRoot()
    DataParallel(small_model(1), root, seed=0, x=x, y=y)
    with pytest.raises(DistributedError, match="rank 1's model differs"):
        DataParallel(small_model(1, batch_norm=True), ReplayingRank1(root.sent),
                     seed=0, x=x, y=y)
    with pytest.raises(DistributedError, match="rank 1's training data x"):
        DataParallel(small_model(1), ReplayingRank1(root.sent), seed=0, x=x + 1,
                     y=y)


def test_other_ranks_skip_file_writers_and_run_the_rest_silenced(tmp_path, capsys):
    x, y = small_data()
    root = RecordingRoot()
    DataParallel(small_model(1), root, seed=0)
    other = DataParallel(small_model(1), ReplayingRank1(root.sent), seed=0)
    shout = LambdaCallback(on_epoch_end=lambda epoch, logs: print("LOUD"))
    checkpoint = ModelCheckpoint(tmp_path / "m.zip")
    kept = other.callbacks_for_rank([checkpoint, CSVLogger(tmp_path / "l.csv"),
                                     shout])
    assert len(kept) == 1 and isinstance(kept[0], _Silenced)
    kept[0].on_epoch_end(0, {})
    assert "LOUD" not in capsys.readouterr().out
    everything = [checkpoint, shout]
    rank_zero = DataParallel(small_model(1), OneRank(), seed=0)
    assert rank_zero.callbacks_for_rank(everything) == everything


def test_fit_rejects_a_bad_distributed_argument():
    x, y = small_data()
    model = small_model(1)
    with pytest.raises(TypeError, match="fit: distributed must be True, False"):
        model.fit(x, y, distributed=2, verbose=0)
    with pytest.raises(TypeError, match="fit: distributed must be True, False"):
        model.fit(x, y, distributed="yes", verbose=0)


def test_the_timeout_setting_is_checked(monkeypatch):
    from fastcnn import _config

    monkeypatch.setenv("FASTCNN_DIST_TIMEOUT", "12.5")
    assert _config.Settings().dist_timeout == 12.5
    monkeypatch.setenv("FASTCNN_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="FASTCNN_DIST_TIMEOUT must be a number"):
        _config.Settings()


def test_import_fastcnn_does_not_import_mpi4py():
    code = ("import sys, fastcnn, fastcnn.distributed; "
            "print('mpi4py' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# -------------------------------------------------------- real ranks (mpiexec)


@pytest.fixture(scope="module")
def references():
    """The one-process runs (batch 64); compiling them here first also fills the
    kernel cache the ranks then load from."""
    return {"a": worker.reference_a(), "b": worker.reference_b()}


@pytest.fixture(scope="module")
def two_ranks(references, tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    result = run_ranks(str(WORKER), "train", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    ranks = [json.loads((out / f"result-rank{r}.json").read_text()) for r in (0, 1)]
    return out, result, ranks


def _weights(path):
    with np.load(path) as archive:
        return dict(archive)


@needs_mpi
@pytest.mark.parametrize("run", ["a", "b"])
def test_two_ranks_of_32_equal_one_process_of_64(two_ranks, references, run):
    # a: SGD with momentum, 149 rows (ragged last step 11 + 10), rank 1 starting
    # from other weights; b: Adam whose state only rank 0 had, class weights, 129
    # rows (rank 1 has no row in the last step). K = 6 steps each.
    out, _, _ = two_ranks
    expected = references[run][0].state_dict()
    for rank in (0, 1):
        got = _weights(out / f"{run}-rank{rank}.npz")
        assert sorted(got) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-9,
                                       err_msg=f"{run} rank {rank} {key}")


@needs_mpi
def test_every_rank_ends_with_identical_weights(two_ranks):
    out, _, _ = two_ranks
    for run in ("a", "b", "resumed"):
        zero, one = (_weights(out / f"{run}-rank{r}.npz") for r in (0, 1))
        for key in zero:
            np.testing.assert_array_equal(one[key], zero[key])


@needs_mpi
@pytest.mark.parametrize("run", ["a", "b"])
def test_logged_metrics_are_reduced_over_all_ranks(two_ranks, references, run):
    _, _, ranks = two_ranks
    expected = references[run][1]
    for rank in (0, 1):
        got = ranks[rank][run]
        assert got["iterations"] == pytest.approx(expected.iterations, rel=1e-9)
        assert sorted(got["history"]) == sorted(expected.history)
        for key, values in expected.history.items():
            assert got["history"][key] == pytest.approx(values, rel=1e-9), key
    assert ranks[0][run]["history"] == ranks[1][run]["history"]


@needs_mpi
def test_each_step_trains_on_disjoint_shards_of_the_wide_batch(two_ranks):
    _, _, ranks = two_ranks
    n, wide = 149, 64
    zero, one = ranks[0]["a"]["rows"], ranks[1]["a"]["rows"]
    assert len(zero) == len(one) == 2 * 3  # 2 epochs of 3 steps
    for epoch in range(2):
        order = np.random.default_rng([worker.SEED_A, 1, epoch]).permutation(n)
        for step in range(3):
            a, b = zero[3 * epoch + step], one[3 * epoch + step]
            assert not set(a) & set(b)
            assert sorted(a + b) == sorted(order[wide * step : wide * (step + 1)])
    assert [len(r) for r in zero[:3]] == [32, 32, 11]
    assert [len(r) for r in one[:3]] == [32, 32, 10]


@needs_mpi
def test_only_rank_zero_prints_and_writes_files(two_ranks):
    out, result, _ = two_ranks
    assert result.stdout.count("Epoch 1/2 - ") == 1
    assert result.stdout.count("Epoch 2/2 - ") == 1
    assert result.stdout.count("callback 0") == 1  # rank 1's print was silenced
    names = sorted(p.name for p in out.iterdir())
    assert "ckpt-rank0-1.zip" in names and "ckpt-rank0-2.zip" in names
    assert "log-rank0.csv" in names and "zero-only-rank0.txt" in names
    assert not [name for name in names if "rank1" in name and "npz" not in name
                and "json" not in name]


@needs_mpi
def test_resuming_from_rank_zero_checkpoint_continues_exactly(two_ranks):
    out, _, _ = two_ranks
    uninterrupted = _weights(out / "a-rank0.npz")
    resumed = _weights(out / "resumed-rank0.npz")
    for key, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[key], value)


@pytest.fixture(scope="module")
def two_ranks_batchnorm(tmp_path_factory):
    out = tmp_path_factory.mktemp("bn_ranks")
    result = run_ranks(str(WORKER), "batchnorm", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads((out / f"bn-rank{r}.json").read_text()) for r in (0, 1)]


BN_BUFFERS = ("1.running_mean", "1.running_var", "5.running_mean", "5.running_var")


@needs_mpi
@pytest.mark.parametrize("run", ["frozen", "trained"])
def test_batchnorm_running_statistics_agree_across_ranks(two_ranks_batchnorm, run):
    zero, one = (ranks[run] for ranks in two_ranks_batchnorm)
    assert sorted(zero["state"]) == sorted(one["state"])
    for key in zero["state"]:
        np.testing.assert_array_equal(one["state"][key], zero["state"][key],
                                      err_msg=key)
    # Averaged once per epoch, and the model ends with the last average.
    assert len(zero["averaging"]) == len(one["averaging"]) == 2
    for key in BN_BUFFERS:
        np.testing.assert_array_equal(zero["state"][key],
                                      zero["averaging"][-1]["after"][key])


@needs_mpi
@pytest.mark.parametrize("run", ["frozen", "trained"])
def test_batchnorm_running_statistics_are_the_mean_over_ranks(two_ranks_batchnorm,
                                                              run):
    # The documented rule: each rank updates its running statistics from its own
    # batches; at the end of every epoch they become the mean over the ranks.
    zero, one = (ranks[run]["averaging"] for ranks in two_ranks_batchnorm)
    for epoch in range(2):
        for key in BN_BUFFERS:
            mine = np.asarray(zero[epoch]["before"][key])
            theirs = np.asarray(one[epoch]["before"][key])
            assert np.max(np.abs(mine - theirs)) > 1e-3, (
                f"{key}: the ranks' statistics did not differ before averaging; "
                f"the test would pass vacuously")
            expected = (mine + theirs) * 0.5
            for rank, log in enumerate((zero, one)):
                np.testing.assert_allclose(log[epoch]["after"][key], expected,
                                           rtol=1e-15, atol=0,
                                           err_msg=f"epoch {epoch} rank {rank}")


@needs_mpi
def test_batchnorm_running_statistics_match_a_per_rank_replay(two_ranks_batchnorm):
    # With lr 0 the weights stay rank 0's initial ones, so each rank's statistics
    # can be recomputed here from the rows it trained on: one replica per rank,
    # starting each epoch from the previous average.
    x, _ = worker.data_bn()
    rows = [ranks["frozen"]["rows"] for ranks in two_ranks_batchnorm]
    assert [len(r) for r in rows] == [2 * worker.BN_STEPS_PER_EPOCH] * 2
    start = worker.make_bn_model(200, 0.0).state_dict()
    averaged = {key: start[key] for key in BN_BUFFERS}
    for epoch in range(2):
        per_rank = []
        for rank in (0, 1):
            replica = worker.make_bn_model(200, 0.0)
            replica.load_state_dict({**start, **averaged})
            steps = rows[rank][epoch * worker.BN_STEPS_PER_EPOCH:
                               (epoch + 1) * worker.BN_STEPS_PER_EPOCH]
            for step_rows in steps:
                replica.forward(x[step_rows], training=True)
            per_rank.append(replica.state_dict())
        averaged = {key: (per_rank[0][key] + per_rank[1][key]) * 0.5
                    for key in BN_BUFFERS}
        for rank in (0, 1):
            got = two_ranks_batchnorm[rank]["frozen"]["averaging"][epoch]["after"]
            for key in BN_BUFFERS:
                np.testing.assert_allclose(got[key], averaged[key], rtol=1e-12,
                                           atol=1e-14,
                                           err_msg=f"epoch {epoch} rank {rank} {key}")


@needs_mpi
def test_a_dying_rank_ends_the_job(tmp_path):
    # MPICH's hydra kills the other ranks as soon as one exits abnormally.
    result = run_ranks(str(WORKER), "die", str(tmp_path), timeout=240)
    assert result.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank1-exits-now"]


@needs_mpi
def test_a_rank_stuck_waiting_for_a_dead_one_aborts_after_the_timeout(tmp_path):
    # With -disable-auto-cleanup hydra leaves the survivor running, as launchers
    # that do not clean up would: the watchdog must end it.
    if not _is_hydra():
        pytest.skip("-disable-auto-cleanup is an MPICH (hydra) option")
    result = run_ranks(str(WORKER), "die", str(tmp_path),
                       launcher=("-disable-auto-cleanup",),
                       env={"FASTCNN_DIST_TIMEOUT": "3"}, timeout=240)
    assert result.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank1-exits-now"]
    assert "fastcnn.distributed: rank 0 of 2:" in result.stderr
    assert "resume from the last checkpoint" in result.stderr
    # Rank 1 dies after a step's allreduce: rank 0 waits in the next collective.
    assert ("waited 3 s for the stop_training vote" in result.stderr
            or "MPI failed during" in result.stderr)


@needs_mpi
def test_the_cli_trains_on_two_ranks(tmp_path):
    pytest.importorskip("sklearn")  # the offline digits
    path = tmp_path / "digits.zip"
    result = run_ranks("-m", "fastcnn", "train", "--distributed", "--epochs", "1",
                       "--model", "lenet5", "--quiet", "--save", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("test accuracy:") == 1
    assert "batch 32 on each of 2 ranks" in result.stdout
    assert fastcnn.load_model(path).epoch == 1
