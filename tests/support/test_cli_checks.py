"""The command line fails fast and says what it means (issue 19, item 3).

Every bad option is refused before a dataset is read or a step is trained: the
cases below point --data-dir at an empty folder with --offline, so a check that
ran after loading would print "could not load ..." instead of its own message.
Models here are tiny Flatten+Dense files (no convolution to compile), and the one
training run is in-process on a Dense model, so the file runs in seconds.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fastcnn._cli_checks import chance_warning, split_sizes

from ..data_paths import DATA

SHARED = DATA
#: No dataset anywhere: a check that ran after loading would fail on the data first.
NO_DATA = {"FASTCNN_DATA": ""}


def run_cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastcnn", *args],
                          capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def assert_clean_error(result, *fragments, absent=("could not load",)):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "training" not in result.stdout, result.stdout  # no run started
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    for fragment in absent:
        assert fragment not in result.stderr, result.stderr


def nowhere(tmp_path):
    """Options that make any dataset read fail (MNIST, offline, empty folder)."""
    return ("--dataset", "mnist", "--offline", "--data-dir", str(tmp_path / "none"))


def dense_model(path, outputs=10, last=None, zero=False, input_shape=(1, 8, 8)):
    import fastcnn
    from fastcnn.layers import Dense, Flatten

    layers = [Flatten(), Dense(outputs)] + ([last] if last is not None else [])
    model = fastcnn.Sequential(layers, input_shape=input_shape)
    if zero:
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.save(path)
    return model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "dense.fcnn"
    return path, dense_model(path)


# ---- train: --plot and --save are checked before anything else -----------------


def test_plot_without_matplotlib_fails_before_training(tmp_path):
    # matplotlib is installed here: a package of that name that fails to import
    # stands in for its absence.
    stub = tmp_path / "stub" / "matplotlib"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "raise ImportError(\"No module named 'matplotlib'\")\n")
    path = os.pathsep.join([str(tmp_path / "stub"), os.environ.get("PYTHONPATH", "")])
    result = run_cli("train", *nowhere(tmp_path), "--plot", str(tmp_path / "c.png"),
                     env={**NO_DATA, "PYTHONPATH": path})
    assert_clean_error(result, "--plot needs matplotlib", "fastcnn[plot]")


@pytest.mark.parametrize("where, fragments", [
    ("missing/m.fcnn", ("--save", "missing", "does not exist")),
    (".", ("--save", "is a folder")),
    ("a_file/m.fcnn", ("--save", "a_file", "is not a folder")),
])
def test_an_unwritable_save_path_fails_before_training(tmp_path, where, fragments):
    (tmp_path / "a_file").write_text("")
    result = run_cli("train", *nowhere(tmp_path), "--save", str(tmp_path / where),
                     env=NO_DATA)
    assert_clean_error(result, *fragments)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_read_only_save_folder_fails_before_training(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run_cli("train", *nowhere(tmp_path), "--save",
                         str(locked / "m.fcnn"), env=NO_DATA)
    finally:
        locked.chmod(0o700)
    assert_clean_error(result, "--save", "cannot write in")


def test_a_plot_name_matplotlib_cannot_write_fails_before_training(tmp_path):
    pytest.importorskip("matplotlib")
    for name, fragment in (("curves.txt", ".png"), ("gone/c.png", "does not exist")):
        result = run_cli("train", *nowhere(tmp_path), "--plot", str(tmp_path / name),
                         env=NO_DATA)
        assert_clean_error(result, "--plot", fragment)


# ---- train --validation-split ----------------------------------------------------


@pytest.mark.parametrize("value, fragment", [
    ("1", "below 1"), ("-0.1", "at least 0"), ("half", "expected a number"),
])
def test_validation_split_must_be_a_fraction(tmp_path, value, fragment):
    result = run_cli("train", *nowhere(tmp_path), "--validation-split", value,
                     env=NO_DATA)
    assert_clean_error(result, "--validation-split", fragment)


def test_validation_split_sizes_match_fit():
    from fastcnn.training.data import split_rows

    for n, fraction in ((1438, 0.2), (10, 0.25), (7, 0.5), (1000, 0.1)):
        train, val = split_rows(n, fraction, 0, None)
        assert split_sizes(n, fraction) == (len(train), len(val))
    assert split_sizes(50, 0.0) == (50, 0)


def _train_in_process(monkeypatch, capsys, *args):
    """``main(["train", ...])`` on the digits with a Dense model standing in for
    the CNN (nothing to compile but the dense kernels)."""
    pytest.importorskip("sklearn")
    import fastcnn
    from fastcnn import __main__ as cli
    from fastcnn.layers import Dense, Flatten

    built = []

    def dense(name, input_shape, num_classes):
        built.append(fastcnn.Sequential([Flatten(), Dense(num_classes)],
                                        input_shape=input_shape))
        return built[-1]

    monkeypatch.setattr(cli, "_build_model", dense)
    status = cli.main(["train", "--quiet", "--schedule", "constant", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_validation_split_holds_images_out_and_reports_them(monkeypatch, capsys):
    status, out, err = _train_in_process(monkeypatch, capsys, "--epochs", "2",
                                         "--validation-split", "0.2")
    assert status == 0, err
    # 1,438 training images of the digits: int(1438 * 0.8) trained on.
    assert "1150 images (288 held out for validation)" in out
    val_accuracy = float(out.split("validation accuracy:")[1].split()[0])
    assert 0.5 < val_accuracy <= 1.0
    assert "test accuracy:" in out


def test_a_split_that_leaves_no_training_images_is_refused(monkeypatch, capsys):
    status, out, err = _train_in_process(monkeypatch, capsys,
                                         "--validation-split", "0.9999")
    assert status == 2
    assert "--validation-split 0.9999 leaves 0 training and 1438 validation" in err
    assert "training" not in out


# ---- evaluate: a model and a dataset that do not fit -----------------------------


def test_evaluate_refuses_another_input_shape_before_reading_data(tmp_path,
                                                                   model_file):
    result = run_cli("evaluate", "--load", str(model_file[0]), *nowhere(tmp_path),
                     env=NO_DATA)
    assert_clean_error(result, "--load", "(1, 8, 8)", "--dataset mnist",
                       "(1, 28, 28)")


def test_evaluate_refuses_another_class_count(tmp_path):
    path = tmp_path / "five.fcnn"
    dense_model(path, outputs=5, input_shape=(1, 28, 28))
    result = run_cli("evaluate", "--load", str(path), *nowhere(tmp_path), env=NO_DATA)
    assert_clean_error(result, "--load", "outputs of shape (5,)", "10 classes")


def test_evaluate_warns_when_accuracy_is_near_chance(tmp_path):
    pytest.importorskip("sklearn")
    path = tmp_path / "zero.fcnn"
    dense_model(path, zero=True)  # every logit 0: always class 0, ~10% right
    result = run_cli("evaluate", "--load", str(path), "--dataset", "digits")
    assert result.returncode == 0, result.stderr
    assert "test accuracy: 0.1" in result.stdout
    assert "warning: accuracy 0.1" in result.stderr
    assert "near chance" in result.stderr and "Traceback" not in result.stderr


def test_the_chance_warning_names_the_look_alike_dataset():
    assert chance_warning(0.9, "mnist") == ""
    assert chance_warning(0.16, "mnist") == ""
    warning = chance_warning(0.11, "mnist")
    assert "near chance" in warning and "fashion-mnist" in warning
    assert "mnist" in chance_warning(0.1, "fashion-mnist")
    assert "trained on" in chance_warning(0.1, "digits")


# ---- predict ----------------------------------------------------------------------


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_predict_writes_probabilities_or_logits(tmp_path, model_file):
    path, model = model_file
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    logits = model.predict(x)
    for extra, expected in (((), _softmax(logits)), (("--logits",), logits)):
        result = run_cli("predict", "--load", str(path), "--input",
                         str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
                         *extra)
        assert result.returncode == 0, result.stderr
        assert "of 5 images, shape (5, 10)" in result.stdout
        y = np.load(tmp_path / "y.npy", allow_pickle=False)
        assert y.shape == (5, 10) and y.dtype == np.float32
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    # One image (no batch axis) is a batch of one.
    np.save(tmp_path / "one.npy", x[0])
    result = run_cli("predict", "--load", str(path), "--input",
                     str(tmp_path / "one.npy"), "--output", str(tmp_path / "y1.npy"))
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y1.npy"), _softmax(logits[:1]),
                               rtol=1e-5, atol=1e-6)


def test_predict_with_dataset_standardises_as_train_does(tmp_path, model_file):
    pytest.importorskip("sklearn")
    from fastcnn.datasets import channel_stats, load_digits, normalize

    path, model = model_file
    (train_x, _), (test_x, _) = load_digits()
    np.save(tmp_path / "x.npy", test_x[:4])
    result = run_cli("predict", "--load", str(path), "--input", str(tmp_path / "x.npy"),
                     "--output", str(tmp_path / "y.npy"), "--dataset", "digits")
    assert result.returncode == 0, result.stderr
    expected = _softmax(model.predict(normalize(test_x[:4], *channel_stats(train_x))))
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5,
                               atol=1e-6)


def _write_bad_inputs(folder):
    rng = np.random.default_rng(1)
    np.save(folder / "shape.npy", rng.random((3, 8, 8), dtype=np.float32))
    np.save(folder / "objects.npy", np.array([{"a": 1}, None], dtype=object),
            allow_pickle=True)
    np.savez(folder / "archive.npz", x=rng.random((3, 1, 8, 8)))
    np.save(folder / "pixels.npy", rng.integers(0, 256, (3, 1, 8, 8), dtype=np.uint8))
    np.save(folder / "empty.npy", np.zeros((0, 1, 8, 8), np.float32))
    np.save(folder / "whole.npy", rng.random((3, 1, 8, 8), dtype=np.float32))
    data = (folder / "whole.npy").read_bytes()
    (folder / "truncated.npy").write_bytes(data[:-20])
    # A header claiming 256 TB: np.load alone would try to allocate it.
    with open(folder / "huge.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f4", "fortran_order": False,
                     "shape": (10**12, 1, 8, 8)})
        handle.write(b"\0" * 64)


@pytest.mark.parametrize("name, fragments", [
    ("shape.npy", ("(3, 8, 8)", "(N, 1, 8, 8)", "(1, 8, 8)")),
    ("objects.npy", ("dtype object", "pickled")),
    ("archive.npz", ("not a .npy file",)),
    ("pixels.npy", ("uint8", "255")),
    ("empty.npy", ("holds no images",)),
    ("truncated.npy", ("header promises shape (3, 1, 8, 8)", "truncated")),
    ("huge.npy", ("header promises shape (1000000000000, 1, 8, 8)",)),
    ("absent.npy", ("cannot read it",)),
])
def test_predict_refuses_bad_input_files(tmp_path, model_file, name, fragments):
    _write_bad_inputs(tmp_path)
    result = run_cli("predict", "--load", str(model_file[0]), "--input",
                     str(tmp_path / name), "--output", str(tmp_path / "y.npy"))
    assert_clean_error(result, f"--input {tmp_path / name}", *fragments)
    assert not (tmp_path / "y.npy").exists()


def test_predict_checks_output_and_options_first(tmp_path, model_file):
    # The output folder is checked before the model is even read.
    result = run_cli("predict", "--load", str(tmp_path / "absent.fcnn"), "--input",
                     "x.npy", "--output", str(tmp_path / "gone" / "y.npy"))
    assert_clean_error(result, "--output", "does not exist",
                       absent=("could not load the model",))
    # A dataset of another shape, before the dataset or the input is read.
    result = run_cli("predict", "--load", str(model_file[0]), "--input", "x.npy",
                     "--output", str(tmp_path / "y.npy"), *nowhere(tmp_path),
                     env=NO_DATA)
    assert_clean_error(result, "--dataset mnist", "(1, 28, 28)")
    # --logits of a model whose last layer is a Softmax.
    from fastcnn.layers import Softmax

    dense_model(tmp_path / "soft.fcnn", last=Softmax())
    result = run_cli("predict", "--load", str(tmp_path / "soft.fcnn"), "--input",
                     "x.npy", "--output", str(tmp_path / "y.npy"), "--logits")
    assert_clean_error(result, "--logits", "Softmax")


# ---- a data folder that holds the other dataset ------------------------------------


@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(),
                    reason=f"shared data not found at {SHARED}")
def test_a_folder_of_the_other_dataset_is_named_not_downloaded_over(
        tmp_path, monkeypatch, capsys):
    from fastcnn import __main__ as cli
    from fastcnn._config import settings
    from fastcnn.datasets import mnist as mnist_module

    # Fashion-MNIST's label file (its sha256 tells the datasets apart); the other
    # three files only have to exist.
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(SHARED / "fashion-mnist" / "train-labels-idx1-ubyte.gz", folder)
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (folder / name).write_bytes(b"")
    # Downloads allowed (no --offline), but from a port nothing listens on.
    monkeypatch.setattr(settings, "data_dir", None)
    monkeypatch.setattr(settings, "cache_dir", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", ("http://127.0.0.1:9/",))
    status = cli.main(["train", "--dataset", "mnist", "--data-dir", str(folder),
                       "--quiet"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "could not load mnist" in err
    assert f"{folder} (path; holds Fashion-MNIST instead)" in err
    assert not (tmp_path / "cache" / "mnist").exists() or not any(
        (tmp_path / "cache" / "mnist").iterdir())


def test_predict_reads_a_png_or_jpeg_of_the_models_size(tmp_path, model_file):
    Image = pytest.importorskip("PIL.Image")
    path, model = model_file  # takes (1, 8, 8)
    pixels = np.random.default_rng(3).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "digit.png")
    # An RGB file is converted to grey as Pillow's "L" does.
    Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(tmp_path / "rgb.png")
    expected = _softmax(model.predict((pixels / np.float32(255))[None, None]
                                      .astype(np.float32)))
    for name in ("digit.png", "rgb.png"):
        result = run_cli("predict", "--load", str(path), "--input",
                         str(tmp_path / name), "--output", str(tmp_path / "y.npy"))
        assert result.returncode == 0, result.stderr
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5,
                                   atol=1e-6)
    Image.fromarray(pixels).save(tmp_path / "digit.jpg", quality=95)
    result = run_cli("predict", "--load", str(path), "--input",
                     str(tmp_path / "digit.jpg"), "--output", str(tmp_path / "y.npy"))
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "y.npy").shape == (1, 10)


def test_predict_refuses_images_it_cannot_use(tmp_path, model_file):
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "tall.png")
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    for name, fragment in (("tall.png", "the image is 8x9 (width x height) but the "
                                        "model takes 8x8; resize it first"),
                           ("junk.png", "not a readable image"),
                           ("absent.jpeg", "cannot read it")):
        result = run_cli("predict", "--load", str(model_file[0]), "--input",
                         str(tmp_path / name), "--output", str(tmp_path / "y.npy"))
        assert_clean_error(result, f"--input {tmp_path / name}: {fragment}")
        assert not (tmp_path / "y.npy").exists()


def test_predict_image_without_pillow_fails_before_reading_the_model(tmp_path):
    # A sitecustomize that hides PIL, as on a machine without Pillow.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['PIL'] = None\n")
    result = run_cli("predict", "--load", str(tmp_path / "absent.fcnn"), "--input",
                     str(tmp_path / "x.png"), "--output", str(tmp_path / "y.npy"),
                     env={"PYTHONPATH": str(tmp_path)})
    assert_clean_error(result, "needs Pillow (pip install pillow)")
