"""The matrix-product form of the direct convolution's weight gradient (wide layers:
many output channels) against the naive reference, finite differences, PyTorch and
across thread counts; the rule that picks it is pinned here."""

import numpy as np
import pytest

import fastcnn.functional as F
from fastcnn.kernels.cpu import _conv_plan, _weight_gemm
from fastcnn.kernels.cpu import conv as conv_kernels

from .. import naive
from ..gradcheck import assert_close, check_finite_differences
from ..threads import assert_thread_count_invariant

# (n, c_in, h, w, c_out, kernel, stride, padding, dilation, groups): strided and
# dilated windows, groups, a channel count that is not a multiple of 4 (the last
# rows of the product) and batches that do not split evenly over the slots.
CASES = [
    (3, 4, 9, 9, 8, 3, 2, 1, 1, 1),
    (2, 6, 7, 10, 6, (2, 3), (1, 2), (1, 0), 1, 1),
    (11, 8, 6, 6, 10, 3, 1, 0, 2, 2),
    (1, 3, 5, 5, 5, 1, 2, 0, 1, 1),
]


@pytest.fixture
def always_gemm(monkeypatch):
    """Route every non-Winograd weight gradient through the matrix-product form,
    so small shapes test it."""
    monkeypatch.setattr(_weight_gemm, "MIN_GEMM_CHANNELS", 1)
    monkeypatch.setattr(_weight_gemm, "MIN_GEMM_K", 1)


def test_rule_pins_which_weight_gradients_use_the_product():
    uses = _weight_gemm.uses_weight_gemm
    assert (_weight_gemm.MIN_GEMM_CHANNELS, _weight_gemm.MIN_GEMM_K) == (96, 64)
    assert uses(128, 576)  # (32,64,56,56)->128 3x3 stride 2
    assert uses(256, 64)
    assert not uses(64, 576)  # a wash at 64 channels: the dot-product form stays
    assert not uses(128, 27)  # an RGB first layer: rows too short
    assert not uses(16, 150)  # LeNet's second convolution


def _kwargs(case):
    _, _, _, _, _, kernel, stride, padding, dilation, groups = case
    return {"stride": stride, "padding": padding, "dilation": dilation,
            "groups": groups}


def _inputs(rng, case, dtype):
    n, c_in, h, w, c_out, kernel = case[:6]
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    groups = case[9]
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = rng.standard_normal((c_out, c_in // groups, kh, kw)).astype(dtype)
    return x, wt


def _pairs(value):
    return (value, value) if isinstance(value, int) else value


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_matches_naive(case, dtype, rng, always_gemm):
    x, wt = _inputs(rng, case, dtype)
    kw = _kwargs(case)
    assert not _conv_plan._uses_winograd(wt.shape, *_pairs(kw["stride"]),
                                           *_pairs(kw["dilation"]), kw["groups"])
    y = F.conv2d(x, wt, **kw)
    dy = rng.standard_normal(y.shape).astype(dtype)
    _, dw, _ = F.conv2d_backward(dy, x, wt, **kw)
    ph, pw = _pairs(kw["padding"])
    _, rdw, _ = naive.conv2d_backward(
        dy.astype(np.float64), x.astype(np.float64), wt.astype(np.float64),
        _pairs(kw["stride"]), (ph, ph), (pw, pw), _pairs(kw["dilation"]), kw["groups"])
    tol = 1e-12 if dtype == np.float64 else 1e-4
    assert_close(dw, rdw, tol, tol, "dweight")


def test_same_as_the_dot_product_form(rng, always_gemm):
    # Two independent computations of one gradient: they agree to rounding.
    x, wt = _inputs(rng, CASES[0], np.float64)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dy = rng.standard_normal((3, 8, 5, 5))
    by_product, by_dots = np.empty_like(wt), np.empty_like(wt)
    _weight_gemm.conv2d_backward_weight_gemm(dy, xp, by_product, 2, 2, 1, 1, 1)
    conv_kernels._conv2d_backward_weight_direct(dy, xp, by_dots, 2, 2, 1, 1, 1)
    assert_close(by_product, by_dots, 1e-13, 1e-13, "dweight")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_invariance(dtype, rng, always_gemm):
    x, wt = _inputs(rng, CASES[2], dtype)
    kw = _kwargs(CASES[2])
    dy = rng.standard_normal(F.conv2d(x, wt, **kw).shape).astype(dtype)
    assert_thread_count_invariant(lambda: F.conv2d_backward(dy, x, wt, **kw)[1],
                                  "conv2d weight gradient, matrix-product form")


def test_finite_differences(rng, always_gemm):
    x, wt = _inputs(rng, CASES[0], np.float64)
    check_finite_differences(
        lambda x, weight: F.conv2d(x, weight, stride=2, padding=1),
        lambda dy, x, weight: F.conv2d_backward(dy, x, weight, stride=2,
                                                padding=1)[:2],
        {"x": x, "weight": wt}, ("x", "weight"), rng,
    )


@pytest.mark.torch
def test_matches_pytorch_on_a_wide_strided_layer(rng):
    # 96 output channels, 3x3 stride 2: the rule picks the product without help.
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 16, 11, 11)).astype(np.float32)
    wt = rng.standard_normal((96, 16, 3, 3)).astype(np.float32)
    assert _weight_gemm.uses_weight_gemm(96, 16 * 9)
    y = F.conv2d(x, wt, stride=2, padding=1)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _, dw, _ = F.conv2d_backward(dy, x, wt, stride=2, padding=1)
    tx, tw = torch.tensor(x), torch.tensor(wt, requires_grad=True)
    torch.nn.functional.conv2d(tx, tw, stride=2, padding=1).backward(torch.tensor(dy))
    assert_close(dw, tw.grad.numpy(), 1e-4, 1e-4, "dweight")
