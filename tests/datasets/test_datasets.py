"""IDX parsing, dataset lookup, digits, normalisation, augmentation and batching.

Real MNIST and Fashion-MNIST come from the shared data folder (FASTCNN_DATA, or
../shared/data next to the repository); the tests that need them skip without it.
Malformed files are built here, small, so every failure mode runs in milliseconds.
"""

import gzip
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from fastcnn._config import settings
from fastcnn.datasets import (
    batches,
    channel_stats,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    normalize,
    random_crop,
    random_flip,
    read_idx_images,
    read_idx_labels,
    sha256_of,
    stratified_split,
)
from fastcnn.datasets import mnist as mnist_module

from ..data_paths import DATA

SHARED = DATA
needs_shared = pytest.mark.skipif(
    not (SHARED / "mnist").is_dir(), reason=f"shared data not found at {SHARED}"
)

# From the shared data README.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FILES = mnist_module.FILES


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    # Whatever the caller's environment says, these tests see no FASTCNN_DATA, a
    # private cache, and mirrors that refuse at once: nothing here touches the
    # network or ~/.cache.
    monkeypatch.setattr(settings, "data_dir", None)
    monkeypatch.setattr(settings, "cache_dir", str(tmp_path / "cache"))
    dead = ("http://127.0.0.1:1/",)
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", dead)
    monkeypatch.setattr(mnist_module, "FASHION_MNIST_MIRRORS", dead)


# ---- helpers that write IDX files -----------------------------------------------


def idx_bytes(magic: int, dims, payload: bytes | None = None) -> bytes:
    if payload is None:
        payload = (np.arange(int(np.prod(dims))) % 251).astype(np.uint8).tobytes()
    return struct.pack(f">I{len(dims)}I", magic, *dims) + payload


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def make_dataset(folder: Path, n_train: int, n_test: int, gz: bool = True,
                 side: int = 28) -> Path:
    """A tiny valid dataset; labels are i % 10 so counts identify the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write(folder / f"{prefix}-images-idx3-ubyte{suffix}",
              idx_bytes(2051, (n, side, side)), gz)
        labels = (np.arange(n) % 10).astype(np.uint8).tobytes()
        write(folder / f"{prefix}-labels-idx1-ubyte{suffix}",
              idx_bytes(2049, (n,), labels), gz)
    return folder


# ---- real data ------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist():
    if not (SHARED / "mnist").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return load_mnist(path=SHARED / "mnist", download=False)


@needs_shared
def test_real_mnist_counts_labels_dtype_and_range(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert np.bincount(y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == MNIST_TEST_COUNTS
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_test[:5].tolist() == [7, 2, 1, 0, 4]
    # Pixels are k/255 exactly as float32 rounds them.
    raw = read_idx_images(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(x_test[:, 0], raw.astype(np.float32) / 255)


@needs_shared
def test_real_fashion_mnist_counts_and_first_labels():
    # Through FASTCNN_DATA's subfolder layout, with the shared folder as its root.
    settings.data_dir = str(SHARED)
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(download=False)
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0


@needs_shared
@pytest.mark.parametrize("spec", [mnist_module.MNIST, mnist_module.FASHION_MNIST])
def test_shared_files_match_the_built_in_checksums(spec):
    for name, sha, size in zip(FILES, spec.sha256, spec.sizes, strict=True):
        path = SHARED / spec.subdir / name
        assert path.stat().st_size == size
        assert sha256_of(path) == sha


@needs_shared
def test_gzipped_and_raw_parse_identically_whatever_the_name(tmp_path):
    for name, reader in (("t10k-images-idx3-ubyte", read_idx_images),
                         ("t10k-labels-idx1-ubyte", read_idx_labels)):
        gz_path = SHARED / "mnist" / f"{name}.gz"
        raw = gzip.decompress(gz_path.read_bytes())
        # LeCun's dotted spelling, uncompressed; and a raw file misnamed ".gz".
        dotted = write(tmp_path / name.replace("-idx", ".idx"), raw)
        misnamed = write(tmp_path / f"{name}-raw.gz", raw)
        expected = reader(gz_path)
        np.testing.assert_array_equal(reader(dotted), expected)
        np.testing.assert_array_equal(reader(misnamed), expected)


# ---- malformed files ------------------------------------------------------------


def test_wrong_magic_names_the_file(tmp_path):
    path = write(tmp_path / "images.gz", idx_bytes(2049, (4,)), gz=True)
    with pytest.raises(ValueError, match=r"images\.gz.*wrong IDX magic.*2051.*2049"):
        read_idx_images(path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path, gz):
    data = idx_bytes(2051, (3, 28, 28))[:-100]
    path = write(tmp_path / "short", data, gz)
    with pytest.raises(ValueError, match=r"short.*truncated IDX"):
        read_idx_images(path)


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_data(tmp_path, gz):
    path = write(tmp_path / "long", idx_bytes(2049, (5,)) + b"\0", gz)
    with pytest.raises(ValueError, match=r"long.*longer than its IDX header"):
        read_idx_labels(path)


def test_truncated_header(tmp_path):
    path = write(tmp_path / "stub", struct.pack(">II", 2051, 3))
    with pytest.raises(ValueError, match=r"stub.*truncated IDX header"):
        read_idx_images(path)
    empty = write(tmp_path / "empty", b"")
    with pytest.raises(ValueError, match=r"empty.*not an IDX file"):
        read_idx_images(empty)


def test_truncated_gzip_stream(tmp_path):
    blob = gzip.compress(idx_bytes(2051, (20, 28, 28)), mtime=0)
    path = write(tmp_path / "cut.gz", blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"cut\.gz.*corrupt or truncated gzip"):
        read_idx_images(path)


def test_corrupt_gzip_stream(tmp_path):
    blob = bytearray(gzip.compress(idx_bytes(2049, (3000,)), mtime=0))
    blob[-6] ^= 0xFF  # inside the CRC32 / length trailer
    path = write(tmp_path / "bad.gz", bytes(blob))
    with pytest.raises(ValueError, match=r"bad\.gz.*corrupt or truncated gzip"):
        read_idx_labels(path)


@pytest.mark.parametrize("gz", [False, True])
def test_absurd_header_fails_fast_without_allocating(tmp_path, gz):
    # 10**12 pixels claimed, a handful present: the check must come before any
    # allocation of the claimed size and before reading the payload.
    header = struct.pack(">IIII", 2051, 10**6, 1000, 1000)
    path = write(tmp_path / "huge", header + b"\0" * 64, gz)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=rf"huge.*header claims.*{10**12} payload"):
            read_idx_images(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 1 << 20


def test_image_and_label_counts_must_agree(tmp_path):
    folder = make_dataset(tmp_path / "d", 5, 3)
    write(folder / "train-labels-idx1-ubyte.gz", idx_bytes(2049, (4,)), gz=True)
    with pytest.raises(ValueError, match=r"train-images.*5 images.*train-labels.*4"):
        load_mnist(path=folder, download=False)


def test_labels_out_of_range_and_wrong_image_size(tmp_path):
    folder = make_dataset(tmp_path / "d", 5, 3)
    write(folder / "t10k-labels-idx1-ubyte.gz",
          idx_bytes(2049, (3,), bytes([1, 2, 10])), gz=True)
    with pytest.raises(ValueError, match=r"t10k-labels.*0\.\.9, got 10"):
        load_mnist(path=folder, download=False)
    folder = make_dataset(tmp_path / "e", 5, 3, side=8)
    with pytest.raises(ValueError, match=r"must be 28x28, got 8x8"):
        load_mnist(path=folder, download=False)


# ---- lookup order ---------------------------------------------------------------


def test_raw_files_and_dtype(tmp_path):
    make_dataset(tmp_path / "raw", 5, 3, gz=False)
    (x, y), (xt, yt) = load_mnist(path=tmp_path / "raw", download=False,
                                  dtype=np.float64)
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float64
    assert xt.shape == (3, 1, 28, 28) and yt.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(x.ravel()[:300], (np.arange(300) % 251) / 255)
    with pytest.raises(ValueError, match="floating"):
        load_mnist(path=tmp_path / "raw", download=False, dtype=np.int32)


def test_path_then_data_dir_then_cache(tmp_path):
    make_dataset(tmp_path / "arg", 4, 1)
    make_dataset(tmp_path / "env" / "mnist", 5, 1)  # subfolder layout
    make_dataset(tmp_path / "flat", 7, 1)  # the four files directly
    make_dataset(tmp_path / "cache" / "mnist", 6, 1)  # not the published files
    settings.data_dir = str(tmp_path / "env")

    def n_train(**kwargs):
        return len(load_mnist(download=False, **kwargs)[0][1])

    assert n_train(path=tmp_path / "arg") == 4
    assert n_train(path=tmp_path / "missing") == 5  # falls through to FASTCNN_DATA
    settings.data_dir = str(tmp_path / "flat")
    assert n_train() == 7
    # The cache only serves files whose sha256 is the published one.
    settings.data_dir = None
    with pytest.raises(ValueError, match=r"cache.*corrupt.*sha256.*download=True"):
        load_mnist(download=False)


def test_missing_data_says_where_it_looked_and_what_to_do(tmp_path):
    settings.data_dir = str(tmp_path / "env")
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(path=tmp_path / "arg", download=False,
                           cache_dir=tmp_path / "c")
    message = str(info.value)
    for needle in ("Fashion-MNIST not found", str(tmp_path / "arg"),
                   str(tmp_path / "env" / "fashion-mnist"),
                   str(tmp_path / "c" / "fashion-mnist"), "FASTCNN_DATA", "path=",
                   "download=True"):
        assert needle in message


@needs_shared
def test_a_flat_folder_of_the_other_dataset_is_not_taken(tmp_path):
    # Same file names: a flat MNIST folder must not load as Fashion-MNIST.
    settings.data_dir = str(SHARED / "mnist")
    with pytest.raises(FileNotFoundError, match="holds MNIST instead"):
        load_fashion_mnist(download=False)


# ---- digits ---------------------------------------------------------------------


def test_load_digits():
    pytest.importorskip("sklearn")
    (x, y), (xt, yt) = load_digits()
    assert x.shape == (1438, 1, 8, 8) and xt.shape == (359, 1, 8, 8)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    # Stratified: every class has its ~20% share in the test part.
    counts = np.bincount(yt, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    (x2, y2), _ = load_digits(dtype=np.float64)
    assert x2.dtype == np.float64
    np.testing.assert_array_equal(y2, y)  # same seed, same split


def test_load_digits_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install fastcnn\[digits\]"):
        load_digits()


def test_stratified_split_partitions_and_is_seeded():
    y = np.repeat(np.arange(3), [10, 20, 30])
    train, test = stratified_split(y, 0.2, rng=7)
    assert np.bincount(y[test]).tolist() == [2, 4, 6]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(60))
    again = stratified_split(y, 0.2, rng=7)
    np.testing.assert_array_equal(again[0], train)


# ---- normalisation and augmentation ---------------------------------------------


def test_normalize_and_channel_stats(rng):
    x = rng.normal([[[[1.0]], [[-2.0]], [[5.0]]]], [[[[2.0]], [[0.5]], [[3.0]]]],
                   size=(64, 3, 6, 6)).astype(np.float32)
    mean, std = channel_stats(x)
    assert mean.shape == (3,) and std.shape == (3,)
    z = normalize(x, mean, std)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, rtol=1e-5)
    np.testing.assert_allclose(normalize(x, 0.5, 2.0), (x - 0.5) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="one per channel"):
        normalize(x, [0.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="positive"):
        normalize(x, 0.0, [1.0, 0.0, 1.0])


def _naive_crop(x, size, padding, seed):
    # Same draws as random_crop, then the obvious pad-and-slice per sample.
    gen = np.random.default_rng(seed)
    n, _, height, width = x.shape
    h, w = size
    oy = gen.integers(0, height + 2 * padding - h + 1, size=n)
    ox = gen.integers(0, width + 2 * padding - w + 1, size=n)
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return np.stack([padded[i, :, oy[i] : oy[i] + h, ox[i] : ox[i] + w]
                     for i in range(n)])


@pytest.mark.parametrize("size,padding", [(None, 4), ((5, 7), 2), (3, 0), (9, 1)])
def test_random_crop_matches_pad_then_slice(rng, size, padding):
    x = rng.random((40, 2, 7, 8), dtype=np.float32)
    out = random_crop(x, size=size, padding=padding, rng=11)
    hw = (7, 8) if size is None else (size, size) if isinstance(size, int) else size
    np.testing.assert_array_equal(out, _naive_crop(x, hw, padding, 11))
    assert out.dtype == x.dtype and out.shape == (40, 2, *hw)


def test_augmentation_is_seeded_shape_preserving_and_copies(rng):
    x = rng.random((32, 1, 6, 6))
    before = x.copy()
    a = random_crop(x, padding=2, rng=3)
    assert a.shape == x.shape
    np.testing.assert_array_equal(a, random_crop(x, padding=2, rng=3))
    np.testing.assert_array_equal(
        a, random_crop(x, padding=2, rng=np.random.default_rng(3))
    )
    assert not np.array_equal(a, random_crop(x, padding=2, rng=4))
    np.testing.assert_array_equal(random_crop(x, padding=0, rng=3), x)
    f = random_flip(x, rng=5)
    np.testing.assert_array_equal(f, random_flip(x, rng=5))
    flipped = np.array([np.array_equal(f[i], x[i, :, :, ::-1]) for i in range(32)])
    kept = np.array([np.array_equal(f[i], x[i]) for i in range(32)])
    assert (flipped | kept).all() and flipped.any() and kept.any()
    np.testing.assert_array_equal(random_flip(x, rng=5, p=0.0), x)
    np.testing.assert_array_equal(random_flip(x, rng=5, p=1.0), x[..., ::-1])
    assert random_flip(x, rng=5, p=0.0) is not x
    np.testing.assert_array_equal(x, before)
    with pytest.raises(ValueError, match=r"4-D array \(N, C, H, W\)"):
        random_flip(x[0], rng=1)
    with pytest.raises(TypeError, match="rng must be"):
        random_crop(x, rng="seed")


def test_batches(rng):
    x = np.arange(10)[:, None] * np.ones((1, 3))
    y = np.arange(10)
    plain = list(batches(x, y, batch_size=4))
    assert [len(b) for b, _ in plain] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b for _, b in plain]), y)
    shuffled = [b for _, b in batches(x, y, 4, shuffle=True, rng=2)]
    order = np.concatenate(shuffled)
    assert sorted(order.tolist()) == list(range(10))
    assert order.tolist() != list(range(10))
    again = np.concatenate([b for _, b in batches(x, y, 4, shuffle=True, rng=2)])
    np.testing.assert_array_equal(order, again)
    assert [len(b) for b, _ in batches(x, y, 4, drop_last=True)] == [4, 4]
    assert all(b is None for _, b in batches(x, batch_size=3))
    with pytest.raises(ValueError, match="x has 10 samples but y has 9"):
        next(batches(x, y[:9]))

