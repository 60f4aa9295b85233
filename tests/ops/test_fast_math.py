"""The vectorised exp and erfc of ``kernels/cpu/_fast_math.py`` and the float32
GELU kernels built on them: their error bounds (docs/NUMERICS.md) over the whole
float32 range, against the C library's functions in float64."""

import math

import numba
import numpy as np
import pytest

from fastcnn.kernels.cpu import _fast_math as fm
from fastcnn.kernels.cpu import activation as kernels


@numba.njit
def _exp_all(x, out):
    for i in range(x.size):
        out[i] = fm._exp_nonpositive(x[i])


@numba.njit
def _erfc_all(z, out):
    for i in range(z.size):
        out[i] = fm._erfc_from_gauss(z[i], fm._exp_nonpositive(-z[i] * z[i]))


@numba.njit
def _pow2_all(k, out):
    for i in range(k.size):
        out[i] = fm._pow2(k[i])


def test_pow2_from_bits_is_exact_over_the_normal_exponents():
    k = np.arange(-1022.0, 1024.0)
    out = np.empty_like(k)
    _pow2_all(k, out)
    np.testing.assert_array_equal(out, np.ldexp(1.0, k.astype(np.int64)))


def test_exp_of_nonpositive_arguments_to_1e_15():
    x = np.concatenate([np.linspace(-708.0, 0.0, 200_001), -np.logspace(-12, 2, 500)])
    out = np.empty_like(x)
    _exp_all(x, out)
    ref = np.exp(x)
    assert np.max(np.abs(out - ref) / ref) < 1e-15
    special = np.array([-np.inf, -708.5, -1e300, np.nan, 0.0, -0.0, 5.0])
    out = np.empty_like(special)
    _exp_all(special, out)
    np.testing.assert_array_equal(out[:3], 0.0)
    assert np.isnan(out[3])
    np.testing.assert_array_equal(out[4:], 1.0)  # positive arguments count as 0


def test_erfc_to_1_2e_7_relative_in_both_tails():
    z = np.linspace(-6.0, 26.5, 300_001)
    out = np.empty_like(z)
    _erfc_all(z, out)
    ref = np.array([math.erfc(v) for v in z])
    assert np.max(np.abs(out - ref) / ref) < 1.2e-7
    special = np.array([np.inf, -np.inf, np.nan])
    out = np.empty_like(special)
    _erfc_all(special, out)
    assert out[0] == 0.0 and out[1] == 2.0 and np.isnan(out[2])


def _gelu_inputs():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.standard_normal(200_000) * 4,
                           np.linspace(-15.0, 15.0, 60_001),
                           [3e38, -3e38, 1e-30, -1e-30]]).astype(np.float32)


def test_float32_gelu_within_2e_7_of_the_exact_function():
    x = _gelu_inputs()
    y = np.empty_like(x)
    kernels.gelu_forward(x, y)
    v = x.astype(np.float64)
    exact = 0.5 * v * np.array([math.erfc(-a / math.sqrt(2)) for a in v])
    normal = np.abs(exact) > np.finfo(np.float32).tiny
    assert np.max(np.abs(y[normal] - exact[normal]) / np.abs(exact[normal])) < 2e-7
    assert np.all(np.abs(y[~normal]) <= np.finfo(np.float32).tiny)


def test_float32_gelu_backward_within_2e_7_of_its_terms():
    """Measured against the size of the terms summed (Phi(x) and x phi(x)):
    near the derivative's zero at x = -0.75 any float32 result cancels."""
    x = _gelu_inputs()
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    dx = np.empty_like(x)
    kernels.gelu_backward(dy, x, dx)
    v = x.astype(np.float64)
    cdf = 0.5 * np.array([math.erfc(-a / math.sqrt(2)) for a in v])
    xpdf = v * np.exp(-0.5 * v * v) / math.sqrt(2 * math.pi)
    scale = np.abs(dy) * (np.abs(cdf) + np.abs(xpdf))
    exact = dy * (cdf + xpdf)
    kept = scale > np.finfo(np.float32).tiny
    assert np.max(np.abs(dx[kept] - exact[kept]) / scale[kept]) < 2e-7


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_float32_gelu_specials_as_the_exact_kernels(direction):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0], dtype=np.float32)
    dy = np.array([1.0, 1.0, 1.0, -0.0, 2.0, np.nan], dtype=np.float32)
    fast, exact = np.empty_like(x), np.empty_like(x)
    if direction == "forward":
        kernels._gelu_forward_fast(x, fast)
        kernels._gelu_forward_exact(x, exact)
    else:
        kernels._gelu_backward_fast(dy, x, fast)
        kernels._gelu_backward_exact(dy, x, exact)
    np.testing.assert_array_equal(fast, exact)
    signed = ~np.isnan(exact)  # a NaN's sign bit means nothing
    np.testing.assert_array_equal(np.signbit(fast[signed]), np.signbit(exact[signed]))


def _sigmoid_inputs():
    rng = np.random.default_rng(3)
    return np.concatenate([rng.standard_normal(200_000) * 6,
                           np.linspace(-120.0, 120.0, 40_001),
                           [3e38, -3e38, 1e-30, -1e-30]]).astype(np.float32)


@pytest.mark.parametrize("name", ["sigmoid", "silu"])
def test_float32_sigmoid_and_silu_within_half_an_ulp_of_float64(name):
    """Computed in float64 through the vectorised exp and rounded once: within
    1e-7 relative of the float64 kernels (about half a float32 ulp)."""
    x = _sigmoid_inputs()
    forward = getattr(kernels, name + "_forward")
    y, y64 = np.empty_like(x), np.empty(x.shape)
    forward(x, y)
    forward(x.astype(np.float64), y64)
    normal = np.abs(y64) > np.finfo(np.float32).tiny
    assert np.max(np.abs(y[normal] - y64[normal]) / np.abs(y64[normal])) < 1e-7


def test_float32_silu_backward_within_1e_7_of_its_terms():
    x = _sigmoid_inputs()
    dy = np.random.default_rng(4).standard_normal(x.shape).astype(np.float32)
    dx, dx64 = np.empty_like(x), np.empty(x.shape)
    kernels.silu_backward(dy, x, dx)
    kernels.silu_backward(dy.astype(np.float64), x.astype(np.float64), dx64)
    v = x.astype(np.float64)
    s = np.empty_like(v)
    kernels.sigmoid_forward(v, s)
    scale = np.abs(dy) * (np.abs(s) + np.abs(s * v * (1 - s)))
    kept = scale > np.finfo(np.float32).tiny
    assert np.max(np.abs(dx[kept] - dx64[kept]) / scale[kept]) < 1e-7


@pytest.mark.parametrize("name", ["sigmoid_forward", "silu_forward", "silu_backward"])
def test_float32_sigmoid_family_specials_as_the_exact_kernels(name):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0, -800.0], dtype=np.float32)
    dy = np.array([1.0, 1.0, 1.0, -0.0, 2.0, np.nan, 1.0], dtype=np.float32)
    args = (dy, x) if name.endswith("backward") else (x,)
    fast, exact = np.empty_like(x), np.empty_like(x)
    getattr(kernels, "_" + name.replace("_forward", "_forward_fast").replace(
        "_backward", "_backward_fast"))(*args, fast)
    getattr(kernels, "_" + name.replace("_forward", "_forward_exact").replace(
        "_backward", "_backward_exact"))(*args, exact)
    np.testing.assert_array_equal(fast, exact)
    signed = ~np.isnan(exact)
    np.testing.assert_array_equal(np.signbit(fast[signed]), np.signbit(exact[signed]))
