"""A pickle reader that understands only what ``torch.save(state_dict)`` writes.

Why not ``pickle.Unpickler`` with a ``find_class`` allow-list: that still runs the
pickle virtual machine's BUILD (``__setstate__`` / ``setattr`` on whatever an allowed
callable returned), INST/OBJ/NEWOBJ and the copyreg extension registry. Here every
opcode is interpreted by this file, only the opcodes a state dict needs are known at
all, nothing is ever imported, and the three allowed "globals" are names mapped to
local builders that only record data: a :class:`TensorSpec` says which storage, at
which offset, with which size and stride. No array is created while reading; the
caller (:mod:`fastcnn.io.pth`) checks every spec against the real storages afterwards.

Everything else (``os.system``, ``builtins.eval``, ``numpy`` functions, torch module
classes, unknown opcodes, persistent ids of the wrong shape) raises
:class:`UnsafePickleError` naming what was refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class UnsafePickleError(ValueError):
    """The file holds something a tensor state dict does not need; nothing ran."""


#: torch's typed-storage class names -> (NumPy dtype string, bytes per element).
#: bfloat16 has no NumPy dtype: it is read as uint16 and widened to float32 (exact).
STORAGE_DTYPES: dict[str, tuple[str, int]] = {
    "FloatStorage": ("f4", 4),
    "DoubleStorage": ("f8", 8),
    "HalfStorage": ("f2", 2),
    "BFloat16Storage": ("bfloat16", 2),
    "LongStorage": ("i8", 8),
    "IntStorage": ("i4", 4),
    "ShortStorage": ("i2", 2),
    "CharStorage": ("i1", 1),
    "ByteStorage": ("u1", 1),
    "BoolStorage": ("b1", 1),
}

_MAX_NDIM = 64
#: Each opcode creates at most one small object; this bounds the memory a hostile
#: pickle of tiny opcodes (``]]]]...``) can take to a few hundred MB. A state dict
#: needs about 30 opcodes per tensor.
MAX_OPCODES = 2**22


@dataclass(frozen=True)
class _Global:
    module: str
    name: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class StorageRef:
    """A storage in the archive: ``data/<key>`` holds ``numel`` elements of
    ``dtype``."""

    key: str
    dtype: str
    itemsize: int
    numel: int


@dataclass(frozen=True)
class TensorSpec:
    """A strided view of a storage, in elements (as torch's ``as_strided``)."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _OrderedDict(dict):
    """What ``collections.OrderedDict()`` builds: a dict that may take BUILD once
    with torch's ``{"_metadata": ...}`` state (ignored)."""


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    *(("torch", name) for name in STORAGE_DTYPES),
}


def _refuse_global(module: str, name: str) -> _Global:
    if (module, name) not in _ALLOWED_GLOBALS:
        hint = ""
        if module.startswith("torch.nn"):
            hint = (" (a whole module was saved; save and load "
                    "model.state_dict() instead)")
        elif module == "torch" and name.endswith("Storage"):
            hint = " (a storage type fastcnn cannot read as a NumPy dtype)"
        raise UnsafePickleError(
            f"refused global {module}.{name}: a tensor state dict needs only "
            f"collections.OrderedDict, torch._utils._rebuild_tensor_v2 / "
            f"_rebuild_parameter and torch.*Storage types{hint}; nothing was run."
        )
    return _Global(module, name)


def _is_int(value) -> bool:
    return type(value) is int


def _int_tuple(what: str, value, minimum: int) -> tuple[int, ...]:
    if type(value) is not tuple or len(value) > _MAX_NDIM or not all(
        _is_int(v) and v >= minimum for v in value
    ):
        raise UnsafePickleError(
            f"tensor {what} must be a tuple of at most {_MAX_NDIM} ints >= "
            f"{minimum}, got {value!r:.200}."
        )
    return value


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
                       backward_hooks, metadata=None) -> TensorSpec:
    if not isinstance(storage, StorageRef):
        raise UnsafePickleError(
            f"_rebuild_tensor_v2: the storage must come from a persistent id, got "
            f"{type(storage).__name__}."
        )
    if not _is_int(offset) or offset < 0:
        raise UnsafePickleError(f"tensor storage offset must be an int >= 0, got "
                                f"{offset!r:.100}.")
    size = _int_tuple("size", size, 0)
    stride = _int_tuple("stride", stride, 0)
    if len(size) != len(stride):
        raise UnsafePickleError(
            f"tensor size {size} and stride {stride} have different lengths."
        )
    if type(requires_grad) is not bool:
        raise UnsafePickleError("tensor requires_grad must be a bool.")
    if not isinstance(backward_hooks, dict) or backward_hooks:
        raise UnsafePickleError("tensor backward hooks must be an empty dict.")
    if metadata is not None and not isinstance(metadata, dict):
        raise UnsafePickleError("tensor metadata must be a dict or None.")
    return TensorSpec(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks) -> TensorSpec:
    if not isinstance(data, TensorSpec):
        raise UnsafePickleError("_rebuild_parameter: data must be a tensor.")
    return data


def _ordered_dict(*args) -> _OrderedDict:
    if args:
        raise UnsafePickleError("collections.OrderedDict must be called with no "
                                "arguments here.")
    return _OrderedDict()


_BUILDERS = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


def _storage_from_pid(pid) -> StorageRef:
    """``("storage", torch.<Type>Storage, key, location, numel)``: torch's zip
    format's persistent id for a storage saved as ``data/<key>``."""
    if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
        raise UnsafePickleError(
            f"persistent id must be ('storage', type, key, location, numel), got "
            f"{pid!r:.200}."
        )
    _, storage_type, key, location, numel = pid
    if not isinstance(storage_type, _Global) or storage_type.module != "torch" or (
        storage_type.name not in STORAGE_DTYPES
    ):
        raise UnsafePickleError(f"persistent id has an unknown storage type "
                                f"{storage_type!r:.100}.")
    if type(key) is not str or not key or not key.isascii() or not (
        key.replace("_", "").isalnum()
    ):
        raise UnsafePickleError(
            f"persistent id storage key must be letters, digits or '_', got "
            f"{key!r:.100}."
        )
    if type(location) is not str or not _is_int(numel) or numel < 0:
        raise UnsafePickleError(f"persistent id location/numel are malformed: "
                                f"{location!r:.50}, {numel!r:.50}.")
    dtype, itemsize = STORAGE_DTYPES[storage_type.name]
    return StorageRef(key, dtype, itemsize, numel)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise UnsafePickleError("truncated pickle: an opcode runs past the end.")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def line(self) -> str:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise UnsafePickleError("truncated pickle: a text argument has no end.")
        text = self.data[self.pos:end].decode("utf-8")
        self.pos = end + 1
        return text


def _pop_mark(stack: list, marks: list) -> list:
    if not marks:
        raise UnsafePickleError("malformed pickle: no MARK on the stack.")
    start = marks.pop()
    items = stack[start:]
    del stack[start:]
    return items


def loads(data: bytes):
    """Interpret a state-dict pickle; tensors come back as :class:`TensorSpec`.

    Raises :class:`UnsafePickleError` for any global, opcode or structure outside
    what ``torch.save(state_dict)`` writes, before anything of it is used.
    """
    r = _Reader(data)
    stack: list = []
    marks: list[int] = []
    memo: dict[int, object] = {}
    try:
        for _ in range(MAX_OPCODES):
            op = r.take(1)
            if op == b"\x80":  # PROTO
                if r.unpack("<B") > 5:
                    raise UnsafePickleError("unknown pickle protocol.")
            elif op == b"\x95":  # FRAME: a length hint only
                r.take(8)
            elif op == b"c":  # GLOBAL
                module = r.line()
                stack.append(_refuse_global(module, r.line()))
            elif op == b"\x93":  # STACK_GLOBAL
                name, module = stack.pop(), stack.pop()
                if type(module) is not str or type(name) is not str:
                    raise UnsafePickleError("STACK_GLOBAL needs two strings.")
                stack.append(_refuse_global(module, name))
            elif op == b"R":  # REDUCE
                args, func = stack.pop(), stack.pop()
                if not isinstance(func, _Global) or type(args) is not tuple:
                    raise UnsafePickleError(
                        f"REDUCE may only call an allowed global, got "
                        f"{type(func).__name__}."
                    )
                builder = _BUILDERS.get((func.module, func.name))
                if builder is None:
                    raise UnsafePickleError(f"refused call of {func.qualname}: it is "
                                            f"a type, not a tensor builder.")
                try:
                    stack.append(builder(*args))
                except TypeError:
                    raise UnsafePickleError(
                        f"{func.qualname} called with {len(args)} arguments."
                    ) from None
            elif op == b"Q":  # BINPERSID
                stack.append(_storage_from_pid(stack.pop()))
            elif op == b"b":  # BUILD
                state = stack.pop()
                target = stack[-1]
                if not isinstance(target, _OrderedDict) or not isinstance(
                    state, dict
                ) or set(state) - {"_metadata"}:
                    raise UnsafePickleError(
                        "refused BUILD: only an OrderedDict's '_metadata' may be set."
                    )
            elif op == b"(":  # MARK
                marks.append(len(stack))
            elif op == b"1":  # POP_MARK
                _pop_mark(stack, marks)
            elif op == b"0":  # POP
                stack.pop()
            elif op == b"2":  # DUP
                stack.append(stack[-1])
            elif op == b")":
                stack.append(())
            elif op == b"t":
                stack.append(tuple(_pop_mark(stack, marks)))
            elif op in (b"\x85", b"\x86", b"\x87"):  # TUPLE1..3
                n = op[0] - 0x84
                if len(stack) < n:
                    raise IndexError
                items = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
            elif op == b"]":
                stack.append([])
            elif op == b"l":
                stack.append(_pop_mark(stack, marks))
            elif op == b"a":  # APPEND
                value = stack.pop()
                _as(stack[-1], list, "APPEND").append(value)
            elif op == b"e":  # APPENDS
                items = _pop_mark(stack, marks)
                _as(stack[-1], list, "APPENDS").extend(items)
            elif op == b"}":
                stack.append({})
            elif op == b"d":  # DICT
                items = _pop_mark(stack, marks)
                stack.append(_pairs_into({}, items))
            elif op == b"s":  # SETITEM
                value, key = stack.pop(), stack.pop()
                _pairs_into(_as(stack[-1], dict, "SETITEM"), [key, value])
            elif op == b"u":  # SETITEMS
                items = _pop_mark(stack, marks)
                _pairs_into(_as(stack[-1], dict, "SETITEMS"), items)
            elif op == b"N":
                stack.append(None)
            elif op == b"\x88":
                stack.append(True)
            elif op == b"\x89":
                stack.append(False)
            elif op == b"K":
                stack.append(r.unpack("<B"))
            elif op == b"M":
                stack.append(r.unpack("<H"))
            elif op == b"J":
                stack.append(r.unpack("<i"))
            elif op == b"\x8a":  # LONG1
                stack.append(int.from_bytes(r.take(r.unpack("<B")), "little",
                                            signed=True))
            elif op == b"G":
                stack.append(r.unpack(">d"))
            elif op == b"X":
                stack.append(r.take(r.unpack("<I")).decode("utf-8"))
            elif op == b"\x8c":
                stack.append(r.take(r.unpack("<B")).decode("utf-8"))
            elif op == b"q":  # BINPUT
                memo[r.unpack("<B")] = stack[-1]
            elif op == b"r":
                memo[r.unpack("<I")] = stack[-1]
            elif op == b"\x94":  # MEMOIZE
                memo[len(memo)] = stack[-1]
            elif op == b"h":  # BINGET
                stack.append(memo[r.unpack("<B")])
            elif op == b"j":
                stack.append(memo[r.unpack("<I")])
            elif op == b".":  # STOP
                if len(stack) != 1 or marks:
                    raise UnsafePickleError("malformed pickle: extra items at STOP.")
                return stack.pop()
            else:
                raise UnsafePickleError(
                    f"refused pickle opcode {op!r} at byte {r.pos - 1}: a tensor "
                    f"state dict does not use it."
                )
        raise UnsafePickleError(f"the pickle runs past {MAX_OPCODES} opcodes; a "
                                f"state dict needs far fewer.")
    except (IndexError, KeyError):
        raise UnsafePickleError(
            f"malformed pickle near byte {r.pos}: the stack or memo is inconsistent."
        ) from None
    except UnicodeDecodeError:
        raise UnsafePickleError(
            f"malformed pickle near byte {r.pos}: a string is not UTF-8."
        ) from None


def _as(value, kind: type, opcode: str):
    if not isinstance(value, kind):
        raise UnsafePickleError(f"{opcode} applied to a {type(value).__name__}.")
    return value


def _pairs_into(target: dict, items: list) -> dict:
    if len(items) % 2:
        raise UnsafePickleError("malformed pickle: odd number of dict items.")
    for key, value in zip(items[::2], items[1::2], strict=True):
        if type(key) not in (str, int, float, bool, tuple) and key is not None:
            raise UnsafePickleError(f"dict keys must be plain values, got "
                                    f"{type(key).__name__}.")
        try:
            target[key] = value
        except TypeError:  # a tuple holding a list
            raise UnsafePickleError("dict key is not hashable.") from None
    return target
