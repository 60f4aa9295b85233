"""The per-epoch progress bar of ``fit(verbose=1)``: tqdm when installed, else plain.

tqdm is an optional dependency (``fastcnn[progress]``); the fallback prints one line
per epoch, rewritten in place with ``\\r`` while the epoch runs, so logs stay short.
"""

from __future__ import annotations

import sys
import time


def _format(values: dict) -> str:
    parts = []
    for key, value in values.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


class _PlainBar:
    """A minimal stand-in for tqdm: ``update``, ``set_postfix`` and ``close``."""

    def __init__(self, total: int | None, desc: str, file=None,
                 min_interval: float = 0.5):
        self.total = total
        self.desc = desc
        self.n = 0
        self.postfix: dict = {}
        self.file = sys.stderr if file is None else file
        self.min_interval = min_interval
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last >= self.min_interval or (
                self.total is not None and self.n >= self.total):
            self._last = now
            self._draw(end="")

    def set_postfix(self, values: dict, refresh: bool = True) -> None:
        self.postfix = dict(values)

    def _draw(self, end: str) -> None:
        if self.total is None:  # a stream of unknown length
            line = f"\r{self.desc} {self.n}"
        else:
            width = len(str(self.total))
            line = f"\r{self.desc} {self.n:>{width}}/{self.total}"
        if self.postfix:
            line += " " + _format(self.postfix)
        print(line, end=end, file=self.file, flush=True)

    def close(self) -> None:
        self._draw(end="\n")


class ProgressBar:
    """Progress over the batches of one epoch.

    Parameters
    ----------
    total : int or None
        Number of batches in the epoch (None: unknown, a stream's).
    desc : str
        Label shown before the bar, e.g. ``"Epoch 3/10"``.
    file : file-like, optional
        Where to write (default: standard error, as tqdm does).

    Shape: no arrays.
    """

    def __init__(self, total: int | None, desc: str, file=None):
        try:
            from tqdm import tqdm
        except ImportError:
            self._bar = _PlainBar(total, desc, file=file)
        else:
            self._bar = tqdm(total=total, desc=desc, file=file, unit="batch",
                             leave=True, dynamic_ncols=True)
        self._start = time.perf_counter()
        self._samples = 0
        self._values: dict = {}

    def update(self, samples: int, **values) -> None:
        """Advance by one batch of ``samples`` images and show ``values`` with the
        throughput in images per second."""
        self._samples += samples
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        self._values = {**values, "img/s": round(self._samples / elapsed)}
        self._bar.set_postfix(self._values, refresh=False)
        self._bar.update(1)

    def close(self, **values) -> None:
        """Show the final ``values`` (e.g. validation metrics) and end the line."""
        if values:
            self._values.update(values)
            self._bar.set_postfix(self._values, refresh=False)
        self._bar.close()
