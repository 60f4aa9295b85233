"""Run a computation under a given Numba thread count (for determinism tests)."""

from __future__ import annotations

import numba
import numpy as np


def results_by_thread_count(fn, counts=(1, 2)):
    """Call ``fn()`` once per thread count and return the results (tuples of arrays
    or arrays), restoring the previous thread count afterwards."""
    previous = numba.get_num_threads()
    out = []
    try:
        for n in counts:
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            out.append(fn())
    finally:
        numba.set_num_threads(previous)
    return out


def assert_bitwise_equal(a, b, what=""):
    a = a if isinstance(a, tuple | list) else (a,)
    b = b if isinstance(b, tuple | list) else (b,)
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b, strict=True)):
        u, v = np.asarray(u), np.asarray(v)
        assert u.dtype == v.dtype and u.shape == v.shape
        assert u.tobytes() == v.tobytes(), f"{what}[{i}] differs between thread counts"


def assert_thread_count_invariant(fn, what=""):
    """``fn()`` gives bitwise the same result with 1 and with 2 threads."""
    if numba.config.NUMBA_NUM_THREADS < 2:  # pragma: no cover - 1-core machines
        import pytest

        pytest.skip("needs at least 2 Numba threads")
    one, two = results_by_thread_count(fn)
    assert_bitwise_equal(one, two, what)
