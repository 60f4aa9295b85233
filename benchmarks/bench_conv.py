"""conv2d forward and forward + all gradients on the six standard shapes of issue 5,
and float32 against float64 on a small one.

Every ``setup`` calls the op once, so compilation (or loading from Numba's cache)
never lands in a timing.
"""

import fastcnn.functional as F

from ._common import CONV_CASES, CONV_LABELS, SMALL_CONV, conv_inputs, use_threads


class _ConvBase:
    timeout = 600  # the large shapes with a slow kernel take seconds per call

    def _prepare(self, label, dtype):
        use_threads()
        case = CONV_CASES[label]
        self.x, self.w, self.b, self.dy = conv_inputs(case, dtype)
        self.kw = {"stride": case.stride, "padding": case.padding}
        self._forward_backward()  # compile every kernel outside the timings

    def _forward(self):
        return F.conv2d(self.x, self.w, self.b, **self.kw)

    def _forward_backward(self):
        F.conv2d(self.x, self.w, self.b, **self.kw)
        return F.conv2d_backward(self.dy, self.x, self.w, **self.kw)


class Conv2d(_ConvBase):
    """float32 conv2d over the standard shapes (label: number, x shape, c_out,
    kernel, stride, padding)."""

    params = [CONV_LABELS]
    param_names = ["shape"]

    def setup(self, label):
        self._prepare(label, "float32")

    def time_forward(self, label):
        self._forward()

    def time_forward_backward(self, label):
        self._forward_backward()

    def peakmem_forward_backward(self, label):
        self._forward_backward()


class Conv2dDtype(_ConvBase):
    """conv2d on LeNet's second convolution, float32 against float64."""

    params = [["float32", "float64"]]
    param_names = ["dtype"]

    def setup(self, dtype):
        self._prepare(SMALL_CONV, dtype)

    def time_forward(self, dtype):
        self._forward()

    def time_forward_backward(self, dtype):
        self._forward_backward()
