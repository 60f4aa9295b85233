"""Activations (relu, leaky_relu, sigmoid, tanh, softmax, log_softmax) and their
backwards: references, finite differences, PyTorch, properties, thread-count
invariance and bad input."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcnn.functional as F

from .. import naive
from ..gradcheck import assert_close, check_finite_differences, max_rel_error
from ..threads import assert_thread_count_invariant

# name -> (forward(x), backward(dy, x, y), naive forward(x), naive backward(dy, x, y))
# Backwards of sigmoid and tanh take the forward output y; relu's take the input x.
ELEMENTWISE = {
    "relu": (F.relu, lambda dy, x, y: F.relu_backward(dy, x),
             naive.relu, lambda dy, x, y: naive.relu_backward(dy, x)),
    "leaky_relu": (F.leaky_relu, lambda dy, x, y: F.leaky_relu_backward(dy, x),
                   lambda x: naive.leaky_relu(x, 0.01),
                   lambda dy, x, y: naive.leaky_relu_backward(dy, x, 0.01)),
    "leaky_relu_0.3": (lambda x: F.leaky_relu(x, 0.3),
                       lambda dy, x, y: F.leaky_relu_backward(dy, x, 0.3),
                       lambda x: naive.leaky_relu(x, 0.3),
                       lambda dy, x, y: naive.leaky_relu_backward(dy, x, 0.3)),
    "sigmoid": (F.sigmoid, lambda dy, x, y: F.sigmoid_backward(dy, y),
                naive.sigmoid, lambda dy, x, y: naive.sigmoid_backward(dy, y)),
    "tanh": (F.tanh, lambda dy, x, y: F.tanh_backward(dy, y),
             naive.tanh, lambda dy, x, y: naive.tanh_backward(dy, y)),
}

# name -> (forward(x, dim), backward(dy, y, dim), naive forward, naive backward)
ALONG_DIM = {
    "softmax": (F.softmax, F.softmax_backward, naive.softmax, naive.softmax_backward),
    "log_softmax": (F.log_softmax, F.log_softmax_backward, naive.log_softmax,
                    naive.log_softmax_backward),
}

SHAPES = [(7,), (3, 5), (2, 3, 4), (2, 3, 2, 3)]


def _away_from_zero(rng, shape, dtype=np.float64):
    """Normal values pushed at least 0.05 from 0, so finite differences never
    straddle relu's kink."""
    x = rng.standard_normal(shape)
    return (x + np.where(x < 0, -0.05, 0.05)).astype(dtype)


def _dims(ndim):
    return list(range(-ndim, ndim))


# ------------------------------------------------------------ elementwise activations


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-14), (np.float32, 1e-6)])
def test_elementwise_match_naive(name, dtype, tol, rng):
    forward, backward, ref_forward, ref_backward = ELEMENTWISE[name]
    x = (3 * rng.standard_normal((3, 4, 5))).astype(dtype)
    y = forward(x)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, ref_forward(x), tol, tol, "y")
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = backward(dy, x, y)
    assert dx.dtype == dtype
    assert_close(dx, ref_backward(dy, x, y), tol, tol, "dx")


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_finite_differences(name, rng):
    forward, backward, _, _ = ELEMENTWISE[name]
    x = _away_from_zero(rng, (2, 3, 4))
    check_finite_differences(forward, lambda dy, x: backward(dy, x, forward(x)),
                             {"x": x}, ("x",), rng)


def test_sigmoid_and_tanh_saturate_without_overflow():
    x = np.array([-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4])
    for dtype in (np.float32, np.float64):
        s = F.sigmoid(x.astype(dtype))
        assert np.all(np.isfinite(s)) and s[0] == 0 and s[-1] == 1 and s[3] == 0.5
        assert 0 < s[2] < 1e-20  # the negative tail keeps its value, not 0
        np.testing.assert_array_equal(F.tanh(x.astype(dtype))[[0, -1]], [-1, 1])


def test_relu_and_leaky_relu_values():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(F.relu(x), [0, 0, 0, 0.5, 2])
    np.testing.assert_array_equal(F.leaky_relu(x, 0.1), [-0.2, -0.05, 0, 0.5, 2])
    np.testing.assert_array_equal(F.relu_backward(np.ones(5), x), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(F.leaky_relu_backward(np.ones(5), x, 0.1),
                                  [0.1, 0.1, 0.1, 1, 1])


# ----------------------------------------------------------------- softmax family


@pytest.mark.parametrize("name", ALONG_DIM)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-14), (np.float32, 1e-6)])
def test_along_dim_match_naive(name, shape, dtype, tol, rng):
    forward, backward, ref_forward, ref_backward = ALONG_DIM[name]
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    for dim in _dims(len(shape)):
        y = forward(x, dim)
        assert y.dtype == dtype and y.shape == x.shape and y.flags.c_contiguous
        assert_close(y, ref_forward(x, dim), tol, tol, f"y dim={dim}")
        dy = rng.standard_normal(shape).astype(dtype)
        dx = backward(dy, y, dim)
        assert dx.dtype == dtype and dx.flags.c_contiguous
        assert_close(dx, ref_backward(dy, y, dim), tol, tol, f"dx dim={dim}")


@pytest.mark.parametrize("name", ALONG_DIM)
@pytest.mark.parametrize("shape, dim", [((5,), 0), ((3, 4), 1), ((3, 4), 0),
                                        ((2, 3, 4), -2)])
def test_along_dim_finite_differences(name, shape, dim, rng):
    forward, backward, _, _ = ALONG_DIM[name]
    x = rng.standard_normal(shape)
    check_finite_differences(lambda x: forward(x, dim),
                             lambda dy, x: backward(dy, forward(x, dim), dim),
                             {"x": x}, ("x",), rng)


def test_softmax_default_dim_is_1_and_rows_sum_to_one(rng):
    x = rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(F.softmax(x), F.softmax(x, 1))
    np.testing.assert_allclose(F.softmax(x).sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_array_equal(F.log_softmax(x), F.log_softmax(x, 1))


def test_softmax_of_huge_logits_stays_finite():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    for dtype in (np.float32, np.float64):
        s = F.softmax(x.astype(dtype), 1)
        np.testing.assert_allclose(s, [[1, 0, 0], [1 / 3] * 3], rtol=1e-6)
        ls = F.log_softmax(x.astype(dtype), 1)
        assert np.all(np.isfinite(ls))
        np.testing.assert_allclose(ls[0], [0, -2e4, -1e4], rtol=1e-6)


# ------------------------------------------------------------------ layouts and NaN


def _all_ops(x):
    """Every forward and backward on x (dim=1 for the softmax family)."""
    dy = np.linspace(-1, 1, x.size).reshape(x.shape).astype(x.dtype)
    out = []
    for forward, backward, _, _ in ELEMENTWISE.values():
        y = forward(x)
        out += [y, backward(dy, x, y)]
    for forward, backward, _, _ in ALONG_DIM.values():
        y = forward(x, 1)
        out += [y, backward(dy, y, 1)]
    return out


def test_non_contiguous_and_fortran_inputs(rng):
    x = rng.standard_normal((4, 5, 3))
    expected = _all_ops(x)
    strided = np.repeat(x, 2, axis=2)[..., ::2]
    assert not strided.flags.c_contiguous
    for got, want in zip(_all_ops(strided), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    fortran = np.asfortranarray(x)
    for got, want in zip(_all_ops(fortran), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    dy = rng.standard_normal(x.shape)
    y = F.softmax(x, 2)
    np.testing.assert_array_equal(
        F.softmax_backward(np.asfortranarray(dy), np.asfortranarray(y), 2),
        F.softmax_backward(dy, y, 2),
    )


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_nan_propagates(name):
    forward, backward, _, _ = ELEMENTWISE[name]
    x = np.array([np.nan, -1.0, 1.0])
    y = forward(x)
    assert np.isnan(y[0]) and np.isfinite(y[1:]).all()
    dx = backward(np.array([1.0, np.nan, np.nan]), np.array([1.0, 1.0, 2.0]),
                  forward(np.array([1.0, 1.0, 2.0])))
    assert np.isnan(dx[1:]).all()


@pytest.mark.parametrize("name", ALONG_DIM)
def test_along_dim_nan_propagates_within_its_slice(name):
    forward, backward, _, _ = ALONG_DIM[name]
    for col in (0, 2):  # a NaN first in the row and one later in it
        x = np.arange(12.0).reshape(3, 4)
        x[1, col] = np.nan
        y = forward(x, 1)
        assert np.isnan(y[1]).all()
        assert np.isfinite(y[[0, 2]]).all()
        dx = backward(np.ones_like(y), y, 1)
        assert np.isnan(dx[1]).all() and np.isfinite(dx[[0, 2]]).all()


# ------------------------------------------------------------ thread-count invariance


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_invariance(dtype, rng):
    x = (3 * rng.standard_normal((6, 37, 9))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    for name, (forward, backward, _, _) in ELEMENTWISE.items():
        y = forward(x)
        assert_thread_count_invariant(lambda f=forward: f(x), name)
        assert_thread_count_invariant(lambda b=backward, y=y: b(dy, x, y),
                                      name + "_backward")
    for name, (forward, backward, _, _) in ALONG_DIM.items():
        for dim in (1, 2):
            y = forward(x, dim)
            assert_thread_count_invariant(lambda f=forward, d=dim: f(x, d), name)
            assert_thread_count_invariant(lambda b=backward, y=y, d=dim: b(dy, y, d),
                                          name + "_backward")


# ---------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
       name=st.sampled_from(sorted(ELEMENTWISE) + sorted(ALONG_DIM)),
       dim_seed=st.integers(0, 100), seed=st.integers(0, 2**16))
def test_property_random_configurations(shape, name, dim_seed, seed):
    r = np.random.default_rng(seed)
    x = 4 * r.standard_normal(shape)
    dy = r.standard_normal(shape)
    if name in ELEMENTWISE:
        forward, backward, ref_forward, ref_backward = ELEMENTWISE[name]
        y = forward(x)
        assert_close(y, ref_forward(x), 1e-14, 1e-14, "y")
        assert_close(backward(dy, x, y), ref_backward(dy, x, y), 1e-14, 1e-14, "dx")
    else:
        forward, backward, ref_forward, ref_backward = ALONG_DIM[name]
        dim = dim_seed % (2 * len(shape)) - len(shape)
        y = forward(x, dim)
        assert_close(y, ref_forward(x, dim), 1e-14, 1e-14, "y")
        assert_close(backward(dy, y, dim), ref_backward(dy, y, dim), 1e-14, 1e-14,
                     "dx")


# ------------------------------------------------------------------- PyTorch parity


def _torch_ops(torch):
    tf = torch.nn.functional
    ops = {
        "relu": (lambda x, d: F.relu(x), lambda dy, x, y, d: F.relu_backward(dy, x),
                 lambda t, d: tf.relu(t)),
        "sigmoid": (lambda x, d: F.sigmoid(x),
                    lambda dy, x, y, d: F.sigmoid_backward(dy, y),
                    lambda t, d: torch.sigmoid(t)),
        "tanh": (lambda x, d: F.tanh(x), lambda dy, x, y, d: F.tanh_backward(dy, y),
                 lambda t, d: torch.tanh(t)),
        "softmax": (F.softmax, lambda dy, x, y, d: F.softmax_backward(dy, y, d),
                    lambda t, d: tf.softmax(t, d)),
        "log_softmax": (F.log_softmax,
                        lambda dy, x, y, d: F.log_softmax_backward(dy, y, d),
                        lambda t, d: tf.log_softmax(t, d)),
    }
    for slope in (0.01, 0.2, 1.5, -0.3):
        ops[f"leaky_relu_{slope}"] = (
            lambda x, d, s=slope: F.leaky_relu(x, s),
            lambda dy, x, y, d, s=slope: F.leaky_relu_backward(dy, x, s),
            lambda t, d, s=slope: tf.leaky_relu(t, s),
        )
    return ops


def torch_grid(ops):
    """(op name, shape, dim): every op on every shape; the softmax family on every
    dim of each shape, negative and positive."""
    grid = []
    for name, shape in itertools.product(ops, SHAPES + [(4, 10, 3, 3)]):
        dims = _dims(len(shape)) if "softmax" in name else [None]
        grid += [(name, shape, d) for d in dims]
    return grid


@pytest.mark.torch
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-14), (np.float32, 1e-6)])
def test_matches_pytorch_over_grid(dtype, tol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    ops = _torch_ops(torch)
    grid = torch_grid(ops)
    worst = {"y": (0.0, 0.0), "grad": (0.0, 0.0)}
    for name, shape, dim in grid:
        forward, backward, torch_forward = ops[name]
        x = (3 * rng.standard_normal(shape)).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        y = forward(x, dim)
        dx = backward(dy, x, y, dim)
        tx = torch.tensor(x, requires_grad=True)
        ty = torch_forward(tx, dim)
        ty.backward(torch.tensor(dy))
        what = f"{name} shape={shape} dim={dim}"
        for key, got, want in (("y", y, ty.detach().numpy()), ("grad", dx,
                                                              tx.grad.numpy())):
            assert_close(got, want, tol, tol, f"{what} {key}")
            err = (float(np.max(np.abs(got - want))), max_rel_error(got, want))
            worst[key] = tuple(map(max, worst[key], err))
    print(f"activations {np.dtype(dtype)}: {len(grid)} configurations, worst "
          f"(abs, rel) vs torch: {worst}")
    assert len(grid) == 91


# ----------------------------------------------------------------------- bad input

FORWARDS = {
    "relu": F.relu, "leaky_relu": F.leaky_relu, "sigmoid": F.sigmoid,
    "tanh": F.tanh, "softmax": F.softmax, "log_softmax": F.log_softmax,
}
BACKWARDS = {
    "relu_backward": F.relu_backward, "leaky_relu_backward": F.leaky_relu_backward,
    "sigmoid_backward": F.sigmoid_backward, "tanh_backward": F.tanh_backward,
    "softmax_backward": F.softmax_backward,
    "log_softmax_backward": F.log_softmax_backward,
}
# The array each backward takes next to dy.
SECOND = {"relu_backward": "x", "leaky_relu_backward": "x"}


@pytest.mark.parametrize("name", FORWARDS)
@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.float16])
def test_rejects_non_float_dtypes(name, dtype):
    with pytest.raises(TypeError, match=rf"{name}: x must have dtype float32 or "
                       rf"float64, got {np.dtype(dtype)}"):
        FORWARDS[name](np.zeros((2, 3), dtype))


@pytest.mark.parametrize("name", FORWARDS)
def test_rejects_non_arrays(name):
    with pytest.raises(TypeError, match=rf"{name}: x must be a numpy.ndarray.*list"):
        FORWARDS[name]([[1.0, 2.0]])


@pytest.mark.parametrize("name", FORWARDS)
def test_rejects_zero_dimensional_input(name):
    with pytest.raises(ValueError, match=rf"{name}: x must have at least 1 dim"):
        FORWARDS[name](np.array(1.0))


@pytest.mark.parametrize("name", FORWARDS)
def test_empty_input_gives_empty_output(name):
    # As in PyTorch; tests/ops/test_zero_size.py compares every op with it.
    for shape in [(0, 3), (2, 0)]:
        assert FORWARDS[name](np.zeros(shape)).shape == shape


@pytest.mark.parametrize("name", BACKWARDS)
def test_backward_rejects_mismatched_dtypes(name):
    other = SECOND.get(name, "y")
    with pytest.raises(TypeError, match=rf"{name}: dy has dtype float32 but {other} "
                       r"has dtype float64"):
        BACKWARDS[name](np.zeros((2, 3), np.float32), np.zeros((2, 3)))


@pytest.mark.parametrize("name", BACKWARDS)
def test_backward_rejects_shape_mismatch(name):
    with pytest.raises(ValueError, match=rf"{name}: dy must have shape \(2, 3\), got "
                       r"\(3, 2\)"):
        BACKWARDS[name](np.zeros((3, 2)), np.zeros((2, 3)))


@pytest.mark.parametrize("name", BACKWARDS)
def test_backward_rejects_integer_dy(name):
    with pytest.raises(TypeError, match=rf"{name}: dy must have dtype float32"):
        BACKWARDS[name](np.zeros((2, 3), np.int32), np.zeros((2, 3)))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [2, -3, 5])
def test_softmax_rejects_out_of_range_dim(name, dim):
    with pytest.raises(ValueError, match=rf"{name}: dim must lie in \[-2, 1\] for a "
                       rf"2-D input, got {dim}"):
        FORWARDS[name](np.zeros((2, 3)), dim)
    with pytest.raises(ValueError, match=rf"{name}_backward: dim must lie in"):
        BACKWARDS[name + "_backward"](np.zeros((2, 3)), np.zeros((2, 3)), dim)


def test_softmax_default_dim_rejects_1d_input():
    with pytest.raises(ValueError, match=r"softmax: dim must lie in \[-1, 0\] for a "
                       r"1-D input, got 1"):
        F.softmax(np.zeros(3))


@pytest.mark.parametrize("dim", [1.0, True, None, "1"])
def test_softmax_rejects_non_int_dim(dim):
    with pytest.raises(TypeError, match=r"softmax: dim must be an int, got "):
        F.softmax(np.zeros((2, 3)), dim)


@pytest.mark.parametrize("slope", ["0.1", None, True, [0.1]])
def test_leaky_relu_rejects_non_number_slope(slope):
    with pytest.raises(TypeError, match=r"leaky_relu: negative_slope must be a real "
                       r"number"):
        F.leaky_relu(np.zeros(3), slope)


@pytest.mark.parametrize("slope", [np.nan, np.inf, -np.inf])
def test_leaky_relu_rejects_non_finite_slope(slope):
    with pytest.raises(ValueError, match=r"leaky_relu_backward: negative_slope must "
                       r"be a finite number"):
        F.leaky_relu_backward(np.zeros(3), np.zeros(3), slope)
