"""A loopback HTTP server for the download tests, and the environment they run in.

The server listens on 127.0.0.1 only, on a port the OS picks. The first part of a
request's path picks the behaviour: ``/ok/`` serves the file, ``/corrupt/`` flips
one byte, ``/long/`` sends 1000 extra bytes, ``/error/`` answers 500,
``/missing/`` answers 404 and ``/slow/`` never answers; the rest of the path is
handed to ``read``, which returns the file's bytes or None (404). The server is
shut down, closed and its handler threads joined when ``serving`` ends.
"""

import threading
from collections.abc import Callable
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fastcnn._config import settings
from fastcnn.datasets import download as download_module


class _Handler(BaseHTTPRequestHandler):
    server: "Server"

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
        body = None if mode == "missing" else self.server.read(rest)
        if body is None:
            self.send_error(404)
            return
        body = bytearray(body)
        if mode == "corrupt":
            body[len(body) // 2] ^= 0xFF
        elif mode == "long":
            body += b"\0" * 1000
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    # Join handler threads on server_close(), so none outlives the test.
    daemon_threads = False
    block_on_close = True

    def __init__(self, read: Callable[[str], bytes | None], folder: str = ""):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.read = read
        self.folder = folder
        self.hits: list[str] = []
        self.stopping = threading.Event()

    def url(self, mode: str, folder: str | None = None) -> str:
        """A mirror's base URL (ending in /) with behaviour ``mode``."""
        folder = self.folder if folder is None else folder
        return f"http://127.0.0.1:{self.server_address[1]}/{mode}/" + (
            f"{folder}/" if folder else "")


def isolate(monkeypatch, tmp_path) -> None:
    """No proxy for loopback, whatever the environment says; short waits between
    retries; no FASTCNN_DATA and a private default cache."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(download_module, "BACKOFF_S", 0.01)
    monkeypatch.setattr(download_module, "TIMEOUT_S", 10.0)
    monkeypatch.setattr(settings, "data_dir", None)
    monkeypatch.setattr(settings, "cache_dir", str(tmp_path / "default-cache"))


@contextmanager
def serving(read: Callable[[str], bytes | None], folder: str = ""):
    """A running :class:`Server`, stopped and joined on exit."""
    srv = Server(read, folder)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.stopping.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)
