"""A graph Model against PyTorch: the zoo's ResNet (basic blocks, projection
shortcuts, batch norm) rebuilt as a torch module from its own graph, with the same
weights; forward in training mode, the loss, and one SGD step with momentum."""

import numpy as np
import pytest

import fastcnn
from fastcnn import optimizers

from .test_training_torch import to_torch

torch = pytest.importorskip("torch")
nn = torch.nn

pytestmark = pytest.mark.torch


class TorchGraph(nn.Module):
    """``model``'s layers as torch modules, run along ``model.inbound``."""

    def __init__(self, model):
        super().__init__()
        self.inbound = model.inbound
        self.kinds = [type(layer).__name__ for layer in model.layers]
        self.mods = nn.ModuleDict()
        self.keys = []
        for key, layer in model._keyed_layers():
            self.keys.append(key)
            if not layer.takes_many:
                # One-layer Sequential from the Sequential converter.
                self.mods[key.replace(".", "_")] = to_torch(
                    fastcnn.Sequential([type(layer)(**layer.get_config())],
                                       input_shape=layer.input_shape,
                                       dtype=model.dtype), model.dtype.type)[0]

    def forward(self, x):
        values = [x]
        for key, kind, sources in zip(self.keys, self.kinds, self.inbound,
                                      strict=True):
            ins = [values[i] for i in sources]
            if kind == "Add":
                out = ins[0]
                for other in ins[1:]:
                    out = out + other
            elif kind == "Concatenate":
                out = torch.cat(ins, dim=1)
            else:
                out = self.mods[key.replace(".", "_")](ins[0])
            values.append(out)
        return values[-1]


def _copy_weights(model, tmodel):
    state = {}
    for key, value in model.state_dict().items():
        prefix, _, name = key.rpartition(".")
        state[f"mods.{prefix.replace('.', '_')}.{name}"] = torch.from_numpy(value)
    result = tmodel.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_resnet_forward_and_one_sgd_step_match_torch(dtype, rng):
    fastcnn.seed(1)
    model = fastcnn.models.resnet(depth=8, input_shape=(3, 8, 8), num_classes=5,
                                  width=4, dtype=dtype)
    model.compile(optimizers.SGD(lr=0.1, momentum=0.9), "cross_entropy")
    tmodel = TorchGraph(model).to(torch.float64 if dtype == np.float64
                                  else torch.float32)
    _copy_weights(model, tmodel)
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
