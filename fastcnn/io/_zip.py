"""What :mod:`zipfile` raises on a corrupt archive, beyond ``BadZipFile``."""

from __future__ import annotations

import zipfile
import zlib

#: Mangled headers surface as unsupported versions, compression methods or flags
#: (NotImplementedError), "encrypted" members (RuntimeError), seeks to negative
#: offsets (OSError), short reads (EOFError) and bad deflate streams (zlib.error).
ZIP_ERRORS = (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError,
              EOFError, zlib.error)
