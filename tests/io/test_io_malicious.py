"""Hostile and broken .pth files: refused with a clear error, and nothing runs.

Every payload would create a marker file if executed; each test asserts the marker
does not exist afterwards. No torch needed: the files are assembled by hand.
"""

import builtins
import os
import pickle
import subprocess
import zipfile

import numpy as np
import pytest

from fastcnn.io import UnsafePickleError, load_weights

from .torch_archive import (
    BINPERSID,
    EMPTY_TUPLE,
    MARK,
    PROTO2,
    REDUCE,
    SETITEMS,
    STOP,
    TUPLE,
    glob,
    integer,
    ordered_dict,
    persistent_id,
    simple_archive,
    state_dict,
    string,
    tensor,
    write_archive,
)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a payload ran"


class _SystemPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _SubprocessPayload(_SystemPayload):
    def __reduce__(self):
        return subprocess.call, (["touch", str(self.marker)],)


class _EvalPayload(_SystemPayload):
    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w')",)


class _ExecPayload(_SystemPayload):
    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


PAYLOADS = [_SystemPayload, _SubprocessPayload, _EvalPayload, _ExecPayload]


def _load(tmp_path, pickle_bytes, storages=None):
    path = tmp_path / "evil.pth"
    write_archive(path, pickle_bytes, storages)
    return load_weights(path)


def test_the_payload_really_runs_under_plain_pickle(tmp_path):
    # The tests below would pass vacuously if the payload did nothing.
    path = tmp_path / "PWNED"
    pickle.loads(pickle.dumps(_SystemPayload(path), protocol=2))
    assert path.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4])  # 0: GLOBAL as text, 4: STACK_GLOBAL
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
def test_reduce_payloads_are_refused(tmp_path, marker, payload, protocol):
    data = pickle.dumps(payload(marker), protocol=protocol)
    with pytest.raises(UnsafePickleError, match="refused"):
        _load(tmp_path, data)


def test_refusal_names_the_global(tmp_path, marker):
    with pytest.raises(UnsafePickleError, match=r"refused global posix\.system"):
        _load(tmp_path, pickle.dumps(_SystemPayload(marker), protocol=2))


@pytest.mark.parametrize("stack", [False, True], ids=["GLOBAL", "STACK_GLOBAL"])
@pytest.mark.parametrize("module,name", [
    ("os", "system"),
    ("builtins", "eval"),
    ("builtins", "getattr"),
    ("subprocess", "Popen"),
    ("numpy", "frombuffer"),                  # numpy, but not an array builder
    ("numpy.core.multiarray", "_reconstruct"),  # numpy's own pickle hook
    ("numpy.testing._private.utils", "runstring"),
    ("torch", "load"),
    ("torch.nn.modules.linear", "Linear"),
    ("collections", "OrderedDicT"),
])
def test_globals_outside_the_allow_list_are_refused(tmp_path, module, name, stack):
    data = PROTO2 + glob(module, name, stack=stack) + EMPTY_TUPLE + REDUCE + STOP
    with pytest.raises(UnsafePickleError, match=f"refused global {module}.{name}"):
        _load(tmp_path, data)


def test_payload_nested_inside_a_valid_state_dict_is_refused(tmp_path, marker):
    # The backward hooks of the second tensor are an os.system call.
    evil = (glob("os", "system") + MARK + string(f"touch {marker}") + TUPLE
            + REDUCE)
    data = state_dict({
        "0.weight": tensor(persistent_id()),
        "0.bias": tensor(persistent_id(), hooks=evil),
    })
    with pytest.raises(UnsafePickleError, match="refused global os.system"):
        _load(tmp_path, data, {"0": bytes(16)})


def test_importing_is_never_attempted(tmp_path, marker, monkeypatch):
    # A module that would create the marker when imported.
    (tmp_path / "evil_module_for_fastcnn.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nrun = print\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = PROTO2 + glob("evil_module_for_fastcnn", "run") + STOP
    with pytest.raises(UnsafePickleError):
        _load(tmp_path, data)


@pytest.mark.parametrize("body,match", [
    # An allowed name used the wrong way: a storage type is not a builder.
    (glob("torch", "FloatStorage") + EMPTY_TUPLE + REDUCE, "not a tensor builder"),
    # OrderedDict with arguments (could smuggle items).
    (glob("collections", "OrderedDict") + MARK + integer(1) + TUPLE + REDUCE,
     "no arguments"),
    # BUILD on something other than the state dict.
    (tensor(persistent_id()) + MARK + TUPLE + b"b", "refused BUILD"),
    (ordered_dict() + b"}" + string("__class__") + integer(1) + b"s" + b"b",
     "refused BUILD"),
    # Opcodes a state dict never needs.
    (b"i" + b"os\nsystem\n", "opcode"),
    (b"P" + b"0\n", "opcode"),
    (b"\x82\x01", "opcode"),                   # EXT1 (copyreg's extension registry)
    (glob("collections", "OrderedDict") + EMPTY_TUPLE + b"\x81", "opcode"),  # NEWOBJ
    (MARK + glob("collections", "OrderedDict") + b"o", "opcode"),            # OBJ
])
def test_misused_allowed_names_and_unknown_opcodes(tmp_path, body, match):
    with pytest.raises(UnsafePickleError, match=match):
        _load(tmp_path, PROTO2 + body + STOP, {"0": bytes(16)})


@pytest.mark.parametrize("pid,match", [
    (string("0"), "persistent id must be"),                       # a bare string
    (MARK + string("storage") + glob("torch", "FloatStorage") + string("0")
     + string("cpu") + TUPLE, "persistent id must be"),           # 4 items
    (MARK + string("module") + string("x") + string("y") + string("z")
     + integer(1) + TUPLE, "persistent id must be"),
    (MARK + string("storage") + string("FloatStorage") + string("0")
     + string("cpu") + integer(4) + TUPLE, "storage type"),       # not a global
    (persistent_id(key="../../etc/passwd"), "storage key"),
    (persistent_id(key="0/../1"), "storage key"),
    (persistent_id(numel=-1), "numel"),
    (persistent_id(storage="QInt8Storage"), "refused global torch.QInt8Storage"),
])
def test_persistent_ids_of_the_wrong_shape(tmp_path, pid, match):
    data = state_dict({"0.weight": tensor(pid)})
    with pytest.raises(UnsafePickleError, match=match):
        _load(tmp_path, data, {"0": bytes(16)})


def test_bad_tensor_arguments(tmp_path):
    for kwargs, match in [({"size": (4,), "stride": (1, 1)}, "different lengths"),
                          ({"size": (-4,)}, "size"),
                          ({"stride": (-1,)}, "stride"),
                          ({"offset": -1}, "offset")]:
        data = state_dict({"w": tensor(persistent_id(), **kwargs)})
        with pytest.raises(UnsafePickleError, match=match):
            _load(tmp_path, data, {"0": bytes(16)})


def test_malformed_pickles(tmp_path):
    for data in [b"", PROTO2, PROTO2 + REDUCE + STOP, PROTO2 + b"h\x05" + STOP,
                 PROTO2 + string("a") + string("b") + STOP, PROTO2 + b"X\xff\xff",
                 PROTO2 + MARK + string("a") + SETITEMS + STOP]:
        with pytest.raises(UnsafePickleError):
            _load(tmp_path, data)


# ----------------------------------------------------------------- the archive


def test_not_a_zip_and_empty_and_truncated(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ValueError, match="not a readable torch.save zip"):
        load_weights(junk)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable"):
        load_weights(empty)
    good = tmp_path / "good.pth"
    simple_archive(good)
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 40):
        truncated = tmp_path / f"cut{cut}.pth"
        truncated.write_bytes(data[:cut])
        with pytest.raises(ValueError):
            load_weights(truncated)


def test_a_valid_hand_made_archive_loads(tmp_path):
    path = tmp_path / "ok.pth"
    expected = simple_archive(path)
    out = load_weights(path)
    assert list(out) == ["0.weight"] and np.array_equal(out["0.weight"], expected)


def test_storage_shorter_or_longer_than_claimed(tmp_path):
    for nbytes in (8, 20):
        path = tmp_path / f"short{nbytes}.pth"
        write_archive(path, state_dict({"w": tensor(persistent_id(numel=4))}),
                      {"0": bytes(nbytes)})
        with pytest.raises(ValueError, match="claims 16 bytes but .* holds"):
            load_weights(path)


def test_missing_storage_member(tmp_path):
    path = tmp_path / "missing.pth"
    write_archive(path, state_dict({"w": tensor(persistent_id(key="7"))}), {})
    with pytest.raises(ValueError, match="lacks archive/data/7"):
        load_weights(path)


def test_huge_claimed_sizes_allocate_nothing(tmp_path):
    # A storage claiming 2**40 floats, and a 1-element storage viewed as a
    # 2**20 x 2**20 tensor with zero strides (the classic memory bomb).
    path = tmp_path / "huge.pth"
    write_archive(path, state_dict({"w": tensor(persistent_id(numel=2**40))}),
                  {"0": bytes(16)})
    with pytest.raises(ValueError, match="claims"):
        load_weights(path)
    bomb = tmp_path / "bomb.pth"
    write_archive(bomb, state_dict({"w": tensor(persistent_id(numel=1),
                                                size=(2**20, 2**20),
                                                stride=(0, 0))}), {"0": bytes(4)})
    with pytest.raises(ValueError, match="max_bytes"):
        load_weights(bomb)
    # Many views of one storage add up too.
    many = tmp_path / "many.pth"
    write_archive(many, state_dict({f"w{i}": tensor(persistent_id(numel=1),
                                                    size=(2**20,), stride=(0,))
                                    for i in range(40)}), {"0": bytes(4)})
    with pytest.raises(ValueError, match="max_bytes"):
        load_weights(many, max_bytes=2**24)


def test_views_outside_their_storage_are_refused(tmp_path):
    for kwargs in ({"offset": 3, "size": (2,)}, {"size": (2, 2), "stride": (3, 1)},
                   {"offset": 2**62, "size": (1,)}):
        path = tmp_path / "view.pth"
        write_archive(path, state_dict({"w": tensor(persistent_id(), **kwargs)}),
                      {"0": bytes(16)})
        with pytest.raises(ValueError, match="reaches element"):
            load_weights(path)


def test_absurd_stride_on_a_length_one_axis_is_harmless(tmp_path):
    path = tmp_path / "stride.pth"
    values = np.arange(4, dtype="<f4")
    write_archive(path, state_dict({"w": tensor(persistent_id(), size=(1, 4),
                                                stride=(2**60, 1))}),
                  {"0": values.tobytes()})
    assert np.array_equal(load_weights(path)["w"], values[None])


@pytest.mark.parametrize("name", ["../evil", "archive/../../evil", "/abs/evil",
                                  "archive/data/..\\..\\evil"])
def test_zip_entries_escaping_the_archive_are_refused(tmp_path, name):
    path = tmp_path / "slip.pth"
    write_archive(path, state_dict({"w": tensor(persistent_id())}), {"0": bytes(16)},
                  extra={name: b"x"})
    with pytest.raises(ValueError, match="unsafe member name"):
        load_weights(path)
    assert not (tmp_path.parent / "evil").exists()


def test_duplicate_entries_are_refused(tmp_path):
    path = tmp_path / "dup.pth"
    with pytest.warns(UserWarning, match="Duplicate name"):
        write_archive(path, state_dict({"w": tensor(persistent_id())}),
                      {"0": bytes(16)}, extra={"archive/data/0": bytes(16)})
    with pytest.raises(ValueError, match="holds 'archive/data/0' twice"):
        load_weights(path)


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "other.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="not a torch.save archive"):
        load_weights(path)


def test_top_level_must_be_a_state_dict(tmp_path):
    with pytest.raises(ValueError, match="holds a list"):
        _load(tmp_path, PROTO2 + b"]" + STOP)
    with pytest.raises(ValueError, match="not tensors"):
        _load(tmp_path, PROTO2 + b"}" + string("epoch") + integer(3) + b"s" + STOP)


def test_unknown_byteorder(tmp_path):
    path = tmp_path / "order.pth"
    write_archive(path, state_dict({"w": tensor(persistent_id())}), {"0": bytes(16)},
                  byteorder=b"middle")
    with pytest.raises(ValueError, match="byteorder"):
        load_weights(path)


def test_binpersid_of_a_valid_id_is_needed(tmp_path):
    # A tensor whose storage argument is a plain tuple, not a persistent id.
    data = state_dict({"w": glob("torch._utils", "_rebuild_tensor_v2") + MARK
                       + persistent_id() + integer(0) + MARK + integer(4) + TUPLE
                       + MARK + integer(1) + TUPLE + b"\x89" + ordered_dict()
                       + TUPLE + REDUCE})
    with pytest.raises(UnsafePickleError, match="persistent id"):
        _load(tmp_path, data, {"0": bytes(16)})
    assert BINPERSID not in data


def test_opcode_floods_are_bounded(tmp_path, monkeypatch):
    from fastcnn.io import _restricted_pickle

    monkeypatch.setattr(_restricted_pickle, "MAX_OPCODES", 1000)
    with pytest.raises(UnsafePickleError, match="past 1000 opcodes"):
        _load(tmp_path, PROTO2 + b"]" * 2000 + STOP)
    path = tmp_path / "ok.pth"
    simple_archive(path)  # a real state dict is far below the bound
    assert load_weights(path)


def test_mutated_files_raise_only_value_errors(tmp_path):
    """Random byte flips and cuts of a valid archive: a clear ValueError (or a
    successful load), never another exception."""
    good = tmp_path / "good.pth"
    simple_archive(good, values=np.arange(64.0))
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "mutant.pth"
    for _ in range(300):
        mutant = bytearray(data)
        for k in rng.integers(0, len(data), rng.integers(1, 6)):
            mutant[k] = rng.integers(0, 256)
        if rng.random() < 0.2:
            mutant = mutant[: rng.integers(0, len(mutant))]
        path.write_bytes(bytes(mutant))
        try:
            load_weights(path)
        except ValueError:
            pass
