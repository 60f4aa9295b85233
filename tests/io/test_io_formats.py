""".npz and .safetensors: save_weights / load_weights round trips, format choice,
hostile .npz headers, and the light-import promise of fastcnn.io."""

import io
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import fastcnn
from fastcnn.io import load_weights, save_weights
from fastcnn.layers import BatchNorm1D, BatchNorm2D, Conv2D, Dense, Flatten, ReLU


def _model():
    fastcnn.seed(3)
    return fastcnn.Sequential([Conv2D(3, 3), BatchNorm2D(), ReLU(), Flatten(),
                               Dense(5), BatchNorm1D(), Dense(2)],
                              input_shape=(1, 5, 5))


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_model_round_trip_is_bitwise(tmp_path, suffix):
    model = _model()
    path = tmp_path / f"w{suffix}"
    save_weights(path, model)
    loaded = load_weights(path)
    state = model.state_dict()
    assert set(loaded) == set(state) | {"1.num_batches_tracked",
                                        "5.num_batches_tracked"}
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)
    assert loaded["1.num_batches_tracked"].dtype == np.int64
    other = _model()
    for array in other.state_dict().values():
        array[...] = 0
    other.load_state_dict(loaded)  # num_batches_tracked is ignored
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(value, state[key])


@pytest.mark.parametrize("format", ["npz", "safetensors"])
def test_explicit_format_and_dict_input(tmp_path, format):
    arrays = {"a": np.arange(6, dtype=np.float64).reshape(2, 3).T,  # non-contiguous
              "b": np.array(3, dtype=np.int64), "c": np.ones(4, np.float16)}
    path = tmp_path / "weights.data"
    save_weights(path, arrays, format=format)
    loaded = load_weights(path)  # no telling suffix: sniffed
    assert loaded.keys() == arrays.keys()
    for key, value in arrays.items():
        assert loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)


def test_save_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="writing .pth needs torch"):
        save_weights(tmp_path / "w.pth", _model())
    with pytest.raises(ValueError, match="format must be"):
        save_weights(tmp_path / "w.h5", _model())
    with pytest.raises(ValueError, match="format must be"):
        save_weights(tmp_path / "w.npz", _model(), format="pickle")
    with pytest.raises(TypeError, match="weights must be"):
        save_weights(tmp_path / "w.npz", [np.zeros(1)])
    with pytest.raises(TypeError, match="non-numeric"):
        save_weights(tmp_path / "w.npz", {"a": np.array(["x"])})
    with pytest.raises(TypeError, match="keys must be str"):
        save_weights(tmp_path / "w.npz", {1: np.zeros(1)})
    with pytest.raises(TypeError, match="path must be"):
        save_weights(3, _model())
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_load_argument_errors(tmp_path):
    path = tmp_path / "w.npz"
    save_weights(path, {"a": np.zeros(2)})
    with pytest.raises(ValueError, match="format must be"):
        load_weights(path, format="h5")
    with pytest.raises(ValueError, match="key= applies to .pth"):
        load_weights(path, key="model")
    with pytest.raises(TypeError, match="max_bytes"):
        load_weights(path, max_bytes=-1)
    with pytest.raises(ValueError, match="max_bytes=8"):
        load_weights(path, max_bytes=8)
    odd = tmp_path / "w.unknown"
    odd.write_bytes(b"hello world")
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_weights(odd)
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "absent.npz")


def _npz_with(tmp_path, name: str, member: bytes):
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, member)
    return path


def _npy(array, header_shape=None) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    data = buffer.getvalue()
    if header_shape is not None:
        data = data.replace(repr(array.shape).encode(), repr(header_shape).encode())
    return data


def test_hostile_npz_files(tmp_path):
    # Object arrays (pickle inside .npy) are refused, not unpickled.
    with pytest.raises(ValueError, match="object array"):
        load_weights(_npz_with(tmp_path, "a.npy",
                               _npy(np.array([{"x": 1}], dtype=object))))
    # A header claiming far more data than the member holds: nothing allocated.
    big = _npy(np.zeros(100, np.float32), header_shape=(10**12,))
    with pytest.raises(ValueError, match="claims shape"):
        load_weights(_npz_with(tmp_path, "a.npy", big))
    with pytest.raises(ValueError, match="not an .npy"):
        load_weights(_npz_with(tmp_path, "a.txt", b"hi"))
    with pytest.raises(ValueError, match="no valid .npy header"):
        load_weights(_npz_with(tmp_path, "a.npy", b"\x93NUMPY\x01\x00junk"))
    good = tmp_path / "good.npz"
    save_weights(good, {"a": np.arange(1000.0)})
    data = good.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_weights(cut)


def test_fortran_order_npz(tmp_path):
    array = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    path = _npz_with(tmp_path, "a.npy", _npy(array))
    loaded = load_weights(path)["a"]
    assert loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, array)


def test_bad_safetensors_files(tmp_path):
    pytest.importorskip("safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ValueError, match="not a valid .safetensors"):
        load_weights(junk)
    good = tmp_path / "good.safetensors"
    save_weights(good, {"a": np.arange(100.0)})
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-80])
    with pytest.raises(ValueError, match="not a valid .safetensors"):
        load_weights(cut)


def test_import_stays_light(tmp_path):
    """`import fastcnn` imports neither fastcnn.io nor safetensors nor torch;
    fastcnn.io loads on attribute access and still imports neither."""
    code = textwrap.dedent("""
        import sys
        import fastcnn
        before = [m in sys.modules for m in ("fastcnn.io", "safetensors", "torch")]
        fastcnn.io.load_weights
        after = [m in sys.modules for m in ("fastcnn.io", "safetensors", "torch")]
        print(before, after)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[False, False, False] [True, False, False]"


def test_missing_safetensors_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import raises
    with pytest.raises(ImportError, match=r"fastcnn\[safetensors\]"):
        save_weights(tmp_path / "w.safetensors", {"a": np.zeros(2)})


def test_compressed_npz_may_inflate_past_the_model_file_cap(tmp_path):
    # load_model caps inflation at 64 MiB; load_weights at max_bytes, which by
    # default is 4x the file's size plus 64 MiB: a compressed file of 80 MiB of
    # zeros (~80 kB) loads when the caller raises max_bytes, not by default.
    path = tmp_path / "big.npz"
    np.savez_compressed(path, w=np.zeros(20 << 20, np.float32))  # 80 MiB
    assert load_weights(path, max_bytes=1 << 30)["w"].shape == (20 << 20,)
    with pytest.raises(ValueError, match="zip bomb"):
        load_weights(path)
    with pytest.raises(ValueError, match="zip bomb"):
        load_weights(path, max_bytes=64 << 20)


def test_a_corrupt_zip_without_a_suffix_is_a_clear_error(tmp_path):
    # Sniffing the format of a suffix-less file must not leak zipfile's raw errors.
    from fastcnn.io import load_weights

    path = tmp_path / "weights"
    path.write_bytes(b"PK\x03\x04" + b"\xff" * 200)
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_weights(path)
