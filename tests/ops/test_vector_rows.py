"""The row helpers written as explicit vector code (``kernels/cpu/_vector_rows.py``
and its users): the stride-2 copies of the strided convolutions, the row copy
and the epilogue's clamped copy; bitwise the scalar loops they replace, at every
length around one and two vectors, without touching anything outside the
elements they own."""

import numba
import numpy as np
import pytest

from fastcnn.kernels.cpu._clamp import _clamp, clamp_row
from fastcnn.kernels.cpu._stride2_rows import add_to_evens, copy_evens
from fastcnn.kernels.cpu._vector_rows import copy_row


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


@numba.njit
def _copy_row(src, s0, dst, d0, count):
    copy_row(src, s0, dst, d0, count)


@numba.njit
def _clamp_row(src, s0, dst, d0, count, lo, hi):
    clamp_row(src, s0, dst, d0, count, lo, hi)


@numba.njit
def _clamp_scalar(src, s0, dst, d0, count, lo, hi):
    for t in range(count):
        dst[d0 + t] = _clamp(src[s0 + t], lo, hi)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_row_copies_the_bits_and_nothing_else(dtype, rng):
    for count in range(0, 41):
        for s0, d0 in [(0, 0), (3, 1), (1, 6)]:
            src = _values(rng, dtype, s0 + count + 2)
            dst = np.full(d0 + count + 3, 7.0, dtype=dtype)
            expected = dst.copy()
            expected[d0 : d0 + count] = src[s0 : s0 + count]
            _copy_row(src, s0, dst, d0, count)
            assert dst.tobytes() == expected.tobytes(), (count, s0, d0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bounds", [(-np.inf, np.inf), (0.0, np.inf), (0.0, 6.0)])
def test_clamp_row_is_the_scalar_clamp(bounds, dtype, rng):
    lo, hi = (dtype(b) for b in bounds)
    for count in range(0, 41):
        for s0, d0 in [(0, 0), (2, 5)]:
            src = _values(rng, dtype, s0 + count + 2) * 4
            dst = np.full(d0 + count + 3, 7.0, dtype=dtype)
            expected = dst.copy()
            _clamp_scalar(src, s0, expected, d0, count, lo, hi)
            _clamp_row(src, s0, dst, d0, count, lo, hi)
            assert dst.tobytes() == expected.tobytes(), (count, s0, d0)
