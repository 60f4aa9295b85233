"""linear and linear_backward: references, finite differences, PyTorch, properties,
thread-count invariance and bad input."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcnn.functional as F

from .. import naive
from ..gradcheck import assert_close, check_finite_differences, max_rel_error
from ..threads import assert_thread_count_invariant


def _random_case(rng, n, c_in, c_out, dtype=np.float64):
    x = rng.standard_normal((n, c_in)).astype(dtype)
    w = rng.standard_normal((c_out, c_in)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b


# (n, in, out); 300 outputs spans many DOT_BLOCKs of the forward kernel and three
# COLUMN_BLOCKs of the backward ones; 9 samples and 7 outputs leave short blocks.
CASES = [(1, 1, 1), (3, 5, 4), (2, 7, 300), (5, 2, 3), (9, 37, 7)]


@pytest.mark.parametrize("case", CASES)
def test_forward_and_backward_match_naive(case, rng):
    x, w, b = _random_case(rng, *case)
    y = F.linear(x, w, b)
    assert_close(y, naive.linear(x, w, b), 1e-12, 1e-12, "y")
    dy = rng.standard_normal(y.shape)
    got = F.linear_backward(dy, x, w)
    want = naive.linear_backward(dy, x, w)
    for name, g, e in zip(("dx", "dweight", "dbias"), got, want, strict=True):
        assert_close(g, e, 1e-12, 1e-12, name)


def test_float32_matches_naive(rng):
    x, w, b = _random_case(rng, 4, 9, 130, dtype=np.float32)
    y = F.linear(x, w, b)
    assert y.dtype == np.float32
    assert_close(y, naive.linear(x, w, b), 1e-5, 1e-5, "y")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = F.linear_backward(dy, x, w)
    want = naive.linear_backward(dy, x, w)
    for name, g, e in zip(("dx", "dweight", "dbias"), got, want, strict=True):
        assert g.dtype == np.float32
        assert_close(g, e, 1e-5, 1e-5, name)


@pytest.mark.parametrize("case", CASES[:2] + [(3, 4, 2)])
def test_finite_differences(case, rng):
    x, w, b = _random_case(rng, *case)

    def forward(x, weight, bias):
        return F.linear(x, weight, bias)

    def backward(dy, x, weight, bias):
        return F.linear_backward(dy, x, weight)

    check_finite_differences(forward, backward, {"x": x, "weight": w, "bias": b},
                             ("x", "weight", "bias"), rng)


def test_no_bias_equals_zero_bias(rng):
    x, w, _ = _random_case(rng, 3, 4, 5)
    np.testing.assert_array_equal(F.linear(x, w), F.linear(x, w, np.zeros(5)))


def test_non_contiguous_and_fortran_inputs(rng):
    x, w, b = _random_case(rng, 4, 6, 5)
    expected = F.linear(x, w, b)
    strided = np.repeat(x, 2, axis=1)[:, ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(F.linear(strided, w, b), expected)
    np.testing.assert_array_equal(
        F.linear(np.asfortranarray(x), np.asfortranarray(w), b[::-1][::-1]), expected
    )
    dy = rng.standard_normal(expected.shape)
    want = F.linear_backward(dy, x, w)
    got = F.linear_backward(np.asfortranarray(dy), np.asfortranarray(x), w.T.copy().T)
    for a, e in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, e)


def test_nan_propagates(rng):
    x, w, b = _random_case(rng, 3, 4, 5)
    x[1, 2] = np.nan
    y = F.linear(x, w, b)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    dx, dw, db = F.linear_backward(np.ones_like(y), x, w)
    assert np.isnan(dw[:, 2]).all() and np.isfinite(dx).all() and np.isfinite(db).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_does_not_depend_on_neighbouring_samples_or_outputs(dtype, rng):
    """Each output is one dot product in one order, wherever it falls in the
    kernel's blocks (a short last block repeats a row rather than taking another
    path): a sample alone, or the outputs reordered, give the same bits."""
    x, w, b = _random_case(rng, 11, 203, 37, dtype)
    y = F.linear(x, w, b)
    for i in range(x.shape[0]):
        assert F.linear(x[i : i + 1], w, b).tobytes() == y[i : i + 1].tobytes()
    order = rng.permutation(w.shape[0])
    reordered = F.linear(x[::-1].copy(), w[order].copy(), b[order].copy())
    assert reordered.tobytes() == y[::-1][:, order].copy().tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_invariance(dtype, rng):
    # Several forward blocks per row and enough rows/outputs for both threads.
    x, w, b = _random_case(rng, 5, 33, 290, dtype=dtype)
    dy = rng.standard_normal((5, 290)).astype(dtype)
    assert_thread_count_invariant(lambda: F.linear(x, w, b), "linear")
    assert_thread_count_invariant(lambda: F.linear_backward(dy, x, w),
                                  "linear_backward")


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), c_in=st.integers(1, 9), c_out=st.integers(1, 9),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_property_random_configurations(n, c_in, c_out, bias, seed):
    r = np.random.default_rng(seed)
    x, w, b = _random_case(r, n, c_in, c_out)
    b = b if bias else None
    assert_close(F.linear(x, w, b), naive.linear(x, w, b), 1e-12, 1e-12, "y")
    dy = r.standard_normal((n, c_out))
    for g, e in zip(F.linear_backward(dy, x, w), naive.linear_backward(dy, x, w),
                    strict=True):
        assert_close(g, e, 1e-12, 1e-12)


# ------------------------------------------------------------------- PyTorch parity

TORCH_GRID = list(itertools.product([1, 3, 8], [1, 5, 64], [1, 10, 129], [True, False]))


@pytest.mark.torch
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_matches_pytorch_over_grid(dtype, tol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    worst = {"y": (0.0, 0.0), "grad": (0.0, 0.0)}
    for n, c_in, c_out, use_bias in TORCH_GRID:
        x, w, b = _random_case(rng, n, c_in, c_out, dtype)
        b = b if use_bias else None
        y = F.linear(x, w, b)
        dy = rng.standard_normal(y.shape).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        tw = torch.tensor(w, requires_grad=True)
        tb = torch.tensor(b if use_bias else np.zeros(c_out, dtype), requires_grad=True)
        ty = torch.nn.functional.linear(tx, tw, tb if use_bias else None)
        ty.backward(torch.tensor(dy))
        what = f"case {(n, c_in, c_out, use_bias)}"
        pairs = [("y", y, ty.detach().numpy())]
        got = F.linear_backward(dy, x, w)
        pairs += [("dx", got[0], tx.grad.numpy()), ("dw", got[1], tw.grad.numpy())]
        if use_bias:
            pairs.append(("db", got[2], tb.grad.numpy()))
        for name, a, e in pairs:
            assert_close(a, e, tol, tol, f"{what} {name}")
            key = "y" if name == "y" else "grad"
            err = (float(np.max(np.abs(a - e))), max_rel_error(a, e))
            worst[key] = tuple(map(max, worst[key], err))
    print(f"linear {np.dtype(dtype)} worst (abs, rel) vs torch: {worst}")
    assert len(TORCH_GRID) == 54


# ----------------------------------------------------------------------- bad input


def _ok():
    return np.zeros((2, 4)), np.zeros((3, 4))


def test_rejects_wrong_ndim():
    # x and dy may have any ndim >= 1 (tests/ops/test_linear_nd.py), not 0.
    x, w = _ok()
    with pytest.raises(ValueError, match=r"linear: x must have at least 1 dim"):
        F.linear(np.zeros(()), w)
    with pytest.raises(ValueError, match=r"linear: weight must be 2-D, got 3-D"):
        F.linear(x, w[None])
    with pytest.raises(ValueError, match=r"linear: bias must be 1-D, got 2-D"):
        F.linear(x, w, np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"linear_backward: dy must have shape "
                       r"\(2, 3\), got \(3,\)"):
        F.linear_backward(np.zeros(3), x, w)
    with pytest.raises(ValueError, match=r"linear_backward: x must have at least"):
        F.linear_backward(np.zeros(3), np.zeros(()), w)


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.float16])
def test_rejects_non_float_dtypes(dtype):
    x, w = _ok()
    with pytest.raises(TypeError, match=rf"linear: x must have dtype float32 or "
                       rf"float64, got {np.dtype(dtype)}"):
        F.linear(x.astype(dtype), w)
    with pytest.raises(TypeError, match=r"linear: weight must have dtype"):
        F.linear(x, w.astype(dtype))


def test_rejects_mismatched_dtypes():
    x, w = _ok()
    with pytest.raises(TypeError, match=r"weight has dtype float32 but x has dtype "
                       r"float64"):
        F.linear(x, w.astype(np.float32))
    with pytest.raises(TypeError, match=r"bias has dtype float32"):
        F.linear(x, w, np.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"linear_backward: dy has dtype float32"):
        F.linear_backward(np.zeros((2, 3), np.float32), x, w)


def test_rejects_feature_mismatch():
    x, _ = _ok()
    with pytest.raises(ValueError, match=r"linear: weight has 5 input features .* but "
                       r"x has 4"):
        F.linear(x, np.zeros((3, 5)))


def test_rejects_bad_bias_shape():
    x, w = _ok()
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\), got \(4,\)"):
        F.linear(x, w, np.zeros(4))


def test_rejects_wrong_dy_shape():
    x, w = _ok()
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\), got \(2, 4\)"):
        F.linear_backward(np.zeros((2, 4)), x, w)


def test_empty_batch_and_zero_width():
    # As in PyTorch; tests/ops/test_zero_size.py compares every case with it.
    x, w = _ok()
    assert F.linear(x[:0], w).shape == (0, 3)
    dx, dw, db = F.linear_backward(np.zeros((0, 3)), x[:0], w)
    assert dx.shape == (0, 4) and not dw.any() and not db.any()
    bias = np.arange(3.0)
    np.testing.assert_array_equal(F.linear(np.zeros((2, 0)), np.zeros((3, 0)), bias),
                                  [bias, bias])
    assert F.linear(x, np.zeros((0, 4))).shape == (2, 0)


def test_rejects_non_arrays():
    _, w = _ok()
    with pytest.raises(TypeError, match=r"linear: x must be a numpy.ndarray.*got list"):
        F.linear([[1.0, 2.0, 3.0, 4.0]], w)
