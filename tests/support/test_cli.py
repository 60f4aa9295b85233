"""The command line, driven as a user would: a subprocess per command."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")  # the offline default dataset (digits)


def run_cli(*args, env=None, cwd=None, timeout=600):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "fastcnn", *args],
                          capture_output=True, text=True, env=full_env, cwd=cwd,
                          timeout=timeout)


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_summary_prints_the_layer_table():
    result = run_cli("summary", "--model", "lenet5", "--input-shape", "1,28,28")
    assert result.returncode == 0, result.stderr
    assert "Conv2D" in result.stdout and "Dense" in result.stdout
    assert "61,706" in result.stdout  # LeNet-5's parameter count on 28x28 inputs


def test_train_save_plot_then_evaluate(tmp_path):
    model_path = tmp_path / "digits.fcnn"
    plot_path = tmp_path / "curves.png"
    result = run_cli("train", "--epochs", "2", "--quiet", "--save", str(model_path),
                     "--plot", str(plot_path))
    assert result.returncode == 0, result.stderr
    assert "test accuracy:" in result.stdout and "wall time:" in result.stdout
    accuracy = float(result.stdout.split("test accuracy:")[1].split()[0])
    assert accuracy > 0.8
    assert model_path.stat().st_size > 0
    assert plot_path.read_bytes()[:4] == b"\x89PNG"
    again = run_cli("evaluate", "--load", str(model_path), "--dataset", "digits")
    assert again.returncode == 0, again.stderr
    assert float(again.stdout.split("test accuracy:")[1].split()[0]) == accuracy


@pytest.mark.parametrize("args, fragment", [
    (("train", "--epochs", "0"), "must be positive"),
    (("train", "--lr", "fast"), "expected a number"),
    (("train", "--dataset", "cifar"), "invalid choice: 'cifar'"),
    (("summary", "--input-shape", "1,x,28"), "comma-separated positive ints"),
    (("evaluate",), "--load"),
])
def test_bad_options_say_what_is_wrong(args, fragment):
    assert_clean_error(run_cli(*args), fragment)


def test_missing_data_says_what_to_do(tmp_path):
    result = run_cli("train", "--dataset", "mnist", "--offline", "--data-dir",
                     str(tmp_path / "nowhere"),
                     env={"FASTCNN_DATA": "", "FASTCNN_CACHE_DIR": str(tmp_path)})
    assert_clean_error(result, "could not load mnist", "FASTCNN_DATA")


def test_missing_model_file_is_a_clean_error(tmp_path):
    result = run_cli("evaluate", "--load", str(tmp_path / "absent.fcnn"))
    assert_clean_error(result, "could not load the model")


def test_cuda_without_a_gpu_is_a_clean_error():
    # Without the simulator and without a GPU, "cuda" must say so and "auto" must not.
    env = {"NUMBA_ENABLE_CUDASIM": "0"}
    probe = subprocess.run(
        [sys.executable, "-c", "from numba import cuda; print(cuda.is_available())"],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    if probe.stdout.strip() == "True":
        pytest.skip("a CUDA GPU is present")
    result = run_cli("train", "--device", "cuda", "--epochs", "1", env=env)
    assert_clean_error(result, "no CUDA GPU is available")


@pytest.mark.parametrize("argv0,usage", [("/venv/bin/fastcnn", "usage: fastcnn "),
                                         ("/x/fastcnn/__main__.py",
                                          "usage: python -m fastcnn ")])
def test_usage_names_the_command_the_user_typed(monkeypatch, capsys, argv0, usage):
    import sys

    from fastcnn.__main__ import main

    monkeypatch.setattr(sys, "argv", [argv0, "--help"])
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out.startswith(usage)


def test_the_package_ships_its_licence_and_type_marker():
    from pathlib import Path

    import fastcnn

    root = Path(fastcnn.__file__).resolve().parent
    assert (root / "py.typed").is_file()
    licence = (root.parent / "LICENSE").read_text()
    assert licence.startswith("MIT License")
    pyproject = (root.parent / "pyproject.toml").read_text()
    assert 'fastcnn = ["py.typed"]' in pyproject
    assert 'license-files = ["LICENSE"]' in pyproject


def test_train_on_cifar10_from_a_folder_of_batch_files(tmp_path):
    # A tiny stand-in with the official layout: the real archive is 170 MB.
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        records = rng.integers(0, 256, (6, 3073), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, 6)
        (folder / name).write_bytes(records.tobytes())
    result = run_cli("train", "--dataset", "cifar10", "--data-dir",
                     str(tmp_path / "cifar"), "--offline", "--epochs", "1",
                     "--batch-size", "8", "--quiet",
                     env={"FASTCNN_DATA": "", "FASTCNN_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "training simple_cnn on cifar10: 30 images" in result.stdout
    assert "test accuracy:" in result.stdout
