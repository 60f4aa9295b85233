"""dropout and dropout_backward: the counter-based mask against an independent
Python-int SplitMix64, finite differences, statistics of the mask, PyTorch's scaling
semantics, properties, thread-count invariance and bad input."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcnn.functional as F

from .. import naive
from ..gradcheck import check_finite_differences
from ..threads import assert_thread_count_invariant

DTYPES = [np.float32, np.float64]


def _x(rng, shape, dtype=np.float64):
    """Values away from zero, so a zero in the output always means "dropped"."""
    magnitude = rng.uniform(0.5, 2.0, shape)
    return np.asarray(magnitude * rng.choice([-1.0, 1.0], shape)).astype(dtype)


def _scale(p, dtype):
    return np.dtype(dtype).type(1.0 / (1.0 - p))


# ----------------------------------------------------------------- reference and maths


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, p, seed", [
    ((3, 5), 0.5, 0),
    ((2, 3, 4, 5), 0.3, 12345),
    ((7,), 0.9, 2**64 - 1),
    ((2, 2, 3, 3), 0.1, 2**63 + 17),
])
def test_forward_and_backward_match_naive(dtype, shape, p, seed, rng):
    x = _x(rng, shape, dtype)
    expected = naive.dropout(x, p, True, seed)
    y = F.dropout(x, p, True, seed)
    assert y.dtype == dtype and y.shape == x.shape
    # The same arithmetic in the same dtype: bit for bit.
    np.testing.assert_array_equal(y, expected)
    dy = _x(rng, shape, dtype)
    dx = F.dropout_backward(dy, p, True, seed)
    np.testing.assert_array_equal(dx, naive.dropout(dy, p, True, seed))
    keep = naive.dropout_mask(shape, p, seed)
    np.testing.assert_array_equal(dx, np.where(keep, dy * _scale(p, dtype), 0))


def test_splitmix64_known_value():
    # First output of the reference SplitMix64 (Vigna's splitmix64.c) seeded with
    # 1234567 is 6457827717110365317.
    from fastcnn.kernels.cpu.dropout import GOLDEN, splitmix64

    assert int(splitmix64(np.uint64(1234567) + GOLDEN)) == 6457827717110365317
    assert naive.dropout_uniform(1234567, 0) == (6457827717110365317 >> 11) / 2.0**53


def test_uniform_helper_matches_python_ints():
    from fastcnn.kernels.cpu.dropout import uniform01

    for seed in (0, 1, 987654321, 2**63, 2**64 - 1):
        for index in (0, 1, 2, 99, 2**33 + 5):
            got = uniform01(np.uint64(seed), np.uint64(index))
            assert got == naive.dropout_uniform(seed, index), (seed, index)
            assert 0.0 <= got < 1.0


def test_finite_differences(rng):
    seed, p = 99, 0.4

    def forward(x):
        return F.dropout(x, p, True, seed)

    def backward(dy, x):
        return F.dropout_backward(dy, p, True, seed)

    check_finite_differences(forward, backward, {"x": _x(rng, (2, 3, 4, 4))}, ("x",),
                             rng)


def test_same_seed_same_mask_and_different_seed_different_mask(rng):
    x = _x(rng, (4, 3, 8, 8))
    a = F.dropout(x, 0.5, seed=7)
    np.testing.assert_array_equal(a, F.dropout(x, 0.5, seed=7))
    for other in (8, 7 + 2**32, 2**63 + 7):
        assert not np.array_equal(a == 0, F.dropout(x, 0.5, seed=other) == 0)


def test_mask_is_the_same_for_float32_and_float64(rng):
    x = _x(rng, (3, 4, 5, 6))
    y64 = F.dropout(x, 0.35, seed=5)
    y32 = F.dropout(x.astype(np.float32), 0.35, seed=5)
    np.testing.assert_array_equal(y64 == 0, y32 == 0)


def test_mask_depends_only_on_flat_index(rng):
    # A reshaped input gets the same mask in C order: the hash sees flat indices.
    x = _x(rng, (2, 3, 4, 5))
    np.testing.assert_array_equal(F.dropout(x, 0.5, seed=3).reshape(-1),
                                  F.dropout(x.reshape(-1), 0.5, seed=3))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_kept_fraction_and_mean_are_right(p):
    n = 200_000
    y = F.dropout(np.ones(n), p, seed=2024)
    kept = np.count_nonzero(y) / n
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(kept - (1 - p)) < 5 * sigma
    # E[y] = x: y is scale with probability 1-p, so its mean has sd sqrt(p/(1-p)/n).
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    assert set(np.unique(y)) == {0.0, 1.0 / (1.0 - p)}


def test_masks_look_independent():
    # Neighbouring elements and different seeds must not be correlated: the fraction
    # of pairs that are both kept is (1-p)^2 within 5 standard deviations.
    n, p = 200_000, 0.5
    a = F.dropout(np.ones(n), p, seed=1) != 0
    b = F.dropout(np.ones(n), p, seed=2) != 0
    want = (1 - p) ** 2
    sigma = np.sqrt(want * (1 - want) / n)
    assert abs(np.mean(a & b) - want) < 5 * sigma
    assert abs(np.mean(a[1:] & a[:-1]) - want) < 5 * sigma
    # Runs of 64 in a row show up the low-order structure of a weak hash.
    blocks = a[: n - n % 64].reshape(-1, 64).sum(axis=1)
    assert abs(blocks.mean() - 32) < 5 * np.sqrt(16 / blocks.size)
    assert abs(blocks.var() - 16) < 1.5


def test_seed_none_follows_numpy_global_rng(rng):
    x = _x(rng, (5, 40))
    np.random.seed(11)
    a = F.dropout(x, 0.5)
    np.random.seed(11)
    b = F.dropout(x, 0.5)
    np.testing.assert_array_equal(a, b)
    np.random.seed(12)
    assert not np.array_equal(a, F.dropout(x, 0.5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_eval_and_p_zero_return_a_copy(dtype, rng):
    x = _x(rng, (2, 3, 4), dtype)
    for kwargs in ({"training": False}, {"p": 0.0}, {"p": 0.0, "seed": 1}):
        y = F.dropout(x, **kwargs)
        np.testing.assert_array_equal(y, x)
        assert y.dtype == dtype and not np.shares_memory(y, x)
    dy = F.dropout_backward(x, 0.7, training=False)
    np.testing.assert_array_equal(dy, x)
    assert not np.shares_memory(dy, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_p_one_drops_everything(dtype, rng):
    x = _x(rng, (3, 4, 5), dtype)
    y = F.dropout(x, 1.0, seed=4)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.zeros_like(x))
    np.testing.assert_array_equal(F.dropout_backward(x, 1, True, 4), np.zeros_like(x))


def test_empty_and_zero_dimensional_inputs():
    empty = np.zeros((0, 3))
    assert F.dropout(empty, 0.5, seed=1).shape == (0, 3)
    scalar = np.array(2.0)
    y = F.dropout(scalar, 0.5, seed=1)
    assert y.shape == () and float(y) in (0.0, 4.0)


def test_non_contiguous_and_fortran_inputs(rng):
    x = _x(rng, (3, 4, 5, 6))
    expected = F.dropout(x, 0.5, seed=21)
    strided = np.ascontiguousarray(np.repeat(x, 2, axis=3))[..., ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(F.dropout(strided, 0.5, seed=21), expected)
    np.testing.assert_array_equal(F.dropout(np.asfortranarray(x), 0.5, seed=21),
                                  expected)
    np.testing.assert_array_equal(
        F.dropout_backward(np.asfortranarray(x), 0.5, True, 21),
        F.dropout_backward(x, 0.5, True, 21),
    )
    np.testing.assert_array_equal(F.dropout(strided, training=False), x)


def test_nan_propagates(rng):
    # Dropped elements are x * 0, so NaN stays NaN whether kept or dropped (as in
    # PyTorch) and inf becomes NaN where dropped.
    x = _x(rng, (4, 50))
    keep = naive.dropout_mask(x.shape, 0.5, 3)
    kept_at = np.argwhere(keep)[0]
    dropped_at = np.argwhere(~keep)[0]
    x[tuple(kept_at)] = np.nan
    x[tuple(dropped_at)] = np.nan
    y = F.dropout(x, 0.5, seed=3)
    assert np.isnan(y[tuple(kept_at)]) and np.isnan(y[tuple(dropped_at)])
    assert np.count_nonzero(np.isnan(y)) == 2
    assert np.count_nonzero(np.isnan(F.dropout_backward(x, 0.5, True, 3))) == 2
    assert np.isnan(F.dropout(x, 0.5, training=False)).sum() == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_invariance(dtype, rng):
    x = _x(rng, (8, 4, 16, 16), dtype)
    assert_thread_count_invariant(lambda: F.dropout(x, 0.3, seed=77), "dropout")
    assert_thread_count_invariant(lambda: F.dropout_backward(x, 0.3, True, 77),
                                  "dropout_backward")


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
    p=st.floats(0.0, 1.0),
    training=st.booleans(),
    seed=st.integers(0, 2**64 - 1),
    double=st.booleans(),
)
def test_property_random_configurations(shape, p, training, seed, double):
    dtype = np.float64 if double else np.float32
    x = _x(np.random.default_rng(seed % 2**32), tuple(shape), dtype)
    y = F.dropout(x, p, training, seed)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, naive.dropout(x, p, training, seed))
    np.testing.assert_array_equal(F.dropout_backward(x, p, training, seed), y)


# ------------------------------------------------------------------- PyTorch parity

TORCH_GRID = [(shape, p) for shape in [(64, 100), (8, 3, 10, 12)]
              for p in (0.1, 0.25, 0.5, 0.75, 0.9)]


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_scaling_semantics_match_pytorch(dtype, rng):
    """PyTorch draws another mask, so compare where both keep: values and gradients
    there are x * 1/(1-p) in both; and the kept fractions agree."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    # PyTorch's CPU path rounds 1-p to float32 before dividing; fastcnn rounds
    # 1/(1-p) once (as torch.ops.aten.native_dropout does): at most 1 ulp apart.
    rtol = 0.0 if dtype == np.float64 else 2.0**-23
    for shape, p in TORCH_GRID:
        x = _x(rng, shape, dtype)
        dy = _x(rng, shape, dtype)
        y = F.dropout(x, p, True, 5)
        dx = F.dropout_backward(dy, p, True, 5)
        tx = torch.tensor(x, requires_grad=True)
        ty = torch.nn.functional.dropout(tx, p, True)
        ty.backward(torch.tensor(dy))
        ty, tdx = ty.detach().numpy(), tx.grad.numpy()
        both = (y != 0) & (ty != 0)
        assert both.sum() > 0
        np.testing.assert_allclose(y[both], ty[both], rtol=rtol, atol=0)
        np.testing.assert_allclose(dx[both], tdx[both], rtol=rtol, atol=0)
        np.testing.assert_array_equal(tdx == 0, ty == 0)
        np.testing.assert_array_equal(dx == 0, y == 0)
        sigma = np.sqrt(p * (1 - p) / x.size)
        assert abs(np.mean(y != 0) - np.mean(ty != 0)) < 8 * sigma
        # With our mask, PyTorch's own dropout backward gives our gradient exactly.
        mask = torch.tensor(y != 0)
        want = torch.ops.aten.native_dropout_backward(torch.tensor(dy), mask,
                                                      1.0 / (1.0 - p))
        np.testing.assert_array_equal(dx, want.numpy())
    for p, training in ((0.0, True), (0.5, False), (1.0, True)):
        x = _x(rng, (4, 5), dtype)
        want = torch.nn.functional.dropout(torch.tensor(x), p, training).numpy()
        np.testing.assert_array_equal(F.dropout(x, p, training, 1), want)


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), float("inf")])
def test_rejects_p_out_of_range(p):
    with pytest.raises(ValueError, match=rf"dropout: p must be .*\[0.0, 1.0\], got "
                       rf"{re.escape(repr(p))}"):
        F.dropout(np.ones(3), p, seed=1)
    with pytest.raises(ValueError, match=r"dropout_backward: p must be"):
        F.dropout_backward(np.ones(3), p, True, 1)


@pytest.mark.parametrize("p", ["0.5", None, True, [0.5]])
def test_rejects_badly_typed_p(p):
    with pytest.raises(TypeError, match=r"dropout: p must be a real number"):
        F.dropout(np.ones(3), p, seed=1)


@pytest.mark.parametrize("training", [1, "yes", None, 0.0])
def test_rejects_non_bool_training(training):
    with pytest.raises(TypeError, match=r"dropout: training must be a bool"):
        F.dropout(np.ones(3), 0.5, training, 1)
    with pytest.raises(TypeError, match=r"dropout_backward: training must be a bool"):
        F.dropout_backward(np.ones(3), 0.5, training, 1)


@pytest.mark.parametrize("seed", [1.5, "1", True, np.float64(3.0)])
def test_rejects_badly_typed_seed(seed):
    with pytest.raises(TypeError, match=r"dropout: seed must be an int, got"):
        F.dropout(np.ones(3), 0.5, seed=seed)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_rejects_seed_out_of_range(seed):
    with pytest.raises(ValueError, match=rf"dropout: seed must lie in \[0, 2\*\*64\), "
                       rf"got {seed}"):
        F.dropout(np.ones(3), 0.5, seed=seed)
    with pytest.raises(ValueError, match=r"dropout_backward: seed must lie"):
        F.dropout_backward(np.ones(3), 0.5, True, seed)


def test_backward_requires_seed_when_training():
    with pytest.raises(TypeError, match=r"dropout_backward: seed is required"):
        F.dropout_backward(np.ones(3), 0.5)


def test_accepts_numpy_integer_seed(rng):
    x = _x(rng, (3, 4))
    np.testing.assert_array_equal(F.dropout(x, seed=np.uint64(9)),
                                  F.dropout(x, seed=9))


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.float16, np.complex128])
def test_rejects_non_float_dtypes(dtype):
    with pytest.raises(TypeError, match=rf"dropout: x must have dtype float32 or "
                       rf"float64, got {np.dtype(dtype)}"):
        F.dropout(np.ones(3, dtype), seed=1)
    with pytest.raises(TypeError, match=r"dropout_backward: dy must have dtype"):
        F.dropout_backward(np.ones(3, dtype), seed=1)


def test_rejects_non_arrays():
    with pytest.raises(TypeError, match=r"dropout: x must be a numpy.ndarray.*got "
                       r"list"):
        F.dropout([1.0, 2.0], seed=1)
