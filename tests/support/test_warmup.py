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
    # width 2 is under Winograd's channel minimum: the direct kernel compiled.
    assert any("float64" in str(sig)
               for sig in conv._conv2d_backward_weight_direct.signatures)
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
