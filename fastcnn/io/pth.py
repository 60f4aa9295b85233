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

Every byte materialised is charged to one :class:`fastcnn.io._budget.Budget`: the
pickle (at most :data:`~fastcnn.io._restricted_pickle.MAX_PICKLE_BYTES`) and what
it builds, each storage, its float32 widening (bfloat16) and each tensor copied out
of it. A storage that one tensor covers exactly, as ``torch.save`` writes most, is
returned as it was read, not copied; views (strided, expanded, overlapping, several
per storage) are copies and are charged in full.
"""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np

from .._safezip import open_zip, read_member
from ._budget import Budget
from ._restricted_pickle import (
    MAX_PICKLE_BYTES,
    StorageRef,
    TensorSpec,
    UnsafePickleError,
    bounded_repr,
    loads,
)

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
                 limit: int = 2**62) -> bytearray:
    """Member ``name``'s bytes, charged to ``budget`` before they are read."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValueError(f"{op}: {path} lacks {name} ({what}).") from None
    if expected is None and info.file_size > limit:
        raise ValueError(f"{op}: {path}: {name} holds {info.file_size} bytes, more "
                         f"than {what} can need (at most {limit}).")
    if expected is not None and info.file_size != expected:
        raise ValueError(
            f"{op}: {path}: {what} claims {expected} bytes but {name} holds "
            f"{info.file_size}."
        )
    budget.take(info.file_size, f"{what}, {name}")
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


def _unpickle(op, path, archive, root, budget):
    """The structure of ``data.pkl``; what it builds is charged to ``budget``."""
    name = root + "data.pkl"
    data = _read_member(op, path, archive, name, None, budget, "the pickle",
                        limit=MAX_PICKLE_BYTES)
    try:
        return loads(data, budget.take)  # read in place: no copy of the bytes
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{op}: {path}: {name}: {error}") from None


def _storage_array(raw: bytearray, ref: StorageRef, order: str, budget,
                   what: str) -> np.ndarray:
    """The storage's elements in native order, converted in ``raw`` where the
    dtype allows (only bfloat16 needs a new, charged, buffer)."""
    if ref.dtype == "bfloat16":
        # bfloat16 is the top half of a float32: widening is exact.
        budget.take(2 * len(raw), f"{what} widened to float32")
        wide = np.empty(len(raw) // 2, dtype=np.uint32)
        wide[...] = np.frombuffer(raw, dtype=order + "u2")
        wide <<= 16
        return wide.view(np.float32)
    if ref.dtype == "b1":
        flags = np.frombuffer(raw, dtype=np.uint8)
        np.minimum(flags, 1, out=flags)  # any other byte is True
        return flags.view(np.bool_)
    dtype = np.dtype(ref.dtype if ref.dtype in ("u1", "i1") else order + ref.dtype)
    array = np.frombuffer(raw, dtype=dtype)
    if not dtype.isnative:
        array.byteswap(inplace=True)
        array = array.view(dtype.newbyteorder("="))
    return array


def _covers(spec: TensorSpec, storage: np.ndarray) -> bool:
    """Whether ``spec`` is all of ``storage``, C-contiguous (reshaping suffices)."""
    if spec.offset or math.prod(spec.size) != storage.size:
        return False
    step = 1
    for n, s in zip(reversed(spec.size), reversed(spec.stride), strict=True):
        if n > 1 and s != step:
            return False
        step *= n
    return True


def _materialise(op, path, key, spec: TensorSpec, storage: np.ndarray, budget,
                 sole: bool) -> np.ndarray:
    label = f"{op}: {path}: tensor {bounded_repr(key)}"
    numel = math.prod(spec.size)
    if numel == 0:
        try:
            return np.zeros(spec.size, dtype=storage.dtype)
        except ValueError as error:  # numpy: (0, 2**62) is "too big"
            raise ValueError(f"{label} has size {spec.size}: {error}") from None
    last = spec.offset + sum((n - 1) * s for n, s in zip(spec.size, spec.stride,
                                                         strict=True))
    if last >= storage.size:
        raise ValueError(
            f"{label} (offset {spec.offset}, size {spec.size}, stride "
            f"{spec.stride}) reaches element {last} of a storage of {storage.size} "
            f"elements."
        )
    if sole and _covers(spec, storage):
        return storage.reshape(spec.size)
    # A copy: expanded (stride 0) and overlapping views can be far larger than
    # their storage, so the budget sees the whole copy before it is made.
    budget.take(numel * storage.itemsize, f"tensor {bounded_repr(key)}")
    try:
        view = np.lib.stride_tricks.as_strided(
            storage[spec.offset:], shape=spec.size,
            # A length-1 axis never moves, whatever its (possibly absurd) stride.
            strides=tuple(s * storage.itemsize if n > 1 else 0
                          for n, s in zip(spec.size, spec.stride, strict=True)),
            writeable=False,
        )
    except ValueError as error:  # more axes than this NumPy allows
        raise ValueError(f"{label} has size {spec.size}: {error}") from None
    return np.array(view, order="C")


def _tensors_in(op, path, obj, key: str | None) -> dict[str, TensorSpec]:
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            keys = list(obj)[:20] if isinstance(obj, dict) else []
            raise ValueError(f"{op}: {path} has no entry {bounded_repr(key)}; its "
                             f"top-level keys are {bounded_repr(keys, 400)}.")
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
            f"{op}: {path} holds a dict whose entries {bounded_repr(others[:10])} "
            f"are not tensors; a checkpoint? pass key= to pick the state dict "
            f"inside it."
        )
    return obj


def _load_tensors(op, path, archive, root, order, specs, budget
                  ) -> dict[str, np.ndarray]:
    """Each storage read once, its tensors made from it, then let go."""
    refs: dict[str, StorageRef] = {}
    users: dict[str, list[str]] = {}
    for name, spec in specs.items():
        ref = spec.storage
        if refs.setdefault(ref.key, ref) != ref:
            raise ValueError(f"{op}: {path}: storage {ref.key!r} is described two "
                             f"different ways.")
        users.setdefault(ref.key, []).append(name)
    out = {}
    for storage_key, names in users.items():
        ref = refs[storage_key]
        member = f"{root}data/{storage_key}"
        what = f"storage {storage_key!r} of tensor {bounded_repr(names[0])}"
        raw = _read_member(op, path, archive, member, ref.numel * ref.itemsize,
                           budget, what)
        storage = _storage_array(raw, ref, order, budget, what)
        for name in names:
            out[name] = _materialise(op, path, name, specs[name], storage, budget,
                                     sole=len(names) == 1)
    return {name: out[name] for name in specs}


def read_pth(path: str | os.PathLike, max_bytes: int | None, key: str | None = None,
             op: str = "load_weights") -> dict[str, np.ndarray]:
    """Read a state dict saved with ``torch.save(state_dict, path)``.

    Returns NumPy arrays (C-contiguous, native byte order; bfloat16 widened to
    float32). ``key`` picks a state dict nested in a checkpoint dict.
    ``max_bytes=None``: :func:`fastcnn.io._budget.default_max_bytes`.

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
        with open_zip(handle, f"{op}: {path}", max_inflation=budget.max_bytes,
                      kind="a readable torch.save zip archive") as archive:
            root = _root(op, path, archive)
            order = _byteorder(op, path, archive, root, budget)
            specs = _tensors_in(op, path, _unpickle(op, path, archive, root, budget),
                                key)
            return _load_tensors(op, path, archive, root, order, specs, budget)
