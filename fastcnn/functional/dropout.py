"""Inverted dropout and channel dropout (``dropout2d``) with their backwards, with
torch.nn.functional's meanings.

The mask is not stored: it is a pure function of ``(seed, flat element index)``
(see :mod:`fastcnn.kernels.cpu.dropout`), so the backward pass recomputes it from the
same seed and the mask costs no memory between forward and backward.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from . import _validate as v

_SEED_LIMIT = 2**64


def _seed(op: str, seed) -> np.uint64:
    if not v._is_int(seed):
        raise TypeError(f"{op}: seed must be an int, got {seed!r}.")
    if not 0 <= seed < _SEED_LIMIT:
        raise ValueError(f"{op}: seed must lie in [0, 2**64), got {seed!r}.")
    return np.uint64(seed)


def _apply(op: str, x: np.ndarray, p: float, training: bool, seed) -> np.ndarray:
    """Validate ``p`` and ``training`` and run the masked scaling on ``x``."""
    p = v.real_number(op, "p", p, low=0.0, high=1.0)
    training = v.boolean(op, "training", training)
    # np.ascontiguousarray turns a 0-d array into a 1-d one; dropout keeps shapes.
    xc = v.float_array(op, "x" if op == "dropout" else "dy", x).reshape(np.shape(x))
    if training:
        seed = _seed(op, seed)
    if not training or p == 0.0 or xc.size == 0:
        # The caller gets a new array even where validation did not copy.
        dev = backend.device_of(xc)
        if dev.name != "cpu":
            return dev.copy(xc)
        return xc.copy() if np.may_share_memory(xc, x) else xc
    return dropout_mask_trusted(xc, p, seed)


def dropout_mask_trusted(x, p: float, seed: np.uint64):
    """The masked scaling of a checked, C-contiguous ``x`` (``0 < p <= 1``, a
    validated ``seed``): the training path of :func:`dropout` and
    :func:`dropout_backward`. Checks nothing."""
    # p == 1 keeps nothing: the scale is never used, so 1/(1-p) is not computed.
    scale = x.dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))
    dev = backend.device_of(x)
    y = dev.empty(x.shape, x.dtype)
    dev.kernels("dropout").dropout_apply(
        x.reshape(-1), y.reshape(-1), p, scale, seed
    )
    return y


def dropout(x: np.ndarray, p: float = 0.5, training: bool = True,
            seed: int | None = None) -> np.ndarray:
    """Inverted dropout: zero each element with probability ``p`` and scale the kept
    ones by ``1 / (1 - p)``.

    Parameters
    ----------
    x : ndarray
        Input of any shape, float32 or float64.
    p : float
        Probability of dropping an element, in ``[0, 1]``; ``p == 1`` drops all.
    training : bool
        With False (or ``p == 0``) the result is a copy of ``x``.
    seed : int, optional
        Selects the mask, in ``[0, 2**64)``; pass the same seed to
        :func:`dropout_backward`. None draws one from NumPy's global RNG, so
        ``np.random.seed`` makes the result reproducible.

    Element ``i`` of ``x`` in C order is kept where ``u(seed, i) >= p``, ``u``
    uniform in ``[0, 1)``, so the mask depends on the seed and the shape only.
    Dropped elements are ``x * 0``: NaN and inf give NaN there, as in PyTorch.

    Shape: x (any) -> y like x.
    """
    if seed is None:
        seed = int(np.random.randint(0, _SEED_LIMIT, dtype=np.uint64))
    return _apply("dropout", x, p, training, seed)


def dropout_backward(dy: np.ndarray, p: float = 0.5, training: bool = True,
                     seed: int | None = None) -> np.ndarray:
    """Gradient of :func:`dropout`: ``dy`` masked and scaled exactly as the forward
    pass masked and scaled ``x``.

    Parameters
    ----------
    dy : ndarray
        Upstream gradient, shaped like the forward input.
    p, training : float, bool
        As given to :func:`dropout`.
    seed : int
        The seed the forward pass used; required when ``training`` is True.

    Shape: dy (any) -> dx like dy.
    """
    op = "dropout_backward"
    if seed is None and training is True:
        raise TypeError(
            f"{op}: seed is required when training=True; pass the seed given to "
            f"dropout (got None)."
        )
    return _apply(op, dy, p, training, seed)


# ----------------------------------------------------------------- channel dropout


def _apply2d(op: str, x, p: float, training: bool, seed):
    """Validate and run the channel-masked scaling on a 4-D ``x``."""
    p = v.real_number(op, "p", p, low=0.0, high=1.0)
    training = v.boolean(op, "training", training)
    xc = v.float_array(op, "x" if op == "dropout2d" else "dy", x, ndim=4)
    if training:
        seed = _seed(op, seed)
    if not training or p == 0.0 or xc.size == 0:
        dev = backend.device_of(xc)
        if dev.name != "cpu":
            return dev.copy(xc)
        return xc.copy() if np.may_share_memory(xc, x) else xc
    return dropout2d_mask_trusted(xc, p, seed)


def dropout2d_mask_trusted(x, p: float, seed: np.uint64):
    """The channel-masked scaling of a checked, C-contiguous, non-empty ``x`` of
    shape ``(N, C, ...)`` (``0 < p <= 1``, a validated ``seed``): the training path
    of :func:`dropout2d` and :func:`dropout2d_backward`. Checks nothing."""
    scale = x.dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))
    dev = backend.device_of(x)
    y = dev.empty(x.shape, x.dtype)
    rows, size = x.shape[0] * x.shape[1], math.prod(x.shape[2:])
    dev.kernels("dropout").dropout2d_apply(
        x.reshape(rows, size), y.reshape(rows, size), p, scale, seed
    )
    return y


def dropout2d(x: np.ndarray, p: float = 0.5, training: bool = True,
              seed: int | None = None) -> np.ndarray:
    """Channel dropout (``torch.nn.functional.dropout2d``): zero each whole channel
    map ``x[n, c]`` with probability ``p`` and scale the kept ones by
    ``1 / (1 - p)``.

    Parameters
    ----------
    x : ndarray
        ``(N, C, H, W)``, float32 or float64. (A 3-D input is refused: PyTorch
        reads it as ``(N, C, L)`` today and warns that it will read it as
        ``(C, H, W)``.)
    p : float
        Probability of dropping a channel, in ``[0, 1]``.
    training : bool
        With False (or ``p == 0``) the result is a copy of ``x``.
    seed : int, optional
        Selects the mask, in ``[0, 2**64)``; pass the same seed to
        :func:`dropout2d_backward`. None draws one from NumPy's global RNG.

    Channel ``c`` of sample ``n`` is kept where ``u(seed, n * C + c) >= p``, the
    same ``u`` as :func:`dropout`'s: the mask is ``dropout``'s mask of an ``(N, C)``
    array with that seed, spread over each map, identical on the CPU and CUDA.

    Shape: x (N, C, H, W) -> y like x.
    """
    if seed is None:
        seed = int(np.random.randint(0, _SEED_LIMIT, dtype=np.uint64))
    return _apply2d("dropout2d", x, p, training, seed)


def dropout2d_backward(dy: np.ndarray, p: float = 0.5, training: bool = True,
                       seed: int | None = None) -> np.ndarray:
    """Gradient of :func:`dropout2d`: ``dy`` masked and scaled by channel exactly as
    the forward pass masked and scaled ``x``.

    Parameters
    ----------
    dy : ndarray
        Upstream gradient, ``(N, C, H, W)``.
    p, training : float, bool
        As given to :func:`dropout2d`.
    seed : int
        The seed the forward pass used; required when ``training`` is True.

    Shape: dy (N, C, H, W) -> dx like dy.
    """
    op = "dropout2d_backward"
    if seed is None and training is True:
        raise TypeError(
            f"{op}: seed is required when training=True; pass the seed given to "
            f"dropout2d (got None)."
        )
    return _apply2d(op, dy, p, training, seed)
