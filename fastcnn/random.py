"""Reproducibility: one seed for NumPy and for Numba's RNG, and the thread count.

Numba-compiled code does not share NumPy's random state: it keeps its own generator
per thread, which only a call to ``np.random.seed`` *inside* jitted code can seed. So
:func:`seed` seeds both. fastcnn's own kernels use no hidden RNG (dropout masks are a
counter-based hash of an explicit seed); the Numba seed is for user code and for any
future kernel that draws from ``np.random`` inside a jitted function.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

_MAX_SEED = 2**32 - 1


@functools.cache
def _numba_seeder():
    """The jitted function that seeds Numba's generator, made on first use:
    importing numba costs about 0.5 s, and ``import fastcnn`` does not pay it (the
    first kernel call does)."""
    from .kernels._jit import cpu_helper

    @cpu_helper
    def seed_numba(value):
        # Seeds the calling thread's Numba generator; jitted serial code runs on
        # the calling thread, so this is the state such code draws from next.
        np.random.seed(value)

    return seed_numba


def _check_seed(value) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool | np.bool_):
        raise TypeError(f"seed: s must be an int, got {value!r}.")
    if not 0 <= value <= _MAX_SEED:
        raise ValueError(f"seed: s must lie in [0, 2**32 - 1], got {value!r}.")
    return int(value)


def seed(s: int) -> None:
    """Seed NumPy's global RNG and Numba's RNG inside jitted code.

    After ``fastcnn.seed(s)``, building a model (weight initialisation draws from a
    Generator seeded from NumPy's global RNG), Dropout masks and ``fit(seed=None)``
    shuffling are reproducible.

    Parameters
    ----------
    s : int
        The seed, in ``[0, 2**32 - 1]``.

    Shape: no arrays.
    """
    s = _check_seed(s)
    np.random.seed(s)
    _numba_seeder()(np.uint32(s))


def set_num_threads(n: int) -> None:
    """Set the number of threads Numba's parallel kernels use.

    Results do not depend on it: every kernel gives bitwise the same output for any
    thread count.

    Parameters
    ----------
    n : int
        Between 1 and ``numba.config.NUMBA_NUM_THREADS`` (the number of threads Numba
        started with, by default the number of cores).

    Shape: no arrays.
    """
    if not isinstance(n, numbers.Integral) or isinstance(n, bool | np.bool_):
        raise TypeError(f"set_num_threads: n must be an int, got {n!r}.")
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= limit:
        raise ValueError(
            f"set_num_threads: n must lie in [1, {limit}] (NUMBA_NUM_THREADS), "
            f"got {n!r}."
        )
    numba.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of threads Numba's parallel kernels use now.

    Shape: no arrays.
    """
    import numba

    return numba.get_num_threads()


def layer_generators(layers) -> dict[str, np.random.Generator]:
    """Every ``numpy.random.Generator`` the ``layers`` of a model hold (Dropout's
    ``rng``), keyed ``"<index>.<attribute>"``: the random state that model files
    save and data-parallel training broadcasts.

    Shape: no arrays.
    """
    return {f"{i}.{attr}": value
            for i, layer in enumerate(layers)
            for attr, value in vars(layer).items()
            if isinstance(value, np.random.Generator)}
