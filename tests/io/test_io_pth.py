"""Reading files torch.save really wrote: dtypes, views, offsets, shared storages,
pickle protocols, byte order, checkpoints; and reading them with torch blocked."""

import io
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from fastcnn.io import UnsafePickleError, load_weights

from .torch_archive import simple_archive

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch


def _same(ours: dict, theirs: dict) -> None:
    assert list(ours) == list(theirs)
    for key, tensor in theirs.items():
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        expected = tensor.numpy()
        assert ours[key].dtype == expected.dtype, key
        assert ours[key].shape == expected.shape, key
        assert ours[key].flags.c_contiguous, key
        np.testing.assert_array_equal(ours[key], expected, err_msg=key)


def _tensors():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    big = torch.randn(10, 6, generator=gen)
    return {
        "f32": torch.randn(3, 4, 2, 2, generator=gen),
        "f64": torch.randn(7, generator=gen, dtype=torch.float64),
        "f16": torch.randn(3, 2, generator=gen).half(),
        "bf16": torch.randn(5, generator=gen).bfloat16(),
        "i64": torch.tensor(7),                        # as num_batches_tracked
        "i32": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "u8": torch.arange(4, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "transposed": base.t(),                        # non-contiguous
        "strided": base[1:4, ::3],                     # offset + steps
        "shared_a": big[2:5],                          # two views of one storage
        "shared_b": big[:, 1],
        "expanded": torch.ones(1, 3).expand(4, 3),     # stride 0
        "permuted": torch.randn(2, 3, 4, generator=gen).permute(2, 0, 1),
        "empty": torch.zeros(0, 3),
    }


@pytest.mark.parametrize("protocol", [2, 4])
def test_every_dtype_and_view_matches_torch(tmp_path, protocol):
    tensors = _tensors()
    path = tmp_path / "t.pt"
    torch.save(tensors, path, pickle_protocol=protocol)
    _same(load_weights(path), tensors)


def test_a_module_state_dict_with_parameters_and_buffers(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    model.train()
    model(torch.randn(5, 1, 8, 8))  # moves the running stats
    path = tmp_path / "m.pth"
    torch.save(model.state_dict(), path)
    loaded = load_weights(path)
    _same(loaded, model.state_dict())
    assert loaded["1.num_batches_tracked"].dtype == np.int64
    assert int(loaded["1.num_batches_tracked"]) == 1


def test_parameters_saved_as_parameters(tmp_path):
    # state_dict(keep_vars=True) pickles nn.Parameter through _rebuild_parameter.
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "p.pth"
    torch.save(model.state_dict(keep_vars=True), path)
    _same(load_weights(path), {k: v.detach() for k, v in model.state_dict().items()})


def test_big_endian_archive(tmp_path):
    # torch writes its machine's order; rewrite a file as a big-endian machine would.
    tensors = {"f32": torch.randn(4, 3), "i64": torch.arange(5),
               "f16": torch.randn(3).half()}
    source = tmp_path / "little.pt"
    torch.save(tensors, source)
    target = tmp_path / "big.pt"
    # One storage per tensor, keyed "0", "1", ... in pickling (dict) order.
    itemsizes = [tensor.element_size() for tensor in tensors.values()]
    with zipfile.ZipFile(source) as archive:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
            for info in archive.infolist():
                data = archive.read(info)
                if info.filename.endswith("/byteorder"):
                    data = b"big"
                elif "/data/" in info.filename:
                    key = int(info.filename.rsplit("/", 1)[1])
                    data = np.frombuffer(data, dtype=f"u{itemsizes[key]}") \
                        .byteswap().tobytes()
                out.writestr(info, data)
    loaded = load_weights(target)
    _same(loaded, tensors)
    assert all(a.dtype.isnative for a in loaded.values())


def test_checkpoint_dict_needs_key(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(3, 2)).sum().backward()
    optimizer.step()
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict()}, path)
    with pytest.raises(ValueError, match="pass key="):
        load_weights(path)
    _same(load_weights(path, key="model_state_dict"), model.state_dict())
    with pytest.raises(ValueError, match="no entry 'model'"):
        load_weights(path, key="model")


def test_whole_module_and_legacy_format_are_refused(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), whole)
    with pytest.raises(UnsafePickleError, match="torch.nn.modules.linear.Linear"):
        load_weights(whole)
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="legacy format"):
        load_weights(legacy)
    sniffed = tmp_path / "legacy.weights"  # suffix says nothing: sniffed
    sniffed.write_bytes(legacy.read_bytes())
    with pytest.raises(ValueError, match="legacy format"):
        load_weights(sniffed)


def test_new_dtypes_are_refused_by_name(tmp_path):
    path = tmp_path / "u16.pt"
    torch.save({"w": torch.zeros(2, dtype=torch.uint16)}, path)
    with pytest.raises(UnsafePickleError, match="refused global"):
        load_weights(path)


def test_file_objects_in_memory_and_unusual_suffixes(tmp_path):
    buffer = io.BytesIO()
    sd = {"w": torch.randn(3)}
    torch.save(sd, buffer)
    path = tmp_path / "weights.bin.tmp"  # suffix says nothing: sniffed
    path.write_bytes(buffer.getvalue())
    _same(load_weights(path), sd)


def test_loads_with_torch_unimportable(tmp_path):
    """fastcnn.io never imports torch: load a torch-written and a hand-made file
    in a process where importing torch raises, into a fastcnn model."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3))
    torch.save(model.state_dict(), tmp_path / "real.pth")
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    simple_archive(tmp_path / "hand.pth")
    code = textwrap.dedent(f"""
        import sys

        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")

        sys.meta_path.insert(0, BlockTorch())
        import numpy as np
        import fastcnn
        from fastcnn.layers import Conv2D, Dense, Flatten, ReLU

        sd = fastcnn.io.load_weights({str(tmp_path / "real.pth")!r})
        model = fastcnn.Sequential([Conv2D(2, 3), ReLU(), Flatten(), Dense(3)],
                                   input_shape=(1, 6, 6))
        model.load_state_dict(sd)
        np.save({str(tmp_path / "ours.npy")!r},
                model.predict(np.load({str(tmp_path / "x.npy")!r})))
        fastcnn.io.load_weights({str(tmp_path / "hand.pth")!r})
        assert "torch" not in sys.modules
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    ours = np.load(tmp_path / "ours.npy")
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


_DTYPES = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8",
           "bool"]


def test_fuzz_torch_state_dicts_load_as_torch_wrote_them(tmp_path_factory):
    """Random state dicts and checkpoints written by torch.save: every dtype,
    views (strided, transposed, expanded, shared storages), nested in dicts,
    lists and tuples a few levels deep; all load, equal to torch's, within the
    default max_bytes, and the arrays are writable and independent."""
    from hypothesis import given
    from hypothesis import strategies as st

    from ..fuzz_support import examples

    folder = tmp_path_factory.mktemp("fuzz_pth")

    @st.composite
    def tensors(draw):
        gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
        shape = draw(st.lists(st.integers(0, 5), max_size=4))
        base = (torch.randn(shape, generator=gen) * 100).to(
            getattr(torch, draw(st.sampled_from(_DTYPES))))
        view = draw(st.sampled_from(["same", "t", "step", "expand", "slice"]))
        if view == "t" and base.dim() >= 2:
            return base.transpose(0, -1)
        if view == "step" and base.dim() >= 1:
            return base[..., ::2]
        if view == "expand":
            return base.reshape(1, -1).expand(3, -1)
        if view == "slice" and base.dim() >= 1 and base.shape[0] > 1:
            return base[1:]
        return base

    @given(st.lists(tensors(), min_size=1, max_size=6), st.booleans(),
           st.sampled_from([2, 4]), st.integers(0, 3))
    @examples(3)
    def run(parts, share, protocol, nesting):
        sd = {f"{i}.weight": t for i, t in enumerate(parts)}
        if share and parts[0].numel() > 1:
            sd["tied"] = parts[0].flatten()[1:]  # a view of another's storage
        obj = {"model": sd}
        for level in range(nesting):  # a checkpoint around it
            obj = {"model": obj["model"], "meta": [level, (0.5, "x"), {"k": level}],
                   "epoch": level}
        path = folder / "sd.pt"
        torch.save(obj, path, pickle_protocol=protocol)
        loaded = load_weights(path, key="model")
        expected = {k: (v.float() if v.dtype == torch.bfloat16 else v)
                    for k, v in sd.items()}
        _same(loaded, expected)
        arrays = list(loaded.values())
        for array in arrays:
            assert array.flags.writeable
        for a, b in zip(arrays, arrays[1:], strict=False):
            assert not np.shares_memory(a, b)

    run()
