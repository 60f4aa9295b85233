"""fastcnn.datasets.Loader: batches, seeded order and transforms, memmaps, the
prefetch thread (overlap, no leak, errors reach the caller), and the composable
transforms."""

import gc
import threading
import time

import numpy as np
import pytest

from fastcnn.datasets import (
    Compose,
    Loader,
    RandomCrop,
    RandomFlip,
    random_crop,
    random_flip,
)


def _data(n=10):
    x = np.arange(n * 2 * 3 * 3, dtype=np.float32).reshape(n, 2, 3, 3)
    return x, np.arange(n)


def _loader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fastcnn-loader")]


@pytest.fixture(autouse=True)
def no_leaked_threads():
    yield
    gc.collect()
    assert _loader_threads() == []


@pytest.mark.parametrize("drop_last, expected", [(False, 4), (True, 3)])
def test_len_is_batches_per_epoch(drop_last, expected):
    x, y = _data(10)
    loader = Loader(x, y, batch_size=3, drop_last=drop_last)
    assert len(loader) == expected
    assert len(list(loader)) == expected
    assert [len(b[1]) for b in loader][-1] == (1 if not drop_last else 3)


@pytest.mark.parametrize("prefetch", [False, True])
def test_unshuffled_batches_are_the_rows_in_order(prefetch):
    x, y = _data(10)
    batches = list(Loader(x, y, batch_size=4, shuffle=False, prefetch=prefetch))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)


def test_each_epoch_is_a_new_permutation_reproducible_by_seed():
    x, y = _data(20)
    loader = Loader(x, y, batch_size=6, seed=5)
    first = np.concatenate([b[1] for b in loader])
    second = np.concatenate([b[1] for b in loader])
    assert sorted(first) == list(range(20)) and sorted(second) == list(range(20))
    assert not np.array_equal(first, second)
    again = Loader(x, y, batch_size=6, seed=5)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in again]), first)
    again.set_epoch(1)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in again]), second)
    assert again.epoch == 2
    other = np.concatenate([b[1] for b in Loader(x, y, batch_size=6, seed=6)])
    assert not np.array_equal(other, first)


def test_x_and_y_rows_stay_paired():
    x, y = _data(13)
    for xb, yb in Loader(x, y, batch_size=5, seed=1):
        np.testing.assert_array_equal(xb, x[yb])


def test_prefetch_gives_the_same_batches_as_serial():
    x, y = _data(17)
    transform = Compose([RandomCrop(padding=1), RandomFlip()])
    serial = list(Loader(x, y, 4, transform=transform, seed=3, prefetch=False))
    threaded = list(Loader(x, y, 4, transform=transform, seed=3, prefetch=True))
    assert len(serial) == len(threaded) == 5
    for (xa, ya), (xb, yb) in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_transform_gets_a_seeded_generator_per_batch():
    x, y = _data(8)
    seen = []

    def record(batch, rng):
        assert isinstance(rng, np.random.Generator)
        seen.append(rng.integers(1 << 30))
        return batch * 2

    loader = Loader(x, y, 4, shuffle=False, transform=record, seed=9, prefetch=False)
    out = list(loader)
    np.testing.assert_array_equal(out[0][0], x[:4] * 2)
    list(Loader(x, y, 4, shuffle=False, transform=record, seed=9))
    assert seen[:2] == seen[2:] and seen[0] != seen[1]


def test_memmap_streams_rows_as_plain_arrays(tmp_path):
    x, y = _data(12)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mapped = np.load(path, mmap_mode="r")
    assert isinstance(mapped, np.memmap)
    for shuffle in (False, True):
        batches = list(Loader(mapped, y, 5, shuffle=shuffle, seed=0))
        for xb, yb in batches:
            assert type(xb) is np.ndarray
            np.testing.assert_array_equal(xb, x[yb])
    del batches, mapped


def test_optional_y_and_sample_weight():
    x, y = _data(6)
    only_x = list(Loader(x, batch_size=4, shuffle=False))
    assert isinstance(only_x[0], np.ndarray) and only_x[0].shape == (4, 2, 3, 3)
    w = np.linspace(0, 1, 6)
    triples = list(Loader(x, y, 4, shuffle=False, sample_weight=w))
    assert len(triples[0]) == 3
    np.testing.assert_array_equal(triples[1][2], w[4:])


def test_thread_ends_on_exhaustion_close_and_collection():
    x, y = _data(40)
    loader = Loader(x, y, 2, seed=0)
    assert len(list(loader)) == 20
    assert _loader_threads() == []
    it = iter(loader)
    next(it)
    assert _loader_threads() and all(t.daemon for t in _loader_threads())
    it.close()
    assert _loader_threads() == []
    with pytest.raises(StopIteration):
        next(it)
    it = iter(loader)
    next(it)
    del it
    gc.collect()
    assert _loader_threads() == []


def test_prefetch_overlaps_the_consumer():
    """A transform and a step that each wait 20 ms: serial ~40 ms a batch,
    prefetched ~20 ms (sleeps release the GIL, as disk reads do)."""
    x, y = _data(8)

    def slow(batch, rng):
        time.sleep(0.02)
        return batch

    def epoch(prefetch):
        start = time.perf_counter()
        for _ in Loader(x, y, 1, transform=slow, prefetch=prefetch):
            time.sleep(0.02)  # the training step
        return time.perf_counter() - start

    serial, overlapped = epoch(False), epoch(True)
    assert overlapped < 0.8 * serial, (serial, overlapped)


@pytest.mark.parametrize("prefetch", [False, True])
def test_worker_exceptions_reach_the_caller(prefetch):
    x, y = _data(8)

    def broken(batch, rng):
        if batch[0, 0, 0, 0] > 0:
            raise ArithmeticError("transform failed on purpose")
        return batch

    it = iter(Loader(x, y, 4, shuffle=False, transform=broken, prefetch=prefetch))
    next(it)
    with pytest.raises(ArithmeticError, match="on purpose"):
        next(it)


def test_transforms_match_the_functions():
    x = np.random.default_rng(0).standard_normal((5, 1, 4, 4)).astype(np.float32)
    crop, flip = RandomCrop(size=3, padding=1), RandomFlip(p=0.7)
    np.testing.assert_array_equal(crop(x, np.random.default_rng(1)),
                                  random_crop(x, 3, 1, np.random.default_rng(1)))
    np.testing.assert_array_equal(flip(x, np.random.default_rng(2)),
                                  random_flip(x, np.random.default_rng(2), 0.7))
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(Compose([crop, flip])(x, rng_a),
                                  flip(crop(x, rng_b), rng_b))
    assert "RandomCrop" in repr(Compose([crop, flip]))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"x": [1, 2]}, TypeError, "x must be a numpy.ndarray"),
    ({"y": np.arange(3)}, ValueError, "y has 3"),
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"batch_size": 2.0}, TypeError, "batch_size must be an int"),
    ({"shuffle": 1}, TypeError, "shuffle must be a bool"),
    ({"transform": 3}, TypeError, "transform must be a callable"),
    ({"seed": -1}, ValueError, "seed must be an int"),
    ({"batch_size": 20, "drop_last": True}, ValueError, "leaves no batch"),
    ({"sample_weight": np.ones(4)}, ValueError, "sample_weight has 4"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    x, y = _data(10)
    args = {"x": x, "y": y, "batch_size": 3, **kwargs}
    with pytest.raises(error, match=match):
        Loader(**args)


def test_bad_transforms_are_named():
    with pytest.raises(TypeError, match=r"transforms\[1\]"):
        Compose([RandomFlip(), "flip"])
    with pytest.raises(ValueError, match="p must lie"):
        RandomFlip(p=2)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        RandomCrop(padding=-1)
