"""The depthwise forward for stride 1 and square 3x3, 5x5 and 7x7 filters that
runs several images side by side (fastcnn/kernels/cpu/_depthwise_rows.py): where
it runs, the naive reference (asymmetric and maximal paddings, multipliers, the
fused clamp), PyTorch, the same bits for any thread count and any batch split,
non-finite values, and fuzzed geometries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcnn.functional as F
from fastcnn.kernels.cpu import _depthwise_rows, conv
from fastcnn.kernels.cpu._conv_plan import _forward_path

from .. import naive
from ..fuzz_support import examples
from ..gradcheck import max_rel_error
from ..threads import assert_thread_count_invariant

# (N, C, H, W, kernel, pad_t, pad_b, pad_l, pad_r, multiplier)
CASES = [
    (4, 3, 17, 19, 7, 3, 3, 3, 3, 1),
    (12, 2, 6, 5, 3, 1, 1, 1, 1, 2),
    (5, 2, 9, 14, 5, 2, 2, 2, 2, 1),
    (3, 2, 30, 29, 3, 0, 2, 2, 0, 1),   # asymmetric
    (9, 3, 4, 4, 7, 6, 6, 6, 6, 1),     # padding K - 1: outputs that see one row
    (6, 2, 11, 13, 5, 0, 0, 0, 0, 3),   # no padding
    (41, 2, 3, 20, 3, 1, 1, 1, 1, 1),   # two image groups, the last one short
    (9, 2, 7, 12, 5, 0, 4, 3, 1, 2),    # asymmetric, small planes
]


def _arrays(case, dtype, seed=0):
    n, c, h, w, k, *_, m = case
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c, h, w)).astype(dtype),
            rng.standard_normal((c * m, 1, k, k)).astype(dtype),
            rng.standard_normal(c * m).astype(dtype))


def _forward(case, x, weight, bias, clamp=None):
    n, c, h, w, k, pt, pb, pl, pr, m = case
    y = np.empty((x.shape[0], c * m, h + pt + pb - k + 1, w + pl + pr - k + 1),
                 dtype=x.dtype)
    conv.conv2d_forward(x, weight, bias, y, pt, pl, 1, 1, 1, 1, c, clamp)
    return y


def _expected(case, x, weight, bias):
    _, c, _, _, _, pt, pb, pl, pr, _ = case
    return naive.conv2d(x, weight, bias, (1, 1), (pt, pb), (pl, pr), (1, 1), c)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_these_cases_run_the_rows_kernel(case):
    x, weight, bias = _arrays(case, np.float32)
    y_shape = _forward(case, x, weight, bias).shape
    assert _forward_path(x.shape, weight.shape, y_shape, 1, 1, 1, 1,
                         case[1]) == "depthwise_rows"
    assert _depthwise_rows.fits_rows(x.shape, weight, y_shape, case[5], case[7])


def test_where_the_rows_kernel_does_not_run():
    prefers = _depthwise_rows.prefers_rows
    assert prefers((8, 4, 28, 28), (4, 1, 7, 7), (8, 4, 28, 28), 1, 1, 1, 1)
    assert not prefers((1, 4, 28, 28), (4, 1, 7, 7), (1, 4, 28, 28), 1, 1, 1, 1)
    assert not prefers((8, 4, 28, 28), (4, 1, 7, 7), (8, 4, 14, 14), 2, 2, 1, 1)
    assert not prefers((8, 4, 28, 28), (4, 1, 3, 3), (8, 4, 26, 26), 1, 1, 2, 2)
    assert not prefers((8, 4, 28, 28), (4, 1, 3, 5), (8, 4, 28, 28), 1, 1, 1, 1)
    assert not prefers((8, 4, 28, 28), (4, 1, 4, 4), (8, 4, 27, 27), 1, 1, 1, 1)
    assert not prefers((8, 4, 8, 8), (4, 1, 3, 3), (8, 4, 14, 14), 1, 1, 1, 1)
    w = np.ones((4, 1, 3, 3))
    assert not _depthwise_rows.fits_rows((8, 4, 8, 8), w, (8, 4, 10, 10), 3, 1)
    w[1, 0, 2, 2] = np.inf
    assert not _depthwise_rows.fits_rows((8, 4, 8, 8), w, (8, 4, 8, 8), 1, 1)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_the_naive_reference(case):
    x, weight, bias = _arrays(case, np.float64)
    assert max_rel_error(_forward(case, x, weight, bias),
                         _expected(case, x, weight, bias)) < 1e-12


@pytest.mark.parametrize("case", CASES[:3], ids=str)
def test_the_fused_clamp(case):
    x, weight, bias = _arrays(case, np.float32, seed=1)
    expected = np.clip(_expected(case, x, weight, bias), 0, 6)
    got = _forward(case, x, weight, bias, clamp=(0.0, 6.0))
    assert max_rel_error(got, expected) < 1e-5
    assert got.min() >= 0 and got.max() <= 6


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [c for c in CASES if c[5] == c[6] and c[7] == c[8]],
                         ids=str)
def test_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    x, weight, bias = _arrays(case, dtype, seed=2)
    ours = F.conv2d(x, weight, bias, 1, (case[5], case[7]), 1, case[1])
    theirs = torch.nn.functional.conv2d(*(torch.from_numpy(a) for a in
                                          (x, weight, bias)), 1,
                                        (case[5], case[7]), 1, case[1])
    assert max_rel_error(ours, theirs.numpy()) < (1e-10 if dtype == np.float64
                                                  else 1e-5)


@pytest.mark.parametrize("case", [CASES[0], CASES[6]], ids=str)
def test_the_same_bits_for_any_thread_count_and_batch_split(case):
    x, weight, bias = _arrays(case, np.float32, seed=3)
    assert_thread_count_invariant(lambda: _forward(case, x, weight, bias),
                                  f"depthwise rows {case}")
    whole = _forward(case, x, weight, bias)
    for cut in (1, x.shape[0] // 2):
        parts = np.concatenate([_forward(case, x[:cut], weight, bias),
                                _forward(case, x[cut:], weight, bias)])
        assert parts.tobytes() == whole.tobytes()


def test_non_finite_inputs_stay_in_their_image():
    case = CASES[0]
    x, weight, bias = _arrays(case, np.float64, seed=4)
    x[1, 2, 5, 0] = np.nan
    x[2, 0, 0, 18] = np.inf
    got = _forward(case, x, weight, bias)
    with np.errstate(invalid="ignore"):
        expected = _expected(case, x, weight, bias)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected)
    assert max_rel_error(got[finite], expected[finite]) < 1e-12
    assert np.isfinite(np.delete(got, [1, 2], axis=0)).all()


def test_non_finite_weights_give_the_reference_nans():
    case = CASES[0]
    x, weight, bias = _arrays(case, np.float64, seed=5)
    weight[1, 0, 0, 3] = np.inf
    got = _forward(case, x, weight, bias)
    with np.errstate(invalid="ignore"):
        expected = _expected(case, x, weight, bias)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(expected).any()


@examples(2.0)
@given(st.data())
def test_fuzzed_geometries_match_the_naive_reference(data):
    draw = data.draw
    k = draw(st.sampled_from([3, 5, 7]))
    pads = [draw(st.integers(0, k - 1)) for _ in range(4)]
    h = draw(st.integers(max(1, k - pads[0] - pads[1]), 12))
    w = draw(st.integers(max(1, k - pads[2] - pads[3]), 12))
    n = draw(st.integers(-(-_depthwise_rows.MIN_COLUMNS // w), 70))
    case = (n, draw(st.integers(2, 3)), h, w, k, *pads, draw(st.integers(1, 2)))
    x, weight, bias = _arrays(case, np.float64, seed=draw(st.integers(0, 2**16)))
    y = _forward(case, x, weight, bias)
    assert _forward_path(x.shape, weight.shape, y.shape, 1, 1, 1, 1,
                         case[1]) == "depthwise_rows"
    assert max_rel_error(y, _expected(case, x, weight, bias)) < 1e-12


@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[4]], ids=str)
def test_the_input_gradient_is_the_flipped_forward(case):
    """One filter per channel: dx runs through the forward's kernels (the rows one
    from this batch on), matches the naive reference, and keeps its bits when the
    batch is split (the small half takes the plane kernel)."""
    n, c, h, w, k, pt, pb, pl, pr, _ = case
    x, weight, _ = _arrays(case, np.float64, seed=6)
    dy = np.random.default_rng(7).standard_normal(
        (n, c, h + pt + pb - k + 1, w + pl + pr - k + 1))
    assert conv.flipped_depthwise_padding(x.shape, dy.shape, weight.shape, pt, pl,
                                          1, 1) == (k - 1 - pt, k - 1 - pl)
    assert _forward_path(dy.shape, weight.shape, x.shape, 1, 1, 1, 1,
                         c) == "depthwise_rows"

    def input_grad(dy):
        dx = np.empty((dy.shape[0], c, h, w))
        conv.conv2d_backward_input(dy, weight, dx, pt, pl, 1, 1, 1, 1, c)
        return dx

    dx = input_grad(dy)
    expected = naive.conv2d_backward(dy, x, weight, (1, 1), (pt, pb), (pl, pr),
                                     (1, 1), c)[0]
    assert max_rel_error(dx, expected) < 1e-12
    parts = np.concatenate([input_grad(dy[:1]), input_grad(dy[1:])])
    assert parts.tobytes() == dx.tobytes()


def test_the_input_gradient_keeps_its_own_kernel_where_the_flip_does_not_apply():
    # two filters per channel, and a padding wider than the filter reaches
    assert conv.flipped_depthwise_padding((2, 3, 8, 8), (2, 6, 8, 8), (6, 1, 3, 3),
                                          1, 1, 1, 1) is None
    assert conv.flipped_depthwise_padding((2, 3, 8, 8), (2, 3, 12, 12),
                                          (3, 1, 3, 3), 3, 3, 1, 1) is None


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_weight_gradient_side_by_side(case):
    """The weight gradient runs the rows kernel (a short second group included)
    and matches the naive reference."""
    n, c, h, w, k, pt, pb, pl, pr, m = case
    x, weight, _ = _arrays(case, np.float64, seed=8)
    dy = np.random.default_rng(9).standard_normal(
        (n, c * m, h + pt + pb - k + 1, w + pl + pr - k + 1))
    assert conv._weight_grad_path(x.shape, weight.shape, dy.shape, 1, 1, 1, 1,
                                  c) == "depthwise_rows"
    dwt = np.empty_like(weight)
    conv.conv2d_backward_weight(dy, x, dwt, pt, pl, 1, 1, 1, 1, c)
    expected = naive.conv2d_backward(dy, x, weight, (1, 1), (pt, pb), (pl, pr),
                                     (1, 1), c)[1]
    assert max_rel_error(dwt, expected) < 1e-12
    assert_thread_count_invariant(
        lambda: conv.conv2d_backward_weight(dy, x, dwt, pt, pl, 1, 1, 1, 1, c)
        or dwt.copy(), f"depthwise rows weight gradient {case}")



def test_the_group_case_has_a_short_last_group():
    n, _, _, w, _, _, _, pl, pr, _ = CASES[6]
    images, _, _ = _depthwise_rows.rows_layout(n, w, pl, pr)
    assert 1 < images < n and n % images


@pytest.mark.parametrize("n", [1, 12], ids=["planes", "rows"])
def test_non_finite_inputs_reach_only_the_weights_they_touch(n):
    """The zero columns between images (rows kernel) and after each row (plane
    kernel) must not meet an inf or NaN input (0 * inf = NaN): the weight
    gradient's NaNs and infinities are the naive reference's."""
    case = (n, 2, 6, 7, 3, 1, 1, 1, 1, 1)
    x, weight, _ = _arrays(case, np.float64, seed=10)
    x[0, 0, 2, 6] = np.inf    # the last column: the zero columns follow it
    x[-1, 1, 0, 0] = np.nan   # the first column of the last image
    dy = np.random.default_rng(11).standard_normal((n, 2, 6, 7))
    expected_path = "depthwise_rows" if n > 1 else "depthwise"
    assert conv._weight_grad_path(x.shape, weight.shape, dy.shape, 1, 1, 1, 1,
                                  2) == expected_path
    dwt = np.empty_like(weight)
    conv.conv2d_backward_weight(dy, x, dwt, 1, 1, 1, 1, 1, 1, 2)
    with np.errstate(invalid="ignore"):
        expected = naive.conv2d_backward(dy, x, weight, (1, 1), (1, 1), (1, 1),
                                         (1, 1), 2)[1]
    np.testing.assert_array_equal(np.isnan(dwt), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(dwt), np.isinf(expected))
    assert np.isfinite(expected).any() and not np.isfinite(expected).all()
    finite = np.isfinite(expected)
    assert max_rel_error(dwt[finite], expected[finite]) < 1e-12
