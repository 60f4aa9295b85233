"""Losses (cross_entropy, mse_loss, binary_cross_entropy_with_logits) and their
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

REDUCTIONS = ("mean", "sum", "none")
TOL = {np.float64: 1e-13, np.float32: 2e-6}


def _chain(dy, grad):
    """The gradient of sum(loss * dy) from the gradient of the reduced loss: a scalar
    dy for mean/sum; per-sample dy (broadcast over the rest) for "none"."""
    dy = np.asarray(dy)
    return dy.reshape(dy.shape + (1,) * (grad.ndim - dy.ndim)) * grad


def _as_array(value):
    return np.asarray(value, dtype=np.float64)


# ---------------------------------------------------------------------- cross_entropy


def _ce_case(rng, n, c, dtype=np.float64, weighted=False):
    logits = (2 * rng.standard_normal((n, c))).astype(dtype)
    labels = rng.integers(0, c, n)
    weight = (rng.random(c) + 0.1).astype(dtype) if weighted else None
    return logits, labels, weight


CE_CASES = list(itertools.product([False, True], REDUCTIONS, [0.0, 0.25, 1.0]))


@pytest.mark.parametrize("weighted, reduction, smoothing", CE_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_matches_naive(weighted, reduction, smoothing, dtype, rng):
    logits, labels, weight = _ce_case(rng, 6, 5, dtype, weighted)
    loss = F.cross_entropy(logits, labels, weight, reduction, smoothing)
    want = naive.cross_entropy(logits, labels, weight, reduction, smoothing)
    if reduction == "none":
        assert loss.dtype == dtype and loss.shape == (6,)
    else:
        assert type(loss) is float
    assert_close(loss, want, TOL[dtype], TOL[dtype], "loss")
    grad = F.cross_entropy_backward(logits, labels, weight, reduction, smoothing)
    assert grad.dtype == dtype
    want = naive.cross_entropy_backward(logits, labels, weight, reduction, smoothing)
    assert_close(grad, want, TOL[dtype], TOL[dtype], "dlogits")


@pytest.mark.parametrize("weighted, reduction, smoothing", CE_CASES)
def test_cross_entropy_finite_differences(weighted, reduction, smoothing, rng):
    logits, labels, weight = _ce_case(rng, 4, 3, weighted=weighted)
    args = (labels, weight, reduction, smoothing)
    check_finite_differences(
        lambda logits: F.cross_entropy(logits, *args),
        lambda dy, logits: _chain(dy, F.cross_entropy_backward(logits, *args)),
        {"logits": logits}, ("logits",), rng,
    )


def test_cross_entropy_of_huge_logits_is_finite():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [1e4, 1e4, 1e4]])
    labels = np.array([0, 0, 2])
    for dtype in (np.float32, np.float64):
        x = logits.astype(dtype)
        losses = F.cross_entropy(x, labels, reduction="none", label_smoothing=0.1)
        assert np.all(np.isfinite(losses))
        np.testing.assert_allclose(
            F.cross_entropy(x, labels, reduction="none"), [0, 2e4, np.log(3)],
            rtol=1e-6,
        )
        grad = F.cross_entropy_backward(x, labels, label_smoothing=0.1)
        assert np.all(np.isfinite(grad))


def test_cross_entropy_known_value():
    # Uniform logits: -log(1/C) whatever the label, weight or smoothing.
    logits = np.zeros((3, 4))
    labels = np.array([0, 3, 1])
    for kwargs in ({}, {"label_smoothing": 0.3}, {"weight": np.arange(1.0, 5.0)}):
        assert F.cross_entropy(logits, labels, **kwargs) == pytest.approx(np.log(4))


def test_cross_entropy_accepts_any_integer_label_dtype(rng):
    logits, labels, _ = _ce_case(rng, 5, 4)
    expected = F.cross_entropy(logits, labels)
    for dtype in (np.int8, np.uint8, np.int32, np.uint64):
        assert F.cross_entropy(logits, labels.astype(dtype)) == expected


def test_cross_entropy_zero_target_weights_give_nan_like_torch():
    logits = np.zeros((2, 3))
    labels = np.array([1, 1])
    weight = np.array([1.0, 0.0, 1.0])
    assert np.isnan(F.cross_entropy(logits, labels, weight))
    assert F.cross_entropy(logits, labels, weight, reduction="sum") == 0.0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(1, 6), weighted=st.booleans(),
       smoothing=st.floats(0, 1), reduction=st.sampled_from(REDUCTIONS),
       seed=st.integers(0, 2**16))
def test_cross_entropy_property(n, c, weighted, smoothing, reduction, seed):
    r = np.random.default_rng(seed)
    logits, labels, weight = _ce_case(r, n, c, weighted=weighted)
    args = (labels, weight, reduction, smoothing)
    assert_close(F.cross_entropy(logits, *args), naive.cross_entropy(logits, *args),
                 1e-12, 1e-12, "loss")
    assert_close(F.cross_entropy_backward(logits, *args),
                 naive.cross_entropy_backward(logits, *args), 1e-12, 1e-12, "dlogits")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_cross_entropy_kernels_give_the_general_kernels_bits(dtype, rng):
    # The common case (N, C) logits, no weight/smoothing/ignored label runs lean
    # kernels; they must give exactly the general kernels' bits, NaN, inf and all.
    from fastcnn.kernels.cpu import loss as k

    logits = (8 * rng.standard_normal((37, 11))).astype(dtype)
    logits[3, 2] = np.nan
    logits[5, 0] = np.inf
    logits[6, 4] = -np.inf
    logits[7, :] = -np.inf
    logits[8, 1] = 1e4
    labels = rng.integers(0, 11, 37).astype(np.int64)
    ones, keep, zero = np.ones(11, dtype), dtype(1), dtype(0)
    general = np.empty((37, 1), dtype)
    plain = np.empty(37, dtype)
    k.cross_entropy_forward(logits[:, :, None], labels[:, None], ones, keep, zero,
                            np.int64(-100), general)
    k.cross_entropy_plain_forward(logits, labels, plain)
    assert general.ravel().tobytes() == plain.tobytes()
    grad_general = np.empty((37, 11, 1), dtype)
    grad_plain = np.empty((37, 11), dtype)
    k.cross_entropy_backward(logits[:, :, None], labels[:, None], ones, keep, zero,
                             np.int64(-100), dtype(1 / 37), grad_general)
    k.cross_entropy_plain_backward(logits, labels, dtype(1 / 37), grad_plain)
    assert grad_general.ravel().tobytes() == grad_plain.ravel().tobytes()


def test_cross_entropy_runs_the_plain_kernels_only_in_their_case(rng, monkeypatch):
    # Which kernel runs is chosen in Python: pin the rule.
    from fastcnn.kernels.cpu import loss as k

    called = []
    for name in ("cross_entropy_forward", "cross_entropy_plain_forward",
                 "cross_entropy_backward", "cross_entropy_plain_backward"):
        monkeypatch.setattr(k, name, lambda *a, _n=name: called.append(_n))
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    labels = np.array([0, 2, 1, 1])
    cases = [({}, "plain"), ({"weight": np.ones(3, np.float32)}, "general"),
             ({"label_smoothing": 0.1}, "general"), ({"ignore_index": 2}, "general"),
             ({"ignore_index": 7}, "plain")]
    for kwargs, kind in cases:
        for op in (F.cross_entropy, F.cross_entropy_backward):
            called.clear()
            op(logits, labels, reduction="none", **kwargs)
            assert ("plain" in called[0]) == (kind == "plain"), (kwargs, called)
    called.clear()
    F.cross_entropy(rng.standard_normal((2, 3, 4)).astype(np.float32),
                    np.zeros((2, 4), np.int64), reduction="none")
    assert called == ["cross_entropy_forward"]


# --------------------------------------------------------------------------- mse_loss


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mse_matches_naive(reduction, shape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    t = rng.standard_normal(shape).astype(dtype)
    loss = F.mse_loss(x, t, reduction)
    if reduction == "none":
        assert loss.dtype == dtype and loss.shape == shape
    else:
        assert type(loss) is float
    assert_close(loss, naive.mse_loss(x, t, reduction), TOL[dtype], TOL[dtype], "loss")
    grad = F.mse_loss_backward(x, t, reduction)
    assert grad.dtype == dtype
    assert_close(grad, naive.mse_loss_backward(x, t, reduction), TOL[dtype],
                 TOL[dtype], "dinput")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_finite_differences(reduction, rng):
    x = rng.standard_normal((3, 4))
    t = rng.standard_normal((3, 4))
    check_finite_differences(
        lambda input: F.mse_loss(input, t, reduction),
        lambda dy, input: _chain(dy, F.mse_loss_backward(input, t, reduction)),
        {"input": x}, ("input",), rng,
    )


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
       reduction=st.sampled_from(REDUCTIONS), seed=st.integers(0, 2**16))
def test_mse_property(shape, reduction, seed):
    r = np.random.default_rng(seed)
    x, t = r.standard_normal(shape), r.standard_normal(shape)
    assert_close(F.mse_loss(x, t, reduction), naive.mse_loss(x, t, reduction),
                 1e-12, 1e-12, "loss")
    assert_close(F.mse_loss_backward(x, t, reduction),
                 naive.mse_loss_backward(x, t, reduction), 1e-12, 1e-12, "dinput")


# ------------------------------------------------------------ binary_cross_entropy...


def _bce_case(rng, shape, weight_shape, pos_weight_shape, dtype=np.float64):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    t = rng.random(shape).astype(dtype)
    w = None if weight_shape is None else (rng.random(weight_shape) + 0.2).astype(dtype)
    pw = None
    if pos_weight_shape is not None:
        pw = (2 * rng.random(pos_weight_shape) + 0.1).astype(dtype)
    return x, t, w, pw


# (input shape, weight shape, pos_weight shape): None, full, per-class (last axis),
# one value, and a middle-axis broadcast.
BCE_WEIGHTS = [
    ((4, 3), None, None),
    ((4, 3), (4, 3), None),
    ((4, 3), None, (3,)),
    ((4, 3), (3,), (4, 3)),
    ((4, 3), (1,), (1, 1)),
    ((2, 3, 2), (3, 1), (2,)),
    ((5,), None, (1,)),
]


@pytest.mark.parametrize("shape, wshape, pwshape", BCE_WEIGHTS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bce_matches_naive(shape, wshape, pwshape, reduction, dtype, rng):
    x, t, w, pw = _bce_case(rng, shape, wshape, pwshape, dtype)
    loss = F.binary_cross_entropy_with_logits(x, t, w, reduction, pw)
    if reduction == "none":
        assert loss.dtype == dtype and loss.shape == shape
    else:
        assert type(loss) is float
    assert_close(loss, naive.bce_with_logits(x, t, w, reduction, pw), TOL[dtype],
                 TOL[dtype], "loss")
    grad = F.binary_cross_entropy_with_logits_backward(x, t, w, reduction, pw)
    assert grad.dtype == dtype
    assert_close(grad, naive.bce_with_logits_backward(x, t, w, reduction, pw),
                 TOL[dtype], TOL[dtype], "dinput")


@pytest.mark.parametrize("shape, wshape, pwshape", BCE_WEIGHTS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_finite_differences(shape, wshape, pwshape, reduction, rng):
    x, t, w, pw = _bce_case(rng, shape, wshape, pwshape)
    check_finite_differences(
        lambda input: F.binary_cross_entropy_with_logits(input, t, w, reduction, pw),
        lambda dy, input: _chain(dy, F.binary_cross_entropy_with_logits_backward(
            input, t, w, reduction, pw)),
        {"input": x}, ("input",), rng,
    )


def test_bce_of_huge_logits_is_finite():
    x = np.array([1e4, -1e4, 1e4, -1e4, 0.0])
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5])
    for dtype in (np.float32, np.float64):
        losses = F.binary_cross_entropy_with_logits(
            x.astype(dtype), t.astype(dtype), reduction="none",
            pos_weight=np.array([3.0], dtype),
        )
        np.testing.assert_allclose(losses, [0, 0, 1e4, 3e4, 2 * np.log(2)],
                                   rtol=1e-6, atol=0)
        grad = F.binary_cross_entropy_with_logits_backward(x.astype(dtype),
                                                           t.astype(dtype))
        np.testing.assert_allclose(grad, np.array([0, 0, 1, -1, 0]) / 5, atol=1e-7)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), c=st.integers(1, 4), weighted=st.booleans(),
       pos_weighted=st.booleans(), reduction=st.sampled_from(REDUCTIONS),
       seed=st.integers(0, 2**16))
def test_bce_property(n, c, weighted, pos_weighted, reduction, seed):
    r = np.random.default_rng(seed)
    x, t, w, pw = _bce_case(r, (n, c), (n, c) if weighted else None,
                            (c,) if pos_weighted else None)
    args = (t, w, reduction, pw)
    assert_close(F.binary_cross_entropy_with_logits(x, *args),
                 naive.bce_with_logits(x, *args), 1e-12, 1e-12, "loss")
    assert_close(F.binary_cross_entropy_with_logits_backward(x, *args),
                 naive.bce_with_logits_backward(x, *args), 1e-12, 1e-12, "dinput")


# ------------------------------------------------------------------ layouts and NaN


def test_non_contiguous_and_fortran_inputs(rng):
    logits, labels, weight = _ce_case(rng, 6, 4, weighted=True)
    strided = np.repeat(logits, 2, axis=1)[:, ::2]
    wide_labels = np.repeat(labels, 2)[::2]
    assert not strided.flags.c_contiguous and not wide_labels.flags.c_contiguous
    for reduction in REDUCTIONS:
        args = (weight, reduction, 0.2)
        want = F.cross_entropy(logits, labels, *args)
        got = F.cross_entropy(strided, wide_labels, *args)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(
            F.cross_entropy(np.asfortranarray(logits), labels, weight[::-1][::-1],
                            reduction, 0.2), want)
        np.testing.assert_array_equal(
            F.cross_entropy_backward(np.asfortranarray(logits), wide_labels, *args),
            F.cross_entropy_backward(logits, labels, *args))
    x, t, w, pw = _bce_case(rng, (5, 3), (5, 3), (3,))
    xf, tf, wf = (np.asfortranarray(a) for a in (x, t, w))
    for reduction in REDUCTIONS:
        np.testing.assert_array_equal(
            F.mse_loss(xf, tf, reduction), F.mse_loss(x, t, reduction))
        np.testing.assert_array_equal(
            F.mse_loss_backward(xf, t[:, ::-1][:, ::-1], reduction),
            F.mse_loss_backward(x, t, reduction))
        np.testing.assert_array_equal(
            F.binary_cross_entropy_with_logits(xf, tf, wf, reduction, pw[::-1][::-1]),
            F.binary_cross_entropy_with_logits(x, t, w, reduction, pw))
        np.testing.assert_array_equal(
            F.binary_cross_entropy_with_logits_backward(xf, tf, wf, reduction, pw),
            F.binary_cross_entropy_with_logits_backward(x, t, w, reduction, pw))


def test_nan_propagates(rng):
    logits, labels, _ = _ce_case(rng, 3, 4)
    logits[1, 2] = np.nan
    losses = F.cross_entropy(logits, labels, reduction="none")
    assert np.isnan(losses[1]) and np.isfinite(losses[[0, 2]]).all()
    assert np.isnan(F.cross_entropy(logits, labels))
    grad = F.cross_entropy_backward(logits, labels, label_smoothing=0.1)
    assert np.isnan(grad[1]).all() and np.isfinite(grad[[0, 2]]).all()
    x = rng.standard_normal((2, 3))
    t = rng.random((2, 3))
    x[0, 1] = np.nan
    assert np.isnan(F.mse_loss(x, t))
    assert np.isnan(F.mse_loss(x, t, "none")[0, 1])
    assert np.isnan(F.mse_loss_backward(x, t)[0, 1])
    assert np.isnan(F.binary_cross_entropy_with_logits(x, t, pos_weight=np.ones(3)))
    grad = F.binary_cross_entropy_with_logits_backward(x, t)
    assert np.isnan(grad[0, 1]) and np.isfinite(grad).sum() == 5


# ------------------------------------------------------------ thread-count invariance


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_invariance(dtype, rng):
    logits, labels, weight = _ce_case(rng, 37, 11, dtype, weighted=True)
    x, t, w, pw = _bce_case(rng, (37, 11), (37, 11), (11,), dtype)
    for reduction in REDUCTIONS:
        for args in ((None, reduction, 0.0), (weight, reduction, 0.3)):
            assert_thread_count_invariant(
                lambda a=args: F.cross_entropy(logits, labels, *a), "cross_entropy")
            assert_thread_count_invariant(
                lambda a=args: F.cross_entropy_backward(logits, labels, *a),
                "cross_entropy_backward")
        assert_thread_count_invariant(lambda r=reduction: F.mse_loss(x, t, r), "mse")
        assert_thread_count_invariant(lambda r=reduction: F.mse_loss_backward(x, t, r),
                                      "mse_backward")
        assert_thread_count_invariant(
            lambda r=reduction: F.binary_cross_entropy_with_logits(x, t, w, r, pw),
            "bce")
        assert_thread_count_invariant(
            lambda r=reduction: F.binary_cross_entropy_with_logits_backward(
                x, t, w, r, pw), "bce_backward")


# ------------------------------------------------------------------- PyTorch parity

CE_GRID = list(itertools.product([(1, 2), (4, 5), (9, 10)], [False, True],
                                 REDUCTIONS, [0.0, 0.1, 0.5, 1.0]))
MSE_GRID = list(itertools.product([(1,), (7,), (3, 4), (2, 3, 2, 2)], REDUCTIONS))
BCE_GRID = list(itertools.product(BCE_WEIGHTS + [((6, 4), (6, 1), None)], REDUCTIONS,
                                  ["soft", "hard"]))


def _update(worst, key, got, want):
    got, want = _as_array(got), _as_array(want)
    err = (float(np.max(np.abs(got - want))), max_rel_error(got, want))
    worst[key] = tuple(map(max, worst[key], err))


def _torch_check(torch, worst, what, tol, got_loss, got_grad, t_loss, t_input):
    """Compare a loss and its gradient with torch's (autograd of the sum for
    reduction="none")."""
    t_loss.sum().backward()
    assert_close(_as_array(got_loss), t_loss.detach().numpy(), tol, tol, what + " loss")
    assert_close(got_grad, t_input.grad.numpy(), tol, tol, what + " grad")
    _update(worst, "loss", got_loss, t_loss.detach().numpy())
    _update(worst, "grad", got_grad, t_input.grad.numpy())


@pytest.mark.torch
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 5e-6)])
def test_matches_pytorch_over_grid(dtype, tol):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(7)
    worst = {"loss": (0.0, 0.0), "grad": (0.0, 0.0)}

    for (n, c), weighted, reduction, smoothing in CE_GRID:
        logits, labels, weight = _ce_case(rng, n, c, dtype, weighted)
        args = (labels, weight, reduction, smoothing)
        tx = torch.tensor(logits, requires_grad=True)
        t_loss = tf.cross_entropy(
            tx, torch.tensor(labels), None if weight is None else torch.tensor(weight),
            reduction=reduction, label_smoothing=smoothing)
        _torch_check(torch, worst, f"cross_entropy {(n, c, weighted, reduction)}",
                     tol, F.cross_entropy(logits, *args),
                     F.cross_entropy_backward(logits, *args), t_loss, tx)

    for shape, reduction in MSE_GRID:
        x = rng.standard_normal(shape).astype(dtype)
        t = rng.standard_normal(shape).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        t_loss = tf.mse_loss(tx, torch.tensor(t), reduction=reduction)
        _torch_check(torch, worst, f"mse {shape} {reduction}", tol,
                     F.mse_loss(x, t, reduction), F.mse_loss_backward(x, t, reduction),
                     t_loss, tx)

    for (shape, wshape, pwshape), reduction, kind in BCE_GRID:
        x, t, w, pw = _bce_case(rng, shape, wshape, pwshape, dtype)
        if kind == "hard":
            t = (t > 0.5).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        t_loss = tf.binary_cross_entropy_with_logits(
            tx, torch.tensor(t), None if w is None else torch.tensor(w),
            reduction=reduction, pos_weight=None if pw is None else torch.tensor(pw))
        args = (t, w, reduction, pw)
        _torch_check(torch, worst, f"bce {shape} {wshape} {pwshape} {reduction}", tol,
                     F.binary_cross_entropy_with_logits(x, *args),
                     F.binary_cross_entropy_with_logits_backward(x, *args), t_loss, tx)

    total = len(CE_GRID) + len(MSE_GRID) + len(BCE_GRID)
    print(f"losses {np.dtype(dtype)}: {total} configurations, worst (abs, rel) vs "
          f"torch: {worst}")
    assert total == 72 + 12 + 48


@pytest.mark.torch
@pytest.mark.parametrize("class_weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 5e-6)])
def test_cross_entropy_loss_object_matches_torch(smoothing, class_weighted, dtype,
                                                 tol):
    # The Loss object compile() uses, forward AND backward: it forwards
    # label_smoothing and class weights to the functional ops on both paths.
    torch = pytest.importorskip("torch")
    from fastcnn import losses

    rng = np.random.default_rng(3)
    logits, labels, weight = _ce_case(rng, 6, 4, dtype, class_weighted)
    loss = losses.CrossEntropy(label_smoothing=smoothing)
    tx = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.CrossEntropyLoss(
        weight=None if weight is None else torch.tensor(weight),
        label_smoothing=smoothing)(tx, torch.tensor(labels))
    t_loss.backward()
    assert_close(np.array(loss(logits, labels, weight)), t_loss.detach().numpy(),
                 tol, tol, "CrossEntropy loss")
    assert_close(loss.backward(logits, labels, weight), tx.grad.numpy(), tol, tol,
                 "CrossEntropy backward")


@pytest.mark.torch
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 5e-6)])
def test_mse_and_bce_loss_objects_match_torch(dtype, tol):
    torch = pytest.importorskip("torch")
    from fastcnn import losses

    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3)).astype(dtype)
    t = rng.random((5, 3)).astype(dtype)
    pos_weight = [0.5, 2.0, 1.5]
    cases = [
        (losses.MSE(), torch.nn.MSELoss()),
        (losses.BCEWithLogits(pos_weight=pos_weight), torch.nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(np.asarray(pos_weight, dtype)))),
    ]
    for ours, theirs in cases:
        tx = torch.tensor(x, requires_grad=True)
        t_loss = theirs(tx, torch.tensor(t))
        t_loss.backward()
        what = type(ours).__name__
        assert_close(np.array(ours(x, t)), t_loss.detach().numpy(), tol, tol, what)
        assert_close(ours.backward(x, t), tx.grad.numpy(), tol, tol, what + " grad")


# ----------------------------------------------------------------------- bad input


def _ce_ok():
    return np.zeros((3, 4)), np.array([0, 3, 1])


CE_OPS = {"cross_entropy": F.cross_entropy,
          "cross_entropy_backward": F.cross_entropy_backward}


@pytest.mark.parametrize("op", CE_OPS)
def test_ce_rejects_bool_labels(op):
    logits, _ = _ce_ok()
    with pytest.raises(TypeError, match=rf"{op}: labels must have an integer dtype "
                       r"\(class indices\), got bool"):
        CE_OPS[op](logits, np.array([True, False, True]))


@pytest.mark.parametrize("op", CE_OPS)
def test_ce_rejects_float_labels(op):
    logits, _ = _ce_ok()
    with pytest.raises(TypeError, match=rf"{op}: labels must have an integer dtype "
                       r"\(class indices\), got float64"):
        CE_OPS[op](logits, np.array([0.0, 1.0, 2.0]))


def test_ce_rejects_list_labels():
    logits, _ = _ce_ok()
    with pytest.raises(TypeError, match=r"labels must be a numpy.ndarray of integers, "
                       r"got list"):
        F.cross_entropy(logits, [0, 1, 2])


@pytest.mark.parametrize("op", CE_OPS)
@pytest.mark.parametrize("bad", [4, 17, -1])
def test_ce_rejects_out_of_range_labels(op, bad):
    logits, _ = _ce_ok()
    with pytest.raises(ValueError, match=rf"{op}: labels must lie in \[0, 4\) for 4 "
                       rf"classes, got {bad}\."):
        CE_OPS[op](logits, np.array([0, bad, 1]))


def test_ce_rejects_labels_shape_mismatch():
    logits, labels = _ce_ok()
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\), got \(2,\)"):
        F.cross_entropy(logits, labels[:2])
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\), got "
                       r"\(3, 1\)"):
        F.cross_entropy(logits, labels[:, None])


@pytest.mark.parametrize("op", CE_OPS)
def test_ce_rejects_labels_that_do_not_fit_the_logits_ndim(op):
    # (N, C, d1, ...) and unbatched (C,) logits are valid (test_loss_targets.py);
    # the labels must then drop the class axis.
    logits, labels = _ce_ok()
    with pytest.raises(ValueError, match=rf"{op}: labels must have shape \(1, 4\), "
                       r"got \(3,\)"):
        CE_OPS[op](logits[None], labels)
    with pytest.raises(ValueError, match=rf"{op}: labels must have shape \(\), got "
                       r"\(3,\)"):
        CE_OPS[op](logits[0], labels)
    with pytest.raises(ValueError, match=rf"{op}: logits must have at least 1 dim"):
        CE_OPS[op](np.zeros(()), np.array(0))


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.float16])
def test_ce_rejects_non_float_logits(dtype):
    logits, labels = _ce_ok()
    with pytest.raises(TypeError, match=rf"cross_entropy: logits must have dtype "
                       rf"float32 or float64, got {np.dtype(dtype)}"):
        F.cross_entropy(logits.astype(dtype), labels)


def test_ce_of_an_empty_batch_and_no_classes():
    # An empty batch: torch's NaN mean (tests/ops/test_zero_size.py has every case);
    # samples without classes have no valid label, as torch says too.
    logits, labels = _ce_ok()
    assert np.isnan(F.cross_entropy(logits[:0], labels[:0]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 0\)"):
        F.cross_entropy_backward(np.zeros((3, 0)), labels)


def test_ce_rejects_bad_weight():
    logits, labels = _ce_ok()
    with pytest.raises(TypeError, match=r"weight has dtype float32 but logits has "
                       r"dtype float64"):
        F.cross_entropy(logits, labels, np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\), got \(3,\)"):
        F.cross_entropy(logits, labels, np.ones(3))
    with pytest.raises(ValueError, match=r"weight must be 1-D, got 2-D"):
        F.cross_entropy_backward(logits, labels, np.ones((1, 4)))
    with pytest.raises(TypeError, match=r"weight must be a numpy.ndarray"):
        F.cross_entropy(logits, labels, [1.0, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("op", CE_OPS)
@pytest.mark.parametrize("value", [-0.1, 1.5, np.nan])
def test_ce_rejects_out_of_range_label_smoothing(op, value):
    logits, labels = _ce_ok()
    with pytest.raises(ValueError, match=rf"{op}: label_smoothing must be a finite "
                       r"number in \[0, 1\]"):
        CE_OPS[op](logits, labels, label_smoothing=value)


@pytest.mark.parametrize("value", ["0.1", None, True])
def test_ce_rejects_non_number_label_smoothing(value):
    logits, labels = _ce_ok()
    with pytest.raises(TypeError, match=r"label_smoothing must be a real number"):
        F.cross_entropy(logits, labels, label_smoothing=value)


LOSS_OPS = {
    "cross_entropy": lambda r: F.cross_entropy(*_ce_ok(), reduction=r),
    "cross_entropy_backward": lambda r: F.cross_entropy_backward(*_ce_ok(),
                                                                 reduction=r),
    "mse_loss": lambda r: F.mse_loss(np.zeros(2), np.zeros(2), r),
    "mse_loss_backward": lambda r: F.mse_loss_backward(np.zeros(2), np.zeros(2), r),
    "binary_cross_entropy_with_logits": lambda r: F.binary_cross_entropy_with_logits(
        np.zeros(2), np.zeros(2), reduction=r),
    "binary_cross_entropy_with_logits_backward":
        lambda r: F.binary_cross_entropy_with_logits_backward(
            np.zeros(2), np.zeros(2), reduction=r),
}


@pytest.mark.parametrize("op", LOSS_OPS)
@pytest.mark.parametrize("value", ["average", None, "MEAN"])
def test_rejects_bad_reduction(op, value):
    with pytest.raises(ValueError, match=rf"{op}: reduction must be 'mean', 'sum' or "
                       rf"'none', got {value!r}"):
        LOSS_OPS[op](value)


PAIR_OPS = {
    "mse_loss": F.mse_loss, "mse_loss_backward": F.mse_loss_backward,
    "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
    "binary_cross_entropy_with_logits_backward":
        F.binary_cross_entropy_with_logits_backward,
}


@pytest.mark.parametrize("op", PAIR_OPS)
def test_rejects_target_shape_mismatch(op):
    with pytest.raises(ValueError, match=rf"{op}: target must have shape \(2, 3\), "
                       r"got \(3, 2\)"):
        PAIR_OPS[op](np.zeros((2, 3)), np.zeros((3, 2)))


@pytest.mark.parametrize("op", PAIR_OPS)
def test_rejects_mismatched_dtypes(op):
    with pytest.raises(TypeError, match=rf"{op}: target has dtype float32 but input "
                       r"has dtype float64"):
        PAIR_OPS[op](np.zeros(3), np.zeros(3, np.float32))


@pytest.mark.parametrize("op", PAIR_OPS)
@pytest.mark.parametrize("dtype", [np.int32, np.bool_])
def test_rejects_non_float_input_and_target(op, dtype):
    with pytest.raises(TypeError, match=rf"{op}: input must have dtype float32 or "
                       rf"float64, got {np.dtype(dtype)}"):
        PAIR_OPS[op](np.zeros(3, dtype), np.zeros(3))
    with pytest.raises(TypeError, match=rf"{op}: target must have dtype"):
        PAIR_OPS[op](np.zeros(3), np.zeros(3, dtype))


@pytest.mark.parametrize("op", PAIR_OPS)
def test_rejects_zero_dimensional_input(op):
    with pytest.raises(ValueError, match=rf"{op}: input must have at least 1 dim"):
        PAIR_OPS[op](np.array(1.0), np.array(1.0))


BCE_OPS = {k: v for k, v in PAIR_OPS.items() if k.startswith("binary")}


@pytest.mark.parametrize("op", BCE_OPS)
@pytest.mark.parametrize("name", ["weight", "pos_weight"])
def test_bce_rejects_non_broadcastable_weights(op, name):
    with pytest.raises(ValueError, match=rf"{op}: {name} with shape \(2,\) does not "
                       r"broadcast to input's shape \(4, 3\)"):
        BCE_OPS[op](np.zeros((4, 3)), np.zeros((4, 3)), **{name: np.ones(2)})
    with pytest.raises(ValueError, match=rf"{name} with shape \(1, 4, 3\) does not"):
        BCE_OPS[op](np.zeros((4, 3)), np.zeros((4, 3)), **{name: np.ones((1, 4, 3))})


@pytest.mark.parametrize("name", ["weight", "pos_weight"])
def test_bce_rejects_bad_weight_dtype(name):
    with pytest.raises(TypeError, match=rf"{name} has dtype float32 but input has "
                       r"dtype float64"):
        F.binary_cross_entropy_with_logits(np.zeros(3), np.zeros(3),
                                           **{name: np.ones(3, np.float32)})
    with pytest.raises(TypeError, match=rf"{name} must have dtype float32 or float64"):
        F.binary_cross_entropy_with_logits(np.zeros(3), np.zeros(3),
                                           **{name: np.ones(3, np.int64)})
