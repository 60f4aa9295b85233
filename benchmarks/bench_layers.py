"""Layers of :mod:`fastcnn.layers`: forward in training mode plus backward, at the
shapes they see in LeNet-5 (batch 64) and in simple_cnn (BatchNorm2D, batch 64).

These add the layer API's validation and bookkeeping to the kernels' cost.
"""

import numpy as np

from fastcnn import layers

from ._common import use_threads

#: name -> (layer factory, input shape including the batch)
_LAYERS = {
    "Conv2D(6, 5, padding=2)": (lambda: layers.Conv2D(6, 5, padding=2),
                                (64, 1, 28, 28)),
    "ReLU": (layers.ReLU, (64, 6, 28, 28)),
    "MaxPool2D(2)": (lambda: layers.MaxPool2D(2), (64, 6, 28, 28)),
    "Dense(120)": (lambda: layers.Dense(120), (64, 400)),
    "BatchNorm2D": (layers.BatchNorm2D, (64, 32, 32, 32)),
}


class Layer:
    """A float32 layer's ``forward(x, training=True)`` and ``backward(dy)``."""

    params = [list(_LAYERS)]
    param_names = ["layer"]

    def setup(self, name):
        use_threads()
        factory, shape = _LAYERS[name]
        rng = np.random.default_rng(0)
        self.layer = factory()
        self.layer.build(shape[1:], dtype=np.float32, rng=rng)
        self.x = rng.standard_normal(shape, dtype=np.float32)
        y = self.layer.forward(self.x, training=True)
        self.dy = rng.standard_normal(y.shape, dtype=np.float32)
        self.layer.backward(self.dy)  # compile outside the timings

    def time_forward(self, name):
        self.layer.forward(self.x, training=True)

    def time_forward_backward(self, name):
        self.layer.forward(self.x, training=True)
        self.layer.backward(self.dy)
