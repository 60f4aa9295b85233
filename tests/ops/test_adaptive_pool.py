"""adaptive_avg_pool2d and its backward: a slow reference with PyTorch's bins,
finite differences, PyTorch forward and backward, the even-bins identity with
avg_pool2d, thread-count invariance, hypothesis fuzzing of shapes and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcnn.functional as F
from fastcnn.functional.adaptive_pool import adaptive_bins

from ..fuzz_support import (
    COUNTS,
    FLOATS,
    assert_ieee_close,
    bad_arrays,
    bad_sizes,
    data,
    examples,
    expect_rejected,
    extreme_data,
    other_float,
    reshaped_bad,
)
from ..gradcheck import assert_close, check_finite_differences, max_rel_error
from ..threads import assert_thread_count_invariant

DTYPES = [np.float64, np.float32]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-13), np.float32: dict(rtol=2e-6, atol=1e-6)}
#: The issue's bounds against PyTorch.
TORCH_TOL = {np.float64: dict(rtol=1e-10, atol=1e-12),
             np.float32: dict(rtol=1e-4, atol=1e-6)}


# ------------------------------------------------------------ slow reference


def _bin(o, out, size):
    """PyTorch's bin, from its definition in floating point."""
    return math.floor(o * size / out), math.ceil((o + 1) * size / out)


def _resolve(shape, output_size):
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    return (shape[2] if oh is None else oh, shape[3] if ow is None else ow)


def ref_adaptive(x, output_size):
    oh, ow = _resolve(x.shape, output_size)
    y = np.empty((*x.shape[:2], oh, ow))
    for n, c, i, j in np.ndindex(y.shape):
        r0, r1 = _bin(i, oh, x.shape[2])
        c0, c1 = _bin(j, ow, x.shape[3])
        y[n, c, i, j] = np.mean(x[n, c, r0:r1, c0:c1].astype(np.float64))
    return y


def ref_adaptive_backward(dy, x, output_size):
    oh, ow = _resolve(x.shape, output_size)
    dx = np.zeros(x.shape)
    for n, c, i, j in np.ndindex(dy.shape):
        r0, r1 = _bin(i, oh, x.shape[2])
        c0, c1 = _bin(j, ow, x.shape[3])
        dx[n, c, r0:r1, c0:c1] += float(dy[n, c, i, j]) / ((r1 - r0) * (c1 - c0))
    return dx


# ------------------------------------------------------------- (a) reference

OUTPUT_SIZES = [1, 2, 3, (3, None), (None, 2), (None, None), (4, 5), (9, 8), (5, 1),
                0, (0, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_size", OUTPUT_SIZES)
def test_matches_the_reference(output_size, dtype, rng):
    x = rng.standard_normal((2, 3, 7, 5)).astype(dtype)
    y = F.adaptive_avg_pool2d(x, output_size)
    assert y.dtype == dtype and y.shape == (2, 3, *_resolve(x.shape, output_size))
    assert_close(y, ref_adaptive(x, output_size), **TOL[dtype])
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = F.adaptive_avg_pool2d_backward(dy, x, output_size)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert_close(dx, ref_adaptive_backward(dy, x, output_size), **TOL[dtype])


def test_bins_are_torchs():
    # 5 rows into 3 bins: [0, 2), [1, 4), [3, 5): neighbours overlap by a row.
    starts, stops = adaptive_bins(5, 3)
    assert starts.tolist() == [0, 1, 3] and stops.tolist() == [2, 4, 5]
    for size, out in itertools.product(range(1, 12), range(1, 12)):
        starts, stops = adaptive_bins(size, out)
        assert [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)] == [
            _bin(o, out, size) for o in range(out)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_even_bins_are_avg_pool2d_bit_for_bit(dtype, rng):
    x = rng.standard_normal((2, 3, 8, 9)).astype(dtype)
    y = F.adaptive_avg_pool2d(x, (4, 3))
    assert y.tobytes() == F.avg_pool2d(x, (2, 3)).tobytes()
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(F.adaptive_avg_pool2d_backward(dy, x, (4, 3)),
                                  F.avg_pool2d_backward(dy, x, (2, 3)))
    np.testing.assert_array_equal(F.adaptive_avg_pool2d(x, 1)[:, :, 0, 0],
                                  F.global_avg_pool2d(x))


def test_empty_batch_channel_and_output():
    # As PyTorch: an empty batch or channel axis, or output size 0, gives an empty
    # result; the backward then gives zeros.
    for shape, out in [((0, 2, 5, 4), 2), ((1, 0, 5, 4), 2), ((2, 2, 5, 4), (0, 3))]:
        x = np.ones(shape)
        y = F.adaptive_avg_pool2d(x, out)
        assert y.shape == (*shape[:2], *_resolve(shape, out))
        dx = F.adaptive_avg_pool2d_backward(np.ones_like(y), x, out)
        np.testing.assert_array_equal(dx, np.zeros(shape))


# ------------------------------------------------------ (b) finite differences


@pytest.mark.parametrize("output_size", [2, (3, 4), (9, 2), (None, 3)])
def test_finite_differences(output_size, rng):
    x = rng.standard_normal((2, 2, 5, 6))
    check_finite_differences(
        lambda x: F.adaptive_avg_pool2d(x, output_size),
        lambda dy, x: F.adaptive_avg_pool2d_backward(dy, x, output_size),
        {"x": x}, ["x"], rng,
    )


# ------------------------------------------------------------------ (c) PyTorch


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(previous)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch_forward_and_backward(dtype, torch):
    rng = np.random.default_rng(11)
    worst = 0.0
    compared = 0
    sizes = [1, 2, 3, 4, 5, 7, 8, 11, None]
    for shape in [(2, 3, 7, 5), (1, 2, 8, 8), (1, 1, 1, 3)]:
        for oh, ow in itertools.product(sizes, sizes):
            out = (oh, ow)
            x = rng.standard_normal(shape).astype(dtype)
            xt = torch.tensor(x, requires_grad=True)
            yt = torch.nn.functional.adaptive_avg_pool2d(xt, out)
            y = F.adaptive_avg_pool2d(x, out)
            assert_close(y, yt.detach().numpy(), **TORCH_TOL[dtype], what=str(out))
            dy = rng.standard_normal(y.shape).astype(dtype)
            yt.backward(torch.tensor(dy))
            dx = F.adaptive_avg_pool2d_backward(dy, x, out)
            assert_close(dx, xt.grad.numpy(), **TORCH_TOL[dtype], what=str(out))
            worst = max(worst, max_rel_error(y, yt.detach().numpy()),
                        max_rel_error(dx, xt.grad.numpy()))
            compared += 1
    assert compared == 3 * 81
    print(f"adaptive_avg_pool2d {np.dtype(dtype)}: worst relative error {worst:.3g}")


@pytest.mark.torch
def test_int_and_zero_output_size_like_torch(torch, rng):
    x = rng.standard_normal((2, 3, 6, 4))
    for out in [3, 0, (0, 2), (None, 0)]:
        want = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), out)
        np.testing.assert_allclose(F.adaptive_avg_pool2d(x, out), want.numpy(),
                                   rtol=1e-12)


# ---------------------------------------------------------------- (d) threads


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_invariance(dtype, rng):
    x = rng.standard_normal((2, 3, 9, 7)).astype(dtype)
    dy = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    assert_thread_count_invariant(
        lambda: (F.adaptive_avg_pool2d(x, (4, 5)),
                 F.adaptive_avg_pool2d_backward(dy, x, (4, 5))),
        "adaptive_avg_pool2d",
    )


# ------------------------------------------------------------------ (e) bad input

X = np.zeros((1, 2, 4, 4))


@pytest.mark.parametrize(("output_size", "exc", "match"), [
    (None, TypeError, "output_size must be an int or a pair of ints or None"),
    ((2,), TypeError, "output_size must be an int or a pair"),
    ((2, 2, 2), TypeError, "output_size must be an int or a pair"),
    (2.0, TypeError, "output_size must be an int"),
    ((2, 2.0), TypeError, "output_size must be an int"),
    (True, TypeError, "output_size must be an int"),
    ("2", TypeError, "output_size must be an int"),
    (-1, ValueError, r"output_size must be >= 0 .*got -1"),
    ((2, -3), ValueError, r"output_size must be >= 0 .*got \(2, -3\)"),
    (2**31, ValueError, r"output_size must be >= 0 \(and at most 2\*\*31 - 1\)"),
])
@pytest.mark.parametrize("which", ["forward", "backward"])
def test_bad_output_size(which, output_size, exc, match):
    if which == "forward":
        with pytest.raises(exc, match=f"^adaptive_avg_pool2d: {match}"):
            F.adaptive_avg_pool2d(X, output_size)
    else:
        with pytest.raises(exc, match=f"^adaptive_avg_pool2d_backward: {match}"):
            F.adaptive_avg_pool2d_backward(np.zeros((1, 2, 2, 2)), X, output_size)


OPS = [
    ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, 2)),
    ("adaptive_avg_pool2d_backward",
     lambda x: F.adaptive_avg_pool2d_backward(np.zeros((1, 2, 2, 2)), x, 2)),
]


@pytest.mark.parametrize(("name", "op"), OPS)
def test_bad_x(name, op):
    with pytest.raises(ValueError, match=f"^{name}: x must be 4-D, got 3-D"):
        op(np.zeros((2, 4, 4)))
    with pytest.raises(TypeError, match=f"^{name}: x must have dtype float32"):
        op(np.zeros((1, 2, 4, 4), np.int64))
    with pytest.raises(TypeError, match=f"^{name}: x must be a numpy.ndarray"):
        op(X.tolist())
    with pytest.raises(ValueError, match=f"^{name}: x has a zero-sized height or "
                       "width"):
        op(np.zeros((1, 2, 0, 4)))


def test_bad_dy():
    op = "adaptive_avg_pool2d_backward"
    with pytest.raises(TypeError, match=f"^{op}: dy has dtype float32 but x"):
        F.adaptive_avg_pool2d_backward(np.zeros((1, 2, 2, 2), np.float32), X, 2)
    with pytest.raises(ValueError, match=rf"^{op}: dy must have shape \(1, 2, 2, 3\)"):
        F.adaptive_avg_pool2d_backward(np.zeros((1, 2, 2, 2)), X, (2, 3))
    with pytest.raises(ValueError, match=f"^{op}: dy must be 4-D"):
        F.adaptive_avg_pool2d_backward(np.zeros((1, 2, 2)), X, 2)


# ---------------------------------------------------------------- (f) hypothesis

sizes = st.one_of(st.none(), st.integers(0, 9))


@st.composite
def adaptive_case(draw, fill=data):
    shape = (draw(st.integers(0, 2)), draw(st.integers(0, 3)), draw(st.integers(1, 8)),
             draw(st.integers(1, 8)))
    dtype = draw(st.sampled_from(FLOATS))
    # An empty batch or channel axis is valid (fuzz_support lays out non-empty ones).
    x = draw(fill(shape, dtype)) if min(shape) else np.zeros(shape, dtype)
    return x, draw(st.one_of(st.integers(0, 9), st.tuples(sizes, sizes)))


@examples()
@given(st.one_of(adaptive_case(), adaptive_case(fill=extreme_data)),
       st.integers(0, 2**32 - 1))
def test_fuzz_valid_configurations_match_the_reference(case, seed):
    COUNTS["valid"] += 1
    x, out = case
    y = F.adaptive_avg_pool2d(x, out)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dx = F.adaptive_avg_pool2d_backward(dy, x, out)
    with np.errstate(all="ignore"):
        ry = ref_adaptive(x, out)
        mag = ref_adaptive(np.abs(x), out)
        rdx = ref_adaptive_backward(dy, x, out)
        mag_dx = ref_adaptive_backward(np.abs(dy), x, out)
    assert_ieee_close(y, ry, x.dtype, f"adaptive {out} y", mag)
    assert_ieee_close(dx, rdx, x.dtype, f"adaptive {out} dx", mag_dx)


@examples(2.0)
@given(adaptive_case(), st.data())
def test_fuzz_invalid_arguments_raise_value_or_type_error(case, draw):
    x, out = case
    x = np.ascontiguousarray(x)
    y = F.adaptive_avg_pool2d(x, out)
    which = draw.draw(st.sampled_from(["x", "dy", "output_size"]))
    if which == "x":
        bad = draw.draw(st.sampled_from([
            *bad_arrays(x), x[None], np.zeros(x.shape[1:], x.dtype),
            np.zeros((*x.shape[:2], 0, x.shape[3]), x.dtype),
            np.zeros((*x.shape[:3], 0), x.dtype)]))
        expect_rejected(lambda: F.adaptive_avg_pool2d(bad, out),
                        f"adaptive x {bad!r:.60}")
        expect_rejected(lambda: F.adaptive_avg_pool2d_backward(y, bad, out),
                        f"adaptive backward x {bad!r:.60}")
    elif which == "dy":
        bad = draw.draw(st.sampled_from([
            *bad_arrays(y), other_float(y), np.zeros((*y.shape[:3], y.shape[3] + 1),
                                                     y.dtype),
            y[None], np.zeros(y.shape[1:], y.dtype),
            *(reshaped_bad(y, empty_last=y.shape[3] != 0) if min(y.shape) else [])]))
        expect_rejected(lambda: F.adaptive_avg_pool2d_backward(bad, x, out),
                        f"adaptive backward dy {bad!r:.60}")
    else:
        bad = draw.draw(st.sampled_from([*bad_sizes(0), (None, -1), (1.0, None),
                                         (None,), [None] * 3]))
        expect_rejected(lambda: F.adaptive_avg_pool2d(x, bad), f"output_size {bad!r}")
        expect_rejected(lambda: F.adaptive_avg_pool2d_backward(y, x, bad),
                        f"backward output_size {bad!r}")
