"""The model zoo: shapes, parameter counts, bad arguments."""

import numpy as np
import pytest

from fastcnn import models


def test_lenet5_on_mnist_shapes_has_the_classic_parameter_count():
    model = models.lenet5()
    assert model.output_shape == (10,)
    # conv 156 + conv 2,416 + dense 48,120 + 10,164 + 850
    assert model.count_params() == (61706, 0)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (1, 16, 12), (2, 4, 4)])
def test_lenet5_adapts_to_small_inputs(shape):
    model = models.lenet5(input_shape=shape, num_classes=3)
    out = model.predict(np.zeros((2, *shape), np.float32))
    assert out.shape == (2, 3)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (1, 28, 28)])
def test_simple_cnn_runs_on_any_size(shape):
    model = models.simple_cnn(input_shape=shape, num_classes=5, width=4)
    out = model.predict(np.zeros((2, *shape), np.float32))
    assert out.shape == (2, 5)


@pytest.mark.parametrize("builder", [models.lenet5, models.simple_cnn])
def test_bad_arguments_name_the_argument(builder):
    with pytest.raises(ValueError, match="input_shape"):
        builder(input_shape=(28, 28))
    with pytest.raises(ValueError, match="at least 4x4"):
        builder(input_shape=(1, 3, 3))
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        builder(num_classes=1)
    with pytest.raises(TypeError, match="num_classes must be an int"):
        builder(num_classes=2.5)


def test_get_knows_the_models():
    assert models.get("lenet5") is models.lenet5
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        models.get("resnet")
