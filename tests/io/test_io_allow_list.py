"""The .pth reader's allow-lists, pinned.

Everything the restricted unpickler accepts (globals, the globals it may call,
storage types, opcodes) is written out here by hand. Adding an entry to the reader
without adding it here fails these tests: a widened allow-list must be reviewed
(SECURITY.md), not slipped in with an unrelated change.
"""

import pytest

from fastcnn.io import UnsafePickleError, _restricted_pickle, load_weights

from .torch_archive import EMPTY_TUPLE, PROTO2, REDUCE, STOP, glob, write_archive

#: Storage class -> (NumPy dtype string, bytes per element).
REVIEWED_STORAGE_DTYPES = {
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

#: The globals REDUCE may call (each mapped to a builder that only records data).
REVIEWED_CALLABLES = frozenset({
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
})

#: Every global a pickle may name: the callables and the storage types.
REVIEWED_GLOBALS = REVIEWED_CALLABLES | {
    ("torch", name) for name in REVIEWED_STORAGE_DTYPES
}

#: The opcodes a ``torch.save(state_dict)`` pickle uses, and nothing else.
REVIEWED_OPCODES = frozenset(
    b"\x80\x95c\x93RQb(102)t\x85\x86\x87]lae}dsuN\x88\x89KMJ\x8aGX\x8cqr\x94hj."
)


def test_allowed_globals_are_exactly_the_reviewed_ones():
    assert set(_restricted_pickle._ALLOWED_GLOBALS) == REVIEWED_GLOBALS


def test_callable_globals_are_exactly_the_reviewed_ones():
    assert set(_restricted_pickle._BUILDERS) == REVIEWED_CALLABLES


def test_storage_types_are_exactly_the_reviewed_ones():
    assert dict(_restricted_pickle.STORAGE_DTYPES) == REVIEWED_STORAGE_DTYPES


def _load(tmp_path, pickle_bytes):
    path = tmp_path / "probe.pth"
    write_archive(path, pickle_bytes, {"0": bytes(16)})
    return load_weights(path)


def test_every_global_outside_the_list_is_refused(tmp_path):
    # Near misses of each reviewed name: other modules, other names, case.
    probes = set()
    for module, name in REVIEWED_GLOBALS:
        probes |= {(module, name + "_"), (module + ".x", name), ("builtins", name),
                   (module, name.lower()), (module, name.upper())}
    for module, name in sorted(probes - REVIEWED_GLOBALS):
        data = PROTO2 + glob(module, name) + EMPTY_TUPLE + REDUCE + STOP
        with pytest.raises(UnsafePickleError, match="refused global"):
            _load(tmp_path, data)


@pytest.mark.parametrize(
    "opcode", sorted(set(range(256)) - REVIEWED_OPCODES),
    ids=lambda op: f"0x{op:02x}",
)
def test_every_opcode_outside_the_list_is_refused(tmp_path, opcode):
    with pytest.raises(UnsafePickleError, match="refused pickle opcode"):
        _load(tmp_path, PROTO2 + bytes([opcode]) + STOP)
