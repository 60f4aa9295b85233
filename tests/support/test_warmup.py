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
    # LeNet-5's ReLUs before the dense layers differ in input shape: kept apart.
    assert len(job["layers"]) == len(model.layers)
    assert job["layers"][0]["input_grad"] is False
    assert all(spec["input_grad"] for spec in job["layers"][1:])
    twice = fastcnn.Sequential([fastcnn.layers.ReLU(), fastcnn.layers.ReLU()],
                               input_shape=(3,))
    assert len(wm._job(twice, 2, None, None)["layers"]) == 2  # first: no dx
    same = fastcnn.Sequential([fastcnn.layers.Dense(3), fastcnn.layers.ReLU(),
                               fastcnn.layers.ReLU(), fastcnn.layers.ReLU()],
                              input_shape=(3,))
    assert len(wm._job(same, 2, None, None)["layers"]) == 2
    for parts in (1, 2, 3, 20):
        shares = wm._split(job, parts)
        assert 1 <= len(shares) <= parts
        names = sorted(spec["entry"]["config"]["name"]
                       for share in shares for spec in share["layers"])
        assert names == sorted(spec["entry"]["config"]["name"]
                               for spec in job["layers"])
        assert sum(share["loss"] is not None for share in shares) == 1


def test_the_split_shares_kernels_out_instead_of_compiling_them_twice():
    # LeNet-5's two convolutions run the same forward and weight-gradient kernels
    # (kernel_plan names them); the second adds the input gradient. Measured cold on
    # 2 cores: with them in different processes at the same time, both compiled the
    # shared kernels (16 s); scheduled so the second starts when the first process
    # has put them in the cache, 12.9 s.
    wm = _warmup_module()
    model = models.lenet5()
    model.compile("sgd", "cross_entropy")
    job = wm._job(model, 64, model.optimizer, fastcnn.losses.get(model.loss))
    conv_1, conv_2 = (layer.name for layer in model.layers
                      if type(layer).__name__ == "Conv2D")
    kernels = {spec["entry"]["config"]["name"]: spec["kernels"]
               for spec in job["layers"]}
    # The rows weight gradient writes the bias gradient too: no bias kernel.
    assert kernels[conv_1] == ["conv2d/forward:rows", "conv2d/weight:rows",
                               "optimizer"]
    assert kernels[conv_2] == ["conv2d/forward:rows", "conv2d/input:rows",
                               "conv2d/weight:rows", "optimizer"]
    shares = wm._split(job, 2)
    names = [[spec["entry"]["config"]["name"] for spec in share["layers"]]
             for share in shares]
    first = next(k for k, share in enumerate(names) if conv_1 in share)
    second = next(k for k, share in enumerate(names) if conv_2 in share)
    assert first != second
    assert names[second].index(conv_2) > 0  # not at once: after other layers


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
