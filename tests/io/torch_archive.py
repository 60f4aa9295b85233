"""Hand-assembled torch.save archives and pickles, for tests that run without torch.

The opcodes are written one by one, so a test controls exactly which globals
(GLOBAL or STACK_GLOBAL), persistent ids and opcodes a file holds.
"""

import struct
import zipfile

import numpy as np

PROTO2 = b"\x80\x02"
STOP = b"."
MARK = b"("
TUPLE = b"t"
EMPTY_TUPLE = b")"
REDUCE = b"R"
SETITEMS = b"u"
BINPERSID = b"Q"
NEWFALSE = b"\x89"


def string(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def integer(n: int) -> bytes:
    if -2**31 <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    data = n.to_bytes(9, "little", signed=True)  # LONG1, as pickle writes big ints
    return b"\x8a" + bytes([len(data)]) + data


def int_tuple(values) -> bytes:
    return MARK + b"".join(integer(v) for v in values) + TUPLE


def glob(module: str, name: str, stack: bool = False) -> bytes:
    """GLOBAL (text) or STACK_GLOBAL (protocol 4) of ``module.name``."""
    if stack:
        return string(module) + string(name) + b"\x93"
    return b"c" + f"{module}\n{name}\n".encode()


def ordered_dict() -> bytes:
    return glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE


def persistent_id(key="0", numel=4, storage="FloatStorage") -> bytes:
    return (MARK + string("storage") + glob("torch", storage) + string(key)
            + string("cpu") + integer(numel) + TUPLE)


def tensor(pid: bytes, offset=0, size=(4,), stride=(1,), hooks=None) -> bytes:
    """``_rebuild_tensor_v2(storage, offset, size, stride, False, hooks)``."""
    return (glob("torch._utils", "_rebuild_tensor_v2") + MARK + pid + BINPERSID
            + integer(offset) + int_tuple(size) + int_tuple(stride) + NEWFALSE
            + (ordered_dict() if hooks is None else hooks) + TUPLE + REDUCE)


def state_dict(entries: dict[str, bytes]) -> bytes:
    """A pickle of an OrderedDict of ``name -> tensor(...)`` opcodes."""
    body = b"".join(string(k) + v for k, v in entries.items())
    return PROTO2 + ordered_dict() + MARK + body + SETITEMS + STOP


def write_archive(path, pickle_bytes: bytes, storages: dict[str, bytes] | None = None,
                  root: str = "archive", byteorder: bytes | None = b"little",
                  extra: dict[str, bytes] | None = None) -> None:
    """A zip laid out as torch.save's: root/data.pkl, root/data/<key>, ..."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{root}/data.pkl", pickle_bytes)
        if byteorder is not None:
            archive.writestr(f"{root}/byteorder", byteorder)
        for key, data in (storages or {}).items():
            archive.writestr(f"{root}/data/{key}", data)
        archive.writestr(f"{root}/version", b"3\n")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)


def simple_archive(path, values=(1.0, 2.0, 3.0, 4.0)) -> np.ndarray:
    """A valid one-tensor state dict {"0.weight": values}; returns the array."""
    array = np.asarray(values, dtype="<f4")
    write_archive(path, state_dict({"0.weight": tensor(persistent_id(
        numel=array.size), size=array.shape)}), {"0": array.tobytes()})
    return array
