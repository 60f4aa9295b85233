"""load_cifar10 on small synthetic archives: served from a loopback HTTP server
(download, verify, cache), found in folders, and hostile or broken ones refused.

The archives have the official layout (``cifar-10-batches-bin/`` with five
training batches and a test batch of 3073-byte records) but a few records each;
``CIFAR10_ARCHIVE`` is patched to their sha256 and size. The server is
``loopback.py``'s.
"""

import hashlib
import io
import os
import tarfile

import numpy as np
import pytest

from fastcnn._config import settings
from fastcnn.datasets import CIFAR10_CLASSES, DownloadError, load_cifar10
from fastcnn.datasets import cifar as cifar_module

from .loopback import isolate, serving

RECORD = 3073
TRAIN_SIZES = (3, 4, 2, 5, 3)
TEST_SIZE = 4


def _records(rng, count, labels=None):
    out = rng.integers(0, 256, (count, RECORD), dtype=np.uint8)
    out[:, 0] = rng.integers(0, 10, count) if labels is None else labels
    return out


def _make_batches(seed=0):
    rng = np.random.default_rng(seed)
    names = [*cifar_module.TRAIN_FILES, cifar_module.TEST_FILE]
    sizes = [*TRAIN_SIZES, TEST_SIZE]
    return {name: _records(rng, n) for name, n in zip(names, sizes, strict=True)}


def _tar_gz(members: dict[str, bytes], symlinks=()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in symlinks:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def _archive_bytes(batches) -> bytes:
    return _tar_gz({f"{cifar_module.MEMBER_DIR}/{name}": records.tobytes()
                    for name, records in batches.items()})


def _expected(batches, names):
    records = np.concatenate([batches[n] for n in names])
    images = records[:, 1:].reshape(-1, 3, 32, 32).astype(np.float64) / 255
    return images, records[:, 0].astype(np.int64)


def _use_archive(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(cifar_module, "CIFAR10_ARCHIVE", cifar_module.Archive(
        "cifar-10-binary.tar.gz", hashlib.sha256(data).hexdigest(), len(data)))


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No FASTCNN_DATA, a private default cache, short retry waits."""
    isolate(monkeypatch, tmp_path)


@pytest.fixture
def server(isolated, monkeypatch):
    batches = _make_batches()
    data = _archive_bytes(batches)
    _use_archive(monkeypatch, data)
    files = {"cifar-10-binary.tar.gz": data}
    with serving(files.get) as srv:
        srv.batches = batches
        yield srv


def _check(loaded, batches, dtype=np.float32):
    (x, y), (xt, yt) = loaded
    want_x, want_y = _expected(batches, cifar_module.TRAIN_FILES)
    want_xt, want_yt = _expected(batches, [cifar_module.TEST_FILE])
    assert x.shape == (sum(TRAIN_SIZES), 3, 32, 32) and x.dtype == dtype
    assert xt.shape == (TEST_SIZE, 3, 32, 32) and xt.dtype == dtype
    assert y.dtype == yt.dtype == np.int64
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(yt, want_yt)
    np.testing.assert_allclose(x, want_x, rtol=1e-6, atol=0)
    np.testing.assert_allclose(xt, want_xt, rtol=1e-6, atol=0)


def test_channels_are_the_red_green_blue_planes_of_each_record(server, tmp_path):
    (x, _), _ = load_cifar10(cache_dir=tmp_path / "c", mirrors=(server.url("ok"),),
                             verbose=False)
    record = server.batches[cifar_module.TRAIN_FILES[0]][0]
    assert x[0, 0, 0, 0] == np.float32(record[1] / 255)  # red, top left
    assert x[0, 1, 0, 0] == np.float32(record[1 + 1024] / 255)  # green
    assert x[0, 2, 31, 31] == np.float32(record[3072] / 255)  # blue, bottom right
    assert x[0, 0, 1, 0] == np.float32(record[1 + 32] / 255)  # second row


def test_download_into_empty_cache_then_load_from_cache(server, tmp_path):
    cache = tmp_path / "cache"
    _check(load_cifar10(cache_dir=cache, mirrors=(server.url("ok"),), verbose=False),
           server.batches)
    assert sorted(os.listdir(cache / "cifar-10")) == ["cifar-10-binary.tar.gz"]
    assert len(server.hits) == 1
    # Again, from the re-verified cache: no request (the mirror would fail).
    _check(load_cifar10(cache_dir=cache, mirrors=(server.url("error"),),
                        verbose=False), server.batches)
    assert len(server.hits) == 1


def test_default_mirrors_and_cache_come_from_module_and_settings(
    server, tmp_path, monkeypatch
):
    monkeypatch.setattr(cifar_module, "CIFAR10_MIRRORS", (server.url("ok"),))
    _check(load_cifar10(verbose=False, dtype=np.float64), server.batches, np.float64)
    assert os.listdir(tmp_path / "default-cache" / "cifar-10") == [
        "cifar-10-binary.tar.gz"]


def test_corrupted_download_leaves_nothing_behind(server, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        load_cifar10(cache_dir=cache, mirrors=(server.url("corrupt"),), verbose=False)
    assert os.listdir(cache / "cifar-10") == []


def test_missing_without_download_says_where_it_looked(server, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 not found.*cache"):
        load_cifar10(path=tmp_path / "nowhere", download=False,
                     cache_dir=tmp_path / "c", mirrors=(server.url("ok"),))
    assert server.hits == []


def test_corrupt_cached_archive_is_refused_then_replaced(server, tmp_path):
    folder = tmp_path / "c" / "cifar-10"
    folder.mkdir(parents=True)
    (folder / "cifar-10-binary.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(ValueError, match="corrupt"):
        load_cifar10(cache_dir=tmp_path / "c", download=False)
    _check(load_cifar10(cache_dir=tmp_path / "c", mirrors=(server.url("ok"),),
                        verbose=False), server.batches)


@pytest.mark.parametrize("layout", ["flat", "batches-dir", "subdir-archive"])
def test_found_in_a_folder_or_fastcnn_data(isolated, tmp_path, monkeypatch, layout):
    batches = _make_batches(seed=1)
    root = tmp_path / "data"
    if layout == "subdir-archive":
        (root / "cifar-10").mkdir(parents=True)
        (root / "cifar-10" / "cifar-10-binary.tar.gz").write_bytes(
            _archive_bytes(batches))
        monkeypatch.setattr(settings, "data_dir", str(root))
        loaded = load_cifar10(download=False)
    else:
        folder = root / "cifar-10-batches-bin" if layout == "batches-dir" else root
        folder.mkdir(parents=True)
        for name, records in batches.items():
            (folder / name).write_bytes(records.tobytes())
        loaded = load_cifar10(path=root, download=False)
    _check(loaded, batches)


def _write_archive(tmp_path, members, symlinks=()):
    root = tmp_path / "hostile"
    root.mkdir()
    (root / "cifar-10-binary.tar.gz").write_bytes(_tar_gz(members, symlinks))
    return root


def _members(batches):
    return {f"cifar-10-batches-bin/{n}": r.tobytes() for n, r in batches.items()}


def test_archive_missing_a_batch(isolated, tmp_path):
    members = _members(_make_batches())
    del members["cifar-10-batches-bin/test_batch.bin"]
    with pytest.raises(ValueError, match="has no cifar-10-batches-bin/test_batch.bin"):
        load_cifar10(path=_write_archive(tmp_path, members), download=False)


def test_batch_that_is_a_symlink(isolated, tmp_path):
    members = _members(_make_batches())
    del members["cifar-10-batches-bin/data_batch_3.bin"]
    root = _write_archive(tmp_path, members, symlinks=[
        ("cifar-10-batches-bin/data_batch_3.bin", "/etc/passwd")])
    with pytest.raises(ValueError, match="data_batch_3.bin: is not a regular file"):
        load_cifar10(path=root, download=False)


def test_truncated_batch(isolated, tmp_path):
    members = _members(_make_batches())
    members["cifar-10-batches-bin/data_batch_2.bin"] += b"\0" * 100
    with pytest.raises(ValueError, match="data_batch_2.bin: not a CIFAR-10 binary "
                                         "batch"):
        load_cifar10(path=_write_archive(tmp_path, members), download=False)


def test_labels_of_another_dataset(isolated, tmp_path):
    batches = _make_batches()
    batches["test_batch.bin"][1, 0] = 57
    with pytest.raises(ValueError, match=r"labels must lie in 0..9, got 57.*CIFAR-100"):
        load_cifar10(path=_write_archive(tmp_path, _members(batches)), download=False)


def test_oversized_member_is_refused_before_reading(isolated, tmp_path, monkeypatch):
    monkeypatch.setattr(cifar_module, "_MAX_BATCH_BYTES", 4 * RECORD)
    with pytest.raises(ValueError, match="data_batch_4.bin: 15365 bytes is more"):
        load_cifar10(path=_write_archive(tmp_path, _members(_make_batches())),
                     download=False)


def test_not_an_archive(isolated, tmp_path):
    root = tmp_path / "junk"
    root.mkdir()
    (root / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b" + b"x" * 100)
    with pytest.raises(ValueError, match="not a readable CIFAR-10 archive"):
        load_cifar10(path=root, download=False)


def test_nothing_is_extracted_even_from_a_traversing_archive(isolated, tmp_path):
    members = _members(_make_batches())
    members["../../escaped.txt"] = b"owned"
    root = _write_archive(tmp_path, members)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    load_cifar10(path=root, download=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_dtype_must_be_floating(isolated, tmp_path):
    with pytest.raises(ValueError, match="dtype must be a floating type"):
        load_cifar10(path=tmp_path, download=False, dtype=np.uint8)


def test_class_names():
    assert len(CIFAR10_CLASSES) == 10
    assert CIFAR10_CLASSES[0] == "airplane" and CIFAR10_CLASSES[9] == "truck"


def test_readme_recipe_runs_on_a_synthetic_archive(isolated, tmp_path, monkeypatch,
                                                   capsys):
    """The README's CIFAR-10 recipe (its ``py`` block), with the download served
    from FASTCNN_DATA's stand-in archive and fewer epochs."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### CIFAR-10", 1)[1]
    code = re.search(r"```py\n(.*?)```", section, flags=re.S).group(1)
    assert "epochs=30" in code and "load_cifar10()" in code
    batches = _make_batches(seed=2)
    (tmp_path / "data" / "cifar-10").mkdir(parents=True)
    (tmp_path / "data" / "cifar-10" / "cifar-10-binary.tar.gz").write_bytes(
        _archive_bytes(batches))
    monkeypatch.setattr(settings, "data_dir", str(tmp_path / "data"))
    namespace = {"__name__": "__readme__"}
    exec(compile(code.replace("epochs=30", "epochs=2"), "README CIFAR-10", "exec"),
         namespace)
    assert namespace["x"].shape == (sum(TRAIN_SIZES), 3, 32, 32)
    assert "accuracy" in capsys.readouterr().out
