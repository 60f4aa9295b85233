"""Winograd F(4x4, 3x3): the fast path of 3x3 stride-1 convolutions (forward, input
and weight gradients) against the naive reference, finite differences, PyTorch and
across thread counts; the rule that picks it is pinned here."""

import numpy as np
import pytest

import fastcnn.functional as F
from fastcnn.kernels.cpu import _conv_plan, _winograd

from .. import naive
from ..gradcheck import assert_close, check_finite_differences
from ..threads import assert_thread_count_invariant

# (n, c_in, h, w, c_out, padding): odd sizes leave partial tiles at the bottom and
# right; channel counts that are not multiples of 4 exercise the GEMM's last rows.
CASES = [
    (2, 8, 7, 9, 8, 1),
    (3, 9, 13, 5, 10, 1),
    (2, 8, 16, 16, 12, 0),
    (1, 8, 4, 4, 8, 2),
    (4, 12, 6, 11, 9, (2, 0)),
    (2, 8, 3, 3, 8, "same"),
    (2, 8, 5, 6, 9, 3),  # padding past 2: dx through the padded gradient, cropped
]

#: float32 error of the Winograd path, relative to the largest output: the bound
#: stated in docs/NUMERICS.md (about 1e-6 typical, 5e-6 worst seen with 64 channels).
F32_BOUND = 2e-5


def _case(rng, n, c_in, h, w, c_out, dtype):
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = rng.standard_normal((c_out, c_in, 3, 3)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, wt, b


def _pads(padding):
    if padding == "same":
        return (1, 1), (1, 1)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (ph, ph), (pw, pw)


def _assert_relative(actual, expected, bound, what):
    scale = max(float(np.abs(expected).max()), 1e-30)
    err = float(np.abs(actual - expected).max()) / scale
    assert err <= bound, f"{what}: relative error {err:.3g} > {bound:.3g}"


def test_rule_pins_which_convolutions_use_winograd():
    uses = _conv_plan._uses_winograd
    assert _conv_plan.WINOGRAD_MIN_CHANNELS == 8
    assert uses((8, 8, 3, 3), 1, 1, 1, 1, 1)
    assert uses((64, 32, 3, 3), 1, 1, 1, 1, 1)
    assert not uses((8, 7, 3, 3), 1, 1, 1, 1, 1)  # too few input channels
    assert not uses((7, 8, 3, 3), 1, 1, 1, 1, 1)  # too few output channels
    assert not uses((32, 3, 3, 3), 1, 1, 1, 1, 1)  # an RGB first layer
    assert not uses((16, 16, 5, 5), 1, 1, 1, 1, 1)
    assert not uses((16, 16, 3, 2), 1, 1, 1, 1, 1)
    assert not uses((16, 16, 3, 3), 2, 2, 1, 1, 1)
    assert not uses((16, 16, 3, 3), 1, 1, 2, 2, 1)
    assert not uses((16, 8, 3, 3), 1, 1, 1, 1, 2)  # grouped


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_forward_and_input_gradient_match_naive(case, dtype, rng):
    n, c_in, h, w, c_out, padding = case
    assert _conv_plan._uses_winograd((c_out, c_in, 3, 3), 1, 1, 1, 1, 1)
    x, wt, b = _case(rng, n, c_in, h, w, c_out, dtype)
    pad_h, pad_w = _pads(padding)
    expected = naive.conv2d(x.astype(np.float64), wt.astype(np.float64),
                            b.astype(np.float64), (1, 1), pad_h, pad_w, (1, 1), 1)
    y = F.conv2d(x, wt, b, padding=padding)
    assert y.dtype == dtype
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = F.conv2d_backward(dy, x, wt, padding=padding)
    rdx, rdw, rdb = naive.conv2d_backward(dy.astype(np.float64), x.astype(np.float64),
                                          wt.astype(np.float64), (1, 1), pad_h, pad_w,
                                          (1, 1), 1)
    bound = 1e-13 if dtype == np.float64 else F32_BOUND
    _assert_relative(y, expected, bound, "y")
    _assert_relative(dx, rdx, bound, "dx")
    _assert_relative(dw, rdw, bound, "dweight")
    _assert_relative(db, rdb, bound, "dbias")


@pytest.mark.parametrize("band_columns, m_bytes", [(8, 36 * 4 * 16 * 4), (20, 1)])
def test_several_bands_and_output_channel_chunks(band_columns, m_bytes, rng,
                                                 monkeypatch):
    # Small bands (tasks that end mid-image, a short last band) and output-channel
    # chunks of 4 with a remainder: every split of the kernel runs.
    monkeypatch.setattr(_winograd, "BAND_COLUMNS", band_columns)
    monkeypatch.setattr(_winograd, "M_BYTES", m_bytes)
    monkeypatch.setattr(_winograd, "WEIGHT_SLOTS", 2)
    band_rows, co_chunk, _ = _winograd.winograd_plan(3, 9, 10, 13, 10)
    assert band_rows < 3 * 4 and co_chunk < 10, (band_rows, co_chunk)
    x, wt, b = _case(rng, 3, 9, 13, 10, 10, np.float64)
    expected = naive.conv2d(x, wt, b, (1, 1), (1, 1), (1, 1), (1, 1), 1)
    assert_close(F.conv2d(x, wt, b, padding=1), expected, 1e-12, 1e-12, "y")
    band_rows, slots = _winograd.winograd_weight_plan(3, 9, 10, 13, 10)
    bands = -(-3 * 4 // band_rows)
    assert 1 < slots < bands, (slots, bands)  # slots summing several bands each
    dy = rng.standard_normal(expected.shape)
    rdx, rdw, _ = naive.conv2d_backward(dy, x, wt, (1, 1), (1, 1), (1, 1), (1, 1), 1)
    dx, dw, _ = F.conv2d_backward(dy, x, wt, padding=1)
    assert_close(dx, rdx, 1e-12, 1e-12, "dx")
    assert_close(dw, rdw, 1e-12, 1e-12, "dweight")
    assert_thread_count_invariant(lambda: F.conv2d(x, wt, b, padding=1),
                                  "winograd conv2d, small bands")
    assert_thread_count_invariant(lambda: F.conv2d_backward(dy, x, wt, padding=1),
                                  "winograd conv2d_backward, small bands")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_invariance(dtype, rng):
    x, wt, b = _case(rng, 4, 8, 14, 13, 12, dtype)
    dy = rng.standard_normal((4, 12, 14, 13)).astype(dtype)
    assert_thread_count_invariant(lambda: F.conv2d(x, wt, b, padding=1),
                                  "winograd conv2d")
    assert_thread_count_invariant(lambda: F.conv2d_backward(dy, x, wt, padding=1),
                                  "winograd conv2d_backward")


def test_finite_differences(rng):
    x, wt, b = _case(rng, 1, 8, 5, 6, 8, np.float64)
    check_finite_differences(
        lambda x, weight, bias: F.conv2d(x, weight, bias, padding=1),
        lambda dy, x, weight, bias: F.conv2d_backward(dy, x, weight, padding=1),
        {"x": x, "weight": wt, "bias": b}, ("x", "weight", "bias"), rng,
    )


def test_nan_stays_nan_and_padding_stays_clean(rng):
    # A NaN pixel makes NaN of its tile's outputs (the transforms mix a whole 6x6
    # window), never of tiles whose windows do not cover it.
    x, wt, b = _case(rng, 1, 8, 12, 12, 8, np.float64)
    x[0, 3, 1, 1] = np.nan
    y = F.conv2d(x, wt, b, padding=1)
    assert np.isnan(y[0, :, :3, :3]).all()
    assert np.isfinite(y[0, :, 4:, :]).all() and np.isfinite(y[0, :, :, 4:]).all()


@pytest.mark.torch
@pytest.mark.parametrize("dtype, bound", [(np.float64, 1e-13), (np.float32, F32_BOUND)])
def test_matches_pytorch(dtype, bound, rng):
    torch = pytest.importorskip("torch")
    x, wt, b = _case(rng, 2, 64, 20, 20, 64, dtype)
    y = F.conv2d(x, wt, b, padding=1)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = F.conv2d_backward(dy, x, wt, padding=1)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=1)
    ty.backward(torch.tensor(dy))
    _assert_relative(y, ty.detach().numpy(), bound, "y")
    _assert_relative(dx, tx.grad.numpy(), bound, "dx")
    _assert_relative(dw, tw.grad.numpy(), bound, "dweight")
    _assert_relative(db, tb.grad.numpy(), bound, "dbias")
