"""The convolution kernels' matrix-product helpers (``kernels/cpu/_gemm.py``): the
register-blocked micro-kernel and its column tail against NumPy, in both float
dtypes, with the orders of summation they promise."""

import numba
import numpy as np
import pytest

from fastcnn.kernels.cpu import _gemm


def _operands(rng, dtype, rows, n_rows, count):
    dst = rng.standard_normal((rows, count)).astype(dtype)
    coef = rng.standard_normal((rows + 3, n_rows)).astype(dtype)
    src = rng.standard_normal((n_rows, count)).astype(dtype)
    return dst, coef, src


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_rows, count",
                         [(64, 128), (5, 16), (3, 37), (7, 5), (0, 24)])
def test_gemm_4_matches_numpy(dtype, n_rows, count, rng):
    # Whole blocks, a tail after them, only a tail, and an empty sum.
    dst, coef, src = _operands(rng, dtype, 6, n_rows, count)
    expected = dst.astype(np.float64)
    expected[1:5] += coef[2:6].astype(np.float64) @ src.astype(np.float64)
    _gemm._gemm_4(dst, 1, coef, 2, src, n_rows, count)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(dst, expected, rtol=tol, atol=tol * max(n_rows, 1))
    # Rows outside the four are left alone.
    assert np.array_equal(dst[[0, 5]].astype(np.float64), expected[[0, 5]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_and_column_tail_sum_in_the_same_order(dtype, rng):
    # The tail reproduces the block's fused multiply-adds bit for bit, so where a
    # column falls (block or tail) does not change its value.
    width = 64 // np.dtype(dtype).itemsize
    dst, coef, src = _operands(rng, dtype, 4, 33, width)
    by_block, by_columns = dst.copy(), dst.copy()
    _gemm._gemm_4(by_block, 0, coef, 0, src, 33, width)
    _gemm._gemm_4_columns(by_columns, 0, coef, 0, src, 33, 0, width)
    assert by_block.tobytes() == by_columns.tobytes()


def test_gemm_1_matches_numpy(rng):
    dst, coef, src = _operands(rng, np.float64, 2, 9, 21)
    expected = dst.copy()
    expected[1] += coef[4] @ src
    _gemm._gemm_1(dst, 1, coef, 4, src, 9, 21)
    np.testing.assert_allclose(dst, expected, rtol=1e-12, atol=1e-12)


def test_block_refuses_mixed_operands():
    @numba.njit
    def mixed(dst, coef, src):
        _gemm._accumulate_block(dst, 0, coef, 0, src, 1, 0)

    f32 = np.zeros((4, 16), np.float32)
    with pytest.raises(numba.core.errors.TypingError):
        mixed(f32, np.zeros((4, 16), np.float64), f32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accumulate_4_with_shifted_rows_matches_numpy(dtype, rng):
    # Rows picked by index arrays and shifted by per-row offsets, as the stride-1
    # convolution reads its input plane: blocks and a column tail.
    from fastcnn.kernels.cpu import conv

    src = rng.standard_normal((6, 80)).astype(dtype)
    coef = rng.standard_normal((6, 9)).astype(dtype)
    dst = rng.standard_normal((4, 40)).astype(dtype)
    row_of = np.array([0, 2, 4, 1, 3, 0, 2], dtype=np.int64)
    off_of = np.array([0, 3, 7, 1, 0, 5, 2], dtype=np.int64)
    start, count = 4, 37
    expected = dst.astype(np.float64)
    for k in range(7):
        row = src[1 + row_of[k], off_of[k] + start : off_of[k] + start + count]
        expected[:, 2 : 2 + count] += np.outer(coef[1:5, 2 + k], row)
    conv._accumulate_4(dst, 0, 2, coef, 1, 2, src, 1, row_of, off_of, 7, start,
                       count)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(dst, expected, rtol=tol, atol=tol * 10)
