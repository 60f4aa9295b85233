"""Named weight initialisers, with PyTorch's fan computation.

Every initialiser has the signature ``init(shape, rng, dtype) -> ndarray`` and draws in
float64 before casting, so a float32 and a float64 build from the same seed hold the
same values (up to rounding). :data:`INITIALIZERS` maps each name to its function;
:func:`get` looks a name up with a clear error.

===================  =================================================================
name                 distribution (fan_in, fan_out per :func:`fan_in_and_fan_out`)
===================  =================================================================
``"torch"``          U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for
                     Conv2d/Linear weights, ``kaiming_uniform_(a=sqrt(5))``
``"he_normal"``      N(0, 2/fan_in) (PyTorch's ``kaiming_normal_``, not truncated)
``"he_uniform"``     U(-sqrt(6/fan_in), sqrt(6/fan_in))
``"glorot_normal"``  N(0, 2/(fan_in+fan_out)) (``xavier_normal_``, not truncated)
``"glorot_uniform"`` U(-sqrt(6/(fan_in+fan_out)), sqrt(6/(fan_in+fan_out)))
``"zeros"``          0
``"ones"``           1
===================  =================================================================

Keras's He/Glorot *normal* draw from a truncated normal; these follow PyTorch's
``torch.nn.init`` instead, which does not truncate.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Initializer = Callable[[tuple[int, ...], np.random.Generator, np.dtype], np.ndarray]


def fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's ``_calculate_fan_in_and_fan_out``.

    For a weight of shape ``(out, in, *kernel)`` the fans are ``in * prod(kernel)`` and
    ``out * prod(kernel)``; a conv weight's ``in`` is its channels per group.

    Shape: shape has at least 2 dimensions -> (fan_in, fan_out).
    """
    if len(shape) < 2:
        raise ValueError(
            f"fan_in_and_fan_out: a weight needs at least 2 dimensions to have fans, "
            f"got shape {tuple(shape)}."
        )
    receptive = math.prod(shape[2:])
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def _uniform(bound: float, shape, rng, dtype) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _normal(std: float, shape, rng, dtype) -> np.ndarray:
    return (rng.standard_normal(size=shape) * std).astype(dtype)


def torch_default(shape, rng, dtype) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): ``kaiming_uniform_(w, a=sqrt(5))``, whose
    gain sqrt(2/(1+a^2)) = sqrt(1/3) times sqrt(3/fan_in) is 1/sqrt(fan_in)."""
    fan_in, _ = fan_in_and_fan_out(shape)
    return _uniform(1.0 / math.sqrt(fan_in), shape, rng, dtype)


def torch_bias(shape, fan_in: int, rng, dtype) -> np.ndarray:
    """PyTorch's default bias of a Conv2d/Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    with the fan_in of the layer's weight."""
    return _uniform(1.0 / math.sqrt(fan_in), shape, rng, dtype)


def he_normal(shape, rng, dtype) -> np.ndarray:
    """N(0, 2/fan_in) (``kaiming_normal_`` with ReLU's gain, fan_in mode)."""
    fan_in, _ = fan_in_and_fan_out(shape)
    return _normal(math.sqrt(2.0 / fan_in), shape, rng, dtype)


def he_uniform(shape, rng, dtype) -> np.ndarray:
    """U(-sqrt(6/fan_in), sqrt(6/fan_in)) (``kaiming_uniform_`` with ReLU's gain)."""
    fan_in, _ = fan_in_and_fan_out(shape)
    return _uniform(math.sqrt(6.0 / fan_in), shape, rng, dtype)


def glorot_normal(shape, rng, dtype) -> np.ndarray:
    """N(0, 2/(fan_in + fan_out)) (``xavier_normal_``)."""
    fan_in, fan_out = fan_in_and_fan_out(shape)
    return _normal(math.sqrt(2.0 / (fan_in + fan_out)), shape, rng, dtype)


def glorot_uniform(shape, rng, dtype) -> np.ndarray:
    """U(-sqrt(6/(fan_in + fan_out)), +...) (``xavier_uniform_``)."""
    fan_in, fan_out = fan_in_and_fan_out(shape)
    return _uniform(math.sqrt(6.0 / (fan_in + fan_out)), shape, rng, dtype)


def zeros(shape, rng, dtype) -> np.ndarray:
    """All zeros (``rng`` is not used)."""
    return np.zeros(shape, dtype=dtype)


def ones(shape, rng, dtype) -> np.ndarray:
    """All ones (``rng`` is not used)."""
    return np.ones(shape, dtype=dtype)


INITIALIZERS: dict[str, Initializer] = {
    "torch": torch_default,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "zeros": zeros,
    "ones": ones,
}


def get(name: str) -> Initializer:
    """The initialiser called ``name``.

    Raises
    ------
    TypeError
        ``name`` is not a str.
    ValueError
        ``name`` is not in :data:`INITIALIZERS`.

    Shape: no arrays.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"initializers.get: name must be a str naming an initialiser, got "
            f"{name!r}."
        )
    try:
        return INITIALIZERS[name]
    except KeyError:
        known = ", ".join(repr(k) for k in INITIALIZERS)
        raise ValueError(
            f"initializers.get: unknown initialiser {name!r}; known: {known}."
        ) from None
