"""Tasks: serial functions a parallel kernel calls through their address
(``fastcnn/kernels/cpu/_tasks.py``)."""

import numba
import numpy as np
import pytest
from numba import int64, prange

from fastcnn.kernels.cpu import _tasks, dense
from fastcnn.kernels.cpu._tasks import cpu_task


@cpu_task(lambda f: (int64, f[:, ::1], f[::1]))
def _row_sums(i, src, dst):
    acc = src.dtype.type(0)
    for j in range(src.shape[1]):
        acc += src[i, j]
    dst[i] = acc


@numba.njit(parallel=True, cache=False)
def _all_row_sums(task, src, dst):
    for i in prange(src.shape[0]):
        _row_sums(task, (np.int64(i), src, dst))


@numba.njit(cache=False)
def _wrong_types(task, src, dst):
    _row_sums(task, (np.int64(0), src, dst[0:1].astype(np.float64)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_kernel_runs_a_task_through_its_address(dtype):
    src = np.arange(12, dtype=dtype).reshape(4, 3)
    dst = np.full(4, np.nan, dtype=dtype)
    _all_row_sums(_row_sums.address(src.dtype), src, dst)
    np.testing.assert_array_equal(dst, src.sum(axis=1))
    # One compile per dtype; the address is kept.
    assert _row_sums.address(dtype) == _row_sums.address(np.dtype(dtype))
    assert _row_sums.address(np.float32) != _row_sums.address(np.float64)
    assert len(_row_sums.dispatcher.signatures) >= 1


def test_a_call_with_other_types_than_declared_does_not_compile():
    src = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(numba.core.errors.TypingError,
                       match="_row_sums: called with .* declared"):
        _wrong_types(_row_sums.address(np.float32), src, np.ones(2, np.float32))


def test_a_strided_array_reaches_no_task():
    # Tasks are declared for C-contiguous arrays; a strided view must fail to
    # compile, never be read as if contiguous.
    x = np.zeros((2, 16), dtype=np.float32)[:, ::2]
    w = np.zeros((3, 8), dtype=np.float32)
    b = np.zeros(3, dtype=np.float32)
    y = np.empty((2, 3), dtype=np.float32)
    inf = np.float32(np.inf)
    with pytest.raises(numba.core.errors.TypingError, match="declared"):
        dense._linear_forward_dots(x, w, b, y, -inf, inf)


def test_task_arguments_are_checked():
    with pytest.raises(numba.core.errors.TypingError, match="must be a tuple"):
        numba.njit(lambda a, s, d: _row_sums(a, s))(0, np.ones((1, 1)),
                                                    np.ones(1))
    with pytest.raises(numba.core.errors.TypingError, match="must be an integer"):
        numba.njit(lambda a, s, d: _row_sums(1.5, (np.int64(0), s, d)))(
            0, np.ones((1, 1)), np.ones(1))
    assert _tasks._float_type((int64,)) is None
