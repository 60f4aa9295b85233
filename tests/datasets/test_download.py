"""The real download code against a loopback HTTP server serving the shared data.

The server listens on 127.0.0.1 only, on a port the OS picks; its routes choose the
behaviour: ``/ok/`` serves the files, ``/corrupt/`` flips one byte, ``/long/`` sends
extra bytes, ``/error/`` answers 500, ``/missing/`` answers 404 and ``/slow/`` never
answers. Every request is bounded by a timeout and the server is shut down, closed
and its threads joined in the fixture's finaliser.
"""

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from fastcnn._config import settings
from fastcnn.datasets import DownloadError, download_file, load_mnist
from fastcnn.datasets import download as download_module
from fastcnn.datasets import mnist as mnist_module

from ..data_paths import DATA

SHARED = DATA
pytestmark = pytest.mark.skipif(
    not (SHARED / "mnist").is_dir(), reason=f"shared data not found at {SHARED}"
)

MNIST = mnist_module.MNIST
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
LABELS = "t10k-labels-idx1-ubyte.gz"  # the smallest file, for the per-file cases


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format, *args):  # keep the test output clean
        pass

    def do_GET(self):
        self.server.hits.append(self.path)
        mode, _, rest = self.path.lstrip("/").partition("/")
        if mode == "error":
            self.send_error(500, "boom")
            return
        if mode == "slow":
            # Hold the connection without answering until the test ends.
            self.server.stopping.wait(10)
            return
        file = (SHARED / rest).resolve()
        if mode == "missing" or SHARED.resolve() not in file.parents or \
                not file.is_file():
            self.send_error(404)
            return
        body = bytearray(file.read_bytes())
        if mode == "corrupt":
            body[len(body) // 2] ^= 0xFF
        elif mode == "long":
            body += b"\0" * 1000
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    # Join handler threads on server_close(), so none outlives the test.
    daemon_threads = False
    block_on_close = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []
        self.stopping = threading.Event()

    def url(self, mode: str, dataset: str = "mnist") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{mode}/{dataset}/"


@pytest.fixture
def server(monkeypatch, tmp_path):
    # No proxy for loopback, whatever the environment says; short waits between
    # retries; no FASTCNN_DATA and a private cache.
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(download_module, "BACKOFF_S", 0.01)
    monkeypatch.setattr(download_module, "TIMEOUT_S", 10.0)
    monkeypatch.setattr(settings, "data_dir", None)
    monkeypatch.setattr(settings, "cache_dir", str(tmp_path / "default-cache"))
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield srv
    srv.stopping.set()
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


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
