"""fastcnn.warmup compiles ahead of time and changes nothing."""

import numpy as np
import pytest

import fastcnn
from fastcnn import models
from fastcnn.kernels.cpu import conv


def test_warmup_compiles_and_leaves_the_model_alone(capsys):
    model = models.simple_cnn(input_shape=(1, 8, 8), num_classes=3, width=2,
                              dtype="float64")
    model.compile("adam", "cross_entropy")
    before = {k: v.copy() for k, v in model.state_dict().items()}
    rng_state = np.random.get_state()[1].copy()
    seconds = fastcnn.warmup(model, batch_size=3)
    assert seconds > 0
    assert "compiled 15 layers" in capsys.readouterr().err
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    np.testing.assert_array_equal(np.random.get_state()[1], rng_state)
    # width 2 is under Winograd's channel minimum: the rows weight gradient
    # (stride 1, 3x3) compiled.
    assert any("float64" in str(sig)
               for sig in conv._conv2d_backward_weight_rows.signatures)
    # The model still trains, and the optimizer has taken no step during warmup.
    assert model.optimizer.iterations == 0
    model.train_step(np.zeros((2, 1, 8, 8)), np.array([0, 1]))


def test_warmup_rejects_bad_arguments():
    with pytest.raises(TypeError, match="model must be a fastcnn.Sequential"):
        fastcnn.warmup("lenet5")
    unbuilt = fastcnn.Sequential([fastcnn.layers.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        fastcnn.warmup(unbuilt)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        fastcnn.warmup(models.lenet5(), batch_size=0)
    with pytest.raises(ValueError, match="workers must be a positive int"):
        fastcnn.warmup(models.lenet5(), workers=0)


def _warmup_module():
    import sys

    return sys.modules["fastcnn.warmup"]


def test_the_job_names_each_distinct_layer_once_and_the_split_loses_nothing():
    wm = _warmup_module()
    model = models.lenet5()
    model.compile("sgd", "cross_entropy")
    job = wm._job(model, 4, model.optimizer, fastcnn.losses.get(model.loss))
    # LeNet-5's ReLUs before the dense layers differ in input shape: kept apart;
    # the second convolution comes in two parts (its input gradient apart).
    layers = [spec["entry"]["config"]["name"] for spec in job["layers"]]
    assert sorted(set(layers)) == sorted(layer.name for layer in model.layers)
    assert len(layers) == len(model.layers) + 1
    assert job["layers"][0]["input_grad"] is False
    assert all(spec["input_grad"] for spec in job["layers"][1:])
    twice = fastcnn.Sequential([fastcnn.layers.ReLU(), fastcnn.layers.ReLU()],
                               input_shape=(3,))
    assert len(wm._job(twice, 2, None, None)["layers"]) == 2  # first: no dx
    same = fastcnn.Sequential([fastcnn.layers.Dense(3), fastcnn.layers.ReLU(),
                               fastcnn.layers.ReLU(), fastcnn.layers.ReLU()],
                              input_shape=(3,))
    # Dense; the ReLU its kernel applies (only its backward runs a kernel); the
    # two ReLUs after it, alike.
    specs = wm._job(same, 2, None, None)["layers"]
    assert [spec["adopt"] for spec in specs] == [False, True, False]
    every_kernel = {k for spec in job["layers"] for k in spec["kernels"]}
    for parts in (1, 2, 3, 20):
        shares = wm._split(job, parts)
        assert 1 <= len(shares) <= parts
        # Layers whose kernels another process compiles first are left out
        # (the caller loads them at the end); no kernel is lost.
        assert {k for share in shares for spec in share["layers"]
                for k in spec["kernels"]} == every_kernel
        assert sum(share["loss"] is not None for share in shares) == 1


def test_the_split_shares_kernels_out_instead_of_compiling_them_twice():
    # LeNet-5's two convolutions run the same forward and weight-gradient kernels
    # (kernel_plan names them); the second adds the input gradient. Measured cold
    # on 2 cores: with them in different processes at the same time, both
    # compiled the shared kernels (16 s); whole layers scheduled so the second
    # starts when the first process has put them in the cache, 12.9 s, but a
    # second process that ran faster than estimated reached it first (23 s).
    # Now the second's input gradient is a part of its own, in the other
    # process, and its other part, which compiles nothing new, is left out.
    wm = _warmup_module()
    model = models.lenet5()
    model.compile("sgd", "cross_entropy")
    job = wm._job(model, 64, model.optimizer, fastcnn.losses.get(model.loss))
    conv_1, conv_2 = (layer.name for layer in model.layers
                      if type(layer).__name__ == "Conv2D")
    kernels = {(spec["entry"]["config"]["name"], spec.get("part")): spec["kernels"]
               for spec in job["layers"]}
    # The rows weight gradient writes the bias gradient too: no bias kernel.
    rows = ["conv2d/helpers:row-products", "conv2d/helpers:band-rows",
            "conv2d/forward:rows", "conv2d/weight:rows", "optimizer"]
    assert kernels[conv_1, None] == rows
    assert kernels[conv_2, "main"] == rows
    assert kernels[conv_2, "input"] == ["conv2d/helpers:row-products",
                                        "conv2d/input:rows"]
    shares = wm._split(job, 2)
    parts = [[(spec["entry"]["config"]["name"], spec.get("part"))
              for spec in share["layers"]] for share in shares]
    first = next(k for k, share in enumerate(parts) if (conv_1, None) in share)
    second = next(k for k, share in enumerate(parts) if (conv_2, "input") in share)
    assert first != second
    assert all((conv_2, "main") not in share for share in parts)
    compiled = [{k for spec in share["layers"] for k in spec["kernels"]}
                for share in shares]
    assert "conv2d/weight:rows" not in compiled[second]
    assert "conv2d/input:rows" not in compiled[first]


def test_a_compile_worker_runs_a_job(tmp_path):
    # The worker process on its own: it builds each layer from its entry and runs
    # it, an optimizer step and the loss, and exits cleanly.
    import json
    import subprocess
    import sys

    wm = _warmup_module()
    model = models.simple_cnn(input_shape=(1, 8, 8), num_classes=3, width=2,
                              dtype="float64")
    model.compile("adam", "cross_entropy")
    job = wm._job(model, 3, model.optimizer, fastcnn.losses.get(model.loss))
    done = subprocess.run([sys.executable, "-m", "fastcnn._warmup_worker"],
                          input=json.dumps(job), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def test_warmup_in_one_process_starts_no_worker(monkeypatch, capsys):
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError("no worker process may start with workers=1")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    model = models.lenet5()
    fastcnn.warmup(model, batch_size=2, workers=1)
    assert "compiling in" not in capsys.readouterr().err
