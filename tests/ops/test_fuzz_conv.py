"""Fuzzing conv2d and conv2d_backward: random valid configurations against the naive
reference, random invalid arguments (ValueError/TypeError only) and extreme values."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import fastcnn.functional as F
from fastcnn.functional.conv import conv_geometry

from .. import naive
from ..fuzz_support import (
    COUNTS,
    FLOATS,
    NOT_INTS,
    assert_ieee_close,
    bad_arrays,
    bad_sizes,
    data,
    examples,
    expect_rejected,
    extreme_data,
    other_float,
    reshaped_bad,
)


@st.composite
def conv_config(draw):
    """Hyper-parameters and shapes of a valid convolution, small enough for the
    naive reference."""
    groups = draw(st.integers(1, 2))
    cin_g, cout_g = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2),
                                                           st.integers(0, 2)),
                             st.sampled_from(["same", "valid"])))
    stride = draw(
        st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))
    )
    pad = (0, 0) if isinstance(padding, str) else (
        padding if isinstance(padding, tuple) else (padding, padding))
    spans = [dilation[i] * (k[i] - 1) + 1 for i in range(2)]
    h = draw(st.integers(max(1, spans[0] - 2 * pad[0]), 7))
    w = draw(st.integers(max(1, spans[1] - 2 * pad[1]), 7))
    n = draw(st.integers(1, 2))
    return {"x_shape": (n, cin_g * groups, h, w),
            "w_shape": (cout_g * groups, cin_g, *k),
            "stride": stride, "padding": padding, "dilation": dilation,
            "groups": groups}


@st.composite
def conv_case(draw, fill=data):
    cfg = draw(conv_config())
    dtype = draw(st.sampled_from(FLOATS))
    x = draw(fill(cfg["x_shape"], dtype))
    w = draw(data(cfg["w_shape"], dtype))
    b = draw(st.one_of(st.none(), data((cfg["w_shape"][0],), dtype)))
    args = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}
    return x, w, b, args


def _reference(x, w, b, args, dy):
    geo = conv_geometry("test", x.shape, w.shape, **args)
    ref = (geo.stride, geo.pad_h, geo.pad_w, geo.dilation, args["groups"])
    with np.errstate(all="ignore"):
        y = naive.conv2d(x, w, b, *ref)
        grads = naive.conv2d_backward(dy, x, w, *ref)
        # Sums of |terms|: the scale the summation error is measured against.
        mag_y = naive.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b),
                             *ref)
        mag = naive.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), *ref)
    return y, grads, mag_y, mag


def _check(x, w, b, args, seed, what):
    y = F.conv2d(x, w, b, **args)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dx, dw, db = F.conv2d_backward(dy, x, w, **args)
    ry, rgrads, mag_y, mag = _reference(x, w, b, args, dy)
    assert_ieee_close(y, ry, x.dtype, f"{what} y", mag_y)
    for name, got, ref, m in zip(("dx", "dweight", "dbias"), (dx, dw, db), rgrads,
                                 mag, strict=True):
        assert_ieee_close(got, ref, x.dtype, f"{what} {name}", m)


@examples(0.7)
@given(conv_case(), st.integers(0, 2**32 - 1))
def test_valid_configurations_match_naive(case, seed):
    COUNTS["valid"] += 1
    x, w, b, args = case
    _check(x, w, b, args, seed, f"conv2d {args}")


@examples(0.5)
@given(conv_case(fill=extreme_data), st.integers(0, 2**32 - 1))
def test_extreme_values_propagate_like_the_reference(case, seed):
    """±1e30, denormals, ±inf and NaN in x: the same NaNs and infinities as the
    float64 reference evaluated the same way (zero padding multiplies too)."""
    COUNTS["extreme"] += 1
    x, w, b, args = case
    _check(x, w, b, args, seed, f"conv2d extreme {args}")


# ------------------------------------------------------------------------- invalid

_SIZE_ARGS = {"stride": 1, "dilation": 1, "groups": 1}


def _invalid_calls(x, w, b, args, dy, draw):
    """(description, call) for one argument replaced by an invalid value."""
    which = draw(st.sampled_from(["x", "weight", "bias", "dy", "stride", "dilation",
                                  "groups", "padding", "geometry"]))
    call_args = dict(args)
    arrays = {"x": x, "weight": w, "bias": b, "dy": dy}
    if which in ("x", "weight", "dy") or (which == "bias" and b is not None):
        original = arrays[which]
        bad = draw(st.sampled_from(
            [*bad_arrays(original, optional=which == "bias"), other_float(original),
             # An empty batch (x) or no filters (weight) is valid.
             *reshaped_bad(original, empty_first=which == "dy")]
        ))
        arrays[which] = bad
    elif which == "bias":
        arrays["bias"] = draw(st.sampled_from(
            [np.zeros(w.shape[0] + 1, x.dtype), np.zeros((w.shape[0], 1), x.dtype),
             other_float(np.zeros(w.shape[0], x.dtype)), "b", [0.0] * w.shape[0]]
        ))
    elif which in ("stride", "dilation"):
        call_args[which] = draw(st.sampled_from(bad_sizes(1)))
    elif which == "groups":
        call_args["groups"] = draw(st.sampled_from(
            [0, -1, 2**31, 2**64, None, 1.0, True, "1", [1], x.shape[1] + 1]
        ))
    elif which == "padding":
        call_args["padding"] = draw(st.sampled_from(
            [*bad_sizes(0), "full", "SAME", "", b"same"]
        ))
    else:  # a kernel larger than the padded input
        call_args = dict(args, padding=0, dilation=1)
        arrays["weight"] = np.zeros((w.shape[0], w.shape[1], x.shape[2] + 1, 1),
                                    x.dtype)
    description = f"{which}: {call_args} shapes " + str(
        {k: getattr(v, "shape", type(v).__name__) for k, v in arrays.items()}
    )

    def forward():
        return F.conv2d(arrays["x"], arrays["weight"], arrays["bias"], **call_args)

    def backward():
        return F.conv2d_backward(arrays["dy"], arrays["x"], arrays["weight"],
                                 **call_args)

    if which == "bias":
        return [(description, forward)]
    if which == "dy":
        return [(description, backward)]
    return [(description, forward), (description, backward)]


@examples(3.0)
@given(conv_case(), st.data())
def test_invalid_arguments_raise_value_or_type_error(case, draw):
    x, w, b, args = case
    dy = np.zeros((x.shape[0], w.shape[0],
                   *conv_geometry("t", x.shape, w.shape, **args).out_hw), x.dtype)
    for what, call in _invalid_calls(x, w, b, args, dy, draw.draw):
        expect_rejected(call, f"conv2d {what}")


def test_every_not_an_int_is_refused_for_every_size_argument():
    """The fixed lists, once each (hypothesis samples them above)."""
    x = np.zeros((1, 2, 5, 5))
    w = np.zeros((2, 2, 3, 3))
    for name in _SIZE_ARGS:
        for bad in [*NOT_INTS, *bad_sizes(1)]:
            expect_rejected(lambda: F.conv2d(x, w, **{name: bad}),  # noqa: B023
                            f"conv2d {name}={bad!r}")
