"""PyTorch ``.pth`` / ``.pt`` state dicts, read without torch and without running
anything from the file.

``torch.save`` (since 1.6) writes a zip archive: ``<root>/data.pkl`` (the pickled
structure, tensors as persistent ids), ``<root>/data/<key>`` (each storage's raw
bytes), ``<root>/byteorder`` ("little" or "big") and ``<root>/version``. The pickle is
interpreted by :mod:`fastcnn.io._restricted_pickle`; storages are read with
:mod:`zipfile`, never extracted, and every size is checked against ``max_bytes``
and the archive's real member sizes before anything is allocated. The archive is
opened, vetted and read by :mod:`fastcnn._safezip`, the code that reads fastcnn's own
model files (unsafe or duplicate names, encryption, zip bombs, corrupt members).
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from .._safezip import open_zip, read_member
from ._budget import Budget
from ._restricted_pickle import StorageRef, TensorSpec, UnsafePickleError, loads

#: The legacy (pre-1.6, ``_use_new_zipfile_serialization=False``) format starts with
#: a pickled magic number: PROTO 2, LONG1 of 10 bytes, 0x1950A86A20F9469CFC6C.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _root(op: str, path: str, archive: zipfile.ZipFile) -> str:
    # Duplicate and unsafe names were refused by open_zip.
    names = archive.namelist()
    pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise ValueError(
            f"{op}: {path} is a zip file but not a torch.save archive (expected one "
            f"'<name>/data.pkl', found {len(pickles)})."
        )
    return pickles[0][: -len("data.pkl")]


def _read_member(op, path, archive, name, expected: int | None, budget, what,
                 limit: int = 2**62):
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValueError(f"{op}: {path} lacks {name} ({what}).") from None
    if expected is None and info.file_size > limit:
        raise ValueError(f"{op}: {path}: {name} holds {info.file_size} bytes, more "
                         f"than {what} can need.")
    if expected is not None and info.file_size != expected:
        raise ValueError(
            f"{op}: {path}: {what} claims {expected} bytes but {name} holds "
            f"{info.file_size}."
        )
    budget.take(info.file_size, what)
    return read_member(archive, name, f"{op}: {path}")


def _byteorder(op, path, archive, root, budget) -> str:
    name = root + "byteorder"
    if name not in archive.namelist():
        return "<"  # written only since torch 1.10; before, little-endian machines
    text = bytes(_read_member(op, path, archive, name, None, budget, "the byteorder",
                              limit=16))
    order = {b"little": "<", b"big": ">"}.get(text.strip())
    if order is None:
        raise ValueError(f"{op}: {path} has an unknown byteorder {text[:20]!r}.")
    return order


def _storage_array(raw: bytes, ref: StorageRef, order: str) -> np.ndarray:
    if ref.dtype == "bfloat16":
        # bfloat16 is the top half of a float32: widening is exact.
        bits = np.frombuffer(raw, dtype=order + "u2").astype(np.uint32)
        return (bits << 16).view(np.float32)
    if ref.dtype == "b1":
        return np.frombuffer(raw, dtype=np.uint8) != 0  # any other byte is True
    dtype = np.dtype(ref.dtype if ref.dtype in ("u1", "i1") else order + ref.dtype)
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))


def _materialise(op, path, key, spec: TensorSpec, storage: np.ndarray,
                 budget) -> np.ndarray:
    numel = 1
    for n in spec.size:
        numel *= n
    budget.take(numel * storage.itemsize, f"tensor {key!r}")
    if numel == 0:
        return np.zeros(spec.size, dtype=storage.dtype)
    last = spec.offset + sum((n - 1) * s for n, s in zip(spec.size, spec.stride,
                                                         strict=True))
    if last >= storage.size:
        raise ValueError(
            f"{op}: {path}: tensor {key!r} (offset {spec.offset}, size "
            f"{spec.size}, stride {spec.stride}) reaches element {last} of a storage "
            f"of {storage.size} elements."
        )
    view = np.lib.stride_tricks.as_strided(
        storage[spec.offset:], shape=spec.size,
        # A length-1 axis never moves, whatever its (possibly absurd) stride says.
        strides=tuple(s * storage.itemsize if n > 1 else 0
                      for n, s in zip(spec.size, spec.stride, strict=True)),
        writeable=False,
    )
    return np.array(view, order="C")


def _tensors_in(op, path, obj, key: str | None) -> dict[str, TensorSpec]:
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            keys = list(obj) if isinstance(obj, dict) else []
            raise ValueError(f"{op}: {path} has no entry {key!r}; its top-level keys "
                             f"are {keys[:20]}.")
        obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(
            f"{op}: {path} holds a {type(obj).__name__}, not a state dict; save "
            f"model.state_dict() with torch.save."
        )
    others = [k for k, v in obj.items()
              if not isinstance(v, TensorSpec) or type(k) is not str]
    if others:
        raise ValueError(
            f"{op}: {path} holds a dict whose entries {others[:10]} are not "
            f"tensors; a checkpoint? pass key= to pick the state dict inside it."
        )
    return obj


def read_pth(path: str | os.PathLike, max_bytes: int, key: str | None = None,
             op: str = "load_weights") -> dict[str, np.ndarray]:
    """Read a state dict saved with ``torch.save(state_dict, path)``.

    Returns NumPy arrays (C-contiguous copies, native byte order; bfloat16 widened
    to float32). ``key`` picks a state dict nested in a checkpoint dict.

    Shape: each array has its tensor's shape.
    """
    path = os.fspath(path)
    budget = Budget(op, path, max_bytes)
    with open(path, "rb") as handle:
        if handle.read(len(_LEGACY_MAGIC)) == _LEGACY_MAGIC:
            raise ValueError(
                f"{op}: {path} uses torch's legacy format "
                f"(_use_new_zipfile_serialization=False), which fastcnn does not "
                f"read; re-save it with torch.save(state_dict, path) and the default "
                f"format."
            )
        handle.seek(0)
        # torch.save stores its members uncompressed: max_bytes bounds inflation
        # only so that no archive may inflate past what the load may allocate.
        with open_zip(handle, f"{op}: {path}", max_inflation=max_bytes,
                      kind="a readable torch.save zip archive") as archive:
            root = _root(op, path, archive)
            order = _byteorder(op, path, archive, root, budget)
            # bytes, not the bytearray read: the pickle's strings become dict keys.
            data = bytes(_read_member(op, path, archive, root + "data.pkl", None,
                                      budget, "the pickle"))
            try:
                specs = _tensors_in(op, path, loads(data), key)
            except UnsafePickleError as error:
                raise UnsafePickleError(f"{op}: {path}: {error}") from None
            storages: dict[str, tuple[StorageRef, np.ndarray]] = {}
            out = {}
            for name, spec in specs.items():
                ref = spec.storage
                if ref.key not in storages:
                    raw = _read_member(op, path, archive, f"{root}data/{ref.key}",
                                       ref.numel * ref.itemsize, budget,
                                       f"storage {ref.key!r} of tensor {name!r}")
                    storages[ref.key] = (ref, _storage_array(raw, ref, order))
                known, array = storages[ref.key]
                if known != ref:
                    raise ValueError(f"{op}: {path}: storage {ref.key!r} is "
                                     f"described two different ways.")
                out[name] = _materialise(op, path, name, spec, array, budget)
            return out
