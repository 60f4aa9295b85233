"""conv_transpose2d and its backward: against a naive scatter loop, float64
finite differences and torch.nn.functional.conv_transpose2d; UpSampling2D's
nearest upsampling against numpy.repeat."""

import numpy as np
import pytest

from fastcnn import functional as F
from fastcnn import layers as L

from ..gradcheck import check_finite_differences

# (n, c_in, h, w, c_out, kh, kw, stride, padding, output_padding, dilation, groups)
CASES = [
    (2, 3, 4, 5, 2, 3, 3, 1, 0, 0, 1, 1),
    (1, 4, 3, 3, 6, 3, 2, 2, 1, 1, 1, 2),
    (2, 2, 3, 4, 3, 2, 3, (3, 2), (0, 1), (2, 1), (2, 1), 1),
    (1, 6, 2, 3, 6, 1, 1, 2, 0, 1, 1, 3),
]


def _pair(value):
    return value if isinstance(value, tuple) else (value, value)


def naive_conv_transpose2d(x, w, b, stride, padding, output_padding, dilation,
                           groups):
    """Every input pixel spreads its weighted kernel over the full output; the
    padding is then cut from both sides."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = map(
        _pair, (stride, padding, output_padding, dilation))
    n, c_in, h, wd = x.shape
    _, cog, kh, kw = w.shape
    full_h = (h - 1) * sh + dh * (kh - 1) + 1 + oph
    full_w = (wd - 1) * sw + dw * (kw - 1) + 1 + opw
    full = np.zeros((n, cog * groups, full_h, full_w))
    cig = c_in // groups
    for b_ in range(n):
        for ci in range(c_in):
            g = ci // cig
            for i in range(h):
                for j in range(wd):
                    for co in range(cog):
                        for ki in range(kh):
                            for kj in range(kw):
                                full[b_, g * cog + co, i * sh + ki * dh,
                                     j * sw + kj * dw] += x[b_, ci, i, j] * w[
                                         ci, co, ki, kj]
    out = full[:, :, ph:full_h - ph, pw:full_w - pw]
    if b is not None:
        out = out + b[:, None, None]
    return out


def _case(case, rng):
    n, c_in, h, w, c_out, kh, kw, s, p, op, d, g = case
    x = rng.standard_normal((n, c_in, h, w))
    weight = rng.standard_normal((c_in, c_out // g, kh, kw))
    bias = rng.standard_normal(c_out)
    return x, weight, bias, dict(stride=s, padding=p, output_padding=op, groups=g,
                                 dilation=d)


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_the_naive_scatter(case, rng):
    x, weight, bias, kw = _case(case, rng)
    y = F.conv_transpose2d(x, weight, bias, **kw)
    expected = naive_conv_transpose2d(x, weight, bias, kw["stride"], kw["padding"],
                                      kw["output_padding"], kw["dilation"],
                                      kw["groups"])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_finite_differences(case, rng):
    x, weight, bias, kw = _case(case, rng)
    check_finite_differences(
        lambda x, weight, bias: F.conv_transpose2d(x, weight, bias, **kw),
        lambda dy, x, weight, bias: F.conv_transpose2d_backward(dy, x, weight, **kw),
        {"x": x, "weight": weight, "bias": bias}, ("x", "weight", "bias"), rng)


@pytest.mark.torch
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-11), (np.float32, 2e-5)])
@pytest.mark.parametrize("case", [*CASES, (4, 32, 8, 8, 16, 3, 3, 1, 1, 0, 1, 1)])
def test_forward_and_backward_match_torch(case, dtype, tol, rng):
    torch = pytest.importorskip("torch")
    x, weight, bias, kw = (a.astype(dtype) if isinstance(a, np.ndarray) else a
                           for a in _case(case, rng))
    tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_(True)
                  for a in (x, weight, bias))
    ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, **kw)
    y = F.conv_transpose2d(x, weight, bias, **kw)
    scale = max(1.0, float(np.abs(ty.detach().numpy()).max()))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol * scale)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    for ours, theirs in zip(F.conv_transpose2d_backward(dy, x, weight, **kw),
                            (tx, tw, tb), strict=True):
        expected = theirs.grad.numpy()
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(ours, expected, rtol=tol, atol=tol * scale)


def test_bad_arguments_name_the_argument(rng):
    x, weight = rng.standard_normal((1, 4, 3, 3)), rng.standard_normal((4, 2, 3, 3))
    with pytest.raises(ValueError, match="output_padding"):
        F.conv_transpose2d(x, weight, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="smaller than the stride"):
        F.conv_transpose2d(x, weight, output_padding=1, dilation=2)
    with pytest.raises(ValueError, match="weight has 3 input channels"):
        F.conv_transpose2d(x, weight[:3])
    with pytest.raises(ValueError, match="too much padding"):
        F.conv_transpose2d(x, weight, padding=3)
    with pytest.raises(ValueError, match="dy must have shape"):
        F.conv_transpose2d_backward(np.zeros((1, 2, 4, 4)), x, weight)
    with pytest.raises(ValueError, match="'valid'"):
        L.Conv2DTranspose(2, 3, padding="same")


@pytest.mark.parametrize("size", [2, (1, 3), (3, 2)])
def test_upsampling_repeats_pixels_and_sums_blocks(size, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    layer = L.UpSampling2D(size)
    y = layer.forward(x)
    sh, sw = (size, size) if isinstance(size, int) else size
    np.testing.assert_array_equal(y, np.repeat(np.repeat(x, sh, 2), sw, 3))
    dy = rng.standard_normal(y.shape)
    expected = dy.reshape(2, 3, 4, sh, 5, sw).sum(axis=(3, 5))
    np.testing.assert_allclose(layer.backward(dy), expected, rtol=1e-13, atol=1e-13)


def test_receptive_field_traces_a_transposed_convolution():
    from fastcnn.inspect import receptive_field

    layers = [L.Conv2DTranspose(1, 3, stride=2, padding=1)]
    # Output 4 of a stride-2, pad-1, 3-tap transposed conv reads input 2 only
    # (4 = 2*2 - 1 + 1); output 3 reads inputs 1 and 2 (3 = 1*2 - 1 + 2 = 2*2 - 1).
    assert receptive_field(layers, 0, (4, 4), input_shape=(1, 5, 5)) == (
        (2, 3), (2, 3))
    assert receptive_field(layers, 0, (3, 4), input_shape=(1, 5, 5)) == (
        (1, 3), (2, 3))
