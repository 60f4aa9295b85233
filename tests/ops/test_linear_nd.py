"""linear and linear_backward on inputs of any ndim >= 1 (the last axis holds the
features, the others are a batch, as in torch): the naive reference, finite
differences, PyTorch, fuzzed shapes and bad input."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcnn.functional as F

from .. import naive
from ..fuzz_support import COUNTS, FLOATS, assert_ieee_close, data, examples
from ..gradcheck import assert_close, check_finite_differences, max_rel_error

#: Leading (batch) shapes: none (one vector), one axis, several, empty ones.
LEADING = [(), (3,), (2, 3), (2, 1, 3), (0,), (2, 0), (0, 3)]


def _case(rng, leading, c_in, c_out, dtype=np.float64):
    x = rng.standard_normal((*leading, c_in)).astype(dtype)
    w = rng.standard_normal((c_out, c_in)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b


def _naive(x, w, b, dy):
    """The 2-D naive reference on the rows of x and dy."""
    m = math.prod(x.shape[:-1])
    rows = x.reshape(m, x.shape[-1])
    y = naive.linear(rows, w, b).reshape(*x.shape[:-1], w.shape[0])
    dx, dw, db = naive.linear_backward(dy.reshape(m, w.shape[0]), rows, w)
    return y, (dx.reshape(x.shape), dw, db)


@pytest.mark.parametrize("leading", LEADING)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_matches_naive(leading, bias, dtype, tol, rng):
    x, w, b = _case(rng, leading, 5, 4, dtype)
    b = b if bias else None
    y = F.linear(x, w, b)
    assert y.shape == (*leading, 4) and y.dtype == dtype
    dy = rng.standard_normal(y.shape).astype(dtype)
    want_y, want_grads = _naive(x, w, b, dy)
    assert_close(y, want_y, tol, tol, "y")
    for name, got, want in zip(("dx", "dweight", "dbias"),
                               F.linear_backward(dy, x, w), want_grads, strict=True):
        assert got.dtype == dtype
        assert_close(got, want, tol, tol, name)


@pytest.mark.parametrize("leading", [(), (2, 3), (1, 2, 2)])
def test_finite_differences(leading, rng):
    x, w, b = _case(rng, leading, 3, 2)
    check_finite_differences(
        lambda x, weight, bias: F.linear(x, weight, bias),
        lambda dy, x, weight, bias: F.linear_backward(dy, x, weight),
        {"x": x, "weight": w, "bias": b}, ("x", "weight", "bias"), rng,
    )


def test_one_vector_is_a_batch_of_one(rng):
    x, w, b = _case(rng, (), 6, 3)
    np.testing.assert_array_equal(F.linear(x, w, b), F.linear(x[None], w, b)[0])
    dy = rng.standard_normal(3)
    for got, want in zip(F.linear_backward(dy, x, w),
                         F.linear_backward(dy[None], x[None], w), strict=True):
        np.testing.assert_array_equal(got, want.reshape(got.shape))


def test_leading_axes_are_a_batch(rng):
    # Bit for bit the 2-D op on the rows (the same kernels, the same order).
    x, w, b = _case(rng, (2, 3, 2), 7, 5)
    rows = x.reshape(-1, 7)
    np.testing.assert_array_equal(F.linear(x, w, b).reshape(-1, 5),
                                  F.linear(rows, w, b))
    dy = rng.standard_normal((2, 3, 2, 5))
    got = F.linear_backward(dy, x, w)
    want = F.linear_backward(dy.reshape(-1, 5), rows, w)
    np.testing.assert_array_equal(got[0].reshape(-1, 7), want[0])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])


def test_non_contiguous_inputs(rng):
    x, w, b = _case(rng, (2, 3), 4, 3)
    strided = np.repeat(x, 2, axis=-1)[..., ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(F.linear(strided, w, b), F.linear(x, w, b))
    dy = rng.standard_normal((2, 3, 3))
    for got, want in zip(F.linear_backward(np.asfortranarray(dy), strided, w),
                         F.linear_backward(dy, x, w), strict=True):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------- PyTorch parity

TORCH_GRID = list(itertools.product(LEADING, [1, 6], [1, 9], [True, False]))


@pytest.mark.torch
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_matches_pytorch(dtype, tol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    for leading, c_in, c_out, use_bias in TORCH_GRID:
        x, w, b = _case(rng, leading, c_in, c_out, dtype)
        b = b if use_bias else None
        y = F.linear(x, w, b)
        dy = rng.standard_normal(y.shape).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        tw = torch.tensor(w, requires_grad=True)
        tb = None if b is None else torch.tensor(b, requires_grad=True)
        ty = torch.nn.functional.linear(tx, tw, tb)
        ty.backward(torch.tensor(dy))
        dx, dw, db = F.linear_backward(dy, x, w)
        what = f"{(leading, c_in, c_out, use_bias)}"
        pairs = [("y", y, ty.detach().numpy()), ("dx", dx, tx.grad.numpy()),
                 ("dw", dw, tw.grad.numpy())]
        if b is not None:
            pairs.append(("db", db, tb.grad.numpy()))
        for name, got, want in pairs:
            assert got.shape == want.shape, f"{what} {name}"
            assert max_rel_error(got, want) <= tol, f"{what} {name}"
    assert len(TORCH_GRID) == 7 * 2 * 2 * 2


# ------------------------------------------------------------------------- fuzzing


@st.composite
def nd_case(draw):
    dtype = draw(st.sampled_from(FLOATS))
    leading = tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=3)))
    c_in, c_out = draw(st.integers(0, 5)), draw(st.integers(0, 5))

    def array(shape):
        # data()'s layouts need elements; an empty array has one layout.
        return draw(data(shape, dtype)) if math.prod(shape) else np.zeros(shape,
                                                                          dtype)

    b = array((c_out,)) if draw(st.booleans()) else None
    return array((*leading, c_in)), array((c_out, c_in)), b, array((*leading, c_out))


@examples()
@given(nd_case())
def test_fuzzed_shapes_match_naive(case):
    COUNTS["valid"] += 1
    x, w, b, dy = case
    y = F.linear(x, w, b)
    want_y, want_grads = _naive(x, w, b, dy)
    what = f"linear x {x.shape} w {w.shape}"
    assert_ieee_close(y, want_y, x.dtype, f"{what} y")
    for name, got, want in zip(("dx", "dweight", "dbias"),
                               F.linear_backward(dy, x, w), want_grads, strict=True):
        assert_ieee_close(got, want, x.dtype, f"{what} {name}")


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize("leading", [(), (2,), (2, 3)])
def test_rejects_feature_mismatch(leading):
    x = np.zeros((*leading, 4))
    with pytest.raises(ValueError, match=rf"linear: weight has 5 input features .* "
                       rf"but x has 4 \(shape \({', '.join(map(str, x.shape))},?\)\)"):
        F.linear(x, np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"linear_backward: weight has 5 input"):
        F.linear_backward(np.zeros((*leading, 3)), x, np.zeros((3, 5)))


@pytest.mark.parametrize("dy_shape", [(2, 3, 4), (3, 2, 3), (6, 3), (2, 3), (3,)])
def test_rejects_dy_of_another_shape(dy_shape):
    x, w = np.zeros((2, 3, 4)), np.zeros((3, 4))
    with pytest.raises(ValueError, match=rf"linear_backward: dy must have shape "
                       rf"\(2, 3, 3\), got \({', '.join(map(str, dy_shape))},?\)"):
        F.linear_backward(np.zeros(dy_shape), x, w)


def test_rejects_zero_dimensional_input():
    with pytest.raises(ValueError, match=r"linear: x must have at least 1 dim"):
        F.linear(np.zeros(()), np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"linear_backward: dy must have at least 1 "
                       r"dim"):
        F.linear_backward(np.zeros(()), np.zeros(1), np.zeros((3, 1)))


def test_dense_layer_stays_2d_with_a_clear_error():
    # F.linear takes any batch rank; the Dense layer keeps (N, F) samples and says
    # what to put before it.
    import fastcnn
    from fastcnn.layers import Conv2D, Dense

    with pytest.raises(ValueError, match=r"Dense 'dense\w*': expects a 1-D "
                       r"per-sample input \(features,\), got input_shape "
                       r"\(2, 4, 4\); put a Flatten\(\) or GlobalAvgPool2D\(\)"):
        fastcnn.Sequential([Conv2D(2, 1), Dense(3)], input_shape=(1, 4, 4))
