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


#: The standard shapes that take the Winograd path (3x3, stride 1, >= 8 channels).
WINOGRAD_LABELS = [label for label in CONV_LABELS
                   if CONV_CASES[label].kernel == 3 and CONV_CASES[label].stride == 1
                   and min(CONV_CASES[label].x_shape[1], CONV_CASES[label].c_out) >= 8]


class Conv2dKernelPath(_ConvBase):
    """The three conv kernels of a 3x3 stride-1 convolution, through Winograd (the
    path conv2d picks) and through the direct kernels it stands in for, on padded input
    (kernel level, so the two paths do the same work around them)."""

    params = [WINOGRAD_LABELS, ["winograd", "direct"]]
    param_names = ["shape", "path"]

    def setup(self, label, path):
        import numpy as np

        from fastcnn.kernels.cpu import conv as kernels

        self._prepare(label, "float32")
        p = CONV_CASES[label].padding
        self.xp = np.pad(self.x, ((0, 0), (0, 0), (p, p), (p, p)))
        self.y = np.empty(self.dy.shape, np.float32)
        self.dxp = np.empty_like(self.xp)
        self.dw = np.empty_like(self.w)
        if path == "winograd":
            self.fns = (kernels.conv2d_forward, kernels.conv2d_backward_input,
                        kernels.conv2d_backward_weight)
        else:
            self.fns = (kernels._conv2d_forward_shifted,
                        kernels._conv2d_backward_input_direct,
                        kernels._conv2d_backward_weight_direct)
        self.path = path
        for run in (self.time_forward, self.time_input_grad, self.time_weight_grad):
            run(label, path)  # compile outside the timings

    def time_forward(self, label, path):
        if self.path == "winograd":
            self.fns[0](self.xp, self.w, self.b, self.y, 1, 1, 1, 1, 1)
        else:
            self.fns[0](self.xp, self.w, self.b, self.y, 1, 1, 1)

    def time_input_grad(self, label, path):
        self.fns[1](self.dy, self.w, self.dxp, 1, 1, 1, 1, 1)

    def time_weight_grad(self, label, path):
        self.fns[2](self.dy, self.xp, self.dw, 1, 1, 1, 1, 1)
