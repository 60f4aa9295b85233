"""batch_norm and batch_norm_backward: references, finite differences, PyTorch
(outputs, gradients and running statistics), properties, thread-count invariance and
bad input."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcnn.functional as F

from .. import naive
from ..gradcheck import assert_close, check_finite_differences, max_rel_error
from ..threads import assert_thread_count_invariant

DTYPES = [np.float32, np.float64]
SHAPES = [(5, 3), (2, 3, 4, 5), (3, 2, 1, 1), (1, 4, 2, 3), (3, 2, 5), (2, 4, 1)]


def _case(rng, shape, dtype=np.float64, affine=True):
    """x with a per-channel offset and spread (so the statistics matter), running
    statistics, and weight and bias (None where not ``affine``)."""
    c = shape[1]
    where = (1, c) + (1,) * (len(shape) - 2)
    offset = rng.uniform(-3, 3, c).reshape(where)
    spread = rng.uniform(0.5, 2, c).reshape(where)
    x = (rng.standard_normal(shape) * spread + offset).astype(dtype)
    rm = rng.standard_normal(c).astype(dtype)
    rv = rng.uniform(0.5, 2.0, c).astype(dtype)
    w = rng.standard_normal(c).astype(dtype) if affine else None
    b = rng.standard_normal(c).astype(dtype) if affine else None
    return x, rm, rv, w, b


def _check_against_naive(rng, shape, dtype, training, affine, momentum, eps, tol):
    x, rm, rv, w, b = _case(rng, shape, dtype, affine)
    y_ref, rm_ref, rv_ref = naive.batch_norm(x, rm, rv, w, b, training, momentum, eps)
    dy = rng.standard_normal(shape).astype(dtype)
    grads_ref = naive.batch_norm_backward(dy, x, rm, rv, w, training, eps)
    rm_run, rv_run = rm.copy(), rv.copy()
    y = F.batch_norm(x, rm_run, rv_run, w, b, training, momentum, eps)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, y_ref, tol, tol, "y")
    assert_close(rm_run, rm_ref, tol, tol, "running_mean")
    assert_close(rv_run, rv_ref, tol, tol, "running_var")
    grads = F.batch_norm_backward(dy, x, rm, rv, w, training, eps)
    for name, got, want in zip(("dx", "dweight", "dbias"), grads, grads_ref,
                               strict=True):
        assert got.dtype == dtype
        assert_close(got, want, tol, tol, name)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_forward_and_backward_match_naive(shape, training, affine, rng):
    if training and shape[0] * int(np.prod(shape[2:])) == 1:
        pytest.skip("one value per channel cannot train")
    _check_against_naive(rng, shape, np.float64, training, affine, 0.1, 1e-5, 1e-12)


@pytest.mark.parametrize("training", [True, False])
def test_float32_matches_naive(training, rng):
    _check_against_naive(rng, (4, 3, 5, 6), np.float32, training, True, 0.3, 1e-3,
                         1e-5)


@pytest.mark.parametrize("shape", [(4, 3), (2, 2, 3, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_finite_differences(shape, training, rng):
    x, rm, rv, w, b = _case(rng, shape)

    def forward(x, weight, bias):
        # Copies: the training forward updates running statistics in place, and the
        # check calls it many times.
        return F.batch_norm(x, rm.copy(), rv.copy(), weight, bias, training, 0.1,
                            1e-5)

    def backward(dy, x, weight, bias):
        return F.batch_norm_backward(dy, x, rm, rv, weight, training, 1e-5)

    check_finite_differences(forward, backward, {"x": x, "weight": w, "bias": b},
                             ("x", "weight", "bias"), rng, atol=1e-6)


def test_training_output_is_standardised(rng):
    x, rm, rv, _, _ = _case(rng, (8, 3, 4, 4))
    y = F.batch_norm(x, rm, rv, training=True, eps=1e-12)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-9)


def test_eval_uses_running_statistics(rng):
    x, rm, rv, w, b = _case(rng, (3, 4))
    y = F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-3)
    np.testing.assert_allclose(y, (x - rm) / np.sqrt(rv + 1e-3) * w + b, rtol=1e-13)
    dx, dw, db = F.batch_norm_backward(np.ones_like(x), x, rm, rv, w, False, 1e-3)
    np.testing.assert_allclose(dx, np.broadcast_to(w / np.sqrt(rv + 1e-3), x.shape),
                               rtol=1e-13)


def test_running_statistics_are_updated_in_place(rng):
    x, rm, rv, _, _ = _case(rng, (6, 3, 2, 2))
    rm_id, rv_id = id(rm), id(rv)
    batch_mean = x.mean(axis=(0, 2, 3))
    batch_var = x.var(axis=(0, 2, 3), ddof=1)
    want_m = 0.75 * rm + 0.25 * batch_mean
    want_v = 0.75 * rv + 0.25 * batch_var
    F.batch_norm(x, rm, rv, training=True, momentum=0.25)
    assert id(rm) == rm_id and id(rv) == rv_id
    np.testing.assert_allclose(rm, want_m, rtol=1e-13)
    np.testing.assert_allclose(rv, want_v, rtol=1e-13)
    before = rm.copy(), rv.copy()
    F.batch_norm(x, rm, rv, training=True, momentum=0.0)
    np.testing.assert_array_equal(rm, before[0])
    np.testing.assert_array_equal(rv, before[1])
    F.batch_norm(x, rm, rv, training=True, momentum=1.0)
    np.testing.assert_allclose(rm, batch_mean, rtol=1e-13)
    np.testing.assert_allclose(rv, batch_var, rtol=1e-13)
    # Evaluation leaves them alone.
    before = rm.copy(), rv.copy()
    F.batch_norm(x, rm, rv, training=False)
    np.testing.assert_array_equal(rm, before[0])
    np.testing.assert_array_equal(rv, before[1])


def test_training_without_running_statistics(rng):
    x, rm, rv, w, b = _case(rng, (4, 3, 2, 2))
    want = F.batch_norm(x, rm.copy(), rv.copy(), w, b, training=True)
    np.testing.assert_array_equal(F.batch_norm(x, None, None, w, b, True), want)
    dy = rng.standard_normal(x.shape)
    got = F.batch_norm_backward(dy, x, None, None, w, training=True)
    for a, e in zip(got, F.batch_norm_backward(dy, x, rm, rv, w, True), strict=True):
        np.testing.assert_array_equal(a, e)


def test_no_weight_equals_unit_weight(rng):
    x, rm, rv, _, _ = _case(rng, (4, 3))
    ones, zeros = np.ones(3), np.zeros(3)
    for training in (True, False):
        np.testing.assert_array_equal(
            F.batch_norm(x, rm.copy(), rv.copy(), training=training),
            F.batch_norm(x, rm.copy(), rv.copy(), ones, zeros, training),
        )
        dy = rng.standard_normal(x.shape)
        for a, e in zip(F.batch_norm_backward(dy, x, rm, rv, None, training),
                        F.batch_norm_backward(dy, x, rm, rv, ones, training),
                        strict=True):
            np.testing.assert_array_equal(a, e)


def test_accurate_with_a_large_mean(rng):
    # Two-pass statistics: a mean 1e4 times the spread still normalises to ~1e-12.
    x = rng.standard_normal((50, 2, 3, 3)) + 1e4
    y = F.batch_norm(x, None, None, training=True, eps=1e-12)
    ref = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / x.std(axis=(0, 2, 3),
                                                              keepdims=True)
    np.testing.assert_allclose(y, ref, atol=1e-9)
    y32 = F.batch_norm(x.astype(np.float32), None, None, training=True, eps=1e-12)
    ref32 = naive.batch_norm(x.astype(np.float32), None, None, None, None, True, 0.1,
                             1e-12)[0]
    np.testing.assert_allclose(y32, ref32, atol=1e-5)


def test_non_contiguous_and_fortran_inputs(rng):
    x, rm, rv, w, b = _case(rng, (3, 4, 5, 6))
    rm_want, rv_want = rm.copy(), rv.copy()
    want = F.batch_norm(x, rm_want, rv_want, w, b, True)
    # Strided running statistics (a view into a larger buffer) are updated in place.
    buf_m = np.zeros(8)
    buf_v = np.zeros(8)
    buf_m[::2], buf_v[::2] = rm, rv
    strided = np.ascontiguousarray(np.repeat(x, 2, axis=3))[..., ::2]
    assert not strided.flags.c_contiguous
    got = F.batch_norm(strided, buf_m[::2], buf_v[::2], np.repeat(w, 2)[::2], b, True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(buf_m[::2], rm_want)
    np.testing.assert_array_equal(buf_v[::2], rv_want)
    assert not buf_m[1::2].any() and not buf_v[1::2].any()
    np.testing.assert_array_equal(
        F.batch_norm(np.asfortranarray(x), rm.copy(), rv.copy(), w, b, True), want
    )
    dy = rng.standard_normal(x.shape)
    for training in (True, False):
        wanted = F.batch_norm_backward(dy, x, rm, rv, w, training)
        got = F.batch_norm_backward(np.asfortranarray(dy), np.asfortranarray(x),
                                    rm, rv, w, training)
        for a, e in zip(got, wanted, strict=True):
            np.testing.assert_array_equal(a, e)
    x2 = np.asfortranarray(rng.standard_normal((5, 3)))
    np.testing.assert_array_equal(F.batch_norm(x2, rm[:3], rv[:3]),
                                  F.batch_norm(np.ascontiguousarray(x2), rm[:3],
                                               rv[:3]))


def test_nan_propagates(rng):
    x, rm, rv, w, b = _case(rng, (3, 3, 2, 2))
    x[1, 0, 1, 1] = np.nan
    y = F.batch_norm(x, rm, rv, w, b, training=True)
    # A NaN poisons its channel's statistics, hence the whole channel, as in torch.
    assert np.isnan(y[:, 0]).all() and np.isfinite(y[:, 1:]).all()
    assert np.isnan(rm[0]) and np.isnan(rv[0]) and np.isfinite(rm[1:]).all()
    dx, dw, db = F.batch_norm_backward(np.ones_like(x), x, None, None, w, True)
    assert np.isnan(dx[:, 0]).all() and np.isfinite(dx[:, 1:]).all()
    assert np.isnan(dw[0]) and np.isfinite(db).all()
    _, rm, rv, _, _ = _case(rng, (3, 3, 2, 2))
    y = F.batch_norm(x, rm, rv, w, b, training=False)
    assert np.isnan(y).sum() == 1 and np.isnan(y[1, 0, 1, 1])


def test_negative_running_variance_gives_nan_quietly(rng):
    # PyTorch returns NaN there without complaint; so do we (no RuntimeWarning,
    # which pytest would turn into an error).
    x, rm, rv, _, _ = _case(rng, (4, 3, 2, 2))
    rv[1] = -1.0
    y = F.batch_norm(x, rm, rv)
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all()
    dx, _, _ = F.batch_norm_backward(x, x, rm, rv)
    assert np.isnan(dx[:, 1]).all() and np.isfinite(dx[:, [0, 2]]).all()

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 8), (6, 8, 9, 7)])
def test_thread_count_invariance(dtype, shape, rng):
    x, rm, rv, w, b = _case(rng, shape, dtype)
    dy = rng.standard_normal(shape).astype(dtype)

    def train_step():
        m, v = rm.copy(), rv.copy()
        return F.batch_norm(x, m, v, w, b, True), m, v

    assert_thread_count_invariant(train_step, "batch_norm training")
    assert_thread_count_invariant(lambda: F.batch_norm(x, rm, rv, w, b, False),
                                  "batch_norm eval")
    for training in (True, False):
        assert_thread_count_invariant(
            lambda t=training: F.batch_norm_backward(dy, x, rm, rv, w, t),
            f"batch_norm_backward training={training}",
        )


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4), c=st.integers(1, 4),
    hw=st.sampled_from([None, (1, 1), (2, 3), (4, 1), (1,), (3,)]),
    training=st.booleans(), affine=st.booleans(), momentum=st.floats(0.0, 1.0),
    eps=st.floats(1e-8, 1.0), seed=st.integers(0, 2**16),
)
def test_property_random_configurations(n, c, hw, training, affine, momentum, eps,
                                        seed):
    shape = (n, c) if hw is None else (n, c, *hw)
    rng = np.random.default_rng(seed)
    if training and n * (1 if hw is None else int(np.prod(hw))) == 1:
        x, rm, rv, w, b = _case(rng, shape)
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            F.batch_norm(x, rm, rv, w, b, training, momentum, eps)
        return
    _check_against_naive(rng, shape, np.float64, training, affine, momentum, eps,
                         1e-10)


# ------------------------------------------------------------------- PyTorch parity

TORCH_GRID = list(itertools.product(
    [(6, 4), (2, 3, 5, 4), (4, 2, 3, 3), (3, 5, 1, 2), (4, 3, 5)],  # shape
    [True, False],  # training
    [True, False],  # affine
    [0.1, 0.5],  # momentum
    [1e-5, 1e-2],  # eps
))
WORST = {}  # dtype name -> {"forward"/"grad": (max abs, max rel)}, filled by the test


def _torch_batch_norm(torch, x, rm, rv, w, b, training, momentum, eps, dy):
    tx = torch.tensor(x, requires_grad=True)
    c = x.shape[1]
    # fastcnn returns dweight/dbias as if weight were ones; ask torch for the same.
    tw = torch.tensor(np.ones(c, x.dtype) if w is None else w, requires_grad=True)
    tb = torch.tensor(np.zeros(c, x.dtype) if b is None else b, requires_grad=True)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    ty = torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training, momentum, eps)
    ty.backward(torch.tensor(dy))
    return (ty.detach().numpy(), trm.numpy(), trv.numpy(), tx.grad.numpy(),
            tw.grad.numpy(), tb.grad.numpy())


def _errors(got, want):
    """(max abs error, max abs error / max(1, max |want|))."""
    err = float(np.max(np.abs(np.asarray(got, np.float64) - want)))
    return err, max_rel_error(got, want)


@pytest.mark.torch
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_matches_pytorch_over_grid(dtype, tol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    worst = {"forward": (0.0, 0.0), "grad": (0.0, 0.0)}
    compared = 0
    for shape, training, affine, momentum, eps in TORCH_GRID:
        _, rm, rv, w, b = _case(rng, shape, dtype, affine)
        # Two steps on two batches: the second starts from updated running stats.
        for step in range(2):
            x = _case(rng, shape, dtype)[0]
            dy = rng.standard_normal(shape).astype(dtype)
            rm_in, rv_in = rm.copy(), rv.copy()
            want = _torch_batch_norm(torch, x, rm_in, rv_in, w, b, training,
                                     momentum, eps, dy)
            got = (F.batch_norm(x, rm, rv, w, b, training, momentum, eps), rm, rv,
                   *F.batch_norm_backward(dy, x, rm_in, rv_in, w, training, eps))
            names = ("y", "running_mean", "running_var", "dx", "dweight", "dbias")
            what = f"case {(shape, training, affine, momentum, eps)} step {step}"
            for i, (name, a, e) in enumerate(zip(names, got, want, strict=True)):
                assert a.dtype == dtype
                assert_close(a, e, tol, tol, f"{what} {name}")
                kind = "forward" if i < 3 else "grad"
                worst[kind] = tuple(map(max, worst[kind], _errors(a, e)))
        compared += 1
    WORST[np.dtype(dtype).name] = worst
    assert compared == len(TORCH_GRID) == 80


# ----------------------------------------------------------------------- bad input


def _ok(shape=(4, 3, 2, 2), dtype=np.float64):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    c = shape[1]
    return x, np.zeros(c, dtype), np.ones(c, dtype)


@pytest.mark.parametrize("shape", [(4,), (2, 3, 2, 2, 2)])
def test_rejects_wrong_ndim(shape):
    x = np.zeros(shape)
    with pytest.raises(ValueError, match=rf"batch_norm: x must be 2-D or 3-D or 4-D, "
                       rf"got {len(shape)}-D"):
        F.batch_norm(x, np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"batch_norm_backward: x must be 2-D or 3-D "
                       r"or 4-D"):
        F.batch_norm_backward(x, x, np.zeros(3), np.ones(3))


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.float16])
def test_rejects_non_float_dtypes(dtype):
    x, rm, rv = _ok()
    with pytest.raises(TypeError, match=rf"batch_norm: x must have dtype float32 or "
                       rf"float64, got {np.dtype(dtype)}"):
        F.batch_norm(x.astype(dtype), rm, rv)
    with pytest.raises(TypeError, match=r"running_mean must have dtype float32"):
        F.batch_norm(x, rm.astype(dtype), rv)


@pytest.mark.parametrize("name", ["running_mean", "running_var", "weight", "bias"])
def test_rejects_mismatched_parameter_dtypes(name):
    x, rm, rv = _ok()
    args = {"running_mean": rm, "running_var": rv, "weight": np.ones(3),
            "bias": np.zeros(3)}
    args[name] = args[name].astype(np.float32)
    with pytest.raises(TypeError, match=rf"batch_norm: {name} has dtype float32 but "
                       rf"x has dtype float64"):
        F.batch_norm(x, **args)


def test_backward_rejects_mismatched_dy():
    x, rm, rv = _ok()
    with pytest.raises(TypeError, match=r"batch_norm_backward: dy has dtype float32 "
                       r"but x has dtype float64"):
        F.batch_norm_backward(x.astype(np.float32), x, rm, rv)
    with pytest.raises(ValueError, match=r"batch_norm_backward: dy must have shape "
                       r"\(4, 3, 2, 2\), got \(4, 3, 2, 1\)"):
        F.batch_norm_backward(x[..., :1], x, rm, rv)


@pytest.mark.parametrize("name", ["running_mean", "running_var", "weight", "bias"])
def test_rejects_wrong_parameter_shape(name):
    x, rm, rv = _ok()
    args = {"running_mean": rm, "running_var": rv}
    args[name] = np.zeros(4)
    with pytest.raises(ValueError, match=rf"batch_norm: {name} must have shape "
                       rf"\(3,\), got \(4,\)"):
        F.batch_norm(x, **args)
    args[name] = np.zeros((3, 1))
    with pytest.raises(ValueError, match=rf"batch_norm: {name} must be 1-D, got 2-D"):
        F.batch_norm(x, **args)


@pytest.mark.parametrize("momentum", [-0.1, 1.5, float("nan")])
def test_rejects_momentum_out_of_range(momentum):
    x, rm, rv = _ok()
    with pytest.raises(ValueError, match=r"batch_norm: momentum must be a finite "
                       r"number in \[0.0, 1.0\]"):
        F.batch_norm(x, rm, rv, training=True, momentum=momentum)


@pytest.mark.parametrize("momentum", [None, "0.1", True])
def test_rejects_badly_typed_momentum(momentum):
    x, rm, rv = _ok()
    with pytest.raises(TypeError, match=r"batch_norm: momentum must be a real number"):
        F.batch_norm(x, rm, rv, training=True, momentum=momentum)


@pytest.mark.parametrize("eps", [0.0, -1e-5, float("inf")])
def test_rejects_non_positive_eps(eps):
    x, rm, rv = _ok()
    with pytest.raises(ValueError, match=r"batch_norm: eps must be a finite number in "
                       r"\(0.0, inf\]"):
        F.batch_norm(x, rm, rv, eps=eps)
    with pytest.raises(ValueError, match=r"batch_norm_backward: eps must be"):
        F.batch_norm_backward(x, x, rm, rv, eps=eps)


def test_rejects_badly_typed_eps():
    x, rm, rv = _ok()
    with pytest.raises(TypeError, match=r"batch_norm: eps must be a real number, got "
                       r"'1e-5'"):
        F.batch_norm(x, rm, rv, eps="1e-5")


@pytest.mark.parametrize("training", [1, None, "True"])
def test_rejects_non_bool_training(training):
    x, rm, rv = _ok()
    with pytest.raises(TypeError, match=r"batch_norm: training must be a bool"):
        F.batch_norm(x, rm, rv, training=training)
    with pytest.raises(TypeError, match=r"batch_norm_backward: training must be a "
                       r"bool"):
        F.batch_norm_backward(x, x, rm, rv, training=training)


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1, 1)])
def test_rejects_single_value_per_channel_when_training(shape):
    x, rm, rv = _ok(shape)
    with pytest.raises(ValueError, match=r"batch_norm: expected more than 1 value per "
                       r"channel when training, got x of shape"):
        F.batch_norm(x, rm, rv, training=True)
    with pytest.raises(ValueError, match=r"batch_norm_backward: expected more than 1"):
        F.batch_norm_backward(x, x, rm, rv, training=True)
    # Evaluation needs no batch statistics, so one value is fine there (as in torch).
    assert F.batch_norm(x, rm, rv, training=False).shape == shape


def test_empty_input_gives_empty_output_and_keeps_running_statistics():
    # As in PyTorch; tests/ops/test_zero_size.py compares every case with it.
    x, rm, rv = _ok()
    before = rm.copy(), rv.copy()
    assert F.batch_norm(x[:0], rm, rv).shape == x[:0].shape
    assert F.batch_norm(x[:, :, :0], rm, rv, training=True).shape == x[:, :, :0].shape
    np.testing.assert_array_equal(rm, before[0])
    np.testing.assert_array_equal(rv, before[1])
    dx, dw, db = F.batch_norm_backward(x[:0], x[:0], rm, rv)
    assert dx.shape == x[:0].shape and not dw.any() and not db.any()


def test_rejects_missing_running_statistics_in_eval():
    x, rm, rv = _ok()
    with pytest.raises(ValueError, match=r"batch_norm: running_mean is required when "
                       r"training=False"):
        F.batch_norm(x, None, None)
    with pytest.raises(ValueError, match=r"batch_norm_backward: running_var is "
                       r"required"):
        F.batch_norm_backward(x, x, rm, None)


def test_rejects_one_running_statistic_without_the_other():
    x, rm, _ = _ok()
    with pytest.raises(ValueError, match=r"batch_norm: running_mean and running_var "
                       r"must both be arrays or both be None"):
        F.batch_norm(x, rm, None, training=True)


def test_rejects_read_only_running_statistics_when_training():
    x, rm, rv = _ok()
    rv.flags.writeable = False
    with pytest.raises(ValueError, match=r"batch_norm: running_var is read-only"):
        F.batch_norm(x, rm, rv, training=True)
    assert not rm.any()  # nothing was written before the error
    F.batch_norm(x, rm, rv, training=False)  # reading them is fine


def test_rejects_non_arrays():
    x, rm, rv = _ok()
    with pytest.raises(TypeError, match=r"batch_norm: running_mean must be a "
                       r"numpy.ndarray.*got list"):
        F.batch_norm(x, [0.0, 0.0, 0.0], rv)
    with pytest.raises(TypeError, match=r"batch_norm: x must be a numpy.ndarray"):
        F.batch_norm(x.tolist(), rm, rv)



@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (3, 5, 4, 2)])
def test_saved_stats_give_the_same_gradients(shape, training, rng):
    """return_stats gives what normalised y; backward with them skips the pass over
    x and must agree with recomputing, bit for bit."""
    x = rng.standard_normal(shape) * 3 + 1
    dy = rng.standard_normal(shape)
    c = shape[1]
    weight, bias = rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = rng.standard_normal(c), rng.random(c) + 0.5
    y, stats = F.batch_norm(x, rm.copy(), rv.copy(), weight, bias, training=training,
                            return_stats=True)
    np.testing.assert_array_equal(
        y, F.batch_norm(x, rm.copy(), rv.copy(), weight, bias, training=training))
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    mean = x.mean(axis=axes) if training else rm
    var = x.var(axis=axes) if training else rv
    np.testing.assert_allclose(stats[0], mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats[1], 1 / np.sqrt(var + 1e-5), rtol=1e-12)
    saved = F.batch_norm_backward(dy, x, rm, rv, weight, training=training,
                                  stats=stats)
    fresh = F.batch_norm_backward(dy, x, rm, rv, weight, training=training)
    for a, b in zip(saved, fresh, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("stats", [
    "no", (np.zeros(3),), (np.zeros(3), np.zeros(4)),
    (np.zeros(3, np.float32), np.zeros(3, np.float32)), [np.zeros(3), np.zeros(3)],
])
def test_backward_refuses_stats_that_are_not_batch_norms(stats, rng):
    x = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match="stats must be the"):
        F.batch_norm_backward(x, x, None, None, training=True, stats=stats)


def test_return_stats_must_be_a_bool(rng):
    x = rng.standard_normal((4, 3))
    with pytest.raises((TypeError, ValueError), match="return_stats"):
        F.batch_norm(x, None, None, training=True, return_stats="yes")
