"""Turn an ``rng`` argument (Generator, seed or None) into a numpy Generator."""

from __future__ import annotations

import numbers

import numpy as np

RngLike = np.random.Generator | int | None


def as_generator(rng: RngLike, func: str) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        # Drawn from NumPy's global RNG so that fastcnn.seed() makes it reproducible,
        # as layers do for weight initialisation.
        return np.random.default_rng(np.random.randint(0, 2**32, dtype=np.int64))
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool | np.bool_):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"{func}: rng must be a numpy Generator, an int seed or None, got {rng!r}."
    )
