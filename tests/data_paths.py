"""Where the tests find the real datasets: one variable, ``FASTCNN_DATA`` (the one
the library's loaders read), else ``../shared/data`` next to the repository. The
folder holds ``mnist/`` and ``fashion-mnist/`` with the original IDX files."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """``$FASTCNN_DATA`` when set and not empty, else ``../shared/data``."""
    value = os.environ.get("FASTCNN_DATA")
    return Path(value) if value else REPO.parent / "shared" / "data"


#: The root, read once at import (tests patch the library's setting, not this).
DATA = data_root()
