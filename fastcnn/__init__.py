"""fastcnn: convolutional neural networks on NumPy arrays, with Numba kernels.

The public API, one import away:

- ``fastcnn.functional``: validated ops with torch.nn.functional's meanings, each
  with a ``*_backward`` twin;
- ``fastcnn.layers`` and ``fastcnn.Sequential``: the Layer/Model API;
- ``fastcnn.models``: LeNet-5 and a small VGG-style CNN;
- ``fastcnn.datasets``: MNIST, Fashion-MNIST, digits, augmentation;
- ``fastcnn.inspect``: summary maths, ``receptive_field``, ``gradcheck``;
- ``fastcnn.plot`` (needs matplotlib; imported on use);
- ``fastcnn.distributed``: data-parallel training over MPI (``fastcnn[mpi]``;
  ``fit(..., distributed=True)`` under ``mpiexec``).

``import fastcnn`` compiles no kernel and never imports ``numba.cuda``.
"""

from . import (
    callbacks,
    datasets,
    functional,
    inspect,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    schedules,
)
from ._buffers import release_buffers
from ._version import __version__
from .backend import get_device, set_device
from .graph import Input, Model
from .inspect import gradcheck, receptive_field
from .model import Sequential
from .random import get_num_threads, seed, set_num_threads
from .saving import load_model, save_model
from .warmup import warmup


def __getattr__(name: str):
    # fastcnn.io (weights interop) and fastcnn.distributed (MPI training, which
    # imports mpi4py only when used) load on first use: `import fastcnn` stays light.
    if name in ("io", "distributed"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fastcnn' has no attribute {name!r}")

__all__ = [
    "__version__",
    "Input",
    "Model",
    "Sequential",
    "callbacks",
    "datasets",
    "functional",
    "get_device",
    "get_num_threads",
    "gradcheck",
    "inspect",
    "layers",
    "load_model",
    "losses",
    "metrics",
    "models",
    "optimizers",
    "receptive_field",
    "release_buffers",
    "save_model",
    "schedules",
    "seed",
    "set_device",
    "set_num_threads",
    "warmup",
]
