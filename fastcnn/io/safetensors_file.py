"""``.safetensors`` weights through the ``safetensors`` package's NumPy API.

An optional extra (``pip install "fastcnn[safetensors]"``), imported only when a
``.safetensors`` file is read or written. The format is a JSON header and raw bytes:
no code in it can run. fastcnn checks the header itself before the package reads
the file, so that every problem (a dtype NumPy lacks, such as bfloat16 or float8; a
shape NumPy cannot make; sizes that do not add up) is a ``ValueError`` naming the
file and the tensor. The tensors are copies of the file's bytes: the output is at
most the file's size, which is what is charged to ``max_bytes``.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from ._budget import Budget
from ._restricted_pickle import bounded_repr

#: The dtypes NumPy has, with their sizes in bytes.
_ITEMSIZES = {"F64": 8, "F32": 4, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
              "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
#: The package's own limit on the JSON header.
_MAX_HEADER = 100 << 20
#: The memory json.loads may take per header byte ({"a":0} makes a str and an
#: entry from 6 bytes), charged to the budget before parsing.
_HEADER_COST = 32
_MAX_NDIM = 64 if int(np.__version__.split(".")[0]) >= 2 else 32


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


def _read_header(label: str, path: str, budget: Budget) -> tuple[dict, int]:
    """The parsed JSON header and the size of the data that follows it."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little")
        if len(head) < 8 or length > min(size - 8, _MAX_HEADER):
            raise ValueError(f"{label} is not a valid .safetensors file (its "
                             f"header length {length} does not fit the file).")
        budget.take(_HEADER_COST * length, "the JSON header")
        text = handle.read(length)
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{label} is not a valid .safetensors file (its header "
                         f"is not JSON: {str(error)[:200]}).") from None
    if not isinstance(header, dict):
        raise ValueError(f"{label} is not a valid .safetensors file (its header "
                         f"is a {type(header).__name__}, not an object).")
    return header, size - 8 - length


def _check_entry(file_label: str, name, entry, data_size: int) -> None:
    """One tensor's header entry: a NumPy dtype, a shape NumPy can make, and
    offsets inside the data that hold exactly that many bytes."""
    label = f"{file_label}: tensor {bounded_repr(name)}"
    invalid = f"{file_label} is not a valid .safetensors file: tensor " \
              f"{bounded_repr(name)}"
    if not isinstance(entry, dict):
        raise ValueError(f"{invalid} is described by {bounded_repr(entry)}, not "
                         f"an object.")
    dtype, shape = entry.get("dtype"), entry.get("shape")
    offsets = entry.get("data_offsets")
    if dtype not in _ITEMSIZES:
        raise ValueError(
            f"{label} has dtype {bounded_repr(dtype)}, which NumPy has not (it reads "
            f"{', '.join(_ITEMSIZES)}); convert such tensors to float32 before "
            f"saving."
        )
    itemsize = _ITEMSIZES[dtype]
    if type(shape) is not list or len(shape) > _MAX_NDIM or not all(
        type(d) is int and d >= 0 for d in shape
    ) or math.prod(max(d, 1) for d in shape) * itemsize >= 2**63:
        raise ValueError(f"{label} has shape {bounded_repr(shape)}, which NumPy "
                         f"cannot make.")
    if type(offsets) is not list or len(offsets) != 2 or not all(
        type(o) is int for o in offsets
    ) or not 0 <= offsets[0] <= offsets[1] <= data_size:
        raise ValueError(f"{invalid} has data_offsets {bounded_repr(offsets)} "
                         f"outside the file's {data_size} bytes of data.")
    nbytes = math.prod(shape) * itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise ValueError(
            f"{invalid} has shape {bounded_repr(shape)} of {dtype} ({nbytes} bytes) "
            f"but data_offsets {bounded_repr(offsets)} hold "
            f"{offsets[1] - offsets[0]}."
        )


def read_safetensors(path: str | os.PathLike, max_bytes: int | None,
                     op: str = "load_weights") -> dict[str, np.ndarray]:
    """Read every tensor of a ``.safetensors`` file as a NumPy array.

    Shape: each array as stored.
    """
    st, safetensor_error = _safetensors_numpy(op)
    path = os.fspath(path)
    label = f"{op}: {path}"
    budget = Budget(op, path, max_bytes)
    # The tensors cannot be larger than the file that holds them.
    budget.take(os.path.getsize(path), "the file")
    header, data_size = _read_header(label, path, budget)
    for name, entry in header.items():
        if name != "__metadata__":
            _check_entry(label, name, entry, data_size)
    try:
        return dict(st.load_file(path))
    except (TypeError, AttributeError, ValueError) as error:
        # What the checks above should have caught: a dtype NumPy lacks surfaces
        # as TypeError or AttributeError (float8), a shape as NumPy's ValueError.
        raise ValueError(f"{label}: {str(error)[:200]}; convert such tensors to "
                         f"float32 before saving.") from None
    except safetensor_error as error:  # the header or the sizes are invalid
        raise ValueError(f"{label} is not a valid .safetensors file "
                         f"({str(error)[:200]}).") from None


def safetensors_bytes(arrays: dict[str, np.ndarray],
                      op: str = "save_weights") -> bytes:
    """``arrays`` as the bytes of a ``.safetensors`` file."""
    st, _ = _safetensors_numpy(op)
    return st.save(
        {k: np.ascontiguousarray(v) for k, v in arrays.items()})
