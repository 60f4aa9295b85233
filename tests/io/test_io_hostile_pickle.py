"""Hostile structure and sizes in weight files: deep or memo-shared pickles, pickle
and view bombs, dtypes and shapes NumPy lacks.

Each hostile file is built here and loaded in a child process (:func:`_load_all`),
so a segfault or a hang fails the test instead of killing pytest. The child also
measures each load's peak memory (tracemalloc, which sees NumPy's buffers) and
what the load charged to its byte budget, so the tests check the promise of
SECURITY.md: a ValueError naming the file, in bounded time, with peak memory
within the budget and never more than the budget counted.
"""

import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from hypothesis import strategies as st

from fastcnn.io import AMPLIFICATION, SLACK, UnsafePickleError, load_weights
from fastcnn.io._restricted_pickle import MAX_DEPTH, bounded_repr

from ..fuzz_support import examples
from .torch_archive import (
    EMPTY_TUPLE,
    MARK,
    PROTO2,
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

DUP, POP, TUPLE1, TUPLE2 = b"2", b"0", b"\x85", b"\x86"
APPEND, SETITEM = b"a", b"s"
EMPTY_LIST, EMPTY_DICT = b"]", b"}"


def binput(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)


def binget(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)


# ------------------------------------------------------------- the child process

_CHILD = textwrap.dedent("""
    import json, sys, time, tracemalloc
    import fastcnn.io
    from fastcnn.io import _budget

    charged = [0]
    take = _budget.Budget.take

    def counting_take(self, nbytes, what):
        take(self, nbytes, what)  # raises past the limit: count what it allowed
        charged[0] = max(charged[0], self.used)

    _budget.Budget.take = counting_take
    results = {}
    for name, path, kwargs in json.loads(sys.argv[1]):
        print("loading", name, flush=True)  # the last one shown is what crashed
        charged[0] = 0
        tracemalloc.start()
        start = time.perf_counter()
        try:
            out = fastcnn.io.load_weights(path, **kwargs)
            outcome = ["ok", sorted(out)[:5]]
        except Exception as error:
            outcome = [type(error).__name__, str(error)]
        out = None
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        results[name] = outcome + [time.perf_counter() - start, peak, charged[0]]
    print("RESULTS", json.dumps(results))
""")


def _load_all(cases: dict, timeout: int = 240) -> dict:
    """Load each ``name: (path, kwargs)`` in one child process; returns ``name:
    (outcome, message, seconds, peak bytes, bytes charged)``."""
    payload = json.dumps([[name, str(path), kwargs]
                          for name, (path, kwargs) in cases.items()])
    try:
        result = subprocess.run([sys.executable, "-c", _CHILD, payload],
                                capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"a load hung: {error.stdout!s:.2000}") from None
    assert result.returncode == 0, (
        f"the child died (rc {result.returncode}) after "
        f"{result.stdout.strip().splitlines()[-1:]}: {result.stderr[-3000:]}"
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULTS "))
    return json.loads(line[len("RESULTS "):])


def _assert_refused(results: dict, cases: dict, match: dict | None = None,
                    seconds: float = 20.0) -> None:
    """Each case: a ValueError (or subclass) that names the file, short, quick,
    whose peak memory stayed within the budget the load counted."""
    for name, (kind, message, took, peak, charged) in results.items():
        path = str(cases[name][0])
        assert kind in ("ValueError", "UnsafePickleError"), (name, kind, message)
        assert message.startswith(f"load_weights: {path}"), (name, message)
        assert "unexpected" not in message, (name, message)  # no reader bug net
        assert len(message) < 1500, (name, len(message))
        assert took < seconds, (name, took)
        # The budget never under-counts: the peak is what was charged plus what
        # reading any file costs (zipfile's 1 MiB chunks, the modules' first use).
        assert peak <= charged + _READING, (name, peak, charged)
        if match and name in match:
            assert match[name] in message, (name, message)


#: What reading any file costs beyond the budget: zipfile's chunks and buffers.
_READING = 4 << 20


def _file_bound(path) -> int:
    return AMPLIFICATION * os.path.getsize(path) + SLACK


# ------------------------------------------------------------------ structure


def _deep(opening: bytes, closing: bytes, n: int) -> bytes:
    return opening * n + closing * (n - 1)


def _doubled(n: int, leaf: bytes = integer(1)) -> bytes:
    """A tuple graph of depth ``n`` with 2**n leaves: each level holds the one
    below twice (DUP), as a memo get/put graph would."""
    return leaf + (DUP + TUPLE2) * n


def _memo_doubled(n: int) -> bytes:
    """The same graph through the memo: put each level, get it twice."""
    out = integer(1) + binput(0) + POP
    for i in range(n):
        out += binget(i) + binget(i) + TUPLE2 + binput(i + 1) + POP
    return out + binget(n)


def _in_dict(key: bytes, value: bytes = integer(1)) -> bytes:
    return PROTO2 + EMPTY_DICT + key + value + SETITEM + STOP


STRUCTURE = {
    # name: (pickle bytes, what the message must say)
    "deep_lists": (_in_dict(string("a"), _deep(EMPTY_LIST, APPEND, 200_000)),
                   "nest more than"),
    # Each dict set into the one below it, innermost first.
    "deep_dicts": (_in_dict(string("a"), (EMPTY_DICT + string("k")) * 50_000
                            + EMPTY_DICT + SETITEM * 50_000), "nest more than"),
    "deep_tuple_key": (_in_dict(EMPTY_TUPLE + TUPLE1 * 300_000), "nest more than"),
    "doubled_tuple_key": (_in_dict(_doubled(200)), "nest more than"),
    # Under the depth bound: 2**30 steps to hash, refused as a key type instead.
    "doubled_tuple_key_30": (_in_dict(_doubled(30)), "dict keys must be str or int"),
    "memo_tuple_key_30": (_in_dict(_memo_doubled(30)), "dict keys must be str or int"),
    "float_key": (_in_dict(b"G" + struct.pack(">d", 0.5)), "dict keys must be"),
    "none_key": (_in_dict(b"N"), "dict keys must be"),
    # Deep and shared persistent ids: a repr of them in the message would recurse.
    "deep_pid": (state_dict({"w": tensor(_deep(EMPTY_LIST, APPEND, 100_000))}),
                 "nest more than"),
    "doubled_pid_30": (state_dict({"w": tensor(_doubled(30))}),
                       "persistent id must be"),
    "memo_pid_30": (state_dict({"w": tensor(_memo_doubled(30) + TUPLE1)}),
                    "persistent id must be"),
    "doubled_size_30": (state_dict({"w": tensor(persistent_id(), size=(1,))
                                    .replace(MARK + integer(1) + TUPLE,
                                             _doubled(30), 1)}),
                        "tensor size must be"),
    # Cycles: a list in itself, and two lists in each other.
    "self_cycle": (_in_dict(string("a"), EMPTY_LIST + binput(0) + binget(0)
                            + APPEND), "inside itself"),
    "two_cycle": (_in_dict(string("a"), EMPTY_LIST + binput(0) + EMPTY_LIST
                           + binput(1) + APPEND + binget(1) + binget(0) + APPEND
                           + b"0"), "already stored"),
    # Huge names and keys: quoted, never in full.
    "huge_global": (PROTO2 + glob("os" * 500_000, "system") + STOP,
                    "refused global"),
    "huge_key": (_in_dict(string("k" * 1_000_000)), "not tensors"),
}


def test_hostile_structures_are_refused_in_bounded_time(tmp_path):
    cases, match = {}, {}
    for name, (data, says) in STRUCTURE.items():
        path = tmp_path / f"{name}.pth"
        write_archive(path, data, {"0": bytes(16)})
        cases[name] = (path, {})
        match[name] = says
    results = _load_all(cases)
    _assert_refused(results, cases, match, seconds=10.0)


def test_structure_checks_in_process(tmp_path):
    # The cheap ones again, in this process, for their exception type.
    for name in ("doubled_tuple_key_30", "self_cycle", "two_cycle", "float_key"):
        path = tmp_path / f"{name}.pth"
        write_archive(path, STRUCTURE[name][0])
        with pytest.raises(UnsafePickleError, match=STRUCTURE[name][1]):
            load_weights(path)


def _checkpoint(depth: int) -> bytes:
    """{"m": a state dict, "x": a list nested ``depth`` deep}: the top dict is
    ``depth + 1`` deep."""
    sd = state_dict({"w": tensor(persistent_id())})[len(PROTO2):-len(STOP)]
    return (PROTO2 + EMPTY_DICT + MARK + string("m") + sd + string("x")
            + _deep(EMPTY_LIST, APPEND, depth) + SETITEMS + STOP)


def test_depth_up_to_the_bound_is_fine(tmp_path):
    path = tmp_path / "nested.pth"
    values = np.arange(4.0, dtype="<f4")
    write_archive(path, _checkpoint(MAX_DEPTH - 1), {"0": values.tobytes()})
    np.testing.assert_array_equal(load_weights(path, key="m")["w"], values)
    write_archive(path, _checkpoint(MAX_DEPTH), {"0": values.tobytes()})
    with pytest.raises(UnsafePickleError, match=f"more than {MAX_DEPTH} deep"):
        load_weights(path, key="m")


def test_bounded_repr_is_bounded():
    # A graph of 2**40 references and a 10**5-deep list print in a few characters.
    shared = 1
    for _ in range(40):
        shared = (shared, shared)
    deep = []
    for _ in range(100_000):
        deep = [deep]
    for value in (shared, deep, "x" * 10**7, {i: i for i in range(10**5)}):
        text = bounded_repr(value)
        assert len(text) <= 120
    assert bounded_repr((1, "a", [None])) == "(1, 'a', [None])"


# ------------------------------------------------------------------ memory


def _deflated_pickle_archive(path, nbytes: int) -> None:
    """A torch.save-like zip whose data.pkl inflates to ``nbytes`` of ``]``:
    about ``nbytes / 1000`` on disk."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("archive/data.pkl")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            member.write(PROTO2)
            chunk = EMPTY_LIST * (1 << 20)
            for _ in range(nbytes >> 20):
                member.write(chunk)
            member.write(STOP)
        archive.writestr("archive/version", b"3\n")


def _view_archive(path, numel: int, size, stride) -> None:
    write_archive(path, state_dict({"w": tensor(persistent_id(numel=numel),
                                                size=size, stride=stride)}),
                  {"0": bytes(4 * numel)})


def test_amplification_is_bounded(tmp_path):
    cases = {}
    big_pickle = tmp_path / "big_pickle.pth"
    _deflated_pickle_archive(big_pickle, 128 << 20)
    assert os.path.getsize(big_pickle) < 200_000
    cases["big_pickle"] = (big_pickle, {})
    cases["big_pickle_max"] = (big_pickle, {"max_bytes": 1 << 34})  # own cap
    stride0 = tmp_path / "stride0.pth"
    _view_archive(stride0, 1, (1 << 28,), (0,))  # 1 GiB from ~650 bytes
    assert os.path.getsize(stride0) < 1000
    cases["stride0"] = (stride0, {})
    overlap = tmp_path / "overlap.pth"
    _view_archive(overlap, 1 << 15, (1 << 14, 1 << 14), (1, 1))  # 1 GiB of 128 kB
    cases["overlap"] = (overlap, {})
    # Floods of one-byte opcodes, each making an object, a slot or an entry.
    floods = {"lists": EMPTY_LIST, "dicts": EMPTY_DICT, "dups": DUP, "marks": MARK,
              "memo": b"\x94", "tuples": DUP + TUPLE1}
    for name, op in floods.items():
        path = tmp_path / f"flood_{name}.pth"
        write_archive(path, PROTO2 + EMPTY_DICT + op * 1_000_000 + STOP)
        cases[f"flood_{name}"] = (path, {"max_bytes": 16 << 20})
    # One dict of many int keys, one list of many items.
    path = tmp_path / "flood_dict_items.pth"
    write_archive(path, PROTO2 + EMPTY_DICT + b"".join(
        integer(i) + b"N" + SETITEM for i in range(1 << 18)) + STOP)
    cases["flood_dict_items"] = (path, {"max_bytes": 16 << 20})
    path = tmp_path / "flood_list_items.pth"
    write_archive(path, PROTO2 + EMPTY_LIST + MARK + integer(1 << 20) * (1 << 20)
                  + b"e" + STOP)
    cases["flood_list_items"] = (path, {"max_bytes": 16 << 20})
    # Astral characters: 4 bytes of memory per character, ~1 per file byte, and
    # 5 while decoding; decoded in full (within max_bytes), then refused.
    astral = ("\U0001f600" + "a" * (8 << 20)).encode()
    path = tmp_path / "astral.pth"
    write_archive(path, PROTO2 + b"X" + struct.pack("<I", len(astral)) + astral
                  + POP + EMPTY_LIST + STOP)
    cases["astral"] = (path, {"max_bytes": 64 << 20})
    results = _load_all(cases)
    _assert_refused(results, cases, {
        "big_pickle": "zip bomb", "big_pickle_max": "more than the pickle can need",
        "stride0": "max_bytes", "overlap": "max_bytes", "astral": "holds a list",
    })
    for name, (*_, peak, _charged) in results.items():
        limit = cases[name][1].get("max_bytes") or _file_bound(cases[name][0])
        assert peak <= limit + _READING, (name, peak, limit)


def test_views_load_when_the_caller_allows_them(tmp_path):
    small = tmp_path / "small_view.pth"
    _view_archive(small, 1, (1 << 20,), (0,))  # 4 MiB: within the default slack
    assert load_weights(small)["w"].shape == (1 << 20,)
    big = tmp_path / "big_view.pth"
    _view_archive(big, 1, (1 << 25,), (0,))  # 128 MiB of 4 bytes
    with pytest.raises(ValueError, match="default max_bytes"):
        load_weights(big)
    out = load_weights(big, max_bytes=1 << 28)["w"]
    assert out.shape == (1 << 25,) and out.flags.c_contiguous and not out.any()


def test_budget_counts_a_legit_file_once(tmp_path):
    """A storage one tensor covers is returned as read: charged once, not copied."""
    from fastcnn.io import _budget

    path = tmp_path / "ok.pth"
    values = np.arange(1 << 16, dtype="<f4")
    write_archive(path, state_dict({"w": tensor(persistent_id(numel=values.size),
                                                size=values.shape)}),
                  {"0": values.tobytes()})
    used = []
    original = _budget.Budget.take

    def spy(self, nbytes, what):
        original(self, nbytes, what)
        used.append(self.used)

    _budget.Budget.take = spy
    try:
        out = load_weights(path)["w"]
    finally:
        _budget.Budget.take = original
    np.testing.assert_array_equal(out, values)
    assert values.nbytes <= used[-1] < values.nbytes + (64 << 10)


# ------------------------------------------------------- dtypes and shapes (#6)


def _safetensors(path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def _npz_member(path, name: str, header: str, data: bytes) -> None:
    text = header.encode()
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, npy)


def test_dtypes_and_shapes_numpy_lacks_name_the_file_and_member(tmp_path):
    pytest.importorskip("safetensors")
    cases, match = {}, {}

    def st(name, entry, data, says):
        path = tmp_path / f"{name}.safetensors"
        _safetensors(path, {"w": entry}, data)
        cases[name], match[name] = (path, {}), says

    st("float8", {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]},
       bytes(2), "tensor 'w' has dtype 'F8_E4M3'")
    st("float8_e5m2", {"dtype": "F8_E5M2", "shape": [2], "data_offsets": [0, 2]},
       bytes(2), "tensor 'w' has dtype")
    st("bfloat16", {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
       bytes(4), "convert such tensors to float32")
    st("dims_mismatch", {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]},
       bytes(8), "tensor 'w' has shape [3]")
    st("too_many_axes", {"dtype": "F32", "shape": [1] * 65,
                         "data_offsets": [0, 4]}, bytes(4), "tensor 'w' has shape")
    st("empty_but_huge", {"dtype": "F32", "shape": [0, 2**62],
                          "data_offsets": [0, 0]}, b"", "cannot make")
    st("offsets_outside", {"dtype": "F32", "shape": [2],
                           "data_offsets": [4, 12]}, bytes(8), "data_offsets")
    st("deep_header", {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
       bytes(4), "")
    deep = tmp_path / "deep_header.safetensors"
    text = b"[" * 100_000 + b"]" * 100_000
    deep.write_bytes(struct.pack("<Q", len(text)) + text)
    match["deep_header"] = "not JSON"

    def npz(name, header, data, says):
        path = tmp_path / f"{name}.npz"
        _npz_member(path, "w.npy", header, data)
        cases[name], match[name] = (path, {}), says

    npz("npz_too_many_axes", "{'descr': '<f4', 'fortran_order': False, 'shape': "
        f"{(1,) * 65}, }}", bytes(4), "'w.npy' claims shape")
    npz("npz_empty_but_huge", "{'descr': '<f4', 'fortran_order': False, 'shape': "
        "(0, 4611686018427387904), }", b"", "'w.npy' claims shape")
    npz("npz_dims_mismatch", "{'descr': '<f4', 'fortran_order': False, 'shape': "
        "(3,), }", bytes(8), "'w.npy' claims shape (3,)")

    def pth(name, size, says):
        path = tmp_path / f"{name}.pth"
        _view_archive(path, 4, size, (1,) * len(size))
        cases[name], match[name] = (path, {}), says

    pth("pth_empty_but_huge", (0, 2**62), "tensor 'w' has size")
    pth("pth_too_many_axes", (1,) * 65, "tensor size must be")
    pth("pth_dims_past_int64", (0, 2**64), "tensor size must be")
    results = _load_all(cases)
    _assert_refused(results, cases, match)


def test_valid_safetensors_still_load(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "ok.safetensors"
    values = np.arange(6, dtype="<f4")
    _safetensors(path, {"__metadata__": {"format": "pt"},
                        "w": {"dtype": "F32", "shape": [2, 3],
                              "data_offsets": [0, 24]}}, values.tobytes())
    np.testing.assert_array_equal(load_weights(path)["w"], values.reshape(2, 3))


def test_a_state_dict_after_hostile_loads_is_unchanged(tmp_path):
    # Nothing global changes: a valid file loads the same after refusals.
    path = tmp_path / "ok.pth"
    expected = simple_archive(path)
    for name in ("self_cycle", "doubled_tuple_key_30"):
        bad = tmp_path / f"{name}.pth"
        write_archive(bad, STRUCTURE[name][0])
        with pytest.raises(ValueError):
            load_weights(bad)
    np.testing.assert_array_equal(load_weights(path)["0.weight"], expected)



# ------------------------------------------------------------------- fuzzing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_ALLOWED = [glob("collections", "OrderedDict"),
            glob("torch._utils", "_rebuild_tensor_v2", stack=True),
            glob("torch._utils", "_rebuild_parameter"), glob("torch", "FloatStorage"),
            glob("torch", "LongStorage", stack=True)]
_REFUSED = [glob("os", "system"), glob("builtins", "eval", stack=True),
            glob("torch.nn", "Linear")]
#: Opcodes with their arguments, each one step of the pickle machine.
_STEPS = [
    integer(0), integer(7), integer(-1), integer(2**40), integer(2**63),
    string("storage"), string("0"), string("cpu"), string("w"), string("\U0001f600"),
    b"K\x05", b"M\x00\x01", b"G" + struct.pack(">d", 0.5), b"\x8c\x01a", b"N",
    b"\x88", b"\x89", EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT, MARK, TUPLE, b"l", b"d",
    APPEND, b"e", SETITEM, SETITEMS, TUPLE1, TUPLE2, b"\x87", DUP, POP, b"1",
    b"q\x00", b"q\x01", b"h\x00", b"h\x01", binput(2), binget(2), b"\x94",
    b"R", b"b", b"Q", b"\x95" + bytes(8), *_ALLOWED, *_REFUSED,
    persistent_id(), tensor(persistent_id()), ordered_dict(),
]


@st.composite
def hostile_pickles(draw) -> bytes:
    """Random runs of the opcodes a state dict uses (some repeated hundreds of
    times, to nest deep and share through the memo), alone or spliced into a
    valid state dict, sometimes with a few random bytes."""
    steps = draw(st.lists(st.tuples(st.sampled_from(_STEPS), st.sampled_from(
        [1, 1, 1, 2, 3, 40, 300])), max_size=30))
    body = b"".join(step * count for step, count in steps)
    if draw(st.booleans()):
        body += draw(st.binary(max_size=4))
    valid = state_dict({"a": tensor(persistent_id()),
                        "b": tensor(persistent_id(), size=(2, 2), stride=(2, 1))})
    if draw(st.booleans()):
        cut = draw(st.integers(len(PROTO2), len(valid) - 1))
        return valid[:cut] + body + valid[cut:]
    return PROTO2 + body + draw(st.sampled_from([STOP, b""]))


def fuzz_child(max_examples: int, workdir: str) -> None:
    """The fuzz loop, run in a child process by the test below: every hostile
    pickle loads or raises a ValueError naming the file, quickly."""
    import time

    from hypothesis import HealthCheck, given, settings

    from ..fuzz_support import COUNTS

    path = os.path.join(workdir, "fuzz.pth")

    @settings(max_examples=max_examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(hostile_pickles())
    def run(data):
        write_archive(path, data, {"0": bytes(16)})
        COUNTS["invalid"] += 1
        start = time.perf_counter()
        try:
            load_weights(path, max_bytes=1 << 24)
            COUNTS["accepted"] += 1
        except ValueError as error:  # UnsafePickleError included
            message = str(error)
            assert message.startswith(f"load_weights: {path}"), message
            assert "unexpected" not in message and len(message) < 1500, message
        except Exception:
            COUNTS["crash"] += 1
            raise
        assert time.perf_counter() - start < 5, data[:200]

    run()
    print("fuzzed", dict(COUNTS))


def test_fuzz_pickle_structure(tmp_path):
    """Hypothesis over opcode runs, in a child process: a segfault, a hang or an
    exception other than ValueError fails this test with the falsifying example."""
    code = (f"from tests.io.test_io_hostile_pickle import fuzz_child; "
            f"fuzz_child({examples(10).max_examples}, {str(tmp_path)!r})")
    try:
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                                capture_output=True, text=True, timeout=600,
                                env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"the fuzz hung: {error.stdout!s:.2000}") from None
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "fuzzed" in result.stdout


@pytest.mark.parametrize("error", [AttributeError("x"), RecursionError("deep"),
                                   IndexError("i"), KeyError("k"),
                                   OverflowError("o")])
def test_a_reader_bug_still_names_the_file(tmp_path, monkeypatch, error):
    """The net of load_weights: should a reader let another exception through,
    the caller gets a ValueError naming the file, chained to the original."""
    from fastcnn.io import pth

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(pth, "read_pth", broken)
    path = tmp_path / "w.pth"
    simple_archive(path)
    with pytest.raises(ValueError, match=f"{path}.*unexpected") as caught:
        load_weights(path)
    assert caught.value.__cause__ is error
