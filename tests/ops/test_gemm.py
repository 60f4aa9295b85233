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


def _widths(dtype):
    """Columns of a block and of one vector of the micro-kernel for ``dtype``
    (they depend on whether the CPU has AVX-512)."""
    itemsize = np.dtype(dtype).itemsize
    return _gemm.BLOCK_BYTES // itemsize, _gemm.VECTOR_BYTES // itemsize


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_rows, blocks, vectors, tail",
                         [(64, 4, 0, 0), (5, 1, 0, 0), (3, 1, 1, 5), (9, 0, 1, 3),
                          (7, 0, 0, 5), (0, 1, 1, 2)])
def test_gemm_4_matches_numpy(dtype, n_rows, blocks, vectors, tail, rng):
    # Whole blocks, a vector and a column tail after them, only a tail, and an
    # empty sum.
    count = _columns(dtype, blocks, vectors, tail)
    dst, coef, src = _operands(rng, dtype, 6, n_rows, count)
    expected = dst.astype(np.float64)
    expected[1:5] += coef[2:6].astype(np.float64) @ src.astype(np.float64)
    _gemm._gemm_4(dst, 1, coef, 2, src, n_rows, 0, count)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(dst, expected, rtol=tol, atol=tol * max(n_rows, 1))
    # Rows outside the four are left alone.
    assert np.array_equal(dst[[0, 5]].astype(np.float64), expected[[0, 5]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_vector_and_column_tail_sum_in_the_same_order(dtype, rng):
    # The one-vector block and the tail reproduce the block's fused multiply-adds
    # bit for bit, so where a column falls (block, vector or tail) does not change
    # its value.
    width, lanes = _widths(dtype)
    dst, coef, src = _operands(rng, dtype, 4, 33, width)
    by_block, by_vectors, by_columns = dst.copy(), dst.copy(), dst.copy()
    _gemm._gemm_4(by_block, 0, coef, 0, src, 33, 0, width)
    for j0 in range(0, width, lanes):
        # Columns j0 .. j0 + lanes - 1 alone: a vector and no tail.
        _gemm._gemm_4(by_vectors, 0, coef, 0, src, 33, j0, j0 + lanes)
    _gemm._gemm_4_columns(by_columns, 0, coef, 0, src, 33, 0, width)
    assert by_block.tobytes() == by_columns.tobytes()
    assert by_vectors.tobytes() == by_columns.tobytes()


def test_gemm_1_matches_numpy(rng):
    dst, coef, src = _operands(rng, np.float64, 2, 9, 21)
    expected = dst.copy()
    expected[1] += coef[4] @ src
    _gemm._gemm_1(dst, 1, coef, 4, src, 9, 0, 21)
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
    # convolution reads its input plane: a block, a vector and a column tail.
    from fastcnn.kernels.cpu import _row_products

    width, lanes = _widths(dtype)
    start, count = 4, width + lanes + 5
    src = rng.standard_normal((6, count + 12)).astype(dtype)
    coef = rng.standard_normal((6, 9)).astype(dtype)
    dst = rng.standard_normal((4, count + 3)).astype(dtype)
    row_of = np.array([0, 2, 4, 1, 3, 0, 2], dtype=np.int64)
    off_of = np.array([0, 3, 7, 1, 0, 5, 2], dtype=np.int64)
    expected = dst.astype(np.float64)
    for k in range(7):
        row = src[1 + row_of[k], off_of[k] + start : off_of[k] + start + count]
        expected[:, 2 : 2 + count] += np.outer(coef[1:5, 2 + k], row)
    _row_products._accumulate_4(dst, 0, 2, coef, 1, 2, src, 1, row_of, off_of, 7,
                                start, count)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(dst, expected, rtol=tol, atol=tol * 10)


def test_vector_width_follows_the_compile_target():
    # 64-byte (zmm) vectors exactly where Numba compiles for AVX-512F.
    from llvmlite import binding
    from numba.core import config

    if config.CPU_FEATURES:
        has_avx512 = "+avx512f" in config.CPU_FEATURES.split(",")
    else:
        has_avx512 = bool(binding.get_host_cpu_features().get("avx512f", False))
    assert _gemm.VECTOR_BYTES == (64 if has_avx512 else 32)
    assert _gemm.BLOCK_BYTES == 2 * _gemm.VECTOR_BYTES


_AVX2_FEATURES = ("+64bit,+avx,+avx2,+cmov,+cx16,+f16c,+fma,+fxsr,+mmx,+popcnt,"
                  "+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave")

_AVX2_SCRIPT = """
import numpy as np
from fastcnn.kernels.cpu import _gemm
assert _gemm.VECTOR_BYTES == 32, _gemm.VECTOR_BYTES
rng = np.random.default_rng(0)
for dtype in (np.float32, np.float64):
    width = _gemm.BLOCK_BYTES // np.dtype(dtype).itemsize
    lanes = _gemm.VECTOR_BYTES // np.dtype(dtype).itemsize
    count = 2 * width + lanes + 3
    dst = rng.standard_normal((4, count)).astype(dtype)
    coef = rng.standard_normal((4, 19)).astype(dtype)
    src = rng.standard_normal((19, count)).astype(dtype)
    expected = dst.astype(np.float64) + coef.astype(np.float64) @ src
    by_columns = dst.copy()
    _gemm._gemm_4(dst, 0, coef, 0, src, 19, 0, count)
    _gemm._gemm_4_columns(by_columns, 0, coef, 0, src, 19, 0, count)
    np.testing.assert_allclose(dst, expected, rtol=1e-5, atol=1e-4)
    assert dst.tobytes() == by_columns.tobytes()
print("ok")
"""


def test_ymm_micro_kernel_on_a_cpu_without_avx512(tmp_path):
    # The 32-byte form, which CPUs without AVX-512 run, compiled for an AVX2
    # target in a fresh interpreter (the width is fixed at import).
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CPU_NAME": "haswell",
           "NUMBA_CPU_FEATURES": _AVX2_FEATURES,
           "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _AVX2_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_rows_on_a_column_span_leaves_the_other_columns(dtype, rng):
    # The dense kernels split a product's columns over tasks: each task's span is
    # computed as the whole product would compute it, and nothing outside changes.
    width, lanes = _widths(dtype)
    count = 2 * width + lanes + 7
    dst, coef, src = _operands(rng, dtype, 7, 11, count)
    whole = dst.copy()
    _gemm._gemm_rows(whole, 0, 7, coef, 1, src, 11, 0, count)
    pieces = dst.copy()
    start, stop = lanes + 3, 2 * width + 5
    _gemm._gemm_rows(pieces, 0, 7, coef, 1, src, 11, start, stop)
    assert pieces[:, :start].tobytes() == dst[:, :start].tobytes()
    assert pieces[:, stop:].tobytes() == dst[:, stop:].tobytes()
    assert pieces[:, start:stop].tobytes() == whole[:, start:stop].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blocks, tail", [(2, 0), (1, 7), (0, 5), (3, 1)])
def test_two_row_block_sums_as_the_four_row_block(dtype, blocks, tail, rng):
    # _accumulate_2 (two-row blocks PAIR_VECTORS wide, then a column loop) gives
    # each output the bits the four-row block gives it: rows two and three of a
    # four-row product equal the pair's rows, whatever the column's place.
    from fastcnn.kernels.cpu import _row_products

    pair_width = _gemm.PAIR_VECTORS * _gemm.VECTOR_BYTES // np.dtype(dtype).itemsize
    count, n_rows, start = blocks * pair_width + tail, 11, 3
    src = rng.standard_normal((5, count + 20)).astype(dtype)
    coef = rng.standard_normal((6, n_rows + 2)).astype(dtype)
    row_of = rng.integers(0, 5, n_rows).astype(np.int64)
    off_of = rng.integers(0, 8, n_rows).astype(np.int64)
    dst = rng.standard_normal((4, count)).astype(dtype)
    four, two = dst.copy(), dst[2:].copy()
    _row_products._accumulate_4(four, 0, 0, coef, 1, 2, src, 0, row_of, off_of,
                                n_rows, start, count)
    _row_products._accumulate_2(two, 0, 0, coef, 3, 2, src, 0, row_of, off_of,
                                n_rows, start, count)
    assert two.tobytes() == four[2:].tobytes()
    expected = dst[2:].astype(np.float64)
    for k in range(n_rows):
        row = src[row_of[k], off_of[k] + start : off_of[k] + start + count]
        expected += np.outer(coef[3:5, 2 + k], row)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(two, expected, rtol=tol, atol=tol * 10)


def _four_rows_at_a_time(dst, d0, d1, coef, c0, src, n_rows, start, stop):
    """``_gemm_rows`` as it was before the tall block: blocks of four rows, then
    one row at a time."""
    d = d0
    while d + 4 <= d1:
        _gemm._gemm_4(dst, d, coef, c0 + d - d0, src, n_rows, start, stop)
        d += 4
    while d < d1:
        _gemm._gemm_1(dst, d, coef, c0 + d - d0, src, n_rows, start, stop)
        d += 1


def _columns(dtype, blocks, vectors, tail):
    """Columns making ``blocks`` whole blocks, ``vectors`` vectors and a ``tail``."""
    width, lanes = _widths(dtype)
    return blocks * width + vectors * lanes + tail


# Output rows that make tall blocks and leave none, four, or 1-7 rows after them;
# columns that make blocks, a vector and a tail.
_TALL_CASES = [(8, 2, 1, 0), (13, 1, 1, 3), (16, 0, 1, 5), (23, 3, 0, 2),
               (7, 1, 1, 1), (12, 1, 0, 0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, blocks, vectors, tail", _TALL_CASES)
def test_gemm_rows_sums_as_four_rows_at_a_time(dtype, rows, blocks, vectors, tail,
                                               rng):
    # The tall block (TALL_ROWS rows, where vectors are zmm) adds each output's
    # products in the order the four-row block does: the same bits, and NumPy's
    # product to rounding.
    count = _columns(dtype, blocks, vectors, tail)
    dst, coef, src = _operands(rng, dtype, rows, 19, count)
    tall, four = dst.copy(), dst.copy()
    _gemm._gemm_rows(tall, 0, rows, coef, 2, src, 19, 0, count)
    _four_rows_at_a_time(four, 0, rows, coef, 2, src, 19, 0, count)
    assert tall.tobytes() == four.tobytes()
    expected = dst.astype(np.float64) + coef[2 : 2 + rows].astype(np.float64) @ src
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(tall, expected, rtol=tol, atol=tol * 19)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, blocks, vectors, tail", _TALL_CASES)
def test_gemm_rows_store_is_gemm_rows_into_zeros(dtype, rows, blocks, vectors, tail,
                                                 rng):
    # Storing a product (accumulators started at zero, the tall and four-row
    # blocks, their vectors, the zeroed tail) gives the bits of adding it into
    # zeros; rows outside [1, 1 + rows) are left alone.
    count = _columns(dtype, blocks, vectors, tail)
    dst, coef, src = _operands(rng, dtype, rows + 2, 17, count)
    stored = dst.copy()
    _gemm._gemm_rows_store(stored, 1, 1 + rows, coef, 0, src, 17, 0, count)
    added = dst.copy()
    added[1 : 1 + rows] = 0
    _four_rows_at_a_time(added, 1, 1 + rows, coef, 0, src, 17, 0, count)
    assert stored.tobytes() == added.tobytes()


def _shifted_operands(rng, dtype, rows, n_rows, count):
    src = rng.standard_normal((5, count + 20)).astype(dtype)
    coef = rng.standard_normal((rows + 3, n_rows + 2)).astype(dtype)
    row_of = rng.integers(0, 5, n_rows).astype(np.int64)
    off_of = rng.integers(0, 8, n_rows).astype(np.int64)
    dst = rng.standard_normal((rows, count)).astype(dtype)
    return dst, coef, src, row_of, off_of


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, blocks, vectors, tail", _TALL_CASES)
def test_tall_first_sums_as_accumulate(dtype, rows, blocks, vectors, tail, rng):
    # _accumulate_tall_first reads the tall blocks' coefficients from the same
    # matrix held by column (F) and leaves the rest to _accumulate: its bits are
    # _accumulate's, with the coefficients by column or without them (empty).
    from fastcnn.kernels.cpu import _row_products

    count, n_rows, start = _columns(dtype, blocks, vectors, tail), 11, 3
    dst, coef, src, row_of, off_of = _shifted_operands(rng, dtype, rows, n_rows,
                                                       count)
    by_column = np.asfortranarray(coef)
    plain, tall, none = dst.copy(), dst.copy(), dst.copy()
    _row_products._accumulate(plain, 0, rows, 0, coef, 2, 1, src, 0, row_of, off_of,
                              n_rows, start, count)
    _row_products._accumulate_tall_first(tall, 0, rows, 0, coef, by_column, 2, 1, src,
                                         0, row_of, off_of, n_rows, start, count)
    _row_products._accumulate_tall_first(none, 0, rows, 0, coef,
                                         np.empty((0, 0), dtype).T, 2, 1, src, 0,
                                         row_of, off_of, n_rows, start, count)
    assert tall.tobytes() == plain.tobytes()
    assert none.tobytes() == plain.tobytes()
    expected = dst.astype(np.float64)
    for k in range(n_rows):
        row = src[row_of[k], off_of[k] + start : off_of[k] + start + count]
        expected += np.outer(coef[2 : 2 + rows, 1 + k], row)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(tall, expected, rtol=tol, atol=tol * 10)


def test_filters_by_column_only_where_a_tall_block_pays():
    from fastcnn.kernels.cpu import _row_products

    helper = numba.njit(lambda w, columns: _row_products._filters_by_column(w, columns))
    w = np.arange(16 * 3 * 2 * 2, dtype=np.float32).reshape(16, 3, 2, 2)
    many = _row_products.BY_COLUMN_MIN_COLUMNS
    wt = helper(w, many)
    if _gemm.TALL_ROWS > 4:
        assert wt.flags.c_contiguous
        assert np.array_equal(wt.T, w.reshape(16, 12))
    else:
        assert wt.size == 0
    assert helper(w, many - 1).size == 0
    assert helper(w[: _gemm.TALL_ROWS - 1], many).size == 0


def test_rows_forms_refuse_coefficients_neither_c_nor_f():
    from fastcnn.kernels.cpu import _row_products

    @numba.njit
    def strided(dst, coef, src, row_of, off_of):
        _row_products._accumulate_tall_rows(dst, 0, 0, coef[:, ::2], 0, 0, src, 0,
                                            row_of, off_of, 1, 0)

    f32 = np.zeros((8, 64), np.float32)
    ints = np.zeros(1, np.int64)
    with pytest.raises(numba.core.errors.TypingError):
        strided(f32, f32, f32, ints, ints)
