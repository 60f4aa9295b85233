"""The model zoo: shapes, parameter counts, bad arguments, and one training step
of each model against the same network in PyTorch."""

import numpy as np
import pytest

import fastcnn
from fastcnn import models, optimizers


def test_lenet5_on_mnist_shapes_has_the_classic_parameter_count():
    model = models.lenet5()
    assert model.output_shape == (10,)
    # conv 156 + conv 2,416 + dense 48,120 + 10,164 + 850
    assert model.count_params(split=True) == (61706, 0)
    assert model.count_params() == 61706


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


@pytest.mark.parametrize("builder", [models.lenet5, models.simple_cnn,
                                     models.resnet])
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
    assert models.get("resnet") is models.resnet
    with pytest.raises(ValueError, match="unknown model 'vgg16'"):
        models.get("vgg16")


def test_resnet20_has_he_et_al_s_size_and_named_layers():
    model = models.resnet(20)
    assert isinstance(model, fastcnn.Model) and model.output_shape == (10,)
    # He et al. (2016), table 6: 0.27 M parameters (ours with projection
    # shortcuts, which add 2 x (16*32 + 32*64) weights and their batch norms).
    trainable, non_trainable = model.count_params(split=True)
    assert trainable == 272_474 and non_trainable == 1_568
    assert sum(isinstance(layer, fastcnn.layers.Add) for layer in model.layers) == 9
    assert "stage3_block3_conv2.weight" in model.state_dict()
    small = models.resnet(8, input_shape=(1, 8, 8), num_classes=3, width=4)
    assert small.predict(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 3)


@pytest.mark.parametrize("depth", [7, 9, 0, "20", True])
def test_resnet_refuses_a_depth_that_is_not_6n_plus_2(depth):
    with pytest.raises(ValueError, match="6n \\+ 2"):
        models.resnet(depth)


# ------------------------------------------------ one training step against torch

ZOO = {
    "lenet5": lambda dtype: models.lenet5(input_shape=(1, 28, 28), num_classes=10,
                                          dtype=dtype),
    "lenet5_small_input": lambda dtype: models.lenet5(input_shape=(2, 12, 10),
                                                      num_classes=3, dtype=dtype),
    # Dropout at p=0: both libraries' masks are random and never agree, so the
    # dropout layer is kept (same indices) but drops nothing.
    "simple_cnn": lambda dtype: models.simple_cnn(input_shape=(3, 16, 16),
                                                  num_classes=5, width=4,
                                                  dropout=0.0, dtype=dtype),
}
# The graph models have their own torch cases: the ResNet in
# tests/model/test_graph_torch.py, the modern zoo in tests/model/test_modern_zoo.py.
GRAPH_ZOO = {"resnet", "mobilenet_v2", "efficientnet_lite0", "convnext"}
assert set(models.MODELS) - GRAPH_ZOO <= {
    name.removesuffix("_small_input") for name in ZOO}, (
    "a zoo model without a torch parity case"
)


@pytest.mark.torch
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 2e-5)])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_one_training_step_of_each_zoo_model_matches_torch(name, dtype, tol):
    torch = pytest.importorskip("torch")
    from .test_training_torch import copy_into_torch, to_torch

    fastcnn.seed(11)
    model = ZOO[name](dtype)
    tmodel = to_torch(model, np.dtype(dtype).type)
    copy_into_torch(model, tmodel)
    tmodel.train()
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, *model.input_shape)).astype(dtype)
    y = rng.integers(0, model.output_shape[0], 6)

    model.compile(optimizers.SGD(0.1, momentum=0.9), "cross_entropy")
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    loss = model.train_step(x, y)
    tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)),
                                              torch.from_numpy(y))
    topt.zero_grad()
    tloss.backward()
    topt.step()

    assert loss == pytest.approx(tloss.item(), rel=tol, abs=tol)
    tparams = dict(tmodel.named_parameters())
    for i, layer in enumerate(model.layers):
        for key, grad in layer.grads.items():
            expected = tparams[f"{i}.{key}"].grad.numpy()
            scale = max(1.0, float(np.max(np.abs(expected))))
            np.testing.assert_allclose(grad, expected, rtol=0, atol=tol * scale,
                                       err_msg=f"{name} gradient {i}.{key}")
    expected_state = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()
                      if not k.endswith("num_batches_tracked")}
    ours = model.state_dict()
    assert set(ours) == set(expected_state)
    for key, value in expected_state.items():
        np.testing.assert_allclose(ours[key], value, rtol=0, atol=tol,
                                   err_msg=f"{name} state {key} after the step")
