"""A graph Model against PyTorch: the zoo's ResNet (basic blocks, projection
shortcuts, batch norm) rebuilt as a torch module from its own graph, with the same
weights; forward in training mode, the loss, and one SGD step with momentum."""

import numpy as np
import pytest

import fastcnn
from fastcnn import optimizers

torch = pytest.importorskip("torch")
nn = torch.nn

from .torch_twin import TorchGraph  # noqa: E402  (needs torch)

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_resnet_forward_and_one_sgd_step_match_torch(dtype, rng):
    fastcnn.seed(1)
    model = fastcnn.models.resnet(depth=8, input_shape=(3, 8, 8), num_classes=5,
                                  width=4, dtype=dtype)
    model.compile(optimizers.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    tmodel = TorchGraph(model)  # holds copies of the model's weights
    x = rng.standard_normal((6, 3, 8, 8)).astype(dtype)
    y = rng.integers(0, 5, 6)
    tol = 1e-10 if dtype == np.float64 else 2e-4

    out = model.forward(x, training=True)
    tout = tmodel(torch.from_numpy(x))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=tol, atol=tol)

    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        loss = model.train_step(x, y)
        topt.zero_grad()
        tloss = nn.functional.cross_entropy(tmodel(torch.from_numpy(x)),
                                            torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert abs(loss - tloss.item()) <= tol * max(1.0, abs(loss))
    theirs = tmodel.state_dict()
    for key, value in model.state_dict().items():
        prefix, _, name = key.rpartition(".")
        expected = theirs[f"mods.{prefix.replace('.', '_')}.{name}"].numpy()
        np.testing.assert_allclose(value, expected, rtol=tol * 10, atol=tol * 10,
                                   err_msg=key)
