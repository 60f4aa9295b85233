"""linear (dense) forward and forward + all gradients."""

import numpy as np

import fastcnn.functional as F

from ._common import use_threads


class Linear:
    """float32 ``y = x @ weight.T + bias``, shape (batch, in, out): LeNet-5's first
    dense layer at batch 64 and 256, and a square 1024 layer."""

    params = [[(64, 400, 120), (256, 400, 120), (256, 1024, 1024)]]
    param_names = ["shape"]

    def setup(self, shape):
        use_threads()
        n, f_in, f_out = shape
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((n, f_in), dtype=np.float32)
        self.w = rng.standard_normal((f_out, f_in), dtype=np.float32) / np.float32(
            np.sqrt(f_in))
        self.b = rng.standard_normal(f_out, dtype=np.float32)
        self.dy = rng.standard_normal((n, f_out), dtype=np.float32)
        self._forward_backward()  # compile outside the timings

    def _forward_backward(self):
        F.linear(self.x, self.w, self.b)
        return F.linear_backward(self.dy, self.x, self.w)

    def time_forward(self, shape):
        F.linear(self.x, self.w, self.b)

    def time_forward_backward(self, shape):
        self._forward_backward()

    def peakmem_forward_backward(self, shape):
        self._forward_backward()
