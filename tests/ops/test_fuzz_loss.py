"""Fuzzing the losses (cross_entropy, mse_loss, binary_cross_entropy_with_logits) and
their backwards: valid inputs against the naive references, invalid arguments,
extreme values, and cross-entropy with logits of +-1e4 (finite loss and gradient)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcnn.functional as F

from .. import naive
from ..fuzz_support import (
    COUNTS,
    FLOATS,
    NON_FINITE,
    NOT_REALS,
    assert_ieee_close,
    bad_arrays,
    data,
    examples,
    expect_rejected,
    extreme_data,
    other_float,
    reshaped_bad,
)

REDUCTIONS = ["mean", "sum", "none"]


@st.composite
def ce_case(draw, fill=data):
    dtype = draw(st.sampled_from(FLOATS))
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    logits = draw(fill((n, c), dtype))
    labels = np.asarray(draw(st.lists(st.integers(0, c - 1), min_size=n,
                                      max_size=n)),
                        dtype=draw(st.sampled_from([np.int64, np.int32, np.uint8])))
    weight = draw(st.one_of(st.none(), st.builds(
        lambda s: np.random.default_rng(s).uniform(0.1, 2, c).astype(dtype),
        st.integers(0, 2**32 - 1))))
    kwargs = {"weight": weight, "reduction": draw(st.sampled_from(REDUCTIONS)),
              "label_smoothing": draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))}
    return logits, labels, kwargs


def _torch_ce(logits, labels, kw):
    """torch's loss and gradient: with infinite logits the naive reference's
    ``0 * -inf`` terms give NaN where torch (and we) skip the zero coefficients."""
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(np.ascontiguousarray(logits)).requires_grad_()
    weight = kw["weight"]
    loss = torch.nn.functional.cross_entropy(
        t, torch.from_numpy(labels.astype(np.int64)),
        None if weight is None else torch.from_numpy(weight),
        reduction=kw["reduction"], label_smoothing=kw["label_smoothing"])
    loss.sum().backward()
    return loss.detach().numpy(), t.grad.numpy()


def _check_ce(logits, labels, kw, what, extreme=False):
    loss = F.cross_entropy(logits, labels, **kw)
    grad = F.cross_entropy_backward(logits, labels, **kw)
    args = (kw["weight"], kw["reduction"], kw["label_smoothing"])
    with np.errstate(all="ignore"):
        ref = naive.cross_entropy(logits, labels, *args)
        rgrad = naive.cross_entropy_backward(logits, labels, *args)
    if extreme:
        ref, rgrad = _torch_ce(logits, labels, kw)
    if kw["reduction"] != "none":
        assert isinstance(loss, float)
        loss, ref = np.asarray(loss, logits.dtype), np.asarray(ref)
    assert_ieee_close(loss, ref, logits.dtype, f"{what} loss")
    assert_ieee_close(grad, rgrad, logits.dtype, f"{what} grad")


@examples()
@given(ce_case())
def test_cross_entropy_matches_naive(case):
    COUNTS["valid"] += 1
    _check_ce(*case, f"cross_entropy {case[2]}")


@examples()
@given(ce_case(fill=extreme_data))
def test_cross_entropy_extreme_values_propagate_like_the_reference(case):
    COUNTS["extreme"] += 1
    _check_ce(*case, f"cross_entropy extreme {case[2]}", extreme=True)


@examples()
@given(st.sampled_from(FLOATS), st.integers(1, 6), st.integers(2, 6),
       st.integers(0, 2**32 - 1), st.sampled_from(REDUCTIONS),
       st.sampled_from([0.0, 0.1]))
def test_cross_entropy_with_logits_of_1e4_stays_finite(dtype, n, c, seed, reduction,
                                                       smoothing):
    """Logits of +-1e4 (exp overflows float32 and float64 alike without the
    log-sum-exp shift): finite loss and gradient, equal to torch's."""
    COUNTS["extreme"] += 1
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    logits = (rng.choice([-1e4, 1e4, 0.0], size=(n, c))
              + rng.standard_normal((n, c))).astype(dtype)
    labels = rng.integers(0, c, n)
    kw = {"reduction": reduction, "label_smoothing": smoothing}
    loss = F.cross_entropy(logits, labels, **kw)
    grad = F.cross_entropy_backward(logits, labels, **kw)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    t = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(t, torch.tensor(labels), **kw)
    ref.sum().backward()
    tol = 1e-12 if dtype == np.float64 else 1e-5
    # Losses are ~1e4: the tolerance scales with them.
    np.testing.assert_allclose(loss, ref.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=tol, atol=tol)


# --------------------------------------------------------------- mse and bce


@st.composite
def elementwise_loss_case(draw, fill=data):
    dtype = draw(st.sampled_from(FLOATS))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    x = draw(fill(shape, dtype))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    target = draw(st.sampled_from([
        rng.uniform(0, 1, shape), rng.integers(0, 2, shape).astype(float)
    ])).astype(dtype)

    def weight_like():
        return draw(st.sampled_from([
            None, rng.uniform(0, 2, shape).astype(dtype),
            rng.uniform(0, 2, shape[-1:]).astype(dtype),
            rng.uniform(0, 2, 1).astype(dtype),
        ]))

    reduction = draw(st.sampled_from(REDUCTIONS))
    return x, target, reduction, weight_like(), weight_like()


def _torch_bce(x, target, weight, reduction, pos_weight):
    """torch's loss and gradient: with infinite logits its formula (which ours
    follows) gives NaN where the naive one takes the mathematical limit."""
    torch = pytest.importorskip("torch")

    def tensor(a):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a))

    t = tensor(x).requires_grad_()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        t, tensor(target), tensor(weight), reduction=reduction,
        pos_weight=tensor(pos_weight))
    loss.sum().backward()
    return loss.detach().numpy(), t.grad.numpy()


def _check_elementwise(x, target, reduction, weight, pos_weight, what,
                       extreme=False):
    dtype = x.dtype
    pairs = [
        (F.mse_loss(x, target, reduction), F.mse_loss_backward(x, target, reduction),
         naive.mse_loss, naive.mse_loss_backward, (reduction,)),
        (F.binary_cross_entropy_with_logits(x, target, weight, reduction, pos_weight),
         F.binary_cross_entropy_with_logits_backward(x, target, weight, reduction,
                                                     pos_weight),
         naive.bce_with_logits, naive.bce_with_logits_backward,
         (weight, reduction, pos_weight)),
    ]
    for (loss, grad, ref_fn, ref_grad_fn, args), name in zip(pairs, ("mse", "bce"),
                                                             strict=True):
        with np.errstate(all="ignore"):
            ref = np.asarray(ref_fn(x, target, *args))
            rgrad = ref_grad_fn(x, target, *args)
        if extreme and name == "bce":
            ref, rgrad = _torch_bce(x, target, weight, reduction, pos_weight)
        assert_ieee_close(np.asarray(loss, dtype), ref, dtype, f"{what} {name} loss")
        assert_ieee_close(grad, rgrad, dtype, f"{what} {name} grad")


@examples()
@given(elementwise_loss_case())
def test_mse_and_bce_match_naive(case):
    COUNTS["valid"] += 1
    _check_elementwise(*case, f"shape {case[0].shape} {case[2]}")


@examples()
@given(elementwise_loss_case(fill=extreme_data))
def test_mse_and_bce_extreme_values_propagate_like_the_reference(case):
    COUNTS["extreme"] += 1
    _check_elementwise(*case, f"extreme shape {case[0].shape} {case[2]}",
                       extreme=True)


# ------------------------------------------------------------------------- invalid

BAD_REDUCTIONS = ["avg", "MEAN", "", None, 1, ["mean"]]


@examples(3.0)
@given(ce_case(), st.data())
def test_cross_entropy_invalid_arguments(case, draw):
    logits, labels, kw = case
    n, c = logits.shape
    which = draw.draw(st.sampled_from(["logits", "labels", "weight", "reduction",
                                       "label_smoothing"]))
    kw = dict(kw)
    if which == "logits":
        bads = [*bad_arrays(logits), *reshaped_bad(logits)]
        if kw["weight"] is not None:
            bads.append(other_float(logits))
        logits = draw.draw(st.sampled_from(bads))
    elif which == "labels":
        labels = draw.draw(st.sampled_from([
            np.full(n, c), np.full(n, -1), np.full(n, 2**62),
            np.full(n, 2**63, dtype=np.uint64), np.full(n, -1, dtype=np.int8),
            labels.astype(float), labels.astype(bool), labels.tolist(), None,
            np.zeros(n + 1, np.int64), np.zeros((n, 1), np.int64),
            np.array(0), np.full(n, None, object), "0", np.full(n, np.nan),
        ]))
    elif which == "weight":
        w = np.ones(c, logits.dtype)
        kw["weight"] = draw.draw(st.sampled_from(
            [*bad_arrays(w, optional=True), *reshaped_bad(w), other_float(w),
             np.ones(c + 1, logits.dtype)]
        ))
    elif which == "reduction":
        kw["reduction"] = draw.draw(st.sampled_from(BAD_REDUCTIONS))
    else:
        kw["label_smoothing"] = draw.draw(st.sampled_from(
            [*NOT_REALS, *NON_FINITE, -0.1, 1.01]
        ))
    what = f"cross_entropy {which} {kw}"
    expect_rejected(lambda: F.cross_entropy(logits, labels, **kw), what)
    expect_rejected(lambda: F.cross_entropy_backward(logits, labels, **kw), what)


@examples(3.0)
@given(elementwise_loss_case(), st.data())
def test_mse_and_bce_invalid_arguments(case, draw):
    x, target, reduction, weight, pos_weight = case
    which = draw.draw(st.sampled_from(["input", "target", "weight", "pos_weight",
                                       "reduction"]))
    args = {"input": x, "target": target, "weight": weight, "pos_weight": pos_weight,
            "reduction": reduction}
    if which == "input":
        args["input"] = draw.draw(st.sampled_from(
            [*bad_arrays(x), other_float(x), np.zeros((), x.dtype), x[None, ...]]
        ))
    elif which == "target":
        args["target"] = draw.draw(st.sampled_from(
            [*bad_arrays(target), other_float(target), target[None, ...],
             np.zeros((*x.shape, 2), x.dtype)]
        ))
    elif which in ("weight", "pos_weight"):
        w = np.ones(x.shape, x.dtype)
        args[which] = draw.draw(st.sampled_from(
            [*bad_arrays(w, optional=True), other_float(w),
             np.ones((*x.shape, 2), x.dtype),
             np.ones(x.shape[-1] + 1, x.dtype), np.ones((2, *x.shape), x.dtype)]
        ))
    else:
        args["reduction"] = draw.draw(st.sampled_from(BAD_REDUCTIONS))
    what = f"{which} shapes {x.shape}"
    calls = [F.binary_cross_entropy_with_logits,
             F.binary_cross_entropy_with_logits_backward]
    for fn in calls:
        expect_rejected(lambda: fn(**args), f"{fn.__name__} {what}")  # noqa: B023
    if which not in ("weight", "pos_weight"):
        mse_args = {k: args[k] for k in ("input", "target", "reduction")}
        for fn in (F.mse_loss, F.mse_loss_backward):
            expect_rejected(lambda: fn(**mse_args), f"{fn.__name__} {what}")  # noqa: B023
