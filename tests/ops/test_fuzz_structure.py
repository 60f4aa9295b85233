"""Fuzzing multiply, pad, dropout2d and channel_scale with their backwards: random
valid shapes against the slow references of test_structure_ops.py, extreme values,
and random invalid arguments (which must raise ValueError or TypeError)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import fastcnn.functional as F

from ..fuzz_support import (
    COUNTS,
    FLOATS,
    NON_FINITE,
    NOT_BOOLS,
    NOT_INTS,
    NOT_REALS,
    assert_ieee_close,
    bad_arrays,
    data,
    examples,
    expect_rejected,
    extreme_data,
    other_float,
)
from .test_structure_ops import (
    ref_channel_scale,
    ref_channel_scale_backward,
    ref_dropout2d,
    ref_multiply,
    ref_multiply_backward,
    ref_pad,
    ref_pad_backward,
)

# -------------------------------------------------------------------------- valid


@st.composite
def broadcast_shapes(draw, most=3):
    """2 to ``most`` shapes that broadcast: a full shape, and others that keep, drop
    (to 1) or leave out (leading axes) each of its axes."""
    full = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    shapes = [tuple(full)]
    for _ in range(draw(st.integers(1, most - 1))):
        cut = draw(st.integers(0, len(full) - 1))
        shapes.append(tuple(n if draw(st.booleans()) else 1 for n in full[cut:]))
    order = draw(st.permutations(range(len(shapes))))
    return [shapes[i] for i in order]


@st.composite
def multiply_case(draw, fill=data, most=3):
    dtype = draw(st.sampled_from(FLOATS))
    return [draw(fill(s, dtype)) for s in draw(broadcast_shapes(most))]


@st.composite
def pad_case(draw, fill=data):
    dtype = draw(st.sampled_from(FLOATS))
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    amounts = []
    for size in reversed(shape[-2:] if ndim > 1 and draw(st.booleans()) else
                         shape[-1:]):
        before = draw(st.integers(-size, 3))
        after = draw(st.integers(-(size + min(before, 0)), 3))
        amounts += [before, after]
    return draw(fill(shape, dtype)), tuple(amounts)


@st.composite
def scale_case(draw, fill=data):
    dtype = draw(st.sampled_from(FLOATS))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=2, max_size=4)))
    x = draw(fill(shape, dtype))
    return x, draw(data((shape[1],), dtype))


def _check_multiply(xs, seed, what):
    y = F.multiply(xs)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(xs[0].dtype)
    grads = F.multiply_backward(dy, xs)
    with np.errstate(all="ignore"):
        ry = ref_multiply(xs)
        mag_y = ref_multiply([np.abs(x) for x in xs])
        rgrads = ref_multiply_backward(dy, xs)
        mags = ref_multiply_backward(np.abs(dy), [np.abs(x) for x in xs])
    assert_ieee_close(y, ry, xs[0].dtype, f"{what} y", mag_y)
    for i, (g, r, m) in enumerate(zip(grads, rgrads, mags, strict=True)):
        assert g.shape == xs[i].shape
        assert_ieee_close(g, r, xs[0].dtype, f"{what} dx[{i}]", m)


@examples()
@given(multiply_case(), st.integers(0, 2**32 - 1))
def test_multiply_valid_shapes_match_naive(xs, seed):
    COUNTS["valid"] += 1
    _check_multiply(xs, seed, f"multiply {[x.shape for x in xs]}")


@examples()
# Two inputs: with three, a float32 product may overflow to inf before a later
# factor of 0 makes it NaN, where the float64 reference stays finite (torch's
# float32 product does what fastcnn's does).
@given(multiply_case(fill=extreme_data, most=2), st.integers(0, 2**32 - 1))
def test_multiply_extreme_values_propagate_like_the_reference(xs, seed):
    COUNTS["extreme"] += 1
    _check_multiply(xs, seed, f"multiply extreme {[x.shape for x in xs]}")


@examples()
@given(pad_case(fill=extreme_data), st.sampled_from([0.0, -2.5, np.inf, np.nan]),
       st.integers(0, 2**32 - 1))
def test_pad_valid_amounts_match_naive_bit_for_bit(case, value, seed):
    COUNTS["valid"] += 1
    x, pad = case
    y = F.pad(x, pad, value=value)
    np.testing.assert_array_equal(y, ref_pad(x, pad, value).astype(x.dtype),
                                  f"pad {x.shape} {pad}")
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    np.testing.assert_array_equal(F.pad_backward(dy, pad), ref_pad_backward(dy, pad),
                                  f"pad_backward {x.shape} {pad}")


@examples()
@given(st.sampled_from(FLOATS), st.data(), st.sampled_from([0.0, 0.2, 0.5, 1.0]),
       st.integers(0, 2**64 - 1))
def test_dropout2d_random_shapes_match_naive_bit_for_bit(dtype, draw, p, seed):
    COUNTS["valid"] += 1
    shape = tuple(draw.draw(st.lists(st.integers(1, 4), min_size=4, max_size=4)))
    x = draw.draw(extreme_data(shape, dtype))
    with np.errstate(invalid="ignore"):  # inf * 0 in the reference
        want = x.copy() if p == 0 else ref_dropout2d(x, p, seed)
    np.testing.assert_array_equal(F.dropout2d(x, p, True, seed), want)
    np.testing.assert_array_equal(F.dropout2d_backward(x, p, True, seed), want)


@examples()
@given(scale_case(fill=extreme_data), st.integers(0, 2**32 - 1))
def test_channel_scale_random_shapes_match_naive(case, seed):
    COUNTS["extreme"] += 1
    x, w = case
    y = F.channel_scale(x, w)
    dy = np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype)
    dx, dw = F.channel_scale_backward(dy, x, w)
    with np.errstate(all="ignore"):
        ry = ref_channel_scale(x, w)
        rdx, rdw = ref_channel_scale_backward(dy, x, w)
        _, mag = ref_channel_scale_backward(np.abs(dy), np.abs(x), np.abs(w))
    assert_ieee_close(y, ry, x.dtype, "channel_scale y", tol=0)
    assert_ieee_close(dx, rdx, x.dtype, "channel_scale dx", tol=0)
    assert_ieee_close(dw, rdw, x.dtype, "channel_scale dweight", mag)


# ------------------------------------------------------------------------ invalid


@examples(2.0)
@given(multiply_case(), st.data())
def test_multiply_invalid_arguments(xs, draw):
    y = F.multiply(xs)
    which = draw.draw(st.sampled_from(["xs", "entry", "shape", "dtype", "dy"]))
    if which == "xs":
        bad = draw.draw(st.sampled_from([None, xs[0], [xs[0]], [], (), "xs", 3.0]))
        expect_rejected(lambda: F.multiply(bad), f"multiply xs={bad!r:.60}")
        expect_rejected(lambda: F.multiply_backward(y, bad), "multiply_backward xs")
        return
    i = draw.draw(st.integers(0, len(xs) - 1))
    bad_xs = list(xs)
    if which == "entry":
        bad_xs[i] = draw.draw(st.sampled_from([*bad_arrays(xs[i]),
                                               np.zeros((), xs[i].dtype)]))
    elif which == "shape":  # a last axis of 2 against one of 3
        bad_xs[i] = np.zeros((*y.shape[:-1], 2), xs[i].dtype)
        bad_xs[(i + 1) % len(xs)] = np.zeros((*y.shape[:-1], 3), xs[i].dtype)
    elif which == "dtype":
        bad_xs[i] = other_float(xs[i])
    else:
        bad_dy = draw.draw(st.sampled_from([*bad_arrays(y), other_float(y), y[None],
                                            np.zeros((*y.shape, 2), y.dtype)]))
        expect_rejected(lambda: F.multiply_backward(bad_dy, xs),
                        f"multiply_backward dy {getattr(bad_dy, 'shape', bad_dy)}")
        return
    expect_rejected(lambda: F.multiply(bad_xs), f"multiply {which}")
    expect_rejected(lambda: F.multiply_backward(y, bad_xs),
                    f"multiply_backward {which}")


@examples(2.0)
@given(pad_case(), st.data())
def test_pad_invalid_arguments(case, draw):
    x, pad = case
    which = draw.draw(st.sampled_from(["x", "pad", "crop", "mode", "value", "dy"]))
    if which == "x":
        bad = draw.draw(st.sampled_from([*bad_arrays(x), np.zeros((), x.dtype)]))
        expect_rejected(lambda: F.pad(bad, pad), f"pad x {bad!r:.60}")
    elif which == "pad":
        bad = draw.draw(st.sampled_from([
            *[v for v in NOT_INTS if not (isinstance(v, tuple) and len(v) == 2
                                          and all(isinstance(q, int) for q in v))],
            (), (1,), (1, 1, 1), (1, 1, 1, 1, 1, 1), (2**31, 0), (0, -(2**40)),
            (0, 0, 2**64, 0), (1, 1.0), (np.float64(1), 1), (True, 0),
        ]))
        expect_rejected(lambda: F.pad(x, bad), f"pad pad={bad!r:.60}")
        expect_rejected(lambda: F.pad_backward(x, bad), f"pad_backward pad={bad!r:.60}")
    elif which == "crop":  # a crop larger than the axis
        bad = (-(x.shape[-1] + 1), 0) + tuple(pad[2:])
        expect_rejected(lambda: F.pad(x, bad), f"pad crop {bad} of {x.shape}")
    elif which == "mode":
        mode = draw.draw(st.sampled_from(["reflect", "replicate", "circular", "",
                                          "CONSTANT", None, 0, b"constant"]))
        expect_rejected(lambda: F.pad(x, pad, mode), f"pad mode={mode!r}")
    elif which == "value":
        value = draw.draw(st.sampled_from([v for v in NOT_REALS if v is not None]))
        expect_rejected(lambda: F.pad(x, pad, value=value), f"pad value={value!r}")
    else:
        y = F.pad(x, pad)
        bad = draw.draw(st.sampled_from([*bad_arrays(y), np.zeros((), y.dtype)]))
        expect_rejected(lambda: F.pad_backward(bad, pad),
                        f"pad_backward dy {bad!r:.60}")


@examples(2.0)
@given(st.sampled_from(FLOATS), st.data())
def test_dropout2d_invalid_arguments(dtype, draw):
    x = np.zeros((2, 3, 2, 2), dtype)
    which = draw.draw(st.sampled_from(["x", "p", "training", "seed"]))
    kw = {"p": 0.5, "training": True, "seed": 1}
    bad_x = x
    if which == "x":
        bad_x = draw.draw(st.sampled_from([*bad_arrays(x), x[0], x[None],
                                           np.zeros((2, 3), dtype)]))
    elif which == "p":
        kw["p"] = draw.draw(st.sampled_from([*NOT_REALS, *NON_FINITE, -0.1, 1.01]))
    elif which == "training":
        kw["training"] = draw.draw(st.sampled_from(NOT_BOOLS))
    else:
        kw["seed"] = draw.draw(st.sampled_from([-1, 2**64, 1.0, "1", True, [1]]))
    expect_rejected(lambda: F.dropout2d(bad_x, **kw), f"dropout2d {which}")
    expect_rejected(lambda: F.dropout2d_backward(bad_x, **kw),
                    f"dropout2d_backward {which}")


@examples(2.0)
@given(scale_case(), st.data())
def test_channel_scale_invalid_arguments(case, draw):
    x, w = case
    which = draw.draw(st.sampled_from(["x", "weight", "dy"]))
    args = {"x": x, "weight": w, "dy": x}
    if which == "x":
        args["x"] = draw.draw(st.sampled_from([*bad_arrays(x), x[:, :1, None] if
                                               x.shape[1] > 1 else x[:, :0],
                                               other_float(x), x.reshape(-1)]))
    elif which == "weight":
        args["weight"] = draw.draw(st.sampled_from([
            *bad_arrays(w), w[None], np.zeros(w.shape[0] + 1, w.dtype),
            other_float(w), np.zeros((), w.dtype)]))
    else:
        args["dy"] = draw.draw(st.sampled_from([*bad_arrays(x), other_float(x),
                                                x[None], x[:1, :, None]]))
        expect_rejected(lambda: F.channel_scale_backward(args["dy"], x, w),
                        "channel_scale_backward dy")
        return
    expect_rejected(lambda: F.channel_scale(args["x"], args["weight"]),
                    f"channel_scale {which}")
    expect_rejected(lambda: F.channel_scale_backward(x, args["x"], args["weight"]),
                    f"channel_scale_backward {which}")
