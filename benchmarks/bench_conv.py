"""conv2d forward and forward + all gradients on the six standard shapes of issue 5,
and float32 against float64 on a small one.

Every ``setup`` calls the op once, so compilation (or loading from Numba's cache)
never lands in a timing.
"""

import fastcnn.functional as F
from fastcnn.kernels._clamp import bounds

from ._common import CONV_CASES, CONV_LABELS, SMALL_CONV, conv_inputs, use_threads


class _ConvBase:
    timeout = 600  # the large shapes with a slow kernel take seconds per call

    def _prepare(self, label, dtype):
        use_threads()
        case = CONV_CASES[label]
        self.x, self.w, self.b, self.dy = conv_inputs(case, dtype)
        self.kw = {"stride": case.stride, "padding": case.padding,
                   "groups": case.groups}
        self._forward_backward()  # compile every kernel outside the timings

    def _padded_case(self, label, form):
        """Kernel-level suites: ``self.w``, ``self.dy``, ``self.kernels`` (the CPU
        conv module), ``self.rows`` (the form is "rows"); returns the case's input
        zero-padded as the kernels take it."""
        import numpy as np

        from fastcnn.kernels.cpu import conv as kernels

        use_threads()
        case = CONV_CASES[label]
        x, self.w, _, self.dy = conv_inputs(case, "float32")
        p = case.padding
        self.rows = form == "rows"
        self.kernels = kernels
        return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))

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
                   and min(CONV_CASES[label].x_shape[1], CONV_CASES[label].c_out) >= 8
                   and CONV_CASES[label].groups == 1]


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
            # The stride-1 direct forward conv2d_forward runs (see _conv_plan).
            self.fns = (kernels._conv2d_forward_rows,
                        kernels._conv2d_backward_input_direct,
                        kernels._conv2d_backward_weight_direct)
        self.path = path
        for run in (self.time_forward, self.time_input_grad, self.time_weight_grad):
            run(label, path)  # compile outside the timings

    def time_forward(self, label, path):
        if self.path == "winograd":  # the public kernel: padded input, no padding
            self.fns[0](self.xp, self.w, self.b, self.y, 0, 0, 1, 1, 1, 1, 1)
        else:
            self.fns[0](self.xp, self.w, self.b, self.y, 0, 0, 1, 1, 1,
                        *bounds(None, self.y.dtype))

    def time_input_grad(self, label, path):
        if self.path == "winograd":
            self.fns[1](self.dy, self.w, self.dxp, 0, 0, 1, 1, 1, 1, 1)
        else:
            self.fns[1](self.dy, self.w, self.dxp, 1, 1, 1, 1, 1)

    def time_weight_grad(self, label, path):
        if self.path == "winograd":
            self.fns[2](self.dy, self.xp, self.dw, 0, 0, 1, 1, 1, 1, 1)
        else:
            self.fns[2](self.dy, self.xp, self.dw, 1, 1, 1, 1, 1)


#: Wide strided convolutions, whose weight gradient takes the matrix-product form:
#: standard shape 6 and a ResNet-style 128 -> 256 downsampler.
WIDE_CASES = {
    "6 (32,64,56,56)->128 k3s2p1": CONV_CASES[CONV_LABELS[5]],
    "(32,128,28,28)->256 k3s2p1": CONV_CASES[CONV_LABELS[5]]._replace(
        label="(32,128,28,28)->256 k3s2p1", x_shape=(32, 128, 28, 28), c_out=256),
}


class Conv2dWeightGradForm(_ConvBase):
    """The weight gradient of wide strided convolutions as one matrix product per
    image (the form conv2d picks for them) and as dot products of dy and patch rows
    (the form it replaced), at kernel level on the same padded input."""

    params = [list(WIDE_CASES), ["product", "dots"]]
    param_names = ["shape", "form"]

    def setup(self, label, form):
        import numpy as np

        from fastcnn.kernels.cpu import _weight_gemm
        from fastcnn.kernels.cpu import conv as kernels

        use_threads()
        case = WIDE_CASES[label]
        x, self.w, _, self.dy = conv_inputs(case, "float32")
        p = case.padding
        self.xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        self.dw = np.empty_like(self.w)
        self.fn = (_weight_gemm.conv2d_backward_weight_gemm if form == "product"
                   else kernels._conv2d_backward_weight_direct)
        self.stride = case.stride
        self.time_weight_grad(label, form)  # compile outside the timings

    def time_weight_grad(self, label, form):
        s = self.stride
        self.fn(self.dy, self.xp, self.dw, s, s, 1, 1, 1)


#: Stride-1 convolutions whose weight gradient takes the rows form: standard shapes
#: 1-3 (LeNet-5's two and a 3-channel 3x3 that Winograd leaves out).
ROWS_WEIGHT_CASES = [label for label in CONV_LABELS[:3]]


class Conv2dWeightGradRows(_ConvBase):
    """The weight gradient of stride-1 convolutions from band rows and shifted
    windows (the form conv2d picks) and from im2col patch rows (the direct kernel
    it replaced there), at kernel level on the same padded input."""

    params = [ROWS_WEIGHT_CASES, ["rows", "direct"]]
    param_names = ["shape", "form"]

    def setup(self, label, form):
        import numpy as np

        self.xp = self._padded_case(label, form)
        self.dw = np.empty_like(self.w)
        self.finite = np.ones(self.xp.shape[0], dtype=np.bool_)
        self.no_bias = np.empty(0, np.float32)
        self.time_weight_grad(label, form)  # compile outside the timings

    def time_weight_grad(self, label, form):
        if self.rows:
            # On the padded input, read with no further padding.
            self.kernels._conv2d_backward_weight_rows(self.dy, self.xp, self.dw,
                                                      self.no_bias, 0, 0, 1, 1, 1,
                                                      self.finite)
        else:
            self.kernels._conv2d_backward_weight_direct(self.dy, self.xp, self.dw, 1,
                                                        1, 1, 1, 1)


class Conv2dInputGradRows(_ConvBase):
    """The input gradient of stride-1 convolutions from band rows (the form
    conv2d picks) and as ``W^T @ dy`` scattered back by patch rows (the direct
    kernel it replaced there), at kernel level into the same padded gradient."""

    params = [ROWS_WEIGHT_CASES, ["rows", "direct"]]
    param_names = ["shape", "form"]

    def setup(self, label, form):
        import numpy as np

        self.dxp = np.empty_like(self._padded_case(label, form))
        self.time_input_grad(label, form)  # compile outside the timings

    def time_input_grad(self, label, form):
        if self.rows:
            self.kernels.conv2d_backward_input_rows(self.dy, self.w, self.dxp, 1, 1, 1)
        else:
            self.kernels._conv2d_backward_input_direct(self.dy, self.w, self.dxp, 1, 1,
                                                       1, 1, 1)


#: The depthwise standard shapes (7 and 8), and ConvNeXt's last stage (4x4 planes).
DEPTHWISE_CASES = {
    **{label: CONV_CASES[label] for label in CONV_LABELS
       if CONV_CASES[label].groups > 1},
    "(32,384,4,4)->384 k7p3 depthwise": CONV_CASES[CONV_LABELS[-1]]._replace(
        label="(32,384,4,4)->384 k7p3 depthwise", x_shape=(32, 384, 4, 4),
        c_out=384, groups=384),
}


class Conv2dDepthwisePath(_ConvBase):
    """The depthwise forward through the kernel conv2d picks for stride 1 and
    several images ("rows": images side by side, four output rows per pass) and
    through the plane-by-plane kernel it stands in for ("planes")."""

    params = [list(DEPTHWISE_CASES), ["rows", "planes"]]
    param_names = ["shape", "path"]

    def setup(self, label, path):
        import numpy as np

        from fastcnn.kernels.cpu import _depthwise, _depthwise_rows

        use_threads()
        case = DEPTHWISE_CASES[label]
        self.x, self.w, self.b, dy = conv_inputs(case, "float32")
        self.y = np.empty(dy.shape, np.float32)
        self.p = case.padding
        self.lo, self.hi = bounds(None, self.y.dtype)
        if path == "rows":
            self.run = lambda: _depthwise_rows.conv2d_depthwise_rows(
                self.x, self.w, self.b, self.y, self.p, self.p, self.lo, self.hi)
        else:
            self.run = lambda: _depthwise.conv2d_depthwise(
                self.x, self.w, self.b, self.y, self.p, self.p, 1, 1, 1, 1,
                self.lo, self.hi)
        self.run()  # compile outside the timings

    def time_forward(self, label, path):
        self.run()
