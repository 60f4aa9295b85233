"""The real download code against a loopback HTTP server serving the shared data
(``loopback.py``: its routes choose the behaviour, ``/ok/``, ``/corrupt/``,
``/long/``, ``/error/``, ``/missing/``, ``/slow/``). Every request is bounded by a
timeout and the server is stopped and joined when the test ends.
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from fastcnn.datasets import DownloadError, download_file, load_mnist
from fastcnn.datasets import download as download_module
from fastcnn.datasets import mnist as mnist_module

from ..data_paths import DATA
from .loopback import isolate, serving

SHARED = DATA
pytestmark = pytest.mark.skipif(
    not (SHARED / "mnist").is_dir(), reason=f"shared data not found at {SHARED}"
)

MNIST = mnist_module.MNIST
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
LABELS = "t10k-labels-idx1-ubyte.gz"  # the smallest file, for the per-file cases


def _shared_file(rest: str) -> bytes | None:
    """A file under the shared data folder, or None (outside it, or absent)."""
    file = (SHARED / rest).resolve()
    if SHARED.resolve() not in file.parents or not file.is_file():
        return None
    return file.read_bytes()


@pytest.fixture
def server(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)
    with serving(_shared_file, folder="mnist") as srv:
        yield srv


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_download_into_empty_cache_then_load(server, tmp_path):
    cache = tmp_path / "cache"
    (x, y), (xt, yt) = load_mnist(cache_dir=cache, mirrors=(server.url("ok"),),
                                  verbose=False)
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    assert np.bincount(y).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(yt).tolist() == MNIST_TEST_COUNTS
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    # Exactly the four files, no temporary leftovers.
    assert _listing(cache / "mnist") == sorted(mnist_module.FILES)
    assert len(server.hits) == 4
    # Loaded again from the (re-verified) cache: no request at all.
    load_mnist(cache_dir=cache, mirrors=(server.url("error"),), verbose=False)
    assert len(server.hits) == 4


def test_default_mirrors_and_cache_come_from_module_and_settings(
    server, tmp_path, monkeypatch
):
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", (server.url("ok"),))
    _, (_, yt) = load_mnist(verbose=False)
    assert np.bincount(yt).tolist() == MNIST_TEST_COUNTS
    assert _listing(tmp_path / "default-cache" / "mnist") == sorted(mnist_module.FILES)


def test_corrupted_download_leaves_nothing_behind(server, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"train-images.*sha256 mismatch"):
        load_mnist(cache_dir=cache, mirrors=(server.url("corrupt"),), verbose=False)
    assert _listing(cache / "mnist") == []
    # A mismatch is not retried against the same mirror.
    assert len(server.hits) == 1


def test_oversized_download_is_cut_off(server, tmp_path):
    with pytest.raises(DownloadError, match="more than the expected 4542 bytes"):
        download_file(LABELS, MNIST.sha256[3], [server.url("long")], tmp_path,
                      size=MNIST.sizes[3], verbose=False)
    assert _listing(tmp_path) == []


def test_server_error_retries_a_bounded_number_of_times(server, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as info:
        load_mnist(cache_dir=cache, mirrors=(server.url("error"),), verbose=False)
    message = str(info.value)
    assert "HTTP Error 500" in message and "try 3/3" in message
    assert len(server.hits) == download_module.RETRIES == 3
    assert _listing(cache / "mnist") == []


def test_not_found_moves_on_without_retrying(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP Error 404"):
        download_file(LABELS, MNIST.sha256[3], [server.url("missing")], tmp_path,
                      verbose=False)
    assert len(server.hits) == 1


def test_first_mirror_failing_second_succeeding(server, tmp_path):
    mirrors = [server.url("error"), server.url("corrupt"), server.url("ok")]
    path = download_file(LABELS, MNIST.sha256[3], mirrors, tmp_path, retries=2,
                         verbose=False)
    assert path == str(tmp_path / LABELS)
    assert [hit.split("/")[1] for hit in server.hits] == [
        "error", "error", "corrupt", "ok"
    ]
    assert _listing(tmp_path) == [LABELS]


def test_timeout_bounds_a_silent_server(server, tmp_path):
    with pytest.raises(DownloadError, match="timed out"):
        download_file(LABELS, MNIST.sha256[3], [server.url("slow")], tmp_path,
                      retries=1, timeout=0.2, verbose=False)
    assert _listing(tmp_path) == []


def test_corrupt_cached_file_is_rejected_and_replaced(server, tmp_path):
    folder = tmp_path / "cache" / "mnist"
    folder.mkdir(parents=True)
    for name in mnist_module.FILES:
        (folder / name).write_bytes((SHARED / "mnist" / name).read_bytes())
    (folder / LABELS).write_bytes(b"not the labels")
    with pytest.raises(ValueError, match=rf"{LABELS}.*corrupt.*download=True"):
        load_mnist(cache_dir=tmp_path / "cache", download=False)
    _, (_, yt) = load_mnist(cache_dir=tmp_path / "cache",
                            mirrors=(server.url("ok"),), verbose=False)
    assert np.bincount(yt).tolist() == MNIST_TEST_COUNTS
    assert [hit.rsplit("/", 1)[1] for hit in server.hits] == [LABELS]


def test_missing_data_without_download_makes_no_request(server, tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_mnist(cache_dir=tmp_path / "cache", download=False,
                   mirrors=(server.url("ok"),))
    assert server.hits == []


@pytest.mark.parametrize("tqdm_installed", [True, False])
def test_progress_bar_on_stderr_only_when_verbose(server, tmp_path, capsys,
                                                  monkeypatch, tqdm_installed):
    if tqdm_installed:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now fails
    url = [server.url("ok")]
    download_file(LABELS, MNIST.sha256[3], url, tmp_path / "a", verbose=True)
    out, err = capsys.readouterr()
    assert out == "" and "t10k-labels" in err
    if not tqdm_installed:
        assert "4.5 kB of 4.5 kB (100%)" in err
    download_file(LABELS, MNIST.sha256[3], url, tmp_path / "b", verbose=False)
    assert capsys.readouterr() == ("", "")
