"""Fuzzing linear and batch_norm with their backwards: valid inputs against the
naive references, invalid arguments, extreme values."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import fastcnn.functional as F

from .. import naive
from ..fuzz_support import (
    COUNTS,
    FLOATS,
    NON_FINITE,
    NOT_BOOLS,
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


@st.composite
def linear_case(draw, fill=data):
    dtype = draw(st.sampled_from(FLOATS))
    n, f_in, f_out = (draw(st.integers(1, 5)) for _ in range(3))
    x = draw(fill((n, f_in), dtype))
    w = draw(data((f_out, f_in), dtype))
    b = draw(st.one_of(st.none(), data((f_out,), dtype)))
    return x, w, b


def _check_linear(x, w, b, seed, what):
    y = F.linear(x, w, b)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    grads = F.linear_backward(dy, x, w)
    with np.errstate(all="ignore"):
        ry = naive.linear(x, w, b)
        mag_y = naive.linear(np.abs(x), np.abs(w), None if b is None else np.abs(b))
        rgrads = naive.linear_backward(dy, x, w)
        mags = naive.linear_backward(np.abs(dy), np.abs(x), np.abs(w))
    assert_ieee_close(y, ry, x.dtype, f"{what} y", mag_y)
    for name, got, ref, mag in zip(("dx", "dweight", "dbias"), grads, rgrads, mags,
                                   strict=True):
        assert_ieee_close(got, ref, x.dtype, f"{what} {name}", mag)


@examples()
@given(linear_case(), st.integers(0, 2**32 - 1))
def test_linear_matches_naive(case, seed):
    COUNTS["valid"] += 1
    _check_linear(*case, seed, "linear")


@examples()
@given(linear_case(fill=extreme_data), st.integers(0, 2**32 - 1))
def test_linear_extreme_values_propagate_like_the_reference(case, seed):
    COUNTS["extreme"] += 1
    _check_linear(*case, seed, "linear extreme")


@st.composite
def bn_case(draw, fill=data):
    dtype = draw(st.sampled_from(FLOATS))
    shape = draw(st.sampled_from([(2, 3), (4, 2), (2, 2, 3, 2), (1, 3, 2, 2),
                                  (3, 1, 1, 2), (2, 3, 4), (1, 2, 3)]))
    shape = (draw(st.integers(2, 4)), *shape[1:]) if len(shape) == 2 else shape
    c = shape[1]
    x = draw(fill(shape, dtype))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    running = draw(st.booleans())
    kw = {
        "running_mean": rng.standard_normal(c).astype(dtype) if running else None,
        "running_var": rng.uniform(0.1, 2, c).astype(dtype) if running else None,
        "weight": draw(st.one_of(st.none(), data((c,), dtype))),
        "training": not running or draw(st.booleans()),
        "eps": draw(st.sampled_from([1e-5, 1e-3, 0.1])),
    }
    return x, kw, draw(st.sampled_from([0.0, 0.1, 1.0]))


def _check_bn(x, kw, momentum, seed, what):
    rm = None if kw["running_mean"] is None else kw["running_mean"].copy()
    rv = None if kw["running_var"] is None else kw["running_var"].copy()
    bias = None if kw["weight"] is None else kw["weight"][::-1].copy()
    y = F.batch_norm(x, rm, rv, kw["weight"], bias, kw["training"], momentum,
                     kw["eps"])
    dy = np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype)
    grads = F.batch_norm_backward(dy, x, kw["running_mean"], kw["running_var"],
                                  kw["weight"], kw["training"], kw["eps"])
    with np.errstate(all="ignore"):
        ry, rrm, rrv = naive.batch_norm(x, kw["running_mean"], kw["running_var"],
                                        kw["weight"], bias, kw["training"], momentum,
                                        kw["eps"])
        rgrads = naive.batch_norm_backward(dy, x, kw["running_mean"],
                                           kw["running_var"], kw["weight"],
                                           kw["training"], kw["eps"])
    # Normalising divides by sigma: errors scale with the largest |x - mean| / sigma.
    tol = 1e-8 if x.dtype == np.float64 else 1e-4
    assert_ieee_close(y, ry, x.dtype, f"{what} y", tol=tol)
    if rm is not None and kw["training"]:
        assert_ieee_close(rm, rrm, x.dtype, f"{what} running_mean", tol=tol)
        assert_ieee_close(rv, rrv, x.dtype, f"{what} running_var", tol=tol)
    for name, got, ref in zip(("dx", "dweight", "dbias"), grads, rgrads, strict=True):
        assert_ieee_close(got, ref, x.dtype, f"{what} {name}", tol=tol)


@examples()
@given(bn_case(), st.integers(0, 2**32 - 1))
def test_batch_norm_matches_naive(case, seed):
    COUNTS["valid"] += 1
    _check_bn(*case, seed, f"batch_norm {case[0].shape}")


@examples(0.5)
@given(bn_case(fill=extreme_data), st.integers(0, 2**32 - 1))
def test_batch_norm_extreme_values_do_not_crash(case, seed):
    """With ±inf or NaN in a channel its statistics are NaN (as in torch) and so is
    the whole channel; the other channels stay finite. Compared with the naive
    float64 evaluation only where x is finite (the reference's sums of squares of
    1e30 and of its deviations are evaluated differently)."""
    COUNTS["extreme"] += 1
    x, kw, momentum = case
    y = F.batch_norm(x, None, None, kw["weight"], None, True, momentum, kw["eps"])
    grads = F.batch_norm_backward(np.ones_like(x), x, None, None, kw["weight"], True,
                                  kw["eps"])
    assert y.shape == x.shape and y.dtype == x.dtype
    assert all(g.dtype == x.dtype for g in grads)
    axes = (0, *range(2, x.ndim))
    bad_channel = ~np.isfinite(x).all(axis=axes)
    for array in (y, grads[0]):
        moved = np.moveaxis(array, 1, 0).reshape(x.shape[1], -1)
        assert np.isnan(moved[bad_channel]).all(), f"batch_norm extreme {x.shape}"


# ------------------------------------------------------------------------- invalid


@examples(3.0)
@given(linear_case(), st.data())
def test_linear_invalid_arguments(case, draw):
    x, w, b = case
    dy = np.zeros((x.shape[0], w.shape[0]), x.dtype)
    which = draw.draw(st.sampled_from(["x", "weight", "bias", "dy"]))
    arrays = {"x": x, "weight": w, "bias": b, "dy": dy}
    if which == "bias":
        arrays["bias"] = draw.draw(st.sampled_from(
            [*bad_arrays(np.zeros(w.shape[0], x.dtype), optional=True),
             np.zeros(w.shape[0] + 1, x.dtype), np.zeros((w.shape[0], 1), x.dtype),
             other_float(np.zeros(w.shape[0], x.dtype))]
        ))
    else:
        a = arrays[which]
        arrays[which] = draw.draw(st.sampled_from(
            # An empty batch (x) or no output features (weight) is valid.
            [*bad_arrays(a), *reshaped_bad(a, empty_first=which == "dy"),
             other_float(a),
             np.zeros((a.shape[0], a.shape[1] + 1), a.dtype)]
        ))
    what = f"linear {which}"
    # x with more or fewer leading (batch) axes is valid for linear, as in torch,
    # but never with this dy: only linear_backward must refuse it.
    new_x = arrays["x"]
    other_rank = (which == "x" and isinstance(new_x, np.ndarray)
                  and new_x.dtype == x.dtype and new_x.ndim != 2
                  and new_x.shape[-1:] == (w.shape[1],))
    if which != "dy" and not other_rank:
        expect_rejected(lambda: F.linear(arrays["x"], arrays["weight"],
                                         arrays["bias"]), what)
    if which != "bias":
        expect_rejected(lambda: F.linear_backward(arrays["dy"], arrays["x"],
                                                  arrays["weight"]), what)


@examples(3.0)
@given(bn_case(), st.data())
def test_batch_norm_invalid_arguments(case, draw):
    x, kw, momentum = case
    c = x.shape[1]
    which = draw.draw(st.sampled_from(["x", "dy", "running_mean", "running_var",
                                       "weight", "training", "eps", "momentum",
                                       "one_value"]))
    kw = dict(kw, momentum=momentum)
    dy = np.zeros_like(x)
    per_channel = np.ones(c, x.dtype)
    if which == "x":
        x = draw.draw(st.sampled_from(
            # Empty x is valid (an empty result), whatever axis is empty; so are
            # 2-D, 3-D and 4-D x of another shape where nothing fixes C.
            [*bad_arrays(x), np.zeros((1,) * 5, x.dtype)]
            + [a for a in reshaped_bad(x, empty_first=False, empty_last=False)
               if a.ndim not in (2, 3, 4)]
            + ([other_float(x)] if kw["running_mean"] is not None else [])
        ))
    elif which == "dy":
        dy = draw.draw(st.sampled_from([*bad_arrays(dy), *reshaped_bad(dy),
                                        other_float(dy)]))
    elif which in ("running_mean", "running_var", "weight"):
        kw[which] = draw.draw(st.sampled_from(
            [*bad_arrays(per_channel, optional=True), *reshaped_bad(per_channel),
             other_float(per_channel), np.ones(c + 1, x.dtype)]
        ))
    elif which == "training":
        kw["training"] = draw.draw(st.sampled_from(NOT_BOOLS))
    elif which in ("eps", "momentum"):
        kw[which] = draw.draw(st.sampled_from(
            [*NOT_REALS, *NON_FINITE, -0.1] + ([0.0] if which == "eps" else [1.5])
        ))
    else:  # one value per channel cannot be normalised in training
        x = x[(slice(0, 1), slice(None)) + (slice(0, 1),) * (x.ndim - 2)]
        dy = np.zeros_like(x)
        kw.update(training=True, running_mean=None, running_var=None, weight=None)
    what = f"batch_norm {which} {kw.get(which, '')!r:.60}"
    momentum = kw.pop("momentum")
    if which != "dy":
        expect_rejected(lambda: F.batch_norm(x, bias=None, momentum=momentum, **kw),
                        what)
    if which != "momentum":
        expect_rejected(lambda: F.batch_norm_backward(dy, x, **kw), what)
