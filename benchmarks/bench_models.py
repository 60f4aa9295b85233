"""Whole models: ``Sequential.train_step`` (forward, cross-entropy, backward, SGD
step) and ``Sequential.predict``, float32, on seeded random batches.

Repeated steps on one batch keep training (with plain SGD at lr 0.01 the weights
stay finite); the time of a step does not depend on the weights' values.
"""

from ._common import build_model, model_batch, use_threads


class _ModelBase:
    timeout = 600

    def _prepare(self, name, batch):
        use_threads()
        self.model = build_model(name)
        self.x, self.y = model_batch(name, batch)
        self.model.train_step(self.x, self.y)  # compile outside the timings
        self.model.predict(self.x, batch_size=batch)


class LeNet5TrainStep(_ModelBase):
    """LeNet-5 on 28x28 inputs (batch 1: where per-op overhead dominates)."""

    params = [[1, 64, 256]]
    param_names = ["batch"]

    def setup(self, batch):
        self._prepare("lenet5", batch)

    def time_train_step(self, batch):
        self.model.train_step(self.x, self.y)

    def peakmem_train_step(self, batch):
        self.model.train_step(self.x, self.y)


class SimpleCNNTrainStep(_ModelBase):
    """simple_cnn (VGG-style, BatchNorm, dropout) on 3x32x32 inputs."""

    params = [[64]]
    param_names = ["batch"]

    def setup(self, batch):
        self._prepare("simple_cnn", batch)

    def time_train_step(self, batch):
        self.model.train_step(self.x, self.y)

    def peakmem_train_step(self, batch):
        self.model.train_step(self.x, self.y)


class Predict(_ModelBase):
    """``predict`` on 256 samples in one batch of 256."""

    params = [["lenet5", "simple_cnn"]]
    param_names = ["model"]
    batch = 256

    def setup(self, name):
        self._prepare(name, self.batch)

    def time_predict(self, name):
        self.model.predict(self.x, batch_size=self.batch)

    def peakmem_predict(self, name):
        self.model.predict(self.x, batch_size=self.batch)
