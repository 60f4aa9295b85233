"""The stride-2 row copies of the strided convolutions
(``kernels/cpu/_stride2_rows.py``): bitwise the scalar loops they replace, at
every length around one and two vectors, without touching anything outside the
elements they own."""

import numba
import numpy as np
import pytest

from fastcnn.kernels.cpu._stride2_rows import add_to_evens, copy_evens


@numba.njit
def _copy(src, s0, dst, d0, count):
    copy_evens(src, s0, dst, d0, count)


@numba.njit
def _add(src, s0, dst, d0, count):
    add_to_evens(src, s0, dst, d0, count)


def _values(rng, dtype, size):
    values = rng.standard_normal(size).astype(dtype)
    values[::7] = -0.0
    values[3::11] = np.nan
    values[5::13] = np.inf
    return values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_evens_is_the_strided_copy(dtype, rng):
    for count in range(0, 41):
        for s0, d0 in [(0, 0), (3, 1), (1, 5)]:
            src = _values(rng, dtype, s0 + 2 * count + 3)
            dst = np.full(d0 + count + 4, 7.0, dtype=dtype)
            expected = dst.copy()
            expected[d0 : d0 + count] = src[s0 : s0 + 2 * count : 2]
            _copy(src, s0, dst, d0, count)
            assert dst.tobytes() == expected.tobytes(), (count, s0, d0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_to_evens_is_the_strided_sum_and_leaves_the_rest(dtype, rng):
    # The odd elements between keep their bits (-0.0 and NaN included), and
    # nothing past the last even element is written.
    for count in range(0, 41):
        for s0, d0 in [(0, 0), (2, 1), (5, 3)]:
            src = _values(rng, dtype, s0 + count + 3)
            dst = _values(rng, dtype, d0 + 2 * count + 4)
            expected = dst.copy()
            for t in range(count):
                expected[d0 + 2 * t] += src[s0 + t]
            _add(src, s0, dst, d0, count)
            assert dst.tobytes() == expected.tobytes(), (count, s0, d0)


def test_refuses_mixed_dtypes():
    with pytest.raises(numba.core.errors.TypingError):
        _copy(np.zeros(8, np.float32), 0, np.zeros(8, np.float64), 0, 2)
