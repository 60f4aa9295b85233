"""Pooling layers: MaxPool2D, AvgPool2D and GlobalAvgPool2D (no parameters)."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..functional import _validate as v
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

    def _backward(self, dy):
        if self._geo is not None:
            return pool_ops.max_pool2d_backward_trusted(dy, self._cache, self._geo)
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
