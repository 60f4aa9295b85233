"""The pool of output buffers (fastcnn/_buffers.py): an array is handed out again
only when nothing references it, the pool stays within its budget, concurrent
callers never share an array, and training gives the same bits with and without
it."""

import threading

import numpy as np
import pytest

import fastcnn
from fastcnn import _buffers
from fastcnn._config import settings

SHAPE = (64, 32, 8, 8)  # 128 KiB of float32: pooled (>= MIN_BYTES)


@pytest.fixture
def pool(monkeypatch):
    monkeypatch.setattr(settings, "buffer_pool_mb", 4.0)
    pool = _buffers._Pool()
    monkeypatch.setattr(_buffers, "_pool", pool)
    return pool


def test_an_idle_array_is_reused_and_a_held_one_is_not(pool):
    a = _buffers.empty(SHAPE, np.float32)
    b = _buffers.empty(SHAPE, np.float32)
    assert a is not b  # a is still held
    a_id = id(a)
    del a
    c = _buffers.empty(SHAPE, np.float32)
    assert id(c) == a_id  # the idle one came back
    assert c.shape == SHAPE and c.dtype == np.float32 and c.flags.c_contiguous
    assert b is not c


def _hold(array, how):
    if how == "view":
        return array[1:]
    if how == "reshape":
        return array.reshape(-1)
    if how == "memoryview":
        return memoryview(array)
    return [array]


@pytest.mark.parametrize("hold", ["view", "reshape", "memoryview", "list"])
def test_any_reference_keeps_an_array_busy(pool, hold):
    a = _buffers.empty(SHAPE, np.float32)
    a[...] = 7.0
    keep = _hold(a, hold)
    del a
    for _ in range(3):
        other = _buffers.empty(SHAPE, np.float32)
        other[...] = -1.0
    values = np.asarray(keep[0] if hold == "list" else keep)
    assert (values == 7.0).all()


def test_other_shapes_and_dtypes_get_their_own_arrays(pool):
    a = _buffers.empty(SHAPE, np.float32)
    a_id = id(a)
    del a
    b = _buffers.empty((SHAPE[0] * 2, *SHAPE[1:]), np.float32)
    c = _buffers.empty(SHAPE, np.float64)
    assert id(b) != a_id and id(c) != a_id
    assert b.dtype == np.float32 and c.dtype == np.float64


def test_small_arrays_are_not_pooled(pool):
    small = _buffers.empty((10,), np.float32)
    assert small.nbytes < _buffers.MIN_BYTES
    assert pool.nbytes == 0


def test_the_pool_stays_within_its_budget(pool, monkeypatch):
    monkeypatch.setattr(settings, "buffer_pool_mb", 0.5)  # 4 arrays of 128 KiB
    held = [_buffers.empty(SHAPE, np.float32) for _ in range(10)]
    assert pool.nbytes <= 0.5 * 2**20
    assert len({id(a) for a in held}) == 10  # all distinct, all usable
    del held
    # Idle arrays of an old shape make room for a new shape.
    new = [_buffers.empty((32, 32, 8, 8), np.float64) for _ in range(3)]
    assert pool.nbytes <= 0.5 * 2**20
    assert any(key[0] == (32, 32, 8, 8) for key in pool._buckets)
    del new


def test_zero_budget_disables_the_pool(pool, monkeypatch):
    monkeypatch.setattr(settings, "buffer_pool_mb", 0.0)
    a = _buffers.empty(SHAPE, np.float32)
    del a
    assert pool.nbytes == 0


def test_release_forgets_everything_and_held_arrays_stay_valid(pool):
    a = _buffers.empty(SHAPE, np.float32)
    a[...] = 3.0
    assert pool.release() == a.nbytes
    assert pool.nbytes == 0
    b = _buffers.empty(SHAPE, np.float32)
    assert b is not a and (a == 3.0).all()


def test_concurrent_callers_never_share_an_array(pool):
    errors = []
    barrier = threading.Barrier(4)

    def worker(value):
        barrier.wait()
        for _ in range(300):
            a = _buffers.empty(SHAPE, np.float32)
            a[...] = value
            if not (a == value).all():
                errors.append(value)
            del a

    threads = [threading.Thread(target=worker, args=(float(v),)) for v in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_invalid_budget_setting_names_the_variable(monkeypatch):
    from fastcnn._config import Settings

    monkeypatch.setenv("FASTCNN_BUFFER_POOL_MB", "lots")
    with pytest.raises(ValueError, match="FASTCNN_BUFFER_POOL_MB"):
        Settings()


def _train(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    fastcnn.seed(0)
    model = fastcnn.models.lenet5()
    model.compile(fastcnn.optimizers.SGD(lr=0.05, momentum=0.9), "cross_entropy")
    losses = [model.train_step(x, y) for _ in range(4)]
    return losses, model.state_dict()


def test_training_is_bitwise_the_same_with_and_without_the_pool(monkeypatch):
    monkeypatch.setattr(settings, "buffer_pool_mb", 0.0)
    losses_off, state_off = _train(1)
    monkeypatch.setattr(settings, "buffer_pool_mb", 512.0)
    losses_on, state_on = _train(1)
    assert losses_on == losses_off
    for key in state_off:
        np.testing.assert_array_equal(state_on[key], state_off[key], err_msg=key)
