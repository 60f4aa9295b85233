"""Fuzzing max_pool2d, avg_pool2d, global_avg_pool2d and their backwards: random
valid configurations against the naive references, random invalid arguments and
extreme values (NaN wins a max window; -inf windows still route their gradient)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import fastcnn.functional as F
from fastcnn.functional.pool import pool_geometry

from .. import naive
from ..fuzz_support import (
    COUNTS,
    FLOATS,
    NOT_BOOLS,
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
def pool_case(draw, kind, fill=data):
    """(x, kwargs) for a valid max ("max") or average ("avg") pooling."""
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.integers(1, 3),
                            st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    dilation = (1, 1) if kind == "avg" else (draw(st.integers(1, 2)),
                                            draw(st.integers(1, 2)))
    ceil_mode = draw(st.booleans())
    spans = [dilation[i] * (k[i] - 1) + 1 for i in range(2)]
    h = draw(st.integers(max(1, spans[0] - 2 * padding[0]), 7))
    w = draw(st.integers(max(1, spans[1] - 2 * padding[1]), 7))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    x = draw(fill(shape, draw(st.sampled_from(FLOATS))))
    kwargs = {"kernel_size": k, "stride": stride, "padding": padding,
              "ceil_mode": ceil_mode}
    if kind == "avg":
        kwargs["count_include_pad"] = draw(st.booleans())
    else:
        kwargs["dilation"] = dilation
    return x, kwargs


def _geo(x, kwargs):
    return pool_geometry("t", x.shape, kwargs["kernel_size"], kwargs["stride"],
                         kwargs["padding"], kwargs.get("dilation", 1),
                         kwargs["ceil_mode"])


def _check_max(x, kwargs, seed, what):
    y = F.max_pool2d(x, **kwargs)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dx = F.max_pool2d_backward(dy, x, **kwargs)
    geo = _geo(x, kwargs)
    args = (geo.kernel, geo.stride, geo.padding, geo.dilation)
    with np.errstate(all="ignore"):
        ry = naive.max_pool2d(x, *args, kwargs["ceil_mode"])
        rdx = naive.max_pool2d_backward(dy, x, *args)
        mag = naive.max_pool2d_backward(np.abs(dy), x, *args)
    assert_ieee_close(y, ry, x.dtype, f"{what} y", tol=0)
    assert_ieee_close(dx, rdx, x.dtype, f"{what} dx", mag)


def _check_avg(x, kwargs, seed, what):
    y = F.avg_pool2d(x, **kwargs)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dx = F.avg_pool2d_backward(dy, x, **kwargs)
    geo = _geo(x, kwargs)
    cip = kwargs["count_include_pad"]
    args = (geo.kernel, geo.stride, geo.padding)
    with np.errstate(all="ignore"):
        ry = naive.avg_pool2d(x, *args, kwargs["ceil_mode"], cip)
        mag_y = naive.avg_pool2d(np.abs(x), *args, kwargs["ceil_mode"], cip)
        rdx = naive.avg_pool2d_backward(dy, x, *args, cip)
        mag = naive.avg_pool2d_backward(np.abs(dy), x, *args, cip)
    assert_ieee_close(y, ry, x.dtype, f"{what} y", mag_y)
    assert_ieee_close(dx, rdx, x.dtype, f"{what} dx", mag)


def _check_global(x, seed, what):
    y = F.global_avg_pool2d(x)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dx = F.global_avg_pool2d_backward(dy, x)
    with np.errstate(all="ignore"):
        ry = naive.global_avg_pool2d(x)
        mag = naive.global_avg_pool2d(np.abs(x))
    assert_ieee_close(y, ry, x.dtype, f"{what} y", mag)
    assert_ieee_close(dx, naive.global_avg_pool2d_backward(dy, x), x.dtype,
                      f"{what} dx")


@examples()
@given(pool_case("max"), st.integers(0, 2**32 - 1))
def test_max_pool_valid_configurations_match_naive(case, seed):
    COUNTS["valid"] += 1
    _check_max(*case, seed, f"max_pool2d {case[1]}")


@examples()
@given(pool_case("avg"), st.integers(0, 2**32 - 1))
def test_avg_pool_valid_configurations_match_naive(case, seed):
    COUNTS["valid"] += 1
    _check_avg(*case, seed, f"avg_pool2d {case[1]}")


@examples(0.5)
@given(pool_case("avg"), st.integers(0, 2**32 - 1))
def test_global_avg_pool_matches_naive(case, seed):
    COUNTS["valid"] += 1
    _check_global(case[0], seed, "global_avg_pool2d")


@examples()
@given(st.sampled_from(["max", "avg", "global"]), st.data(),
       st.integers(0, 2**32 - 1))
def test_extreme_values_propagate_like_the_reference(kind, draw, seed):
    COUNTS["extreme"] += 1
    x, kwargs = draw.draw(pool_case("avg" if kind == "global" else kind,
                                    fill=extreme_data))
    if kind == "max":
        _check_max(x, kwargs, seed, f"max_pool2d extreme {kwargs}")
    elif kind == "avg":
        _check_avg(x, kwargs, seed, f"avg_pool2d extreme {kwargs}")
    else:
        _check_global(x, seed, "global_avg_pool2d extreme")


# ------------------------------------------------------------------------- invalid


@examples(3.0)
@given(st.sampled_from(["max", "avg"]), st.data())
def test_invalid_arguments_raise_value_or_type_error(kind, draw):
    x, kwargs = draw.draw(pool_case(kind))
    geo = _geo(x, kwargs)
    dy = np.zeros((*x.shape[:2], *geo.out_hw), x.dtype)
    forward = F.max_pool2d if kind == "max" else F.avg_pool2d
    backward = F.max_pool2d_backward if kind == "max" else F.avg_pool2d_backward
    names = ["x", "dy", "kernel_size", "stride", "padding", "ceil_mode", "too_small"]
    names += ["dilation"] if kind == "max" else ["count_include_pad"]
    which = draw.draw(st.sampled_from(names))
    kw = dict(kwargs)
    arrays = {"x": x, "dy": dy}
    if which in ("x", "dy"):
        arrays[which] = draw.draw(st.sampled_from(
            # An empty batch of x is valid (an empty result).
            [*bad_arrays(arrays[which]),
             *reshaped_bad(arrays[which], empty_first=which == "dy")]
            + ([other_float(dy)] if which == "dy" else [])
        ))
    elif which in ("kernel_size", "stride", "dilation"):
        kw[which] = draw.draw(st.sampled_from(
            [v for v in bad_sizes(1) if not (which == "stride" and v is None)]
        ))
    elif which == "padding":
        k = geo.kernel
        kw[which] = draw.draw(st.sampled_from(
            [*bad_sizes(0), (k[0] // 2 + 1, 0), (0, k[1] // 2 + 1)]
        ))
    elif which in ("ceil_mode", "count_include_pad"):
        kw[which] = draw.draw(st.sampled_from(NOT_BOOLS))
    else:  # a window larger than the padded input
        kw.update(kernel_size=(x.shape[2] + 3, 1), padding=0, stride=None,
                  ceil_mode=False)
        kw.pop("dilation", None)
    what = f"{kind}_pool2d {which}={kw} x {getattr(arrays['x'], 'shape', None)}"
    if which != "dy":
        expect_rejected(lambda: forward(arrays["x"], **kw), what)
    expect_rejected(lambda: backward(arrays["dy"], arrays["x"], **kw), what)


@examples()
@given(pool_case("avg"), st.data())
def test_global_pool_invalid_arguments(case, draw):
    x = case[0]
    dy = np.zeros(x.shape[:2], x.dtype)
    which = draw.draw(st.sampled_from(["x", "dy"]))
    if which == "x":
        # Any empty axis of x is valid here (an empty result, or NaN means).
        bad = draw.draw(st.sampled_from([*bad_arrays(x), *reshaped_bad(
            x, empty_first=False, empty_last=False), x[:, :, :, :, None]]))
        expect_rejected(lambda: F.global_avg_pool2d(bad), f"global x {bad!r:.80}")
        expect_rejected(lambda: F.global_avg_pool2d_backward(dy, bad),
                        f"global backward x {bad!r:.80}")
    else:
        bad = draw.draw(st.sampled_from([*bad_arrays(dy), *reshaped_bad(dy),
                                         other_float(dy)]))
        expect_rejected(lambda: F.global_avg_pool2d_backward(bad, x),
                        f"global backward dy {bad!r:.80}")
