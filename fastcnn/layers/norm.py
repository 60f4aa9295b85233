"""Batch normalisation layers (``torch.nn.BatchNorm2d`` / ``BatchNorm1d``).

In training the batch statistics normalise and the running statistics (buffers
"running_mean", "running_var") are updated in place with PyTorch's rule, the running
variance from the unbiased batch variance; in evaluation the running statistics
normalise. ``num_batches_tracked`` is not kept (it only matters for momentum=None,
which is not supported).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..functional import _validate as v
from .base import Layer


class _BatchNorm(Layer):
    _ndim: tuple[int, ...]  # per-sample ndims: (3,) for BatchNorm2D, (1, 2) for 1D
    _layout: str  # the per-sample layouts, for messages

    def __init__(self, momentum: float, eps: float, affine: bool, name) -> None:
        super().__init__(name=name)
        op = self._op
        self.momentum = v.real_number(op, "momentum", momentum, low=0.0, high=1.0)
        self.eps = v.real_number(op, "eps", eps, low=0.0, low_open=True)
        self.affine = v.boolean(op, "affine", affine)

    def _config(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "eps": self.eps, "affine": self.affine}

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = self._check_shape(input_shape)
        if len(shape) not in self._ndim:
            raise ValueError(
                f"{self._op}: expects a {' or '.join(f'{d}-D' for d in self._ndim)} "
                f"per-sample input {self._layout}, got input_shape {shape}."
            )
        return shape

    def state_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        c = (int(self.compute_output_shape(input_shape)[0]),)
        names = ("weight", "bias") * self.affine + ("running_mean", "running_var")
        return dict.fromkeys(names, c)

    def _build(self, input_shape, dtype, rng) -> None:
        c = input_shape[0]
        if self.affine:
            self.params["weight"] = np.ones(c, dtype=dtype)
            self.params["bias"] = np.zeros(c, dtype=dtype)
        self.buffers["running_mean"] = np.zeros(c, dtype=dtype)
        self.buffers["running_var"] = np.ones(c, dtype=dtype)

    def _forward(self, x, training):
        y, stats = F.batch_norm(
            x, self.buffers["running_mean"], self.buffers["running_var"],
            self.params.get("weight"), self.params.get("bias"), training=training,
            momentum=self.momentum, eps=self.eps, return_stats=True,
        )
        # The statistics y was normalised with: backward reuses them rather than
        # taking another pass over x (measured: 10 ms of a 227 ms ResNet-20 step).
        self._cache = (x, training, stats)
        return y

    def _backward(self, dy):
        x, training, stats = self._cache
        dx, dweight, dbias = F.batch_norm_backward(
            dy, x, self.buffers["running_mean"], self.buffers["running_var"],
            self.params.get("weight"), training=training, eps=self.eps, stats=stats,
        )
        if self.affine:
            self._set_grad("weight", dweight)
            self._set_grad("bias", dbias)
        return dx


class BatchNorm2D(_BatchNorm):
    """Normalise each channel of ``(C, H, W)`` samples over the batch and the
    spatial axes, then scale by "weight" (init 1) and shift by "bias" (init 0).

    Parameters
    ----------
    momentum : float
        Weight of the new batch in the running statistics, in [0, 1].
    eps : float
        Added to the variance, > 0.
    affine : bool
        Learn "weight" and "bias" (``params``); False: no parameters.
    name : str, optional

    Shape: (N, C, H, W) -> (N, C, H, W).
    """

    _ndim = (3,)
    _layout = "(channels, height, width)"

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, affine: bool = True,
                 name: str | None = None) -> None:
        super().__init__(momentum, eps, affine, name)


class BatchNorm1D(_BatchNorm):
    """Normalise each feature of ``(F,)`` samples over the batch, or each channel of
    ``(C, L)`` samples over the batch and the length, then scale and shift (as
    :class:`BatchNorm2D`; as ``torch.nn.BatchNorm1d``).

    Parameters
    ----------
    momentum : float
    eps : float
    affine : bool
    name : str, optional

    Shape: (N, F) -> (N, F), or (N, C, L) -> (N, C, L).
    """

    _ndim = (1, 2)
    _layout = "(features,) or (channels, length)"

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, affine: bool = True,
                 name: str | None = None) -> None:
        super().__init__(momentum, eps, affine, name)
