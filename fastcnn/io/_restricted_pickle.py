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

The structure is bounded as it is built, because Python's own recursive operations
(hashing, ``repr``, comparison) are not safe on hostile object graphs: a tuple
nested 10**5 deep overflows the C stack when hashed, and 200 tuples that each hold
the previous one twice (memo get/put) take 2**200 steps to hash or print. So

- containers may nest at most :data:`MAX_DEPTH` deep, and a container may not
  change once it is stored in another (only a recursive structure does that), so
  the depth known at each step is exact and no cycle can form;
- dict keys must be ``str`` or ``int`` (all ``torch.save(state_dict)`` writes):
  nothing built from the file's containers is ever hashed;
- every object, container slot, memo and stack entry is charged to the caller's
  byte budget as it is made (``take``), an estimate that never under-counts;
- error messages quote values through :func:`bounded_repr`, which does work
  bounded by its output whatever the value's depth or sharing.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
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
_INT64_END = 2**63  # torch's sizes, strides and offsets are int64
#: A bound on the time a hostile pickle of tiny opcodes can take; memory is bounded
#: by the byte budget. A state dict needs about 30 opcodes per tensor.
MAX_OPCODES = 2**22
#: How deep containers may nest. A state dict needs 3 levels (dict, the tensor's
#: argument tuple, its size tuple), a checkpoint with an optimizer's state about 6.
MAX_DEPTH = 32
#: The largest ``data.pkl`` read, whatever ``max_bytes`` allows: about 400,000
#: tensors' worth (a state dict's pickle takes ~150 bytes per tensor).
MAX_PICKLE_BYTES = 64 << 20


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


def bounded_repr(value, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters, in time bounded by ``limit``.

    Python's ``repr`` recurses (a deep structure raises ``RecursionError``) and
    prints shared sub-structures once per reference (exponential on a memo-built
    graph); this one stops after ``limit`` characters and 6 levels.
    """
    parts: list[str] = []
    _emit(value, parts, [limit], 0)
    text = "".join(parts)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_BRACKETS = {tuple: "()", list: "[]", dict: "{}"}


def _emit(value, parts: list[str], room: list[int], depth: int) -> None:
    kind = next((k for k in _BRACKETS if isinstance(value, k)), None)
    if kind is None:
        if isinstance(value, str):
            text = repr(value[: room[0]])  # repr of the part that can show
        elif type(value) in (int, float, bool, type(None), _Global, StorageRef,
                             TensorSpec):
            text = repr(value)  # bounded: these hold validated, small fields
        else:
            text = f"<{type(value).__name__}>"
        parts.append(text)
        room[0] -= len(text)
        return
    if depth >= 6:
        parts.append("...")
        room[0] -= 3
        return
    parts.append(_BRACKETS[kind][0])
    room[0] -= 2  # both brackets
    items = value.items() if kind is dict else value
    for i, item in enumerate(items):
        if room[0] <= 0:
            parts.append("...")
            break
        if i:
            parts.append(", ")
            room[0] -= 2
        if kind is dict:
            _emit(item[0], parts, room, depth + 1)
            parts.append(": ")
            room[0] -= 2
            item = item[1]
        _emit(item, parts, room, depth + 1)
    parts.append(_BRACKETS[kind][1])


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
            f"refused global {_clip(module)}.{_clip(name)}: a tensor state dict "
            f"needs only "
            f"collections.OrderedDict, torch._utils._rebuild_tensor_v2 / "
            f"_rebuild_parameter and torch.*Storage types{hint}; nothing was run."
        )
    return _Global(module, name)


def _clip(text: str, limit: int = 100) -> str:
    """A name from the file, cut to ``limit`` characters for a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_plain_int(value) -> bool:
    # Stricter than fastcnn._checks.is_int on purpose: a pickle's sizes and offsets
    # must be built-in ints, not NumPy scalars or int subclasses.
    return type(value) is int


def _int_tuple(what: str, value, minimum: int) -> tuple[int, ...]:
    if type(value) is not tuple or len(value) > _MAX_NDIM or not all(
        _is_plain_int(v) and minimum <= v < _INT64_END for v in value
    ):
        raise UnsafePickleError(
            f"tensor {what} must be a tuple of at most {_MAX_NDIM} ints in "
            f"[{minimum}, 2**63), got {bounded_repr(value)}."
        )
    return value


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
                       backward_hooks, metadata=None) -> TensorSpec:
    if not isinstance(storage, StorageRef):
        raise UnsafePickleError(
            f"_rebuild_tensor_v2: the storage must come from a persistent id, got "
            f"{type(storage).__name__}."
        )
    if not _is_plain_int(offset) or not 0 <= offset < _INT64_END:
        raise UnsafePickleError(f"tensor storage offset must be an int in "
                                f"[0, 2**63), got {bounded_repr(offset)}.")
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
            f"{bounded_repr(pid)}."
        )
    _, storage_type, key, location, numel = pid
    if not isinstance(storage_type, _Global) or storage_type.module != "torch" or (
        storage_type.name not in STORAGE_DTYPES
    ):
        raise UnsafePickleError(f"persistent id has an unknown storage type "
                                f"{bounded_repr(storage_type)}.")
    if type(key) is not str or not key or not key.isascii() or not (
        key.replace("_", "").isalnum()
    ):
        raise UnsafePickleError(
            f"persistent id storage key must be letters, digits or '_', got "
            f"{bounded_repr(key)}."
        )
    if type(location) is not str or not _is_plain_int(numel) or numel < 0:
        raise UnsafePickleError(
            f"persistent id location/numel are malformed: "
            f"{bounded_repr(location, 50)}, {bounded_repr(numel, 50)}."
        )
    dtype, itemsize = STORAGE_DTYPES[storage_type.name]
    return StorageRef(key, dtype, itemsize, numel)


class _Reader:
    """The opcode stream; arguments are read as views, never copied."""

    def __init__(self, data):
        self.view = memoryview(data)
        self.data = data
        self.pos = 0

    def opcode(self) -> int:
        if self.pos >= len(self.data):
            raise UnsafePickleError("truncated pickle: no STOP opcode.")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise UnsafePickleError("truncated pickle: an opcode runs past the end.")
        chunk = self.view[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def text(self, n: int) -> str:
        return str(self.take(n), "utf-8")

    def line(self) -> str:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise UnsafePickleError("truncated pickle: a text argument has no end.")
        text = self.text(end - self.pos)
        self.pos += 1  # the newline
        return text


# What the machine makes is charged, in bytes, before it is made (fixed-size
# scalars just after): a reference on the stack or in a list (8 bytes, plus room
# for the list's over-allocation and the copy a realloc makes), a dict entry
# (index and entry tables at their lowest fill, while a resize copies them), a
# memo entry (its int key too), a MARK (its int), a container's bookkeeping here.
_SLOT = 24
_DICT_ENTRY = 96
_MEMO_ENTRY = 128
_MARK = 48
_EMPTY = {tuple: sys.getsizeof(()), list: sys.getsizeof([]),
          dict: sys.getsizeof({})}
#: TensorSpec, StorageRef and _Global instances, with their __dict__.
_RECORD = 512
_PLAIN = (str, int, float, bool, type(None))


def _unbounded(nbytes: int, what: str) -> None:
    """The default ``take``: charges nothing (depth and opcodes are still
    bounded)."""


class _Machine:
    """The pickle virtual machine, restricted: stack, marks, memo, and the depth
    of every container it has built."""

    def __init__(self, data, take: Callable[[int, str], None]):
        self.r = _Reader(data)
        self.take = take
        self.stack: list = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}
        self.depth: dict[int, int] = {}  # id -> nesting depth, containers only
        self.stored: set[int] = set()  # ids of containers held by another
        self.keep: list = []  # the containers, alive: their ids stay unique

    # ------------------------------------------------------------ accounting

    def push(self, value, size: int | None = None) -> None:
        """Put ``value`` on the stack, charging ``size`` (default: the size of a
        scalar or record just made; 0 for a reference to an existing object)."""
        if size is None:
            size = sys.getsizeof(value) if type(value) in _PLAIN else _RECORD
        self.take(_SLOT + size, "the pickle's objects")
        self.stack.append(value)

    def container(self, kind: type, items, pairs: bool = False) -> None:
        """Charge, make and push a ``kind`` (tuple, list, dict, OrderedDict)
        holding ``items`` (key-value pairs flattened if ``pairs``); track its
        depth."""
        n = len(items)
        size = (_EMPTY[dict] + n // 2 * _DICT_ENTRY if pairs
                else _EMPTY.get(kind, _EMPTY[dict]) + n * _SLOT)
        self.take(size + _SLOT + _DICT_ENTRY, "the pickle's objects")  # + depth
        value = _pairs_into(kind(), items) if pairs else kind(items)
        self.depth[id(value)] = 1
        self.keep.append(value)
        self._hold(value, items[1::2] if pairs else items, "a container")
        self.push(value, 0)

    def grow(self, target, items, opcode: str) -> None:
        """Check that ``items`` may go into the container ``target``."""
        if id(target) in self.stored:
            raise UnsafePickleError(
                f"{opcode} changes a container already stored in another: a "
                f"recursive structure, which a state dict never is."
            )
        self.take(len(items) * (_DICT_ENTRY if isinstance(target, dict) else _SLOT),
                  "the pickle's objects")
        self._hold(target, items, opcode)

    def _hold(self, target, items, opcode: str) -> None:
        deepest = self.depth[id(target)] - 1
        for item in items:
            if item is target:
                raise UnsafePickleError(f"{opcode} puts a container inside itself.")
            inner = self.depth.get(id(item))
            if inner is not None:
                self.stored.add(id(item))
                deepest = max(deepest, inner)
        if deepest + 1 > MAX_DEPTH:
            raise UnsafePickleError(
                f"containers nest more than {MAX_DEPTH} deep; a state dict needs "
                f"a few levels."
            )
        self.depth[id(target)] = deepest + 1

    # -------------------------------------------------------------- opcodes

    def pop_mark(self) -> list:
        if not self.marks:
            raise UnsafePickleError("malformed pickle: no MARK on the stack.")
        start = self.marks.pop()
        self.take(_SLOT * (len(self.stack) - start), "the pickle's stack")
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def memo_put(self, index: int) -> None:
        self.take(_MEMO_ENTRY, "the pickle's memo")
        self.memo[index] = self.stack[-1]

    def run(self):
        r = self.r
        for _ in range(MAX_OPCODES):
            op = r.opcode()
            if op == 0x2E:  # STOP
                if len(self.stack) != 1 or self.marks:
                    raise UnsafePickleError("malformed pickle: extra items at STOP.")
                return self.stack.pop()
            handler = _OPCODES.get(op)
            if handler is None:
                raise UnsafePickleError(
                    f"refused pickle opcode {bytes([op])!r} at byte {r.pos - 1}: a "
                    f"tensor state dict does not use it."
                )
            handler(self)
        raise UnsafePickleError(f"the pickle runs past {MAX_OPCODES} opcodes; a "
                                f"state dict needs far fewer.")


def _proto(m: _Machine) -> None:
    if m.r.unpack("<B") > 5:
        raise UnsafePickleError("unknown pickle protocol.")


def _global(m: _Machine) -> None:
    module = m.r.line()
    m.push(_refuse_global(module, m.r.line()))


def _stack_global(m: _Machine) -> None:
    name, module = m.stack.pop(), m.stack.pop()
    if type(module) is not str or type(name) is not str:
        raise UnsafePickleError("STACK_GLOBAL needs two strings.")
    m.push(_refuse_global(module, name))


def _reduce(m: _Machine) -> None:
    args, func = m.stack.pop(), m.stack.pop()
    if not isinstance(func, _Global) or type(args) is not tuple:
        raise UnsafePickleError(f"REDUCE may only call an allowed global, got "
                                f"{type(func).__name__}.")
    builder = _BUILDERS.get((func.module, func.name))
    if builder is None:
        raise UnsafePickleError(f"refused call of {func.qualname}: it is a type, "
                                f"not a tensor builder.")
    if builder is _ordered_dict:
        _ordered_dict(*args)  # refuses arguments
        m.container(_OrderedDict, ())
        return
    try:
        value = builder(*args)
    except TypeError:
        raise UnsafePickleError(
            f"{func.qualname} called with {len(args)} arguments."
        ) from None
    m.push(value)


def _build(m: _Machine) -> None:
    state = m.stack.pop()
    target = m.stack[-1]
    if not isinstance(target, _OrderedDict) or not isinstance(state, dict) or (
        set(state) - {"_metadata"}  # keys are str or int: hashing them is safe
    ):
        raise UnsafePickleError(
            "refused BUILD: only an OrderedDict's '_metadata' may be set."
        )


def _tuple_n(n: int):
    def handler(m: _Machine) -> None:
        if len(m.stack) < n:
            raise IndexError
        items = m.stack[-n:]
        del m.stack[-n:]
        m.container(tuple, items)
    return handler


def _append(m: _Machine) -> None:
    value = m.stack.pop()
    target = _as(m.stack[-1], list, "APPEND")
    m.grow(target, (value,), "APPEND")
    target.append(value)


def _appends(m: _Machine) -> None:
    items = m.pop_mark()
    target = _as(m.stack[-1], list, "APPENDS")
    m.grow(target, items, "APPENDS")
    target.extend(items)


def _dict(m: _Machine) -> None:
    m.container(dict, m.pop_mark(), pairs=True)


def _setitems(m: _Machine, items: list, opcode: str) -> None:
    target = _as(m.stack[-1], dict, opcode)
    _check_pairs(items)  # before anything is charged or marked stored
    m.grow(target, items[1::2], opcode)
    _pairs_into(target, items)


def _long1(m: _Machine) -> None:
    m.push(int.from_bytes(m.r.take(m.r.unpack("<B")), "little", signed=True))


def _string(fmt: str):
    def handler(m: _Machine) -> None:
        n = m.r.unpack(fmt)
        # Charged before decoding: at most 4 bytes a character (one astral
        # character widens all of them) and, while decoding, 1 more per byte
        # (measured: CPython's UTF-8 decoder peaks at 5n), plus the header.
        m.take(5 * n + 80, "the pickle's strings")
        m.push(m.r.text(n), 0)
    return handler


def _mark(m: _Machine) -> None:
    m.take(_MARK, "the pickle's marks")
    m.marks.append(len(m.stack))


def _dup(m: _Machine) -> None:
    m.push(m.stack[-1], 0)


def _get(fmt: str):
    return lambda m: m.push(m.memo[m.r.unpack(fmt)], 0)


def _put(fmt: str):
    return lambda m: m.memo_put(m.r.unpack(fmt))


def _constant(value):
    return lambda m: m.push(value, 0)


def _number(fmt: str):
    return lambda m: m.push(m.r.unpack(fmt))



_OPCODES: dict[int, Callable[[_Machine], None]] = {
    0x80: _proto,                                           # PROTO
    0x95: lambda m: m.r.take(8),                            # FRAME: a length hint
    ord("c"): _global,
    0x93: _stack_global,
    ord("R"): _reduce,
    ord("Q"): lambda m: m.push(_storage_from_pid(m.stack.pop())),  # BINPERSID
    ord("b"): _build,
    ord("("): _mark,
    ord("1"): lambda m: m.pop_mark(),                       # POP_MARK
    ord("0"): lambda m: m.stack.pop(),                      # POP
    ord("2"): _dup,
    ord(")"): _constant(()),                                # the shared ()
    ord("t"): lambda m: m.container(tuple, m.pop_mark()),
    0x85: _tuple_n(1),
    0x86: _tuple_n(2),
    0x87: _tuple_n(3),
    ord("]"): lambda m: m.container(list, ()),
    ord("l"): lambda m: m.container(list, m.pop_mark()),
    ord("a"): _append,
    ord("e"): _appends,
    ord("}"): lambda m: m.container(dict, ()),
    ord("d"): _dict,
    ord("s"): lambda m: _setitems(m, [*reversed([m.stack.pop(), m.stack.pop()])],
                                  "SETITEM"),
    ord("u"): lambda m: _setitems(m, m.pop_mark(), "SETITEMS"),
    ord("N"): _constant(None),
    0x88: _constant(True),
    0x89: _constant(False),
    ord("K"): _number("<B"),
    ord("M"): _number("<H"),
    ord("J"): _number("<i"),
    0x8A: _long1,
    ord("G"): _number(">d"),
    ord("X"): _string("<I"),
    0x8C: _string("<B"),
    ord("q"): _put("<B"),                                   # BINPUT
    ord("r"): _put("<I"),                                   # LONG_BINPUT
    0x94: lambda m: m.memo_put(len(m.memo)),                # MEMOIZE
    ord("h"): _get("<B"),                                   # BINGET
    ord("j"): _get("<I"),                                   # LONG_BINGET
}


def loads(data, take: Callable[[int, str], None] = _unbounded):
    """Interpret a state-dict pickle; tensors come back as :class:`TensorSpec`.

    ``data`` is bytes or a bytearray (read in place). ``take(nbytes, what)`` is
    charged for every object, slot and entry the reader makes and may refuse it
    (a :class:`fastcnn.io._budget.Budget`).

    Raises :class:`UnsafePickleError` for any global, opcode or structure outside
    what ``torch.save(state_dict)`` writes, before anything of it is used.
    """
    machine = _Machine(data, take)
    try:
        return machine.run()
    except (IndexError, KeyError):
        raise UnsafePickleError(
            f"malformed pickle near byte {machine.r.pos}: the stack or memo is "
            f"inconsistent."
        ) from None
    except UnicodeDecodeError:
        raise UnsafePickleError(
            f"malformed pickle near byte {machine.r.pos}: a string is not UTF-8."
        ) from None


def _as(value, kind: type, opcode: str):
    if not isinstance(value, kind):
        raise UnsafePickleError(f"{opcode} applied to a {type(value).__name__}.")
    return value


def _check_pairs(items: list) -> None:
    if len(items) % 2:
        raise UnsafePickleError("malformed pickle: odd number of dict items.")
    for key in items[::2]:
        # Only str and int keys are hashed: hashing a tuple built by the file can
        # overflow the C stack (deep nesting) or never end (memo-shared tuples).
        if type(key) not in (str, int):
            raise UnsafePickleError(
                f"dict keys must be str or int (what torch.save writes), got a "
                f"{type(key).__name__}: {bounded_repr(key)}."
            )


def _pairs_into(target: dict, items: list) -> dict:
    _check_pairs(items)  # twice for SETITEMS: cheap, and keeps this safe alone
    for key, value in zip(items[::2], items[1::2], strict=True):
        target[key] = value
    return target
