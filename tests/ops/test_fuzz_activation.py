"""Fuzzing the activations (relu, leaky_relu, sigmoid, tanh, softmax, log_softmax)
and dropout, forward and backward: any shape, layout and dtype against the naive
references; invalid arguments; extreme values."""

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

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


def _ops(x, extra):
    """name -> (forward, backward(dy, x, y), reference forward, reference backward),
    with the op's scalar arguments from ``extra``."""
    slope, dim, p, seed = extra["slope"], extra["dim"] % x.ndim, extra["p"], extra[
        "seed"]
    return {
        "relu": (F.relu, lambda dy, x, y: F.relu_backward(dy, x),
                 naive.relu, lambda dy, x, y: naive.relu_backward(dy, x)),
        "leaky_relu": (lambda x: F.leaky_relu(x, slope),
                       lambda dy, x, y: F.leaky_relu_backward(dy, x, slope),
                       lambda x: naive.leaky_relu(x, x.dtype.type(slope)),
                       lambda dy, x, y: naive.leaky_relu_backward(
                           dy, x, x.dtype.type(slope))),
        "sigmoid": (F.sigmoid, lambda dy, x, y: F.sigmoid_backward(dy, y),
                    naive.sigmoid, lambda dy, x, y: naive.sigmoid_backward(dy, y)),
        "tanh": (F.tanh, lambda dy, x, y: F.tanh_backward(dy, y),
                 naive.tanh, lambda dy, x, y: naive.tanh_backward(dy, y)),
        "softmax": (lambda x: F.softmax(x, dim),
                    lambda dy, x, y: F.softmax_backward(dy, y, dim),
                    lambda x: naive.softmax(x, dim),
                    lambda dy, x, y: naive.softmax_backward(dy, y, dim)),
        "log_softmax": (lambda x: F.log_softmax(x, dim),
                        lambda dy, x, y: F.log_softmax_backward(dy, y, dim),
                        lambda x: naive.log_softmax(x, dim),
                        lambda dy, x, y: naive.log_softmax_backward(dy, y, dim)),
        "dropout": (lambda x: F.dropout(x, p, True, seed),
                    lambda dy, x, y: F.dropout_backward(dy, p, True, seed),
                    lambda x: naive.dropout(x, p, True, seed),
                    lambda dy, x, y: naive.dropout(dy, p, True, seed)),
    }


extras = st.fixed_dictionaries({
    "slope": st.floats(-3, 3, allow_nan=False),
    "dim": st.integers(-4, 3),
    "p": st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0]),
    "seed": st.integers(0, 2**64 - 1),
})

NAMES = ["relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax", "dropout"]


def _formula_backward(name, dim):
    """torch's softmax backward formulas in float64 NumPy: with infinite or NaN
    upstream gradients the Jacobian sum of the naive reference makes other NaNs,
    so extremes are compared with the formula the kernels (and torch) evaluate."""
    def softmax_backward(dy, x, y):
        dy, y = dy.astype(np.float64), y.astype(np.float64)
        return y * (dy - np.sum(dy * y, axis=dim, keepdims=True))

    def log_softmax_backward(dy, x, y):
        dy, y = dy.astype(np.float64), y.astype(np.float64)
        return dy - np.exp(y) * np.sum(dy, axis=dim, keepdims=True)

    return {"softmax": softmax_backward,
            "log_softmax": log_softmax_backward}.get(name)


def _check(name, x, dy, extra, what, extreme=False):
    forward, backward, ref_forward, ref_backward = _ops(x, extra)[name]
    if extreme and _formula_backward(name, extra["dim"] % x.ndim):
        ref_backward = _formula_backward(name, extra["dim"] % x.ndim)
    y = forward(x)
    dx = backward(dy, x, y)
    with np.errstate(all="ignore"):
        ry = ref_forward(np.asarray(x))
        # The references of the backwards that take y get our y: the gradient is
        # checked given the output, not the output twice.
        rdx = ref_backward(dy, x, y)
    assert_ieee_close(y, ry, x.dtype, f"{what} y")
    assert_ieee_close(dx, rdx, x.dtype, f"{what} dx")


@examples(2.0)
@given(st.sampled_from(NAMES), shapes, st.sampled_from(FLOATS), extras, st.data())
def test_valid_inputs_match_naive(name, shape, dtype, extra, draw):
    COUNTS["valid"] += 1
    x = draw.draw(data(shape, dtype))
    dy = draw.draw(data(shape, dtype, style="normal"))
    _check(name, x, dy, extra, f"{name} {shape} {extra}")


@examples(2.0)
@given(st.sampled_from(NAMES), shapes, st.sampled_from(FLOATS), extras, st.data())
def test_extreme_values_propagate_like_the_reference(name, shape, dtype, extra,
                                                     draw):
    COUNTS["extreme"] += 1
    x = draw.draw(extreme_data(shape, dtype))
    dy = draw.draw(extreme_data(shape, dtype))
    _check(name, x, dy, extra, f"{name} extreme {shape} {extra}", extreme=True)


# ------------------------------------------------------------------------- invalid


def _call(name, x, dy, slope=0.01, dim=-1, p=0.5, training=True, seed=7,
          backward=False):
    if name == "dropout":
        if backward:
            return F.dropout_backward(dy, p, training, seed)
        return F.dropout(x, p, training, seed)
    scalar = {"leaky_relu": (slope,), "softmax": (dim,), "log_softmax": (dim,)}
    args = scalar.get(name, ())
    if backward:
        return getattr(F, f"{name}_backward")(dy, x, *args)
    return getattr(F, name)(x, *args)


@examples(4.0)
@given(st.sampled_from(NAMES), shapes, st.sampled_from(FLOATS), st.data())
def test_invalid_arguments_raise_value_or_type_error(name, shape, dtype, draw):
    x = draw.draw(data(shape, dtype))
    dy = np.zeros(shape, dtype)
    choices = ["x", "dy"]
    if name == "leaky_relu":
        choices.append("slope")
    if name in ("softmax", "log_softmax"):
        choices.append("dim")
    if name == "dropout":
        choices = ["x", "dy", "p", "training", "seed"]
    which = draw.draw(st.sampled_from(choices))
    kw = {}
    if which == "x":
        bad = list(bad_arrays(x))
        if name != "dropout":  # dropout takes any array, 0-d included
            bad += [np.zeros((), dtype)]
        x = draw.draw(st.sampled_from(bad))
        calls = [False] if name == "dropout" else [False, True]
    elif which == "dy":
        bad = list(bad_arrays(dy))
        if name != "dropout":
            bad += [other_float(dy), dy[None, ...], np.zeros((*shape, 2), dtype)]
        dy = draw.draw(st.sampled_from(bad))
        calls = [True]
    elif which == "slope":
        kw["slope"] = draw.draw(st.sampled_from([*NOT_REALS, *NON_FINITE]))
        calls = [False, True]
    elif which == "dim":
        kw["dim"] = draw.draw(st.sampled_from(
            [v for v in NOT_INTS if not isinstance(v, np.float64)]
            + [len(shape), -len(shape) - 1, 2**64, -(2**63)]
        ))
        calls = [False, True]
    elif which == "p":
        kw["p"] = draw.draw(st.sampled_from([*NOT_REALS, *NON_FINITE, -0.1, 1.5]))
        calls = [False, True]
    elif which == "training":
        kw["training"] = draw.draw(st.sampled_from(NOT_BOOLS))
        calls = [False, True]
    else:
        kw["seed"] = draw.draw(st.sampled_from(
            [-1, 2**64, 1.5, "1", True, [1], np.float64(3.0)]
        ))
        calls = [False, True]
    for backward in calls:
        expect_rejected(lambda: _call(name, x, dy, backward=backward, **kw),  # noqa: B023
                        f"{name} backward={backward} {which} {kw}")


def test_dropout_backward_needs_the_seed_in_training():
    expect_rejected(lambda: F.dropout_backward(np.ones(3), 0.5, True, None),
                    "dropout_backward seed=None")
