"""Dropout (of elements) and SpatialDropout2D (of whole channels): inverted dropout
in training, the identity in evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..functional import _validate as v
from ..functional.dropout import dropout2d_mask_trusted, dropout_mask_trusted
from .base import Layer


class Dropout(Layer):
    """Zero each element with probability ``p`` during training and scale the kept
    ones by ``1/(1-p)`` (``torch.nn.Dropout``); with ``training=False`` a copy.

    Each training forward draws a fresh seed from ``self.rng`` (a Generator seeded
    at build from the build's rng) and keeps it for backward, where the mask is
    recomputed from it. Save ``rng.bit_generator.state`` to resume bit for bit.

    Parameters
    ----------
    p : float
        Drop probability in [0, 1].
    name : str, optional

    Shape: (N, *) -> (N, *).
    """

    def __init__(self, p: float = 0.5, name: str | None = None) -> None:
        super().__init__(name=name)
        self.p = v.real_number(self._op, "p", p, low=0.0, high=1.0)
        self.rng: np.random.Generator | None = None

    def _config(self) -> dict[str, Any]:
        return {"p": self.p}

    def _build(self, input_shape, dtype, rng) -> None:
        # Its own stream, so the masks do not shift when other layers draw.
        self.rng = np.random.default_rng(int(rng.integers(0, 2**63, dtype=np.int64)))

    def _forward(self, x, training):
        seed = None
        if training:
            seed = np.uint64(self.rng.integers(0, 2**64, dtype=np.uint64))
        self._cache = (training, seed)
        return self._apply(x, training, seed)

    def _backward(self, dy):
        training, seed = self._cache
        return self._apply(dy, training, seed)

    def _apply(self, array, training: bool, seed):
        """F.dropout's / F.dropout_backward's result on an array Layer.forward or
        Layer.backward has checked: a copy where nothing is dropped."""
        if not training or self.p == 0.0 or array.size == 0:
            return backend.device_of(array).copy(array)
        return dropout_mask_trusted(array, self.p, seed)


class SpatialDropout2D(Dropout):
    """Zero whole channel maps with probability ``p`` during training and scale the
    kept ones by ``1/(1-p)`` (Keras's ``SpatialDropout2D``,
    ``torch.nn.Dropout2d``); with ``training=False`` a copy. Neighbouring pixels of
    a feature map are strongly correlated, so dropping single pixels (``Dropout``)
    regularises a convolution little; dropping whole maps does.

    Seeded as :class:`Dropout` is: a fresh seed per training forward, from
    ``self.rng``, kept for backward; the mask is :func:`fastcnn.functional.dropout2d`'s.

    Parameters
    ----------
    p : float
        Probability of dropping a channel, in [0, 1].
    name : str, optional

    Shape: (N, C, H, W) -> (N, C, H, W).
    """

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self._check_shape(input_shape, 3)

    def _apply(self, array, training: bool, seed):
        if not training or self.p == 0.0 or array.size == 0:
            return backend.device_of(array).copy(array)
        return dropout2d_mask_trusted(array, self.p, seed)
