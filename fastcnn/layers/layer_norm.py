"""Per-sample normalisation layers: ``LayerNorm`` (``torch.nn.LayerNorm``),
``GroupNorm`` (``torch.nn.GroupNorm``, its channels found at build) and
``LayerNorm2D`` (ConvNeXt's channel-wise LayerNorm of NCHW maps).

Each normalises every sample on its own, so training and evaluation compute the
same thing and there are no running statistics (no buffers). The parameters are
"weight" (init 1) and "bias" (init 0), named and shaped as torch's, so state dicts
map onto the torch modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..functional import _validate as v
from ..functional.layer_norm import normalized_shape_arg
from .base import Layer


class _SampleNorm(Layer):
    """Shared forward/backward: the op's statistics are kept for backward."""

    def _affine_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    def _has_affine(self) -> bool:
        raise NotImplementedError

    def state_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        shape = self._affine_shape(self.compute_output_shape(input_shape))
        return dict.fromkeys(("weight", "bias"), shape) if self._has_affine() else {}

    def _build(self, input_shape, dtype, rng) -> None:
        if self._has_affine():
            shape = self._affine_shape(input_shape)
            self.params["weight"] = np.ones(shape, dtype=dtype)
            self.params["bias"] = np.zeros(shape, dtype=dtype)

    def _forward(self, x, training):
        y, stats = self._apply(x, self.params.get("weight"), self.params.get("bias"))
        # The statistics y was normalised with: backward reuses them rather than
        # taking two more passes over x.
        self._cache = (x, stats)
        return y

    def _backward(self, dy):
        x, stats = self._cache
        dx, dweight, dbias = self._gradients(dy, x, self.params.get("weight"), stats)
        if self.params:
            self._set_grad("weight", dweight)
            self._set_grad("bias", dbias)
        return dx


class LayerNorm(_SampleNorm):
    """Normalise each sample over its trailing ``normalized_shape`` axes (mean 0,
    variance 1), then scale by "weight" and shift by "bias" elementwise, as
    ``torch.nn.LayerNorm``.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing per-sample shape normalised over, e.g. ``(C, H, W)`` for the
        whole sample or ``(F,)`` for the last axis.
    eps : float
        Added to the variance, > 0.
    elementwise_affine : bool
        Learn "weight" and "bias" of shape ``normalized_shape``; False: no
        parameters.
    name : str, optional

    Shape: (N, *, *normalized_shape) -> the same.
    """

    # A sample's outputs read every position of the normalised axes.
    connectivity = "global"

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5,
                 elementwise_affine: bool = True, name: str | None = None) -> None:
        super().__init__(name=name)
        op = self._op
        self.normalized_shape = normalized_shape_arg(op, normalized_shape)
        self.eps = v.real_number(op, "eps", eps, low=0.0, low_open=True)
        self.elementwise_affine = v.boolean(op, "elementwise_affine",
                                            elementwise_affine)

    def _config(self) -> dict[str, Any]:
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine}

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = self._check_shape(input_shape)
        k = len(self.normalized_shape)
        if len(shape) < k or shape[len(shape) - k:] != self.normalized_shape:
            raise ValueError(
                f"{self._op}: the per-sample input must end with normalized_shape "
                f"{self.normalized_shape}, got input_shape {shape}."
            )
        return shape

    def _affine_shape(self, input_shape):
        return self.normalized_shape

    def _has_affine(self) -> bool:
        return self.elementwise_affine

    def _apply(self, x, weight, bias):
        return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps,
                            return_stats=True)

    def _gradients(self, dy, x, weight, stats):
        return F.layer_norm_backward(dy, x, self.normalized_shape, weight, self.eps,
                                     stats=stats)


class GroupNorm(_SampleNorm):
    """Split each sample's channels into ``num_groups`` groups and normalise each
    group over its channels and positions together, then scale and shift per
    channel, as ``torch.nn.GroupNorm`` (whose ``num_channels`` is found here at
    build, from the input).

    Parameters
    ----------
    num_groups : int
        Positive; must divide the number of channels (checked at build).
    eps : float
        Added to the variance, > 0.
    affine : bool
        Learn per-channel "weight" and "bias" ``(C,)``; False: no parameters.
    name : str, optional

    Shape: (N, C, *) -> (N, C, *).
    """

    # Statistics over a group's whole maps: every output reads every position.
    connectivity = "global"

    def __init__(self, num_groups: int, eps: float = 1e-5, affine: bool = True,
                 name: str | None = None) -> None:
        super().__init__(name=name)
        op = self._op
        self.num_groups = v.positive_int(op, "num_groups", num_groups)
        self.eps = v.real_number(op, "eps", eps, low=0.0, low_open=True)
        self.affine = v.boolean(op, "affine", affine)

    def _config(self) -> dict[str, Any]:
        return {"num_groups": self.num_groups, "eps": self.eps,
                "affine": self.affine}

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = self._check_shape(input_shape)
        if shape[0] % self.num_groups:
            raise ValueError(
                f"{self._op}: num_groups={self.num_groups} does not divide the "
                f"{shape[0]} channels of input_shape {shape}."
            )
        return shape

    def _affine_shape(self, input_shape):
        return (input_shape[0],)

    def _has_affine(self) -> bool:
        return self.affine

    def _apply(self, x, weight, bias):
        return F.group_norm(x, self.num_groups, weight, bias, self.eps,
                            return_stats=True)

    def _gradients(self, dy, x, weight, stats):
        return F.group_norm_backward(dy, x, self.num_groups, weight, self.eps,
                                     stats=stats)


class LayerNorm2D(_SampleNorm):
    """Normalise the ``C`` channel values at each pixel of ``(C, H, W)`` samples,
    then scale and shift per channel: the LayerNorm of ConvNeXt on NCHW maps.

    In PyTorch this is ``F.layer_norm(x.permute(0, 2, 3, 1), (C,), weight, bias,
    eps).permute(0, 3, 1, 2)`` (a ``torch.nn.LayerNorm(C, eps)`` applied
    channels-last); see :func:`fastcnn.functional.layer_norm2d`.

    Parameters
    ----------
    eps : float
        Added to the variance, > 0 (1e-6 by default, as in ConvNeXt).
    affine : bool
        Learn per-channel "weight" and "bias" ``(C,)``; False: no parameters.
    name : str, optional

    Shape: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, eps: float = 1e-6, affine: bool = True,
                 name: str | None = None) -> None:
        super().__init__(name=name)
        op = self._op
        self.eps = v.real_number(op, "eps", eps, low=0.0, low_open=True)
        self.affine = v.boolean(op, "affine", affine)

    def _config(self) -> dict[str, Any]:
        return {"eps": self.eps, "affine": self.affine}

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self._check_shape(input_shape, ndim=3)

    def _affine_shape(self, input_shape):
        return (input_shape[0],)

    def _has_affine(self) -> bool:
        return self.affine

    def _apply(self, x, weight, bias):
        return F.layer_norm2d(x, weight, bias, self.eps, return_stats=True)

    def _gradients(self, dy, x, weight, stats):
        return F.layer_norm2d_backward(dy, x, weight, self.eps, stats=stats)
