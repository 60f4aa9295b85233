"""``.safetensors`` weights through the ``safetensors`` package's NumPy API.

An optional extra (``pip install "fastcnn[safetensors]"``), imported only when a
``.safetensors`` file is read or written. The format is a JSON header and raw bytes:
no code in it can run.
"""

from __future__ import annotations

import os

import numpy as np

from ._budget import Budget


def _safetensors_numpy(op: str):
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ImportError(
            f'{op}: .safetensors files need the safetensors package: pip install '
            f'"fastcnn[safetensors]".'
        ) from None
    return safetensors.numpy, safetensors.SafetensorError


def read_safetensors(path: str | os.PathLike, max_bytes: int,
                     op: str = "load_weights") -> dict[str, np.ndarray]:
    """Read every tensor of a ``.safetensors`` file as a NumPy array.

    Shape: each array as stored.
    """
    st, safetensor_error = _safetensors_numpy(op)
    path = os.fspath(path)
    # The tensors cannot be larger than the file that holds them.
    Budget(op, path, max_bytes).take(os.path.getsize(path), "the file")
    try:
        return dict(st.load_file(path))
    except TypeError as error:  # e.g. bfloat16, which NumPy has no dtype for
        raise ValueError(f"{op}: {path}: {error}; convert such tensors to float32 "
                         f"before saving.") from None
    except safetensor_error as error:  # the header or the sizes are invalid
        raise ValueError(f"{op}: {path} is not a valid .safetensors file "
                         f"({error}).") from None


def safetensors_bytes(arrays: dict[str, np.ndarray],
                      op: str = "save_weights") -> bytes:
    """``arrays`` as the bytes of a ``.safetensors`` file."""
    st, _ = _safetensors_numpy(op)
    return st.save(
        {k: np.ascontiguousarray(v) for k, v in arrays.items()})
