"""Hostile files: fastcnn's model/checkpoint files, IDX files and config JSON built to
break the readers. Each must be refused with a ValueError naming the file, run no
code, stay within a bounded amount of memory (tracemalloc) and write nothing.

Hostile archives are written by a small zip writer of our own (:func:`raw_zip`), so
that names, sizes, CRCs and duplicates can be anything an attacker chooses.
"""

import gzip
import io
import json
import os
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

from fastcnn import callbacks
from fastcnn.datasets import read_idx_images, read_idx_labels
from fastcnn.layers import LAYERS, BatchNorm2D, Conv2D, Dense, Flatten, ReLU
from fastcnn.model import Sequential
from fastcnn.optimizers import SGD
from fastcnn.saving import load_model

# The most any refused file here may make a reader allocate (tracemalloc peak).
MEMORY_BOUND = 8 << 20


# ------------------------------------------------------------------ helpers


def raw_zip(entries) -> bytes:
    """A zip archive from ``(name, data, method, declared_size, crc)`` tuples
    (the last three optional): whatever names, sizes and CRCs we are told."""
    body, central = b"", b""
    for entry in entries:
        name, data, method, size, crc = (*entry, None, None, None)[:5]
        method = zipfile.ZIP_STORED if method is None else method
        crc = zlib.crc32(data) if crc is None else crc
        size = len(data) if size is None else size
        if method == zipfile.ZIP_DEFLATED:
            packer = zlib.compressobj(9, zlib.DEFLATED, -15)
            payload = packer.compress(data) + packer.flush()
        else:
            payload = data
        encoded = name.encode()
        fields = (20, 0, method, 0, 0x21, crc, len(payload), size, len(encoded))
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *fields, 0, 0,
                               0, 0, 0, len(body)) + encoded
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + encoded + payload
    n = len(entries)
    return body + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n,
                                        len(central), len(body), 0)


def npy(descr: str, shape, data: bytes = b"") -> bytes:
    """A .npy member with any header we like, followed by ``data``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def small_model() -> Sequential:
    model = Sequential([Conv2D(2, 3), BatchNorm2D(), ReLU(), Flatten(), Dense(3)],
                       input_shape=(1, 5, 5))
    model.compile(SGD(0.1, momentum=0.9), "cross_entropy", ["accuracy"])
    return model


@pytest.fixture(scope="module")
def good_file(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("good") / "model.zip"
    model = small_model()
    x = np.random.default_rng(0).standard_normal((8, 1, 5, 5)).astype(np.float32)
    model.fit(x, np.arange(8) % 3, epochs=1, batch_size=4, verbose=0, seed=0)
    model.save(path)
    return path.read_bytes()


def members_of(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def with_member(good: bytes, name: str, data) -> list:
    """The good file's members as raw_zip entries, ``name`` replaced by ``data``."""
    members = members_of(good)
    members[name] = data
    return [(k, v) for k, v in members.items()]


def edited_config(good: bytes, edit) -> list:
    config = json.loads(members_of(good)["config.json"])
    edit(config)
    return with_member(good, "config.json", json.dumps(config).encode())


def listing(folder) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), folder)
            for d, _, files in os.walk(folder) for f in files}


def refused(path, match: str, reader=load_model) -> str:
    """Read ``path`` expecting a ValueError that names it and matches ``match``;
    check memory stayed bounded and nothing was written; return the message."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.dirname(path))
    before = listing(folder)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match) as info:
            reader(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert repr(path) in message or path in message, message
    assert peak < MEMORY_BOUND + os.path.getsize(path), peak
    assert listing(folder) == before
    return message


def write(tmp_path, blob: bytes, name="model.zip"):
    path = tmp_path / name
    path.write_bytes(blob)
    return path


# ---------------------------------------------------------- model files: format


def test_the_good_file_loads(tmp_path, good_file):
    model = load_model(write(tmp_path, good_file))
    assert model.epoch == 1 and model.optimizer.iterations == 2
    # Our own writer reproduces it member for member, so the cases below differ from
    # a loadable file only in what they change.
    again = load_model(write(tmp_path, raw_zip(list(members_of(good_file).items())),
                             "copy.zip"))
    for key, value in model.state_dict().items():
        assert np.array_equal(again.state_dict()[key], value)


@pytest.mark.parametrize("cut", [0, 1, 4, 30, 100, 0.25, 0.5, 0.75, -200, -22, -1])
def test_truncated_model_file(tmp_path, good_file, cut):
    n = cut if isinstance(cut, int) else int(cut * len(good_file))
    # Cut after the stored weights.npz, the last end-of-archive record left is that
    # inner zip's, so the file reads as a zip without config.json.
    refused(write(tmp_path, good_file[:n]), "not a zip archive|corrupt|lacks")


def corrupt_each(tmp_path, good: bytes, flips) -> dict:
    """Flip one byte at a time (``(position, xor mask)`` pairs): each file must load
    with intact weights or be refused with a ValueError naming it; nothing else."""
    reference = load_model(write(tmp_path, good, "ref.zip")).state_dict()
    outcomes = {"refused": 0, "loaded": 0}
    for pos, mask in flips:
        blob = bytearray(good)
        blob[pos] ^= mask
        path = write(tmp_path, bytes(blob))
        try:
            state = load_model(path).state_dict()
        except ValueError as error:
            assert repr(os.fspath(path)) in str(error)
            outcomes["refused"] += 1
            continue
        # Loaded: the flip hit a field no reader relies on (a timestamp, the
        # "version made by"); the weights must be intact.
        outcomes["loaded"] += 1
        for key, value in reference.items():
            assert np.array_equal(state[key], value), (pos, mask, key)
    return outcomes


def test_corrupted_bytes_are_caught_or_harmless(tmp_path, good_file):
    rng = np.random.default_rng(7)
    positions = rng.choice(len(good_file), 400, replace=False)
    masks = rng.choice([0x01, 0x5A, 0xFF, 0x80], 400)
    outcomes = corrupt_each(tmp_path, good_file, zip(positions, masks, strict=True))
    assert outcomes["refused"] > 300, outcomes


@pytest.mark.slow
def test_every_corrupted_byte_is_caught_or_harmless(tmp_path, good_file):
    """Every position, three masks (16,134 files for this model)."""
    flips = [(pos, mask) for mask in (0x01, 0x5A, 0xFF)
             for pos in range(len(good_file))]
    outcomes = corrupt_each(tmp_path, good_file, flips)
    assert outcomes["refused"] > 0.9 * len(flips), outcomes


@pytest.mark.parametrize("blob", [
    b"", b"not a zip", b"PK\x03\x04" + b"\0" * 40, json.dumps({"a": 1}).encode(),
    npz(w=np.zeros(3)),
], ids=["empty", "text", "zip-magic-only", "json", "plain-npz"])
def test_wrong_format_files(tmp_path, blob):
    refused(write(tmp_path, blob), "not a zip archive|lacks 'config.json'")


def test_a_zip_of_something_else(tmp_path):
    blob = raw_zip([("config.json", b'{"format": "keras"}'), ("weights.npz", npz()),
                    ("training_state.json", b"{}")])
    refused(write(tmp_path, blob), "has format 'keras'")
    blob = raw_zip([("config.json", b"[1, 2]"), ("weights.npz", npz()),
                    ("training_state.json", b"{}")])
    refused(write(tmp_path, blob), "has format")


@pytest.mark.parametrize("version", [99, 0, -1, "1", 1.0, True, None, [1]])
def test_wrong_format_version(tmp_path, good_file, version):
    def edit(config):
        config["format_version"] = version
    blob = raw_zip(edited_config(good_file, edit))
    refused(write(tmp_path, blob), "newer than this fastcnn|invalid format version")


@pytest.mark.parametrize("member", ["config.json", "training_state.json"])
@pytest.mark.parametrize("text", [b"{", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000,
                                  b'{"epoch": ' + b"9" * 5000 + b"}"],
                         ids=["unclosed", "not-utf8", "deeply-nested", "huge-int"])
def test_broken_json_members(tmp_path, good_file, member, text):
    blob = raw_zip(with_member(good_file, member, text))
    refused(write(tmp_path, blob), "is not valid JSON")


@pytest.mark.parametrize("training, match", [
    ([], "not a JSON object"),
    ({"epoch": "3"}, "epoch '3' is not an int"),
    ({"epoch": -1}, "epoch -1"),
    ({"epoch": 1, "fit_seed": "x"}, "fit_seed"),
    ({"epoch": 1, "fit_seed": 2**70}, "fit_seed"),
    ({"epoch": 1, "optimizer": {"iterations": "many"}}, "optimizer state"),
    ({"epoch": 1, "optimizer": {"iterations": 1, "lr": "fast"}}, "optimizer state"),
    ({"epoch": 1, "generators": []}, "generators"),
])
def test_hostile_training_state(tmp_path, good_file, training, match):
    blob = raw_zip(with_member(good_file, "training_state.json",
                               json.dumps(training).encode()))
    refused(write(tmp_path, blob), match)


def test_hostile_generator_state(tmp_path):
    from fastcnn.layers import Dropout
    model = Sequential([Flatten(), Dropout(0.5), Dense(2)], input_shape=(1, 2, 2))
    model.save(tmp_path / "d.zip")
    bad = {"epoch": 0, "generators": {"1.rng": {"bit_generator": "os.system",
                                                "state": {"state": 1, "inc": 1}}}}
    blob = raw_zip(with_member((tmp_path / "d.zip").read_bytes(),
                               "training_state.json", json.dumps(bad).encode()))
    refused(write(tmp_path, blob), "os.system|bit_generator|state")


def test_unknown_extra_and_missing_members(tmp_path, good_file):
    members = with_member(good_file, "notes.txt", b"hello")
    refused(write(tmp_path, raw_zip(members)), "holds members .*notes.txt")
    members = [(k, v) for k, v in members_of(good_file).items() if k != "weights.npz"]
    refused(write(tmp_path, raw_zip(members)), "lacks 'weights.npz'")


# --------------------------------------------------------- model files: arrays


class Payload:
    """Unpickling this creates ``marker``: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickled_npy(marker) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([Payload(os.fspath(marker))], dtype=object),
            allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("member", ["weights.npz", "optimizer.npz"])
def test_object_arrays_are_refused_and_never_unpickled(tmp_path, good_file, member):
    marker = tmp_path / "pwned"
    arrays = members_of(members_of(good_file)[member])
    inner = [(k, v) for k, v in arrays.items()]
    inner[0] = (inner[0][0], pickled_npy(marker))
    blob = raw_zip(with_member(good_file, member, raw_zip(inner)))
    refused(write(tmp_path, blob), "object array.*allow_pickle=False")
    assert not marker.exists()


@pytest.mark.parametrize("descr", ["|S4", "<U2", "<c8", "<M8[s]", "|V8",
                                   [("a", "<f4")], [("a", "|O")]], ids=str)
def test_non_numeric_dtypes_are_refused(tmp_path, good_file, descr):
    dtype = np.lib.format.descr_to_dtype(descr)
    inner = {**members_of(members_of(good_file)["weights.npz"])}
    inner["0.weight.npy"] = npy(descr, (2,), bytes(2 * dtype.itemsize))
    blob = raw_zip(with_member(good_file, "weights.npz", raw_zip(list(inner.items()))))
    refused(write(tmp_path, blob), "has dtype|object array")


@pytest.mark.parametrize("shape,nbytes", [
    ((10**12,), 72), ((10**6, 10**6), 72), ((2**62, 4), 72), ((-1, 5), 72),
    ((3, 3), 72),
    # Shapes NumPy cannot make even empty: NumPy's own error names no member.
    ((0, 2**62), 0), ((1,) * 65, 4), ((0,) * 65, 0),
])
def test_npy_headers_that_lie_about_their_size(tmp_path, good_file, shape, nbytes):
    """The header's shape must account for exactly the member's bytes, and be one
    NumPy can make; nothing the size of a lying header is ever allocated."""
    inner = {**members_of(members_of(good_file)["weights.npz"])}
    inner["0.weight.npy"] = npy("<f4", shape, bytes(nbytes))
    blob = raw_zip(with_member(good_file, "weights.npz", raw_zip(list(inner.items()))))
    refused(write(tmp_path, blob), "claims shape")


def test_garbage_npy_header(tmp_path, good_file):
    inner = {**members_of(members_of(good_file)["weights.npz"])}
    inner["0.weight.npy"] = b"\x93NUMPY\x01\x00\x20\x00{'descr': __import__('os')}  \n"
    blob = raw_zip(with_member(good_file, "weights.npz", raw_zip(list(inner.items()))))
    refused(write(tmp_path, blob), "no valid .npy header")
    inner["0.weight.npy"] = b"\x93NUMPY\x07\x00" + bytes(64)
    blob = raw_zip(with_member(good_file, "weights.npz", raw_zip(list(inner.items()))))
    refused(write(tmp_path, blob), "no valid .npy header")


def test_weights_that_do_not_fit_the_architecture(tmp_path, good_file):
    inner = {**members_of(members_of(good_file)["weights.npz"])}
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 7), np.float32))
    inner["4.weight.npy"] = buffer.getvalue()
    blob = raw_zip(with_member(good_file, "weights.npz", raw_zip(list(inner.items()))))
    refused(write(tmp_path, blob), r"4.weight has shape \(3, 7\)")
    del inner["4.weight.npy"]
    blob = raw_zip(with_member(good_file, "weights.npz", raw_zip(list(inner.items()))))
    refused(write(tmp_path, blob), "4.weight")


# ----------------------------------------------------- model files: zip tricks


@pytest.mark.parametrize("name", ["../evil.txt", "../../evil.txt", "/tmp/evil.txt",
                                  "a/../../evil.txt", "..\\evil.txt", "C:/evil.txt"])
def test_traversal_names_are_refused_and_nothing_is_written(tmp_path, good_file, name):
    target = tmp_path / "inside" / "model.zip"
    target.parent.mkdir()
    target.write_bytes(raw_zip(with_member(good_file, name, b"owned")))
    refused(target, "unsafe member name")
    assert not (tmp_path / "evil.txt").exists()
    assert not os.path.exists("/tmp/evil.txt")


def test_traversal_names_inside_the_npz(tmp_path, good_file):
    inner = {**members_of(members_of(good_file)["weights.npz"])}
    inner["../0.weight.npy"] = inner.pop("0.weight.npy")
    blob = raw_zip(with_member(good_file, "weights.npz", raw_zip(list(inner.items()))))
    refused(write(tmp_path, blob), "unsafe member name")


def test_duplicate_members_are_refused(tmp_path, good_file):
    members = list(members_of(good_file).items())
    evil = json.loads(members_of(good_file)["config.json"])
    evil["model"]["layers"][0]["class_name"] = "os.system"
    members.append(("config.json", json.dumps(evil).encode()))
    refused(write(tmp_path, raw_zip(members)), "holds 'config.json' twice")


def test_zip_bomb_in_a_json_member(tmp_path, good_file):
    """200 MB of spaces deflate to 200 kB: refused from the declared size alone."""
    bomb = b" " * (200 << 20)
    members = [(k, v) for k, v in members_of(good_file).items() if k != "config.json"]
    members.append(("config.json", bomb, zipfile.ZIP_DEFLATED))
    path = write(tmp_path, raw_zip(members))
    del bomb
    assert path.stat().st_size < 1 << 20
    refused(path, "zip bomb")


def test_zip_bomb_inside_the_npz(tmp_path, good_file):
    inner = {**members_of(members_of(good_file)["weights.npz"])}
    entries = [(k, v) for k, v in inner.items()]
    entries.append(("big.npy", npy("<f4", (50 << 20,), bytes(200 << 20)),
                    zipfile.ZIP_DEFLATED))
    blob = raw_zip(with_member(good_file, "weights.npz", raw_zip(entries)))
    refused(write(tmp_path, blob), "zip bomb")


def test_member_that_lies_about_its_size(tmp_path, good_file):
    """Declared 100 bytes, inflates to 100 MB: reading stops at the declared size
    and the CRC check refuses it."""
    members = [(k, v) for k, v in members_of(good_file).items()
               if k != "training_state.json"]
    members.append(("training_state.json", b"{}" + b" " * (100 << 20),
                    zipfile.ZIP_DEFLATED, 100))
    refused(write(tmp_path, raw_zip(members)), "corrupt|CRC|not valid JSON")


def test_stored_member_with_inconsistent_sizes(tmp_path, good_file):
    members = list(members_of(good_file).items())
    members[1] = (*members[1], zipfile.ZIP_STORED, 10**9)
    refused(write(tmp_path, raw_zip(members)), "declares")


def test_other_compression_methods_and_encryption_are_refused(tmp_path, good_file):
    blob = bytearray(raw_zip(with_member(good_file, "x", b"")))
    # Patch the last central directory entry's method to bzip2 (12).
    central = blob.rfind(b"PK\x01\x02")
    blob[central + 10:central + 12] = struct.pack("<H", 12)
    refused(write(tmp_path, bytes(blob)), "compression method 12")
    blob = bytearray(raw_zip(list(members_of(good_file).items())))
    central = blob.rfind(b"PK\x01\x02")
    blob[central + 8] |= 1  # the "encrypted" flag bit
    refused(write(tmp_path, bytes(blob)), "encrypted")


def test_truncated_checkpoint_from_model_checkpoint(tmp_path):
    model = small_model()
    x = np.random.default_rng(0).standard_normal((8, 1, 5, 5)).astype(np.float32)
    path = tmp_path / "ckpt" / "last.zip"
    path.parent.mkdir()
    model.fit(x, np.arange(8) % 3, epochs=2, batch_size=4, verbose=0, seed=0,
              callbacks=[callbacks.ModelCheckpoint(path)])
    assert load_model(path).epoch == 2
    path.write_bytes(path.read_bytes()[:-300])
    refused(path, "not a zip archive|corrupt|lacks")


# ----------------------------------------------------------------- config JSON


DANGEROUS_TYPES = ["os.system", "__import__", "eval", "builtins.exec",
                   "fastcnn.layers.Dense", "fastcnn.layers.dense.Dense", "Layer",
                   "Window", "Sequential", "SGD", "ModelCheckpoint", "LAYERS", "get",
                   "from_config", "__class__", "dense", "", None, 7, ["Dense"],
                   {"class_name": "Dense"}]


@pytest.mark.parametrize("class_name", DANGEROUS_TYPES, ids=repr)
def test_unknown_or_dangerous_layer_types(tmp_path, good_file, class_name):
    marker = tmp_path / "pwned"

    def edit(config):
        config["model"]["layers"][1] = {
            "class_name": class_name,
            "config": {"command": f"touch {marker}", "out_features": 3}}
    refused(write(tmp_path, raw_zip(edited_config(good_file, edit))),
            "layer 1 has unknown type")
    assert not marker.exists()
    config = small_model().get_config()
    config["layers"][1]["class_name"] = class_name
    with pytest.raises(ValueError, match="layer 1 has unknown type"):
        Sequential.from_config(config)


@pytest.mark.parametrize("index, layer_config", [
    (4, {"out_features": "3"}),
    (4, {"out_features": 3, "bogus": 1}),
    (4, {"out_features": -3}),
    (4, {"out_features": 3, "kernel_initializer": "os.system"}),
    (4, {"out_features": 3, "name": {"__class__": "x"}}),
    (4, "out_features=3"),
    (0, {"out_channels": 2, "kernel_size": [3, 3, 3]}),
    (0, {"out_channels": 2, "kernel_size": 3, "padding": "evil"}),
    (1, {"momentum": "0.1"}),
], ids=str)
def test_bad_layer_arguments(tmp_path, good_file, index, layer_config):
    def edit(config):
        config["model"]["layers"][index]["config"] = layer_config
    refused(write(tmp_path, raw_zip(edited_config(good_file, edit))),
            f"layer {index} .*(has bad arguments|is not a dict)")


@pytest.mark.parametrize("model_edit, match", [
    (lambda m: m.update(layers=[]), "non-empty list"),
    (lambda m: m.update(layers={"0": 1}), "non-empty list"),
    (lambda m: m.update(layers=[5]), "layer 0 is not a dict"),
    (lambda m: m.update(dtype="object"), "dtype must be"),
    (lambda m: m.update(name=["x"]), "name must be a str"),
    (lambda m: m.update(input_shape=[1, -5, 5]), "input_shape"),
    (lambda m: m.update(input_shape="1,5,5"), "input_shape"),
    (lambda m: m.update(input_shape=[1, 5]), "layer 0"),
    (lambda m: m.update(input_shape=[10**9, 10**9, 10**9]), "parameters"),
    (lambda m: m["layers"][4]["config"].update(out_features=10**12),
     "parameters|at most"),
    (lambda m: m["layers"][4]["config"].update(out_features=2**31 - 1),
     "parameters"),
    (lambda m: m["layers"][0]["config"].update(out_channels=10**7, kernel_size=5,
                                               padding=100), "parameters"),
], ids=["no-layers", "layers-dict", "layer-int", "dtype", "name", "negative-dim",
        "shape-str", "shape-2d", "giant-input", "Dense-1e12", "Dense-2e9",
        "Conv-1e7"])
def test_hostile_model_configs(tmp_path, good_file, model_edit, match):
    def edit(config):
        model_edit(config["model"])
    refused(write(tmp_path, raw_zip(edited_config(good_file, edit))), match)


def test_absurd_configs_from_config_allocate_nothing():
    """Sequential.from_config itself (not only load_model) sizes before building."""
    absurd = [
        ([1, 2**15, 2**15], [{"class_name": "Flatten"},
                             {"class_name": "Dense",
                              "config": {"out_features": 2**31 - 1}}]),
        ([1000, 28, 28], [{"class_name": "Conv2D",
                           "config": {"out_channels": 10**6, "kernel_size": 1000,
                                      "padding": 500}}]),
        ([2**31 - 1, 1, 1], [{"class_name": "BatchNorm2D"}]),
    ]
    for input_shape, layers in absurd:
        config = {"layers": layers, "input_shape": input_shape}
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match="parameters and buffers"):
                Sequential.from_config(config)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < MEMORY_BOUND
    # The limit can be lifted for a model that is meant to be big.
    config = {"layers": [{"class_name": "Flatten"},
                         {"class_name": "Dense", "config": {"out_features": 4}}],
              "input_shape": [1, 2, 2]}
    with pytest.raises(ValueError, match="max_params=10"):
        Sequential.from_config(config, max_params=10)
    assert Sequential.from_config(config, max_params=None).built


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_state_shapes_match_what_build_creates(name):
    """The sizing above relies on state_shapes agreeing with build, layer by layer."""
    cls = LAYERS[name]
    needs = {"Conv2D": (3, 2), "Conv2DTranspose": (3, 2), "Dense": (3,),
             "DepthwiseConv2D": (3,), "SeparableConv2D": (2, 3),
             "MaxPool2D": (2,), "AvgPool2D": (2,), "Reshape": ((-1,),),
             "AdaptiveAvgPool2D": (2,), "LayerNorm": ((5, 5),),
             "GroupNorm": (2,)}.get(name, ())
    layer = cls(*needs)
    input_shape = (6,) if name in ("Dense", "BatchNorm1D") else (2, 5, 5)
    if cls.takes_many:
        input_shape = (input_shape, input_shape)
    expected = layer.state_shapes(input_shape)
    layer.build(input_shape)
    built = {k: v.shape for k, v in {**layer.params, **layer.buffers}.items()}
    assert expected == built


# ------------------------------------------------------------------ IDX files


def idx(magic: int, dims, payload: bytes = b"") -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims) + payload


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dims", [(10**4, 10**4, 10**4), (2**32 - 1, 2**32 - 1, 28),
                                  (60000, 28, 28)])
def test_idx_headers_claiming_too_much(tmp_path, gz, dims):
    blob = idx(2051, dims, bytes(1000))
    path = write(tmp_path, gzip.compress(blob) if gz else blob, "images")
    refused(path, "truncated|corrupt header|cannot hold", read_idx_images)


def test_idx_labels_claiming_10_to_the_12(tmp_path):
    # One dimension holds at most 2**32 - 1: a 10**12 claim needs several, so the
    # label file's ceiling is tested at its maximum instead.
    path = write(tmp_path, idx(2049, (2**32 - 1,), bytes(10)), "labels")
    refused(path, "truncated|corrupt header", read_idx_labels)


@pytest.mark.parametrize("magic", [0x0D03, 0x0803 + 0x0100, 0x0804, 0x0802, 0,
                                   0xFFFFFFFF])
def test_idx_wrong_magic_or_dtype(tmp_path, magic):
    path = write(tmp_path, struct.pack(">I", magic) + bytes(200), "images")
    refused(path, "wrong IDX magic", read_idx_images)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("delta", [-1, 1, -783, 5000])
def test_idx_size_not_matching_the_header(tmp_path, gz, delta):
    blob = idx(2051, (3, 28, 28), bytes(3 * 784 + max(delta, 0)))
    blob = blob[:len(blob) + min(delta, 0)]
    path = write(tmp_path, gzip.compress(blob) if gz else blob, "images")
    refused(path, "truncated|trailing", read_idx_images)


def test_idx_gzip_bomb(tmp_path):
    """A header claiming 10 images followed by 300 MB of zeros (300 kB gzipped): the
    reader stops one byte past the claimed payload."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    blob = packer.compress(idx(2051, (10, 28, 28)))
    zeros = bytes(1 << 20)
    for _ in range(300):
        blob += packer.compress(zeros)
    blob += packer.flush()
    path = write(tmp_path, blob, "images.gz")
    assert path.stat().st_size < 1 << 20
    refused(path, "trailing data", read_idx_images)


def test_idx_corrupt_gzip(tmp_path):
    blob = bytearray(gzip.compress(idx(2051, (4, 28, 28), bytes(4 * 784))))
    blob[len(blob) // 2] ^= 0xFF
    refused(write(tmp_path, bytes(blob), "images.gz"), "corrupt|truncated",
            read_idx_images)
