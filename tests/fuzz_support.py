"""Shared machinery of the fuzz suites (``tests/*/test_fuzz_*.py``).

- :func:`examples` scales the loaded hypothesis profile (``tests/conftest.py``: "ci"
  by default, "long" with ``FASTCNN_FUZZ=long``) for one test;
- :func:`data` and :func:`laid_out` draw seeded arrays in C, Fortran, strided and
  reversed layouts;
- :func:`expect_rejected` is the one place that decides what an invalid input may do:
  raise ValueError or TypeError. Anything else (IndexError, ZeroDivisionError, a
  Numba TypingError, a silent success) fails the test;
- :func:`assert_ieee_close` compares a result with a float64 reference the IEEE way:
  the same NaNs, the same infinities, finite values within a summation-error bound;
- :data:`COUNTS` counts what ran: ``valid`` and ``extreme`` cases, ``invalid`` inputs
  tried and ``crash`` (invalid inputs that raised anything but ValueError/TypeError).
  With ``FASTCNN_FUZZ_STATS=path`` the counts are written there as JSON at exit
  (added to what the file holds), which is how the long runs were counted.
"""

from __future__ import annotations

import atexit
import collections
import json
import os

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

COUNTS: collections.Counter = collections.Counter()

FLOATS = (np.float32, np.float64)


def examples(weight: float = 1.0) -> settings:
    """The loaded profile's settings with ``max_examples`` scaled by ``weight`` (the
    expensive suites run fewer examples than the cheap ones)."""
    return settings(max_examples=max(1, int(settings.default.max_examples * weight)))


def _write_counts() -> None:  # pragma: no cover - only with FASTCNN_FUZZ_STATS
    path = os.environ.get("FASTCNN_FUZZ_STATS")
    if not path or not COUNTS:
        return
    total = collections.Counter()
    if os.path.exists(path):
        with open(path) as file:
            total.update(json.load(file))
    total.update(COUNTS)
    with open(path, "w") as file:
        json.dump(dict(total), file, indent=1, sort_keys=True)


atexit.register(_write_counts)


# ------------------------------------------------------------------------- arrays


@st.composite
def laid_out(draw, array: np.ndarray) -> np.ndarray:
    """``array``'s values as C-contiguous, Fortran-ordered, a strided view or a view
    with negative strides (the ops must copy what they cannot use as it is)."""
    kind = draw(st.sampled_from(["c", "f", "strided", "reversed"]))
    if kind == "c" or array.ndim == 0:
        return array
    if kind == "f":
        return np.asfortranarray(array)
    if kind == "strided":
        big = np.zeros((*array.shape[:-1], 2 * array.shape[-1]), dtype=array.dtype)
        big[..., ::2] = array
        view = big[..., ::2]
    else:
        view = np.ascontiguousarray(array[..., ::-1])[..., ::-1]
    assert not view.flags.c_contiguous or array.shape[-1] == 1
    return view


@st.composite
def data(draw, shape, dtype, style=None) -> np.ndarray:
    """A seeded array: normal values, or (``ties``) multiples of 0.5 in [-2, 2] so
    that maxima tie; in a random layout."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    style = style or draw(st.sampled_from(["normal", "normal", "ties"]))
    if style == "ties":
        values = rng.integers(-4, 5, size=shape) / 2.0
    else:
        values = rng.standard_normal(shape)
    return draw(laid_out(values.astype(dtype)))


def extreme_values(dtype) -> np.ndarray:
    """±1e30, denormals, ±inf, NaN, zeros of both signs and ordinary numbers."""
    tiny = np.finfo(dtype).smallest_subnormal
    return np.array(
        [1e30, -1e30, tiny, -tiny, 1000 * tiny, np.inf, -np.inf, np.nan, 0.0, -0.0,
         1.0, -2.5, 0.5],
        dtype=dtype,
    )


@st.composite
def extreme_data(draw, shape, dtype) -> np.ndarray:
    """Normal values with a random share replaced by extreme ones."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.standard_normal(shape).astype(dtype)
    share = draw(st.sampled_from([0.1, 0.3, 1.0]))
    mask = rng.random(shape) < share
    picks = rng.choice(extreme_values(dtype), size=shape)
    values[mask] = picks[mask]
    return values


# ------------------------------------------------------------------ invalid inputs


def expect_rejected(call, what: str) -> None:
    """``call()`` must raise ValueError or TypeError: anything else is a bug."""
    COUNTS["invalid"] += 1
    try:
        call()
    except (ValueError, TypeError):
        return
    except Exception as error:  # noqa: BLE001 - any other exception is the bug
        COUNTS["crash"] += 1
        raise AssertionError(
            f"{what}: raised {type(error).__module__}.{type(error).__name__} "
            f"instead of ValueError/TypeError: {error}"
        ) from error
    COUNTS["accepted"] += 1
    raise AssertionError(f"{what}: an invalid input was accepted")


#: Values that are not an int (or a pair of ints) of any kind.
NOT_INTS = [None, "2", 1.5, 2.0, float("nan"), float("inf"), True, False,
            np.bool_(True), [1], (1,), (1, 2, 3), (1, 2.0), ((1,), (2,)), object(),
            1j, b"1", np.float64(2.0)]
#: Ints too large for any size (past the 2**31 - 1 cap, past int64, past uint64).
HUGE_INTS = [2**31, 2**40, 2**63, 2**64, 10**30, -(2**63) - 1]


def bad_sizes(minimum: int) -> list:
    """Values invalid for a size argument (int or pair) that must be >= minimum."""
    below = [minimum - 1, -(2**31), (minimum, minimum - 1), (minimum - 1, minimum)]
    return [*NOT_INTS, *HUGE_INTS, *below, (2**64, 1), (1, 2**40)]


NOT_BOOLS = [None, 0, 1, "True", 1.0, [True], np.float64(1.0), np.array([True])]
NOT_REALS = [None, "0.5", [0.5], True, 1j, object(), np.array([0.5])]
NON_FINITE = [float("nan"), float("inf"), -float("inf")]


def bad_arrays(array: np.ndarray, optional: bool = False) -> list:
    """Values for an array argument that are never valid, whatever the op: not an
    array (None too, unless the argument is ``optional``), or an array of a dtype
    other than float32/float64."""
    shape = array.shape
    return [None] * (not optional) + [
        array.tolist(), "x", 3.0, object(),
        np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.float16),
        np.zeros(shape, dtype=np.complex128), np.zeros(shape, dtype=bool),
        np.full(shape, None, dtype=object), np.zeros(shape, dtype=np.uint8),
        np.zeros(shape, dtype="U1"),
    ]


def other_float(array: np.ndarray) -> np.ndarray:
    """``array`` in the other float dtype (invalid where dtypes must agree)."""
    other = np.float32 if array.dtype == np.float64 else np.float64
    return array.astype(other)


def reshaped_bad(array: np.ndarray, empty_first: bool = True,
                 empty_last: bool = True) -> list:
    """Invalid shapes for a fixed-ndim array argument: an extra axis, a missing
    axis, an empty first axis, an empty last axis. Pass ``empty_first=False`` /
    ``empty_last=False`` where that empty axis is valid for the op (an empty batch
    is, for most ops, as in PyTorch: see tests/ops/test_zero_size.py)."""
    out = [array[None]]
    if empty_first:
        out.append(np.zeros((0, *array.shape[1:]), array.dtype))
    if empty_last:
        out.append(np.zeros((*array.shape[:-1], 0), array.dtype))
    if array.ndim > 1:
        out.append(array[0])
    else:
        out.append(np.zeros((), array.dtype))
    return out


# -------------------------------------------------------------------- comparisons


def assert_ieee_close(actual, expected, dtype, what: str, magnitude=None,
                      tol: float | None = None) -> None:
    """``actual`` (dtype) against a float64 ``expected`` evaluated the same way.

    NaN exactly where the reference is NaN (after rounding it to ``dtype``), the same
    infinities, and finite values within ``tol * magnitude`` plus a few subnormal
    steps, where ``magnitude`` bounds the terms summed (the reference evaluated on
    absolute values; default: the larger of 1 and the largest finite |expected|).
    """
    actual = np.asarray(actual)
    with np.errstate(all="ignore"):
        expected = np.asarray(expected, dtype=np.float64).astype(dtype)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != " \
        f"{expected.shape}"
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}"
    if tol is None:
        tol = 1e-9 if np.dtype(dtype) == np.float64 else 2e-5
    nan_ref, nan_act = np.isnan(expected), np.isnan(actual)
    assert np.array_equal(nan_ref, nan_act), (
        f"{what}: NaN at {np.argwhere(nan_ref != nan_act)[:5].tolist()} differs "
        f"(reference NaN {nan_ref.sum()}, result NaN {nan_act.sum()})"
    )
    inf_ref = np.isinf(expected)
    assert np.array_equal(inf_ref, np.isinf(actual)) and np.array_equal(
        expected[inf_ref], actual[inf_ref]
    ), f"{what}: infinities differ: {expected[inf_ref][:5]} vs {actual[inf_ref][:5]}"
    finite = np.isfinite(expected)
    if magnitude is None:
        top = np.max(np.abs(expected[finite])) if finite.any() else 1.0
        bound = tol * max(1.0, float(top))
    else:
        with np.errstate(all="ignore"):
            bound = tol * np.maximum(np.asarray(magnitude, np.float64), 1.0)
        bound = np.broadcast_to(bound, expected.shape)[finite]
    floor = 64 * float(np.finfo(dtype).smallest_subnormal)
    err = np.abs(actual[finite].astype(np.float64) - expected[finite])
    worst = np.max(err - bound) if err.size else 0.0
    assert worst <= floor, f"{what}: error exceeds the bound by {worst:g}"
