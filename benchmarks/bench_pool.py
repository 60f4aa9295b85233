"""Max and average pooling, 2x2 with stride 2, forward and forward + backward."""

import fastcnn.functional as F

from ._common import POOL_KERNEL, POOL_SHAPE, pool_inputs, use_threads

_OPS = {
    "max": (F.max_pool2d, F.max_pool2d_backward),
    "avg": (F.avg_pool2d, F.avg_pool2d_backward),
}


class Pool2d:
    """float32 pooling on (64, 32, 32, 32) (the issue's shape) and on the output of
    LeNet-5's first convolution."""

    params = [["max", "avg"], [POOL_SHAPE, (64, 6, 28, 28)]]
    param_names = ["op", "shape"]

    def setup(self, op, shape):
        use_threads()
        self.x, self.dy = pool_inputs(shape)
        self.forward, self.backward = _OPS[op]
        self._forward_backward()  # compile outside the timings

    def _forward_backward(self):
        self.forward(self.x, POOL_KERNEL)
        return self.backward(self.dy, self.x, POOL_KERNEL)

    def time_forward(self, op, shape):
        self.forward(self.x, POOL_KERNEL)

    def time_forward_backward(self, op, shape):
        self._forward_backward()

    def peakmem_forward_backward(self, op, shape):
        self._forward_backward()
