"""max_pool2d(..., return_indices=True), max_pool2d_backward(..., indices=),
max_unpool2d and max_unpool2d_backward: slow references, finite differences,
PyTorch (indices, ties, NaN, repeated indices), thread-count invariance, hypothesis
fuzzing of shapes and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcnn.functional as F
from fastcnn.functional.pool import pool_geometry

from .. import naive
from ..fuzz_support import (
    COUNTS,
    FLOATS,
    NOT_BOOLS,
    bad_sizes,
    data,
    examples,
    expect_rejected,
    extreme_data,
    other_float,
)
from ..gradcheck import assert_close, check_finite_differences
from ..threads import assert_thread_count_invariant

DTYPES = [np.float64, np.float32]
#: The issue's bounds against PyTorch (relative); selections here are exact anyway.
TORCH_TOL = {np.float64: dict(rtol=1e-10, atol=1e-12),
             np.float32: dict(rtol=1e-4, atol=1e-6)}


def _pairs(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _geo_args(cfg):
    k = _pairs(cfg["kernel_size"])
    s = k if cfg.get("stride") is None else _pairs(cfg["stride"])
    return (k, s, _pairs(cfg.get("padding", 0)), _pairs(cfg.get("dilation", 1)),
            cfg.get("ceil_mode", False))


# ------------------------------------------------------------ slow references


def _first_tap(o, k, s, p, d):
    """The first non-negative tap of window o (PyTorch's start, ``while start < 0:
    start += dilation``); past the input for a window with no tap inside."""
    start = o * s - p
    while start < 0:
        start += d
    return start


def ref_max_pool_indices(x, kernel, stride, padding, dilation, ceil_mode):
    """(y, indices) by naive._max_window, the flat position ``r * W + c``; a window
    with no tap inside the input has PyTorch's index of its first tap."""
    y = naive.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    idx = np.empty(y.shape, np.int64)
    w = x.shape[3]
    for n, c, i, j in np.ndindex(y.shape):
        _, where = naive._max_window(x[n, c], i, j, kernel, stride, padding, dilation)
        if where is None:
            where = (_first_tap(i, kernel[0], stride[0], padding[0], dilation[0]),
                     _first_tap(j, kernel[1], stride[1], padding[1], dilation[1]))
        idx[n, c, i, j] = where[0] * w + where[1]
    return y, idx


def ref_scatter_add(dy, indices, x_shape):
    """Each dy added at its index (those outside the plane dropped)."""
    dx = np.zeros(x_shape)
    plane = x_shape[2] * x_shape[3]
    for n, c, i, j in np.ndindex(dy.shape):
        pos = int(indices[n, c, i, j])
        if 0 <= pos < plane:
            dx[n, c, pos // x_shape[3], pos % x_shape[3]] += float(dy[n, c, i, j])
    return dx


def ref_unpool(x, indices, out_hw):
    """Zeros with each x written at its index, in row-major order (the last of a
    repeated index wins)."""
    y = np.zeros((*x.shape[:2], *out_hw))
    for n, c, i, j in np.ndindex(x.shape):
        pos = int(indices[n, c, i, j])
        y[n, c, pos // out_hw[1], pos % out_hw[1]] = x[n, c, i, j]
    return y


def ref_unpool_backward(dy, indices):
    dx = np.empty(indices.shape)
    for n, c, i, j in np.ndindex(indices.shape):
        pos = int(indices[n, c, i, j])
        dx[n, c, i, j] = dy[n, c, pos // dy.shape[3], pos % dy.shape[3]]
    return dx


def _distinct(rng, shape, dtype=np.float64):
    """Values at least 1/size apart, so finite differences never cross a tie."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) / size - 0.5).astype(dtype)


# ------------------------------------------------------------- (a) references

MAX_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1)),
    dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True),
    dict(kernel_size=2, stride=3, ceil_mode=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", MAX_CASES)
def test_indices_match_the_reference(cfg, dtype, rng):
    x = rng.integers(-2, 3, (2, 3, 7, 6)).astype(dtype)  # many ties
    x[0, 0, 1, 1] = np.nan
    y, idx = F.max_pool2d(x, **cfg, return_indices=True)
    ry, ridx = ref_max_pool_indices(x, *_geo_args(cfg))
    assert idx.dtype == np.int64 and idx.shape == y.shape and y.dtype == dtype
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(idx, ridx)
    # The same values as the path without indices.
    np.testing.assert_array_equal(y, F.max_pool2d(x, **cfg))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", MAX_CASES)
def test_backward_through_indices_is_the_recomputing_backward(cfg, dtype, rng):
    x = rng.integers(-2, 3, (2, 3, 7, 6)).astype(dtype)
    y, idx = F.max_pool2d(x, **cfg, return_indices=True)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = F.max_pool2d_backward(dy, x, **cfg, indices=idx)
    assert dx.dtype == dtype and dx.shape == x.shape
    # Same sums in the same order: bitwise the same.
    assert dx.tobytes() == F.max_pool2d_backward(dy, x, **cfg).tobytes()
    assert_close(dx, ref_scatter_add(dy, idx, x.shape), 1e-12 if dtype == np.float64
                 else 2e-6, 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_unpool_matches_the_reference(dtype, rng):
    x = rng.standard_normal((2, 3, 3, 4)).astype(dtype)
    idx = rng.integers(0, 7 * 9, x.shape)
    idx[0, 0, 0, :3] = 5  # a repeated index: the last of the three wins
    y = F.max_unpool2d(x, idx, 3, stride=2, padding=(0, 0), output_size=(7, 9))
    assert y.shape == (2, 3, 7, 9) and y.dtype == dtype
    np.testing.assert_array_equal(y, ref_unpool(x, idx, (7, 9)))
    assert y[0, 0, 0, 5] == x[0, 0, 0, 2]
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = F.max_unpool2d_backward(dy, idx, 3, stride=2, output_size=(7, 9))
    assert dx.shape == x.shape and dx.dtype == dtype
    np.testing.assert_array_equal(dx, ref_unpool_backward(dy, idx))
    # Every repeat of an index gets that position's gradient (PyTorch's rule).
    assert (dx[0, 0, 0, :3] == dy[0, 0, 0, 5]).all()


def test_unpool_default_output_size_and_four_entry_output_size(rng):
    x = rng.standard_normal((1, 2, 3, 3))
    idx = np.zeros(x.shape, np.int64)
    # (H - 1) * stride - 2 * padding + kernel_size.
    assert F.max_unpool2d(x, idx, 3, stride=2, padding=1).shape == (1, 2, 5, 5)
    assert F.max_unpool2d(x, idx, (2, 3)).shape == (1, 2, 6, 9)
    assert F.max_unpool2d(x, idx, 2, output_size=[9, 9, 7, 5]).shape == (1, 2, 7, 5)


def test_empty_batch(rng):
    x = np.zeros((0, 2, 5, 4))
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert y.shape == idx.shape == (0, 2, 2, 2) and idx.dtype == np.int64
    assert F.max_pool2d_backward(y, x, 2, indices=idx).shape == x.shape
    up = F.max_unpool2d(y, idx, 2)
    assert up.shape == (0, 2, 4, 4)
    assert F.max_unpool2d_backward(up, idx, 2).shape == (0, 2, 2, 2)


def test_a_window_outside_the_input_has_torchs_index_and_routes_nothing():
    # Dilation 3 with ceil_mode: the only window's taps (-1 and 2) miss a 1x1 input;
    # PyTorch gives -inf and index 2 * 1 + 2 = 4, outside the plane.
    x = np.ones((2, 1, 1, 1))
    cfg = dict(kernel_size=2, stride=2, padding=1, dilation=3, ceil_mode=True)
    y, idx = F.max_pool2d(x, **cfg, return_indices=True)
    assert (y == -np.inf).all() and (idx == 4).all()
    dx = F.max_pool2d_backward(np.ones_like(y), x, **cfg, indices=idx)
    np.testing.assert_array_equal(dx, np.zeros_like(x))
    # Whatever such a window's index says, it routes nothing (none is in range).
    dx = F.max_pool2d_backward(np.ones_like(y), x, **cfg, indices=np.zeros_like(idx))
    np.testing.assert_array_equal(dx, np.zeros_like(x))


# ------------------------------------------------------ (b) finite differences


@pytest.mark.parametrize("cfg", MAX_CASES[:4])
def test_max_pool_backward_with_indices_finite_differences(cfg, rng):
    x = _distinct(rng, (1, 2, 7, 6))
    _, idx = F.max_pool2d(x, **cfg, return_indices=True)
    check_finite_differences(
        lambda x: F.max_pool2d(x, **cfg),
        lambda dy, x: F.max_pool2d_backward(dy, x, **cfg, indices=idx),
        {"x": x}, ["x"], rng,
    )


def test_unpool_finite_differences(rng):
    x = rng.standard_normal((2, 2, 3, 3))
    # Distinct indices (a max pooling's): the op is linear and its backward exact.
    idx = np.stack([rng.permutation(7 * 7)[:9].reshape(3, 3) for _ in range(4)])
    idx = idx.reshape(x.shape)
    kw = dict(kernel_size=3, stride=2, output_size=(7, 7))
    check_finite_differences(
        lambda x: F.max_unpool2d(x, idx, **kw),
        lambda dy, x: F.max_unpool2d_backward(dy, idx, **kw),
        {"x": x}, ["x"], rng,
    )


# ------------------------------------------------------------------ (c) PyTorch


@pytest.fixture
def torch():
    """PyTorch on one thread: its max_unpool2d writes repeated indices in parallel,
    so its winner is fixed only on one thread (the one we reproduce)."""
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(previous)


def _torch_grid():
    shapes = [(1, 2, 7, 5), (2, 3, 6, 6)]
    for shape, k, s, d, ceil in itertools.product(
            shapes, [2, 3, (2, 3)], [None, 1, 2], [1, 2], [False, True]):
        kh, kw = _pairs(k)
        for p in [p for p in (0, 1) if p <= min(kh, kw) // 2]:
            cfg = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
            try:
                pool_geometry("t", shape, k, s, p, d, ceil)
            except ValueError:
                continue
            yield shape, cfg


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_indices_and_both_backwards_match_torch(dtype, torch):
    rng = np.random.default_rng(5)
    compared = 0
    for shape, cfg in _torch_grid():
        x = rng.integers(-3, 4, shape).astype(dtype)  # ties everywhere
        x.reshape(-1)[rng.integers(0, x.size, 2)] = np.nan
        y, idx = F.max_pool2d(x, **cfg, return_indices=True)
        xt = torch.tensor(x, requires_grad=True)
        yt, it = torch.nn.functional.max_pool2d(xt, **cfg, return_indices=True)
        if np.isinf(y).any():
            continue  # PyTorch's backward writes out of bounds there (see above)
        np.testing.assert_array_equal(y, yt.detach().numpy(), err_msg=str(cfg))
        np.testing.assert_array_equal(idx, it.numpy(), err_msg=str(cfg))
        dy = rng.standard_normal(y.shape).astype(dtype)
        yt.backward(torch.tensor(dy))
        dx = F.max_pool2d_backward(dy, x, **cfg, indices=idx)
        assert_close(dx, xt.grad.numpy(), **TORCH_TOL[dtype], what=str(cfg))
        # And unpooling with those indices, to the input size.
        yt2 = torch.tensor(y, requires_grad=True)
        kw = dict(kernel_size=cfg["kernel_size"], stride=cfg["stride"],
                  padding=cfg["padding"])
        try:
            ut = torch.nn.functional.max_unpool2d(yt2, it, **kw,
                                                  output_size=shape[2:])
        except (ValueError, RuntimeError):
            ut = None  # dilation: torch's size rule may not reach the input size
        if ut is not None:
            up = F.max_unpool2d(y, idx, **kw, output_size=shape[2:])
            np.testing.assert_array_equal(up, ut.detach().numpy(), err_msg=str(cfg))
            dup = rng.standard_normal(up.shape).astype(dtype)
            ut.backward(torch.tensor(dup))
            np.testing.assert_array_equal(
                F.max_unpool2d_backward(dup, idx, **kw, output_size=shape[2:]),
                yt2.grad.numpy())
        compared += 1
    assert compared > 60


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_unpool_with_repeated_indices_matches_torch(dtype, torch, rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(dtype)
    idx = rng.integers(0, 6, x.shape)  # 16 values into 6 positions: many repeats
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_unpool2d(xt, torch.tensor(idx), 2, stride=1,
                                          output_size=(5, 5))
    y = F.max_unpool2d(x, idx, 2, stride=1, output_size=(5, 5))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    dy = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.tensor(dy))
    assert_close(F.max_unpool2d_backward(dy, idx, 2, stride=1, output_size=(5, 5)),
                 xt.grad.numpy(), **TORCH_TOL[dtype])


# ---------------------------------------------------------------- (d) threads


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_invariance(dtype, rng):
    x = rng.integers(-2, 3, (2, 3, 9, 8)).astype(dtype)
    cfg = dict(kernel_size=3, stride=1, padding=1, dilation=(1, 2), ceil_mode=True)
    y, idx = F.max_pool2d(x, **cfg, return_indices=True)
    dy = rng.standard_normal(y.shape).astype(dtype)
    rep = rng.integers(0, 4, x.shape)
    assert_thread_count_invariant(
        lambda: (*F.max_pool2d(x, **cfg, return_indices=True),
                 F.max_pool2d_backward(dy, x, **cfg, indices=idx),
                 F.max_unpool2d(x, rep, 2, output_size=(17, 15)),
                 F.max_unpool2d_backward(np.ones((2, 3, 17, 15), dtype), rep, 2,
                                         output_size=(17, 15))),
        "pool indices",
    )


# ------------------------------------------------------------------ (e) bad input

X = np.zeros((1, 2, 4, 4))
Y, IDX = F.max_pool2d(X, 2, return_indices=True)


def test_return_indices_must_be_a_bool():
    with pytest.raises(TypeError, match="^max_pool2d: return_indices must be a bool"):
        F.max_pool2d(X, 2, return_indices=1)


OPS_WITH_INDICES = [
    ("max_pool2d_backward",
     lambda idx: F.max_pool2d_backward(np.zeros((1, 2, 2, 2)), X, 2, indices=idx)),
    ("max_unpool2d", lambda idx: F.max_unpool2d(Y, idx, 2)),
    ("max_unpool2d_backward", lambda idx: F.max_unpool2d_backward(X, idx, 2)),
]


@pytest.mark.parametrize(("name", "op"), OPS_WITH_INDICES)
@pytest.mark.parametrize("bad", [IDX.astype(np.float64), IDX.astype(bool),
                                 IDX.astype(object)])
def test_indices_bad_dtype(name, op, bad):
    with pytest.raises(TypeError, match=f"^{name}: indices must have an integer"):
        op(bad)


@pytest.mark.parametrize(("name", "op"), OPS_WITH_INDICES)
def test_indices_not_an_array(name, op):
    with pytest.raises(TypeError, match=f"^{name}: indices must be a numpy.ndarray"):
        op(IDX.tolist())


@pytest.mark.parametrize(("name", "op", "match"), [
    (*OPS_WITH_INDICES[0], r"indices must have shape \(1, 2, 2, 2\)"),
    (*OPS_WITH_INDICES[1], r"indices must have shape \(1, 2, 2, 2\)"),
    # The backward has no x: indices give its shape, and dy must fit them.
    (*OPS_WITH_INDICES[2], r"dy must have shape \(1, 1, 4, 4\)"),
])
def test_indices_wrong_shape(name, op, match):
    with pytest.raises(ValueError, match=f"^{name}: {match}"):
        op(IDX[:, :1])


@pytest.mark.parametrize(("name", "op"), OPS_WITH_INDICES[1:])
@pytest.mark.parametrize("value", [-1, 16, 2**40, -(2**62)])
def test_unpool_index_out_of_range(name, op, value):
    bad = IDX.copy()
    bad[0, 1, 1, 0] = value
    with pytest.raises(ValueError, match=rf"^{name}: indices must lie in \[0, 16\) .*"
                       rf"got {value} at indices\[0, 1, 1, 0\]"):
        op(bad)


def test_unpool_huge_unsigned_index_is_refused():
    bad = IDX.astype(np.uint64)
    bad[0, 0, 0, 0] = 2**64 - 1
    with pytest.raises(ValueError, match="indices must lie in"):
        F.max_unpool2d(Y, bad, 2)
    # Any integer dtype in range is taken.
    np.testing.assert_array_equal(F.max_unpool2d(Y, IDX.astype(np.uint8), 2),
                                  F.max_unpool2d(Y, IDX, 2))


@pytest.mark.parametrize("value", [-1, 16, 2, 6])
def test_pool_backward_index_outside_its_window(value):
    # Window (0, 0) of a 2x2 pooling of 4x4 planes covers positions 0, 1, 4, 5;
    # 2 and 6 are taps of window (0, 1).
    bad = IDX.copy()
    bad[0, 0, 0, 0] = value
    with pytest.raises(ValueError, match=r"^max_pool2d_backward: indices\[0, 0, 0, "
                       rf"0\] = {value} is not a position .* of its own window"):
        F.max_pool2d_backward(np.zeros((1, 2, 2, 2)), X, 2, indices=bad)


def test_pool_backward_index_between_dilated_taps():
    x = np.zeros((1, 1, 5, 5))
    cfg = dict(kernel_size=3, dilation=2, stride=1)  # one window, taps 0, 2, 4
    _, idx = F.max_pool2d(x, **cfg, return_indices=True)
    F.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, **cfg, indices=idx)
    with pytest.raises(ValueError, match="not a position"):
        F.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, **cfg,
                              indices=np.array([[[[1 * 5 + 2]]]]))


@pytest.mark.parametrize(("output_size", "exc", "match"), [
    ((2, 4), ValueError, r"output_size \(2, 4\) is invalid: entry 0 must lie "
     r"strictly between 2 and 6"),
    ((4, 6), ValueError, r"output_size \(4, 6\) is invalid: entry 1 must lie "
     r"strictly between 2 and 6"),
    ((4,), TypeError, "output_size must be None or a sequence of 2 ints"),
    ((4, 4.0), TypeError, "output_size must be None or a sequence"),
    ("44", TypeError, "output_size must be None"),
    (4, TypeError, "output_size must be None"),
])
@pytest.mark.parametrize("which", ["forward", "backward"])
def test_unpool_bad_output_size(which, output_size, exc, match):
    name = "max_unpool2d" if which == "forward" else "max_unpool2d_backward"
    with pytest.raises(exc, match=f"^{name}: {match}"):
        if which == "forward":
            F.max_unpool2d(Y, IDX, 2, output_size=output_size)
        else:
            F.max_unpool2d_backward(X, IDX, 2, output_size=output_size)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    (dict(kernel_size=0), ValueError, "kernel_size must be positive"),
    (dict(kernel_size=2, stride=0), ValueError, "stride must be positive"),
    (dict(kernel_size=2, padding=-1), ValueError, "padding must be >= 0"),
    (dict(kernel_size=1, padding=1), ValueError, "kernel_size=.*output of size .*"
     "at least 1"),
    (dict(kernel_size=2.0), TypeError, "kernel_size must be an int"),
])
def test_unpool_bad_hyper_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=f"^max_unpool2d: {match}"):
        F.max_unpool2d(Y, IDX, **kwargs)
    with pytest.raises(exc, match=f"^max_unpool2d_backward: {match}"):
        F.max_unpool2d_backward(X, IDX, **kwargs)


def test_unpool_bad_x_and_dy():
    with pytest.raises(TypeError, match="^max_unpool2d: x must have dtype float32"):
        F.max_unpool2d(Y.astype(np.int64), IDX, 2)
    with pytest.raises(ValueError, match="^max_unpool2d: x must be 4-D"):
        F.max_unpool2d(Y[0], IDX, 2)
    with pytest.raises(ValueError, match=r"^max_unpool2d_backward: dy must have shape "
                       r"\(1, 2, 4, 4\)"):
        F.max_unpool2d_backward(X[:, :, :3], IDX, 2)
    with pytest.raises(TypeError, match="^max_unpool2d_backward: dy must be a numpy"):
        F.max_unpool2d_backward(None, IDX, 2)
    with pytest.raises(ValueError, match="^max_unpool2d_backward: indices must be 4-D"):
        F.max_unpool2d_backward(X, IDX[0], 2)
    with pytest.raises(ValueError, match="indices has a zero-sized channel"):
        F.max_unpool2d_backward(X[:, :0], IDX[:, :0], 2)


def test_pool_backward_with_indices_still_checks_dy():
    with pytest.raises(TypeError, match="^max_pool2d_backward: dy has dtype float32"):
        F.max_pool2d_backward(np.zeros((1, 2, 2, 2), np.float32), X, 2, indices=IDX)


# ---------------------------------------------------------------- (f) hypothesis


def _unpool_kw(in_hw, out_hw):
    """Stride 1 and the kernel and padding whose default unpooled size is
    ``out_hw`` (``(in - 1) - 2 * padding + kernel_size = out``)."""
    pads = [max(0, -(-(i - o) // 2)) for i, o in zip(in_hw, out_hw, strict=True)]
    kernel = [o - i + 1 + 2 * p for i, o, p in zip(in_hw, out_hw, pads, strict=True)]
    return {"kernel_size": tuple(kernel), "stride": 1, "padding": tuple(pads)}


@st.composite
def pool_case(draw, fill=data):
    """(x, kwargs) of a valid max pooling (the style of test_fuzz_pool.py)."""
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.integers(1, 3),
                            st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    spans = [dilation[i] * (k[i] - 1) + 1 for i in range(2)]
    h = draw(st.integers(max(1, spans[0] - 2 * padding[0]), 7))
    w = draw(st.integers(max(1, spans[1] - 2 * padding[1]), 7))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    x = draw(fill(shape, draw(st.sampled_from(FLOATS))))
    return x, {"kernel_size": k, "stride": stride, "padding": padding,
               "dilation": dilation, "ceil_mode": draw(st.booleans())}


@examples()
@given(st.one_of(pool_case(), pool_case(fill=extreme_data)), st.integers(0, 2**32 - 1))
def test_fuzz_pool_indices_and_unpool_match_the_references(case, seed):
    COUNTS["valid"] += 1
    x, kw = case
    y, idx = F.max_pool2d(x, **kw, return_indices=True)
    geo = pool_geometry("t", x.shape, kw["kernel_size"], kw["stride"], kw["padding"],
                        kw["dilation"], kw["ceil_mode"])
    args = (geo.kernel, geo.stride, geo.padding, geo.dilation, kw["ceil_mode"])
    with np.errstate(all="ignore"):
        ry, ridx = ref_max_pool_indices(x, *args)
    np.testing.assert_array_equal(y, ry.astype(x.dtype), err_msg=str(kw))
    np.testing.assert_array_equal(idx, ridx, err_msg=str(kw))
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dx = F.max_pool2d_backward(dy, x, **kw, indices=idx)
    assert dx.tobytes() == F.max_pool2d_backward(dy, x, **kw).tobytes()
    # Unpool into the input's plane (an empty window's index may lie outside it,
    # and is refused there).
    unpool = _unpool_kw(y.shape[2:], x.shape[2:])
    if ((idx >= 0) & (idx < x.shape[2] * x.shape[3])).all():
        up = F.max_unpool2d(y, idx, **unpool)
        assert up.shape == x.shape
        np.testing.assert_array_equal(up, ref_unpool(y, idx, x.shape[2:]).astype(
            x.dtype))
        np.testing.assert_array_equal(F.max_unpool2d_backward(x, idx, **unpool),
                                      ref_unpool_backward(x, idx).astype(x.dtype))
    else:
        expect_rejected(lambda: F.max_unpool2d(y, idx, **unpool),
                        "unpool of an empty window's index")


@examples(2.0)
@given(pool_case(), st.data())
def test_fuzz_invalid_arguments_raise_value_or_type_error(case, draw):
    x, kw = case
    y, idx = F.max_pool2d(x, **kw, return_indices=True)
    plane = x.shape[2] * x.shape[3]
    unpool = _unpool_kw(y.shape[2:], x.shape[2:])
    which = draw.draw(st.sampled_from(
        ["indices", "index_value", "dy", "output_size", "size", "return_indices"]))
    # Indices of a wrong type, dtype or ndim (never valid anywhere), and of another
    # 4-D shape (valid as the x of an unpool backward, so not tried there).
    always_bad = [None, idx.tolist(), idx.astype(np.float32), idx.astype(bool),
                  idx[None], idx[0], "idx", 3,
                  idx[..., :0] if idx.shape[-1] > 1 else idx[..., None]]
    bad_idx = draw.draw(st.sampled_from(
        [*always_bad, np.zeros((*idx.shape[:3], idx.shape[3] + 1), np.int64)]))
    if which == "indices":
        expect_rejected(lambda: F.max_unpool2d(y, bad_idx, **unpool),
                        f"max_unpool2d indices {bad_idx!r:.60}")
        if bad_idx is not None:  # the default of max_pool2d_backward's indices
            expect_rejected(lambda: F.max_pool2d_backward(y, x, **kw,
                                                          indices=bad_idx),
                            f"max_pool2d_backward indices {bad_idx!r:.60}")
        bad_idx = draw.draw(st.sampled_from(always_bad))
        expect_rejected(lambda: F.max_unpool2d_backward(x, bad_idx, **unpool),
                        f"max_unpool2d_backward indices {bad_idx!r:.60}")
    elif which == "index_value":
        value = draw.draw(st.sampled_from([-1, plane, plane + 7, -(2**63), 2**62]))
        # A window with no tap inside the input ignores its index: pick a live one.
        live = np.flatnonzero(y != -np.inf)
        bad = idx.copy()
        if live.size:
            bad.reshape(-1)[live[draw.draw(st.integers(0, live.size - 1))]] = value
            expect_rejected(lambda: F.max_pool2d_backward(y, x, **kw, indices=bad),
                            f"max_pool2d_backward index {value}")
        bad.reshape(-1)[draw.draw(st.integers(0, idx.size - 1))] = value
        expect_rejected(lambda: F.max_unpool2d(y, bad, **unpool),
                        f"max_unpool2d index {value}")
        expect_rejected(lambda: F.max_unpool2d_backward(x, bad, **unpool),
                        f"max_unpool2d_backward index {value}")
    elif which == "dy":
        bad_dy = draw.draw(st.sampled_from([None, y.tolist(), y[0], y[None],
                                            other_float(y), np.zeros(y.shape, np.int64),
                                            y[..., :0]]))
        expect_rejected(lambda: F.max_pool2d_backward(bad_dy, x, **kw, indices=idx),
                        f"max_pool2d_backward dy {bad_dy!r:.60}")
        bad_dx = draw.draw(st.sampled_from([None, x[0], x.astype(np.int64),
                                            x[..., :-1] if x.shape[3] > 1 else x[None],
                                            x.tolist()]))
        expect_rejected(lambda: F.max_unpool2d_backward(bad_dx, idx.clip(0, 0),
                                                        **unpool),
                        f"max_unpool2d_backward dy {bad_dx!r:.60}")
    elif which == "output_size":
        h, w = x.shape[2:]
        value = draw.draw(st.sampled_from([(h + 1, w), (h, w - 1), (h,), h, "hw",
                                           (h, float(w)), (h, w, 1), (None, w)]))
        expect_rejected(lambda: F.max_unpool2d(y, idx.clip(0, 0), **unpool,
                                               output_size=value),
                        f"max_unpool2d output_size {value!r}")
    elif which == "size":
        arg = draw.draw(st.sampled_from(["kernel_size", "stride", "padding"]))
        value = draw.draw(st.sampled_from(
            [v for v in bad_sizes(1 if arg != "padding" else 0)
             if not (arg == "stride" and v is None)]))
        expect_rejected(lambda: F.max_unpool2d(y, idx.clip(0, 0),
                                               **{"kernel_size": 1, arg: value}),
                        f"max_unpool2d {arg}={value!r}")
    else:
        value = draw.draw(st.sampled_from(NOT_BOOLS))
        expect_rejected(lambda: F.max_pool2d(x, **kw, return_indices=value),
                        f"return_indices={value!r}")
