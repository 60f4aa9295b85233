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
               for sig in conv._weight_rows_kernel.signatures)
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
    # the convolutions come in parts (forward, parameter gradients, and the
    # second's input gradient).
    layers = [spec["entry"]["config"]["name"] for spec in job["layers"]]
    assert sorted(set(layers)) == sorted(layer.name for layer in model.layers)
    assert len(layers) == len(model.layers) + 3
    assert [spec["input_grad"] for spec in job["layers"][:2]] == [False, False]
    assert all(spec["input_grad"] for spec in job["layers"][2:])
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
    # Now each convolution comes in parts (forward, parameter gradients, input
    # gradient) that the schedule shares out, and a part that compiles nothing
    # new is left out.
    wm = _warmup_module()
    model = models.lenet5()
    model.compile("sgd", "cross_entropy")
    job = wm._job(model, 64, model.optimizer, fastcnn.losses.get(model.loss))
    conv_1, conv_2 = (layer.name for layer in model.layers
                      if type(layer).__name__ == "Conv2D")
    kernels = {(spec["entry"]["config"]["name"], spec.get("part")): spec["kernels"]
               for spec in job["layers"]}
    # The rows weight gradient writes the bias gradient too: no bias kernel.
    forward = ["conv2d/helpers:band-rows", "conv2d/helpers:row-products",
               "conv2d/forward:rows"]
    weight = ["conv2d/helpers:band-rows", "helpers:dots", "conv2d/weight:rows",
              "optimizer"]
    for name in (conv_1, conv_2):
        assert kernels[name, "forward"] == forward
        assert kernels[name, "weight"] == weight
    assert (conv_1, "input") not in kernels  # the images need no gradient
    assert kernels[conv_2, "input"] == ["conv2d/helpers:row-products",
                                        "conv2d/input:rows"]
    shares = wm._split(job, 2)
    compiled = [{k for spec in share["layers"] for k in spec["kernels"]}
                for share in shares]
    # The three rows kernels are not all in one process, and the second
    # convolution's forward and weight parts, which compile nothing new, are
    # left out.
    owner = {k: i for i, kernels_of in enumerate(compiled) for k in kernels_of
             if k.startswith("conv2d/") and ":rows" in k}
    assert len(set(owner.values())) == 2
    names = [(spec["entry"]["config"]["name"], spec.get("part"))
             for share in shares for spec in share["layers"]]
    assert (conv_2, "forward") not in names and (conv_2, "weight") not in names


def test_the_worker_runs_each_part_of_a_convolution():
    import json
    import subprocess
    import sys

    wm = _warmup_module()
    model = fastcnn.Sequential([fastcnn.layers.Conv2D(2, 3), fastcnn.layers.Conv2D(
        2, 3)], input_shape=(1, 6, 6), dtype="float64")
    model.compile("sgd", "mse")
    job = wm._job(model, 2, model.optimizer, fastcnn.losses.get(model.loss))
    assert [spec.get("part") for spec in job["layers"]] == [
        "forward", "weight", "forward", "weight", "input"]
    done = subprocess.run([sys.executable, "-m", "fastcnn._warmup_worker"],
                          input=json.dumps(job), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    from fastcnn._warmup_worker import run_conv_part

    with pytest.raises(ValueError, match="unknown part"):
        run_conv_part(model.layers[0], "main", np.zeros((1, 1, 6, 6)), None)


def test_an_input_gradient_on_forward_kernels_stays_with_the_forward():
    # simple_cnn's 64-channel convolutions run Winograd, whose input gradient
    # is the forward's kernel on dy: that part runs both.
    wm = _warmup_module()
    model = models.simple_cnn(input_shape=(1, 8, 8), num_classes=3)
    model.compile("sgd", "cross_entropy")
    job = wm._job(model, 32, model.optimizer, fastcnn.losses.get(model.loss))
    parts = {(spec["entry"]["config"]["name"], spec.get("part")): spec["kernels"]
             for spec in job["layers"]}
    winograd = [name for name, part in parts if part == "forward+input"]
    assert winograd
    for name in winograd:
        assert parts[name, "forward+input"] == ["conv2d/winograd"]
        assert "conv2d/weight:winograd" in parts[name, "weight"]
        assert (name, "input") not in parts


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
