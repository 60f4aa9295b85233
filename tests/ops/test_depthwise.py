"""Depthwise convolutions (``groups == C_in``), which conv2d and conv2d_backward
route to kernels of their own (fastcnn/kernels/cpu/_depthwise.py): the naive
reference, float64 finite differences, PyTorch, thread-count determinism and
fuzzed shapes, strides, dilations, paddings and multipliers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcnn.functional as F
from fastcnn.functional.conv import conv_geometry
from fastcnn.kernels.cpu import _depthwise

from .. import naive
from ..fuzz_support import examples
from ..gradcheck import check_finite_differences, max_rel_error
from ..threads import assert_thread_count_invariant

# (N, C, H, W, kernel, stride, padding, dilation, multiplier)
CASES = [
    (2, 3, 7, 9, 3, 1, 1, 1, 1),
    (2, 3, 7, 9, 3, 2, 1, 1, 2),
    (1, 4, 10, 8, 5, 1, 2, 1, 1),
    (2, 2, 9, 9, 7, 1, 3, 1, 3),
    (2, 3, 8, 11, 3, 1, 0, 2, 1),
    (2, 3, 12, 13, (2, 4), 1, (0, 3), (2, 1), 1),
    (1, 2, 11, 12, 3, 3, 2, 1, 1),
    (2, 2, 6, 6, 1, 1, 0, 1, 2),
    (2, 3, 9, 10, (3, 5), (2, 3), (1, 2), (1, 2), 2),
    (1, 2, 5, 5, 4, 1, "same", 1, 1),
    (3, 2, 4, 4, 3, 1, 4, 1, 1),  # padding wider than the kernel reaches
    (1, 1, 3, 3, 3, 1, 0, 1, 1),  # one output pixel, C_in = groups = 1
    # stride 2, no padding: the last row and column reach no window (dx 0 there)
    (2, 2, 8, 10, 3, 2, 0, 1, 1),
    (2, 3, 11, 12, 5, 2, 2, 1, 2),
]


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _case_arrays(case, dtype, seed=0):
    n, c, h, w, k, _, _, _, m = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((c * m, 1, *_pair(k))).astype(dtype)
    bias = rng.standard_normal(c * m).astype(dtype)
    return x, weight, bias


def _geometry_args(case):
    stride, padding, dilation = case[5], case[6], case[7]
    return stride, padding, dilation, case[1]


def test_the_depthwise_kernels_are_the_ones_that_run():
    assert _depthwise.uses_depthwise((2, 3, 5, 5), (6, 1, 3, 3), 3)
    assert not _depthwise.uses_depthwise((2, 4, 5, 5), (4, 2, 3, 3), 2)
    assert not _depthwise.uses_depthwise((2, 1, 5, 5), (4, 1, 3, 3), 1)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_the_naive_reference(case):
    x, weight, bias = _case_arrays(case, np.float64)
    stride, padding, dilation, groups = _geometry_args(case)
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    geo = conv_geometry("test", x.shape, weight.shape, stride, padding, dilation,
                        groups)
    expected = naive.conv2d(x, weight, bias, geo.stride, geo.pad_h, geo.pad_w,
                            geo.dilation, groups)
    assert max_rel_error(y, expected) < 1e-12
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx, dweight, dbias = F.conv2d_backward(dy, x, weight, stride, padding, dilation,
                                           groups)
    ndx, ndw, ndb = naive.conv2d_backward(dy, x, weight, geo.stride, geo.pad_h,
                                          geo.pad_w, geo.dilation, groups)
    assert max_rel_error(dx, ndx) < 1e-12
    assert max_rel_error(dweight, ndw) < 1e-12
    assert max_rel_error(dbias, ndb) < 1e-12


@pytest.mark.parametrize("case", CASES[:6], ids=str)
def test_finite_differences(case):
    x, weight, bias = _case_arrays(case, np.float64, seed=2)
    stride, padding, dilation, groups = _geometry_args(case)

    def forward(x, weight, bias):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    def backward(dy, x, weight, bias):
        return F.conv2d_backward(dy, x, weight, stride, padding, dilation, groups)

    check_finite_differences(forward, backward, {"x": x, "weight": weight,
                                                 "bias": bias},
                             ("x", "weight", "bias"), np.random.default_rng(3))


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    x, weight, bias = _case_arrays(case, dtype, seed=4)
    stride, padding, dilation, groups = _geometry_args(case)
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, weight,
                                                                         bias))
    yt = torch.nn.functional.conv2d(tx, tw, tb, stride, padding, dilation, groups)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    assert max_rel_error(y, yt.detach().numpy()) < tol
    dy = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    grads = F.conv2d_backward(dy, x, weight, stride, padding, dilation, groups)
    for name, ours, theirs in zip(("dx", "dweight", "dbias"), grads,
                                  (tx.grad, tw.grad, tb.grad), strict=True):
        assert max_rel_error(ours, theirs.numpy()) < tol, name


@pytest.mark.parametrize("case", [CASES[1], CASES[3], (4, 6, 30, 31, 7, 1, 3, 1, 1),
                                  (3, 5, 20, 20, 3, 2, 1, 1, 2)], ids=str)
def test_the_same_bits_for_any_thread_count(case):
    x, weight, bias = _case_arrays(case, np.float32, seed=6)
    stride, padding, dilation, groups = _geometry_args(case)
    dy = np.random.default_rng(7).standard_normal(
        F.conv2d(x, weight, bias, stride, padding, dilation, groups).shape
    ).astype(np.float32)

    def run():
        return (F.conv2d(x, weight, bias, stride, padding, dilation, groups),
                *F.conv2d_backward(dy, x, weight, stride, padding, dilation, groups))

    assert_thread_count_invariant(run, f"depthwise {case}")


def test_the_layout_covers_every_read():
    """Every flat read of the forward stays inside its phase of the buffer: the
    largest offset plus the computed length fits one phase."""
    for oh, ow, k, s, d in [(1, 1, 7, 1, 1), (5, 3, 3, 2, 2), (4, 9, 5, 3, 1)]:
        hq, wq, plane = _depthwise.depthwise_layout(oh, ow, k, k, s, s, d, d)
        offs = _depthwise.tap_offsets(k, k, s, s, d, d, wq, plane)
        phase_of = offs // plane
        within = offs - phase_of * plane
        assert (within + oh * wq <= plane).all()
        assert phase_of.max() < s * s


@examples(2.0)
@given(st.data())
def test_fuzzed_geometries_match_the_naive_reference(data):
    draw = data.draw
    c, m = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    h = draw(st.integers(max(1, (k[0] - 1) * dilation[0] + 1 - 2 * padding[0]), 8))
    w = draw(st.integers(max(1, (k[1] - 1) * dilation[1] + 1 - 2 * padding[1]), 8))
    n = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((c * m, 1, *k))
    bias = rng.standard_normal(c * m)
    y = F.conv2d(x, weight, bias, stride, padding, dilation, c)
    pads = ((padding[0],) * 2, (padding[1],) * 2)
    expected = naive.conv2d(x, weight, bias, stride, *pads, dilation, c)
    assert max_rel_error(y, expected) < 1e-12
    dy = rng.standard_normal(y.shape)
    got = F.conv2d_backward(dy, x, weight, stride, padding, dilation, c)
    want = naive.conv2d_backward(dy, x, weight, stride, *pads, dilation, c)
    for name, a, b in zip(("dx", "dweight", "dbias"), got, want, strict=True):
        assert max_rel_error(a, b) < 1e-12, name


@pytest.mark.parametrize("stride", [2, (3, 2)], ids=str)
def test_strided_weight_grad_keeps_non_finite_inputs_to_the_weights_they_touch(
        stride):
    """The strided weight gradient reads stride phases in the flat layout too: the
    zero columns after each dy row must not meet an inf or NaN (0 * inf = NaN)
    that the weight's taps never read; its NaNs and infinities are the naive
    reference's."""
    from fastcnn.kernels.cpu import conv

    case = (2, 2, 7, 10, 3, stride, 1, 1, 1)
    x, weight, _ = _case_arrays(case, np.float64, seed=12)
    # The last column: in phase 0, column 5, which only kw = 2 reads (at ow = 4);
    # kw = 0's window ends at column 4, and the zero after each dy row meets it.
    x[0, 0, 3, 9] = np.inf
    x[1, 1, 6, 0] = np.nan
    y = F.conv2d(x, weight, None, stride, 1, 1, 2)
    dy = np.random.default_rng(13).standard_normal(y.shape)
    sh, sw = _pair(stride)
    assert conv._weight_grad_path(x.shape, weight.shape, dy.shape, sh, sw, 1, 1,
                                  2) == "depthwise"
    with np.errstate(invalid="ignore"):
        dweight = F.conv2d_backward(dy, x, weight, stride, 1, 1, 2,
                                    input_grad=False)[1]
        expected = naive.conv2d_backward(dy, x, weight, (sh, sw), (1, 1), (1, 1),
                                         (1, 1), 2)[1]
    np.testing.assert_array_equal(np.isnan(dweight), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(dweight), np.isinf(expected))
    finite = np.isfinite(expected)
    assert finite.any() and not finite.all()
    assert max_rel_error(dweight[finite], expected[finite]) < 1e-12
