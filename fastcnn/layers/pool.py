"""Pooling layers: MaxPool2D, AvgPool2D, GlobalAvgPool2D and AdaptiveAvgPool2D (no
parameters). Max unpooling has no layer: it takes two inputs (see
:mod:`fastcnn.functional.unpool`)."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..functional import _validate as v
from ..functional import adaptive_pool as adaptive_ops
from ..functional import pool as pool_ops
from ..functional.pool import pool_geometry
from .base import Layer, Window, canonical_pair


class _Pool2D(Layer):
    """Shared argument handling of the sliding-window pools."""

    connectivity = "window"

    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode,
                 name) -> None:
        super().__init__(name=name)
        op = self._op
        self.kernel_size = v.pair(op, "kernel_size", kernel_size, minimum=1)
        self.stride = (self.kernel_size if stride is None
                       else v.pair(op, "stride", stride, minimum=1))
        self._stride_given = stride is not None
        self.padding = v.pair(op, "padding", padding, minimum=0)
        self.dilation = v.pair(op, "dilation", dilation, minimum=1)
        self.ceil_mode = v.boolean(op, "ceil_mode", ceil_mode)
        self._geo = None
        # PyTorch's rule: padding at most half the (undilated) kernel, so that no
        # window lies wholly in the padding.
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ValueError(
                f"{op}: padding must be at most half of kernel_size, got "
                f"padding={padding!r} with kernel_size={kernel_size!r}."
            )

    def _config(self) -> dict[str, Any]:
        return {
            "kernel_size": canonical_pair(self.kernel_size),
            "stride": canonical_pair(self.stride) if self._stride_given else None,
            "padding": canonical_pair(self.padding),
        }

    def _geometry(self, input_shape):
        return pool_geometry(self._op, (1, *input_shape), self.kernel_size,
                             self.stride, self.padding, self.dilation, self.ceil_mode)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        input_shape = self._check_shape(input_shape, ndim=3)
        return (input_shape[0], *self._geometry(input_shape).out_hw)

    def _build(self, input_shape, dtype, rng) -> None:
        # The geometry for the built input shape, so forward and backward need not
        # re-validate; None where the op must see the input (an empty channel,
        # height or width, which the pooling ops refuse at call time).
        self._geo = self._geometry(input_shape) if min(input_shape) > 0 else None

    def window(self, input_shape=None) -> Window:
        return Window(self.kernel_size, self.stride, self.padding, self.dilation)


class MaxPool2D(_Pool2D):
    """Max over sliding windows (``torch.nn.MaxPool2d``); padding acts as -inf.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        None (default) means ``kernel_size``.
    padding : int or (int, int)
        At most half of ``kernel_size``.
    dilation : int or (int, int)
    ceil_mode : bool
        Round the output size up, as in PyTorch.
    name : str, optional

    Shape: (N, C, H, W) -> (N, C, OH, OW),
    OH = (H + 2*padding - dilation*(kernel_size-1) - 1) // stride + 1 (floor or ceil).
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 ceil_mode: bool = False, name: str | None = None) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode, name)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "dilation": canonical_pair(self.dilation),
                "ceil_mode": self.ceil_mode}

    def _forward(self, x, training):
        self._cache = x
        if self._geo is not None:
            return pool_ops.max_pool2d_trusted(x, self._geo)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding,
                            self.dilation, self.ceil_mode)

    def _inference_runner(self, x_shape, next_clamp=None):
        if self._geo is None or self.dtype is None:
            return None
        run = pool_ops.max_pool2d_runner(x_shape, self.dtype, self._geo)
        return None if run is None else (run, False)

    #: The interval of the ReLU or ReLU6 layer before this one, set by
    #: ``Sequential.backward`` around one call (None otherwise): the gradient is
    #: then returned through that layer's backward too, in the same pass.
    backward_gate = None

    def gates_backward(self) -> bool:
        """Whether :meth:`backward` can apply :attr:`backward_gate` (the layer is
        built for an input it pools with its own kernels)."""
        return self._geo is not None

    def _backward(self, dy):
        if self._geo is not None:
            return pool_ops.max_pool2d_backward_trusted(dy, self._cache, self._geo,
                                                        self.backward_gate)
        if self.backward_gate is not None:
            raise RuntimeError(f"{self._op}: backward_gate needs a built geometry.")
        return F.max_pool2d_backward(dy, self._cache, self.kernel_size, self.stride,
                                     self.padding, self.dilation, self.ceil_mode)


class AvgPool2D(_Pool2D):
    """Mean over sliding windows (``torch.nn.AvgPool2d``).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        None (default) means ``kernel_size``.
    padding : int or (int, int)
        Zero padding, at most half of ``kernel_size``.
    ceil_mode : bool
    count_include_pad : bool
        Divide by the full window size, padding included (PyTorch's default).
    name : str, optional

    Shape: (N, C, H, W) -> (N, C, OH, OW),
    OH = (H + 2*padding - kernel_size) // stride + 1 (floor or ceil).
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, name: str | None = None) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, name)
        self.count_include_pad = v.boolean(self._op, "count_include_pad",
                                           count_include_pad)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "ceil_mode": self.ceil_mode,
                "count_include_pad": self.count_include_pad}

    def _forward(self, x, training):
        self._cache = x
        if self._geo is not None:
            return pool_ops.avg_pool2d_trusted(x, self._geo, self.count_include_pad)
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding,
                            self.ceil_mode, self.count_include_pad)

    def _backward(self, dy):
        if self._geo is not None:
            return pool_ops.avg_pool2d_backward_trusted(dy, self._cache, self._geo,
                                                        self.count_include_pad)
        return F.avg_pool2d_backward(dy, self._cache, self.kernel_size, self.stride,
                                     self.padding, self.ceil_mode,
                                     self.count_include_pad)


class GlobalAvgPool2D(Layer):
    """Mean of each feature map (``AdaptiveAvgPool2d(1)`` then flatten).

    Parameters
    ----------
    name : str, optional

    Shape: (N, C, H, W) -> (N, C).
    """

    connectivity = "global"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self._check_shape(input_shape, ndim=3)[0],)

    def _forward(self, x, training):
        # The built (C, H, W) input is all the op checks: nothing to re-validate.
        self._cache = x
        return pool_ops.global_avg_pool2d_trusted(x)

    def _backward(self, dy):
        return pool_ops.global_avg_pool2d_backward_trusted(dy, self._cache)


class AdaptiveAvgPool2D(Layer):
    """Average over a requested output size (``torch.nn.AdaptiveAvgPool2d``), with
    PyTorch's bins: output ``oh`` of ``OH`` averages rows
    ``[floor(oh*H/OH), ceil((oh+1)*H/OH))``, and the same for columns.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        The output's (OH, OW); None keeps that input size.
    name : str, optional

    Shape: (N, C, H, W) -> (N, C, OH, OW).

    Notes
    -----
    Where H and W are multiples of OH and OW this is ``AvgPool2D(H // OH, W //
    OW)``; otherwise neighbouring bins overlap by a row or column, so there is no
    single window for :meth:`window`, and :mod:`fastcnn.inspect` traces the bins.
    """

    connectivity = "adaptive"

    def __init__(self, output_size, name: str | None = None) -> None:
        super().__init__(name=name)
        self.output_size = adaptive_ops.output_size_arg(self._op, output_size)
        self._out_hw = None

    def _config(self) -> dict[str, Any]:
        oh, ow = self.output_size
        if oh == ow and oh is not None:
            return {"output_size": oh}
        return {"output_size": [oh, ow]}

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        input_shape = self._check_shape(input_shape, ndim=3)
        return (input_shape[0], *self._resolved(input_shape))

    def _resolved(self, input_shape) -> tuple[int, int]:
        oh, ow = self.output_size
        return (input_shape[1] if oh is None else oh,
                input_shape[2] if ow is None else ow)

    def bins(self, input_shape=None):
        """PyTorch's bins over rows and columns for a per-sample ``input_shape``
        (default: the built one): ``((row_starts, row_stops), (col_starts,
        col_stops))``, int64 arrays of OH and OW entries.

        Shape: input_shape (C, H, W) -> two pairs of 1-D arrays.
        """
        shape = self.input_shape if input_shape is None else tuple(input_shape)
        out = self._resolved(shape)
        return (adaptive_ops.adaptive_bins(shape[1], out[0]),
                adaptive_ops.adaptive_bins(shape[2], out[1]))

    def window(self, input_shape=None) -> Window | None:
        """The equivalent average-pool window where every bin has one size and
        step (H and W multiples of OH and OW, output non-empty); else None."""
        shape = self.input_shape if input_shape is None else tuple(input_shape)
        out = self._resolved(shape)
        if min(out) < 1 or shape[1] % out[0] or shape[2] % out[1]:
            return None
        kernel = (shape[1] // out[0], shape[2] // out[1])
        return Window(kernel, kernel, (0, 0), (1, 1))

    def _build(self, input_shape, dtype, rng) -> None:
        # The output size for the built input, so forward need not re-validate;
        # None where the op must see the input (an empty plane, which it refuses).
        self._out_hw = (self._resolved(input_shape) if min(input_shape[1:]) > 0
                        else None)

    def _forward(self, x, training):
        self._cache = x
        if self._out_hw is not None:
            return adaptive_ops.adaptive_avg_pool2d_trusted(x, self._out_hw)
        return F.adaptive_avg_pool2d(x, self.output_size)

    def _backward(self, dy):
        if self._out_hw is not None:
            return adaptive_ops.adaptive_avg_pool2d_backward_trusted(dy, self._cache)
        return F.adaptive_avg_pool2d_backward(dy, self._cache, self.output_size)
