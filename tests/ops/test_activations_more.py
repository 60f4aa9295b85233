"""The activations of modern CNNs (gelu exact and tanh, silu, elu, softplus,
hardswish, hardsigmoid, relu6, mish) and their backwards: slow references,
finite differences, PyTorch, NaN and inf, float32 saturation, thread-count
invariance and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcnn.functional as F

from ..gradcheck import assert_close, check_finite_differences, max_rel_error
from ..threads import assert_thread_count_invariant

# --------------------------------------------------------- slow, obvious references
# Scalar float64 formulas straight from the definitions (PyTorch's), mapped over
# the array one element at a time.

SQRT2 = math.sqrt(2.0)
KAPPA = 0.044715
BETA = math.sqrt(2.0 / math.pi)


def _map(fn, *arrays):
    out = np.zeros(arrays[0].shape)
    for idx in np.ndindex(out.shape):
        out[idx] = fn(*(float(a[idx]) for a in arrays))
    return out


def _sigmoid(v):
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    return math.exp(v) / (1.0 + math.exp(v))


def _log1p_exp(v):
    return v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))


def ref_gelu(v):
    return 0.5 * v * (1.0 + math.erf(v / SQRT2))


def ref_gelu_grad(v):
    return 0.5 * (1.0 + math.erf(v / SQRT2)) + v * math.exp(-0.5 * v * v) / math.sqrt(
        2 * math.pi)


def ref_gelu_tanh(v):
    return 0.5 * v * (1.0 + math.tanh(BETA * (v + KAPPA * v**3)))


def ref_gelu_tanh_grad(v):
    t = math.tanh(BETA * (v + KAPPA * v**3))
    return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * BETA * (1 + 3 * KAPPA * v * v)


def ref_silu(v):
    return v * _sigmoid(v)


def ref_silu_grad(v):
    s = _sigmoid(v)
    return s + v * s * (1 - s)


def ref_elu(v, alpha):
    return v if v > 0 else alpha * (math.exp(v) - 1)


def ref_elu_grad(v, alpha):
    return 1.0 if v > 0 else alpha * math.exp(v)


def ref_softplus(v, beta, threshold):
    return v if v * beta > threshold else _log1p_exp(v * beta) / beta


def ref_softplus_grad(v, beta, threshold):
    return 1.0 if v * beta > threshold else _sigmoid(v * beta)


def ref_hardswish(v):
    return 0.0 if v <= -3 else v if v >= 3 else v * (v + 3) / 6


def ref_hardswish_grad(v):  # PyTorch's choice at the kinks: 0 at -3, 1 at 3
    return 0.0 if v <= -3 else 1.0 if v >= 3 else v / 3 + 0.5


def ref_hardsigmoid(v):
    return 0.0 if v <= -3 else 1.0 if v >= 3 else (v + 3) / 6


def ref_hardsigmoid_grad(v):
    return 1 / 6 if -3 < v < 3 else 0.0


def ref_relu6(v):
    return min(max(v, 0.0), 6.0)


def ref_relu6_grad(v):
    return 1.0 if 0 < v < 6 else 0.0


def ref_mish(v):
    return v * math.tanh(_log1p_exp(v))


def ref_mish_grad(v):
    t = math.tanh(_log1p_exp(v))
    return t + v * _sigmoid(v) * (1 - t * t)


def _case(forward, backward, ref, ref_grad, torch_fn):
    """(forward(x), backward(dy, x), naive forward(x), naive backward(dy, x),
    torch forward(tensor))."""
    return (forward, backward, lambda x: _map(ref, x),
            lambda dy, x: _map(lambda g, v: g * ref_grad(v), dy, x), torch_fn)


def _ops():
    ops = {
        "gelu": _case(F.gelu, F.gelu_backward, ref_gelu, ref_gelu_grad,
                      lambda tf, t: tf.gelu(t)),
        "gelu_tanh": _case(lambda x: F.gelu(x, approximate="tanh"),
                           lambda dy, x: F.gelu_backward(dy, x, approximate="tanh"),
                           ref_gelu_tanh, ref_gelu_tanh_grad,
                           lambda tf, t: tf.gelu(t, approximate="tanh")),
        "silu": _case(F.silu, F.silu_backward, ref_silu, ref_silu_grad,
                      lambda tf, t: tf.silu(t)),
        "hardswish": _case(F.hardswish, F.hardswish_backward, ref_hardswish,
                           ref_hardswish_grad, lambda tf, t: tf.hardswish(t)),
        "hardsigmoid": _case(F.hardsigmoid, F.hardsigmoid_backward, ref_hardsigmoid,
                             ref_hardsigmoid_grad, lambda tf, t: tf.hardsigmoid(t)),
        "relu6": _case(F.relu6, F.relu6_backward, ref_relu6, ref_relu6_grad,
                       lambda tf, t: tf.relu6(t)),
        "mish": _case(F.mish, F.mish_backward, ref_mish, ref_mish_grad,
                      lambda tf, t: tf.mish(t)),
    }
    for alpha in (1.0, 0.3, 2.5, -0.7):
        ops[f"elu_{alpha}"] = _case(
            lambda x, a=alpha: F.elu(x, a),
            lambda dy, x, a=alpha: F.elu_backward(dy, x, a),
            lambda v, a=alpha: ref_elu(v, a), lambda v, a=alpha: ref_elu_grad(v, a),
            lambda tf, t, a=alpha: tf.elu(t, a))
    for beta, threshold in ((1.0, 20.0), (2.0, 5.0), (0.5, 30.0), (-1.5, 4.0)):
        ops[f"softplus_{beta}_{threshold}"] = _case(
            lambda x, b=beta, th=threshold: F.softplus(x, b, th),
            lambda dy, x, b=beta, th=threshold: F.softplus_backward(dy, x, b, th),
            lambda v, b=beta, th=threshold: ref_softplus(v, b, th),
            lambda v, b=beta, th=threshold: ref_softplus_grad(v, b, th),
            lambda tf, t, b=beta, th=threshold: tf.softplus(t, b, th))
    return ops


OPS = _ops()
#: The points where a derivative jumps (finite differences stay away from them).
KINKS = np.array([-3.0, 0.0, 3.0, 6.0, 20.0, 2.5, 60.0, -8 / 3])


def _inputs(rng, shape, dtype=np.float64, scale=3.0):
    """Normal values with every kink and some large magnitudes mixed in."""
    x = scale * rng.standard_normal(shape)
    flat = x.reshape(-1)
    special = [-3.0, 3.0, 0.0, 6.0, -25.0, 25.0, -60.0, 60.0]
    flat[: min(len(special), flat.size)] = special[: flat.size]
    return x.astype(dtype)


def _away_from_kinks(rng, shape):
    """Normal values at least 0.05 from every kink, for finite differences."""
    x = 3 * rng.standard_normal(shape)
    for k in KINKS:
        near = np.abs(x - k) < 0.05
        x[near] = k + np.where(x[near] < k, -0.05, 0.05)
    return x


# ------------------------------------------------------------------- references


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype, rtol, atol", [(np.float64, 1e-13, 1e-14),
                                               (np.float32, 1e-5, 1e-6)])
def test_match_naive(name, dtype, rtol, atol, rng):
    forward, backward, ref_forward, ref_backward, _ = OPS[name]
    x = _inputs(rng, (3, 4, 5), dtype)
    y = forward(x)
    assert y.dtype == dtype and y.shape == x.shape and y.flags.c_contiguous
    assert_close(y, ref_forward(x), rtol, atol, f"{name} y")
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = backward(dy, x)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert_close(dx, ref_backward(dy, x), rtol, atol, f"{name} dx")


@pytest.mark.parametrize("name", OPS)
def test_finite_differences(name, rng):
    forward, backward, _, _, _ = OPS[name]
    x = _away_from_kinks(rng, (2, 3, 4))
    check_finite_differences(forward, backward, {"x": x}, ("x",), rng)


def test_default_arguments_are_torchs():
    x = np.linspace(-30, 30, 61)
    np.testing.assert_array_equal(F.gelu(x), F.gelu(x, "none"))
    np.testing.assert_array_equal(F.elu(x), F.elu(x, 1.0))
    np.testing.assert_array_equal(F.softplus(x), F.softplus(x, 1.0, 20.0))
    dy = np.ones_like(x)
    np.testing.assert_array_equal(F.softplus_backward(dy, x),
                                  F.softplus_backward(dy, x, 1.0, 20.0))
    # softplus is x itself above the threshold.
    assert F.softplus(np.array([20.5]))[0] == 20.5


def test_piecewise_values_at_the_kinks():
    x = np.array([-4.0, -3.0, -1.5, 0.0, 3.0, 4.5, 6.0, 7.0])
    np.testing.assert_array_equal(F.relu6(x), [0, 0, 0, 0, 3, 4.5, 6, 6])
    np.testing.assert_array_equal(F.hardsigmoid(x),
                                  [0, 0, 0.25, 0.5, 1, 1, 1, 1])
    np.testing.assert_array_equal(F.hardswish(x),
                                  [0, 0, -0.375, 0, 3, 4.5, 6, 7])
    ones = np.ones_like(x)
    np.testing.assert_array_equal(F.relu6_backward(ones, x), [0, 0, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(F.hardswish_backward(ones, x),
                                  [0, 0, 0, 0.5, 1, 1, 1, 1])
    np.testing.assert_array_equal(F.hardsigmoid_backward(ones, x),
                                  [0, 0, 1 / 6, 1 / 6, 0, 0, 0, 0])


# ------------------------------------------------------------- NaN, inf, overflow

NAN_INF = np.array([np.nan, np.inf, -np.inf, 1.0])


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_as_in_pytorch(name, dtype):
    """NaN in x gives NaN out; infinities give PyTorch's float64 results (inf * 0
    makes NaN where the formulas meet it, as in PyTorch). The one deliberate
    difference: relu6_backward passes dy where x is NaN, as relu_backward and
    PyTorch's float32 kernel do (its float64 kernel gives 0)."""
    torch = pytest.importorskip("torch")
    forward, backward, _, _, torch_fn = OPS[name]
    x = NAN_INF.astype(dtype)
    y = forward(x)
    assert np.isnan(y[0])
    dy = np.array([2.0, 2.0, 2.0, np.nan], dtype)
    dx = backward(dy, x)
    assert np.isnan(dx[3])  # a NaN upstream gradient propagates
    tx = torch.tensor(NAN_INF, requires_grad=True)
    ty = torch_fn(torch.nn.functional, tx)
    ty.backward(torch.tensor([2.0, 2.0, 2.0, 0.0], dtype=torch.float64))
    want_y, want_dx = ty.detach().numpy(), tx.grad.numpy()
    if name == "relu6":
        want_dx[0] = 2.0
    np.testing.assert_array_equal(y[:3], want_y[:3].astype(dtype), name)
    np.testing.assert_array_equal(dx[:3], want_dx[:3].astype(dtype), name)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_inputs_saturate_without_overflow(name, dtype):
    """exp never overflows: large finite inputs give finite values and
    gradients that match the references (within float rounding)."""
    forward, backward, ref_forward, ref_backward, _ = OPS[name]
    x = np.array([-1e4, -700.0, -100.0, -30.0, 30.0, 100.0, 700.0, 1e4], dtype)
    with np.errstate(all="raise"):  # the references must not overflow either
        want_y = ref_forward(x)
        want_dx = ref_backward(np.ones_like(x), x)
    y = forward(x)
    dx = backward(np.ones_like(x), x)
    assert np.isfinite(y).all() and np.isfinite(dx).all(), (y, dx)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    assert_close(y, want_y, tol, 1e-30, f"{name} y")
    assert_close(dx, want_dx, tol, 1e-30, f"{name} dx")


def test_negative_tails_keep_their_relative_precision():
    # gelu (erfc) and silu / mish / softplus (exp of a non-positive argument) keep
    # tiny negative-tail values instead of rounding them to 0.
    x = np.array([-12.0, -30.0])
    assert_close(F.gelu(x), [ref_gelu_tail(-12.0), ref_gelu_tail(-30.0)], 1e-12, 0)
    assert_close(F.silu(x), [-12 * math.exp(-12) / (1 + math.exp(-12)),
                             -30 * math.exp(-30) / (1 + math.exp(-30))], 1e-14, 0)
    assert F.mish(np.array([-30.0]))[0] < 0
    assert F.softplus(np.array([-700.0]))[0] > 0
    assert F.gelu(np.array([-12.0], np.float32))[0] < 0


def ref_gelu_tail(v):
    return 0.5 * v * math.erfc(-v / SQRT2)


# ------------------------------------------------------- layouts and thread counts


def test_non_contiguous_and_fortran_inputs(rng):
    x = _inputs(rng, (4, 5, 3))
    dy = rng.standard_normal(x.shape)
    strided = np.repeat(x, 2, axis=2)[..., ::2]
    for name, (forward, backward, _, _, _) in OPS.items():
        y, dx = forward(x), backward(dy, x)
        for layout in (strided, np.asfortranarray(x)):
            np.testing.assert_array_equal(forward(layout), y, name)
            np.testing.assert_array_equal(backward(np.asfortranarray(dy), layout), dx,
                                          name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_invariance(dtype, rng):
    x = _inputs(rng, (6, 37, 9), dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    for name, (forward, backward, _, _, _) in OPS.items():
        assert_thread_count_invariant(lambda f=forward: f(x), name)
        assert_thread_count_invariant(lambda b=backward: b(dy, x), name + "_backward")


# ---------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
       name=st.sampled_from(sorted(OPS)), seed=st.integers(0, 2**16),
       scale=st.sampled_from([0.5, 4.0, 30.0]))
def test_property_random_configurations(shape, name, seed, scale):
    forward, backward, ref_forward, ref_backward, _ = OPS[name]
    r = np.random.default_rng(seed)
    x = scale * r.standard_normal(shape)
    dy = r.standard_normal(shape)
    assert_close(forward(x), ref_forward(x), 1e-13, 1e-14, "y")
    assert_close(backward(dy, x), ref_backward(dy, x), 1e-13, 1e-14, "dx")


# ------------------------------------------------------------------- PyTorch parity

SHAPES = [(7,), (3, 5), (2, 3, 4), (4, 10, 3, 3)]
#: float64 (rtol, atol) against float64 PyTorch, and float32 against float32
#: PyTorch. PyTorch's float64 hardsigmoid backward multiplies by 1/6 rounded to
#: float32 (a relative error of 3e-8); fastcnn uses 1/6 in the array's dtype.
TOLERANCE = {np.float64: (1e-12, 1e-14), np.float32: (2e-5, 2e-6)}
HARDSIGMOID_F64_GRAD = (1e-7, 1e-14)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_pytorch(dtype):
    """Forward and backward against PyTorch of the same dtype (to rounding), and
    the worst error of each op against float64 PyTorch, printed (``-s``)."""
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(7)
    worst = {}  # name -> [y, grad]: max |error| / max(1, max |float64 torch|)
    for name, (forward, backward, _, _, torch_fn) in OPS.items():
        worst[name] = [0.0, 0.0]
        for shape in SHAPES + [(201,)]:
            x = _inputs(rng, shape, dtype)
            if shape == (201,):  # a sweep over the saturated regions too
                x = np.linspace(-40, 40, 201).astype(dtype)
            dy = rng.standard_normal(shape).astype(dtype)
            y, dx = forward(x), backward(dy, x)
            for torch_dtype in (torch.float64, getattr(torch, np.dtype(dtype).name)):
                tx = torch.tensor(x, dtype=torch_dtype, requires_grad=True)
                ty = torch_fn(tf, tx)
                ty.backward(torch.tensor(dy, dtype=torch_dtype))
                want_y, want_dx = ty.detach().numpy(), tx.grad.numpy()
                if torch_dtype == torch.float64:  # the error of fastcnn's dtype
                    worst[name][0] = max(worst[name][0], max_rel_error(y, want_y))
                    worst[name][1] = max(worst[name][1], max_rel_error(dx, want_dx))
                    if dtype == np.float32:
                        continue
                rtol, atol = TOLERANCE[dtype]
                what = f"{name} {shape} {np.dtype(dtype)}"
                assert_close(y, want_y, rtol, atol, what + " y")
                if name == "hardsigmoid" and dtype == np.float64:
                    rtol, atol = HARDSIGMOID_F64_GRAD
                assert_close(dx, want_dx, rtol, atol, what + " grad")
    print(f"\nworst error vs float64 torch, {np.dtype(dtype)} inputs (max |diff| / "
          f"max(1, max |value|)), y and grad:")
    for name, (err_y, err_grad) in worst.items():
        print(f"  {name:24s} {err_y:.2e} {err_grad:.2e}")
    bound = 1e-14 if dtype == np.float64 else 1e-5
    for name, (err_y, err_grad) in worst.items():
        assert err_y <= bound, name
        # PyTorch's float64 hardsigmoid backward uses a float32 1/6 (TOLERANCE).
        assert err_grad <= (1e-7 if name == "hardsigmoid" else bound), name


# ----------------------------------------------------------------------- bad input

FORWARDS = {"gelu": F.gelu, "silu": F.silu, "elu": F.elu, "softplus": F.softplus,
            "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid,
            "relu6": F.relu6, "mish": F.mish}
BACKWARDS = {f"{name}_backward": getattr(F, f"{name}_backward") for name in FORWARDS}


@pytest.mark.parametrize("name", FORWARDS)
@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.float16])
def test_rejects_non_float_dtypes(name, dtype):
    with pytest.raises(TypeError, match=rf"{name}: x must have dtype float32 or "
                       rf"float64, got {np.dtype(dtype)}"):
        FORWARDS[name](np.zeros((2, 3), dtype))


@pytest.mark.parametrize("name", FORWARDS)
def test_rejects_non_arrays_and_scalars(name):
    with pytest.raises(TypeError, match=rf"{name}: x must be a numpy.ndarray.*list"):
        FORWARDS[name]([[1.0, 2.0]])
    with pytest.raises(ValueError, match=rf"{name}: x must have at least 1 dim"):
        FORWARDS[name](np.array(1.0))


@pytest.mark.parametrize("name", FORWARDS)
def test_empty_input_gives_empty_output(name):
    for shape in [(0, 3), (2, 0)]:
        assert FORWARDS[name](np.zeros(shape)).shape == shape
        assert BACKWARDS[name + "_backward"](np.zeros(shape),
                                             np.zeros(shape)).shape == shape


@pytest.mark.parametrize("name", BACKWARDS)
def test_backward_rejects_mismatches(name):
    with pytest.raises(TypeError, match=rf"{name}: dy has dtype float32 but x "
                       r"has dtype float64"):
        BACKWARDS[name](np.zeros((2, 3), np.float32), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=rf"{name}: dy must have shape \(2, 3\), got "
                       r"\(3, 2\)"):
        BACKWARDS[name](np.zeros((3, 2)), np.zeros((2, 3)))
    with pytest.raises(TypeError, match=rf"{name}: dy must have dtype float32"):
        BACKWARDS[name](np.zeros((2, 3), np.int32), np.zeros((2, 3)))


@pytest.mark.parametrize("value, error", [("erf", ValueError), ("None", ValueError),
                                          (None, TypeError), (True, TypeError),
                                          ("TANH", ValueError)])
def test_gelu_rejects_unknown_approximate(value, error):
    for op, call in (("gelu", lambda: F.gelu(np.zeros(3), value)),
                     ("gelu_backward",
                      lambda: F.gelu_backward(np.zeros(3), np.zeros(3), value))):
        with pytest.raises(error, match=rf"{op}: approximate must be 'none' or "
                           r"'tanh', got"):
            call()


@pytest.mark.parametrize("value", ["1", None, True, [1.0]])
def test_scalar_arguments_must_be_real_numbers(value):
    with pytest.raises(TypeError, match=r"elu: alpha must be a real number"):
        F.elu(np.zeros(3), value)
    with pytest.raises(TypeError, match=r"softplus: beta must be a real number"):
        F.softplus(np.zeros(3), value)
    with pytest.raises(TypeError, match=r"softplus_backward: threshold must be a "
                       r"real number"):
        F.softplus_backward(np.zeros(3), np.zeros(3), 1.0, value)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_scalar_arguments_must_be_finite(value):
    with pytest.raises(ValueError, match=r"elu_backward: alpha must be a finite"):
        F.elu_backward(np.zeros(3), np.zeros(3), value)
    with pytest.raises(ValueError, match=r"softplus: threshold must be a finite"):
        F.softplus(np.zeros(3), 1.0, value)


def test_softplus_rejects_zero_beta():
    with pytest.raises(ValueError, match=r"softplus: beta must be a non-zero finite "
                       r"number, got 0.0"):
        F.softplus(np.zeros(3), 0)
