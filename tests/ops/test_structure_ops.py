"""The structure ops of squeeze-and-excitation, padding, channel dropout and layer
scale: multiply (broadcast product), pad (constant, negative amounts crop),
dropout2d and channel_scale with their backwards, against slow references, float64
finite differences and PyTorch; thread-count invariance, layouts, empty inputs
and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn.functional as F

from .. import naive
from ..gradcheck import assert_close, check_finite_differences
from ..threads import assert_thread_count_invariant

DTYPES = [np.float32, np.float64]

# --------------------------------------------------------- slow, obvious references


def _at(x, index):
    """``x`` read at output ``index`` with broadcasting (right-aligned, size-1 axes
    read at 0)."""
    index = index[len(index) - x.ndim:]
    return x[tuple(0 if n == 1 else i for i, n in zip(index, x.shape, strict=True))]


def ref_multiply(xs):
    shape = np.broadcast_shapes(*(x.shape for x in xs))
    y = np.zeros(shape)
    for index in np.ndindex(shape):
        value = 1.0
        for x in xs:
            value *= float(_at(x, index))
        y[index] = value
    return y


def ref_multiply_backward(dy, xs):
    grads = []
    for i, x in enumerate(xs):
        g = np.zeros(x.shape)
        for index in np.ndindex(dy.shape):
            value = float(dy[index])
            for j, other in enumerate(xs):
                if j != i:
                    value *= float(_at(other, index))
            target = index[len(index) - x.ndim:]
            g[tuple(0 if n == 1 else t for t, n in zip(target, x.shape,
                                                      strict=True))] += value
        grads.append(g)
    return grads


def ref_pad(x, pad, value=0.0):
    left, right, top, bottom = (*pad, 0, 0)[:4]
    shape = list(x.shape)
    shape[-1] += left + right
    if len(pad) == 4:
        shape[-2] += top + bottom
    y = np.full(shape, value, dtype=np.float64)
    for index in np.ndindex(*shape):
        src = list(index)
        src[-1] -= left
        if len(pad) == 4:
            src[-2] -= top
        if all(0 <= s < n for s, n in zip(src, x.shape, strict=True)):
            y[index] = x[tuple(src)]
    return y


def ref_pad_backward(dy, pad):
    left, right, top, bottom = (*pad, 0, 0)[:4]
    shape = list(dy.shape)
    shape[-1] -= left + right
    if len(pad) == 4:
        shape[-2] -= top + bottom
    dx = np.zeros(shape)
    for index in np.ndindex(*shape):
        src = list(index)
        src[-1] += left
        if len(pad) == 4:
            src[-2] += top
        if all(0 <= s < n for s, n in zip(src, dy.shape, strict=True)):
            dx[index] = dy[tuple(src)]
    return dx


def ref_channel_mask(n, c, p, seed):
    """Channel (i, j) is kept where uniform(seed, i * C + j) >= p."""
    return np.array([[naive.dropout_uniform(seed, i * c + j) >= p for j in range(c)]
                     for i in range(n)])


def ref_dropout2d(x, p, seed):
    scale = x.dtype.type(0.0 if p == 1 else 1.0 / (1.0 - p))
    keep = ref_channel_mask(x.shape[0], x.shape[1], p, seed)
    y = np.empty_like(x)
    for index in np.ndindex(x.shape):
        y[index] = x[index] * (scale if keep[index[:2]] else x.dtype.type(0))
    return y


def ref_channel_scale(x, w):
    y = np.zeros(x.shape)
    for index in np.ndindex(x.shape):
        y[index] = float(w[index[1]]) * float(x[index])
    return y


def ref_channel_scale_backward(dy, x, w):
    dw = np.zeros(w.shape)
    for index in np.ndindex(x.shape):
        dw[index[1]] += float(dy[index]) * float(x[index])
    return ref_channel_scale(dy, w), dw


# --------------------------------------------------------------------------- cases

#: Shapes of broadcast products: the squeeze-and-excitation gate, a gate per
#: sample only, different ranks (right-aligned), size-1 on both sides, three inputs,
#: and shapes that agree.
MULTIPLY_SHAPES = [
    [(2, 3, 4, 5), (2, 3, 1, 1)],
    [(2, 3, 1, 1), (2, 3, 4, 5)],
    [(3, 4, 5), (3, 1, 5)],
    [(2, 1, 3), (1, 4, 1)],
    [(4, 5), (5,)],
    [(2, 3, 4), (2, 3, 4)],
    [(3, 1, 5), (4, 1), (5,)],
    [(1,), (3, 2)],
    [(1, 1), (1,)],
]
#: (shape, pad): both axes, one axis, crops (negative amounts), mixed, 1-D and 2-D.
PAD_CASES = [
    ((2, 3, 4, 5), (1, 2, 3, 0)),
    ((2, 3, 4, 5), (1, 1)),
    ((2, 2, 5, 6), (-1, -2, 0, -3)),
    ((1, 2, 4, 4), (2, -1, -2, 1)),
    ((1, 1, 3, 3), (-3, 0, 1, 1)),
    ((6,), (2, 3)),
    ((3, 4), (0, 0, 1, 2)),
]
SCALE_SHAPES = [(2, 3, 4, 5), (3, 4), (2, 3, 5), (1, 2, 1, 1, 3)]


def _w(rng, c, dtype=np.float64):
    return rng.standard_normal(c).astype(dtype)


# ------------------------------------------------------------------------ multiply


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", MULTIPLY_SHAPES, ids=str)
def test_multiply_matches_naive(shapes, dtype, rng):
    xs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    y = F.multiply(xs)
    want = ref_multiply(xs)
    assert y.shape == want.shape and y.dtype == dtype and y.flags.c_contiguous
    tol = 1e-6 if dtype == np.float32 else 1e-15
    assert_close(y, want, tol, tol, "y")
    if len(xs) == 2:  # one rounding of the same product: bit for bit
        np.testing.assert_array_equal(y, xs[0] * xs[1])
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = F.multiply_backward(dy, xs)
    for i, (g, r) in enumerate(zip(grads, ref_multiply_backward(dy, xs),
                                   strict=True)):
        assert g.shape == xs[i].shape and g.dtype == dtype
        assert_close(g, r, tol, tol, f"dx[{i}]")


@pytest.mark.parametrize("shapes", MULTIPLY_SHAPES, ids=str)
def test_multiply_finite_differences(shapes, rng):
    inputs = {f"x{i}": rng.standard_normal(s) for i, s in enumerate(shapes)}
    names = tuple(inputs)

    def forward(**arrays):
        return F.multiply([arrays[k] for k in names])

    def backward(dy, **arrays):
        return tuple(F.multiply_backward(dy, [arrays[k] for k in names]))

    check_finite_differences(forward, backward, inputs, names, rng)


def test_multiply_squeeze_and_excitation_sums_each_gate_over_its_map(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    s = rng.standard_normal((2, 3, 1, 1))
    dy = rng.standard_normal(x.shape)
    dx, ds = F.multiply_backward(dy, [x, s])
    np.testing.assert_array_equal(dx, dy * s)
    np.testing.assert_allclose(ds, (dy * x).sum(axis=(2, 3), keepdims=True),
                               1e-14, 1e-14)


def test_multiply_nan_and_inf_propagate():
    x = np.array([[np.nan, np.inf, 1.0, -np.inf]])
    s = np.array([[2.0], [0.0]])
    with np.errstate(invalid="ignore"):  # inf * 0 is NaN, as in torch
        np.testing.assert_array_equal(F.multiply([x, s]), x * s)
    dx, ds = F.multiply_backward(np.ones((2, 4)), [x, s])
    np.testing.assert_array_equal(dx, [[2.0, 2.0, 2.0, 2.0]])
    assert np.isnan(ds).all()  # a sum holding NaN and +-inf


def test_multiply_empty_inputs(rng):
    a, b = np.zeros((0, 3)), rng.standard_normal((1, 3))
    assert F.multiply([a, b]).shape == (0, 3)
    da, db = F.multiply_backward(np.zeros((0, 3)), [a, b])
    assert da.shape == (0, 3)
    np.testing.assert_array_equal(db, np.zeros((1, 3)))  # a sum of nothing


# ----------------------------------------------------------------------------- pad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, pad", PAD_CASES, ids=str)
def test_pad_matches_naive_bit_for_bit(shape, pad, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    for value in (0.0, -1.5, np.inf):
        y = F.pad(x, pad, value=value)
        assert y.dtype == dtype and y.flags.c_contiguous
        np.testing.assert_array_equal(y, ref_pad(x, pad, value).astype(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = F.pad_backward(dy, pad)
    assert dx.shape == x.shape and dx.dtype == dtype
    np.testing.assert_array_equal(dx, ref_pad_backward(dy, pad))


@pytest.mark.parametrize("shape, pad", PAD_CASES, ids=str)
def test_pad_finite_differences(shape, pad, rng):
    check_finite_differences(lambda x: F.pad(x, pad, value=0.7),
                             lambda dy, x: F.pad_backward(dy, pad),
                             {"x": rng.standard_normal(shape)}, ("x",), rng)


def test_pad_defaults_and_empty_results(rng):
    x = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(F.pad(x, (1, 1)), F.pad(x, [1, 1], "constant", 0.0))
    np.testing.assert_array_equal(F.pad(x, (1, 1), value=None), F.pad(x, (1, 1)))
    assert F.pad(x, (-3, 0)).shape == (2, 0)  # everything cropped
    np.testing.assert_array_equal(F.pad_backward(np.zeros((2, 0)), (-3, 0)),
                                  np.zeros((2, 3)))
    np.testing.assert_array_equal(F.pad(np.zeros((2, 0)), (1, 1), value=4.0),
                                  np.full((2, 2), 4.0))
    assert F.pad(np.zeros((0, 3, 2, 2)), (1, 1, 1, 1)).shape == (0, 3, 4, 4)


def test_pad_nan_fill_and_nan_input(rng):
    x = np.array([[1.0, np.nan]])
    y = F.pad(x, (1, 0), value=np.nan)
    assert np.isnan(y[0, 0]) and y[0, 1] == 1.0 and np.isnan(y[0, 2])


# ----------------------------------------------------------------------- dropout2d


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, p, seed", [
    ((2, 3, 4, 5), 0.5, 0),
    ((3, 7, 1, 2), 0.3, 2**64 - 1),
    ((1, 9, 2, 2), 0.9, 12345),
])
def test_dropout2d_matches_naive_bit_for_bit(shape, p, seed, dtype, rng):
    x = rng.uniform(0.5, 2, shape).astype(dtype)
    y = F.dropout2d(x, p, True, seed)
    np.testing.assert_array_equal(y, ref_dropout2d(x, p, seed))
    dy = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(F.dropout2d_backward(dy, p, True, seed),
                                  ref_dropout2d(dy, p, seed))
    # The mask is dropout's mask of an (N, C) array with the same seed.
    mask = F.dropout(np.ones(shape[:2], dtype), p, True, seed)
    np.testing.assert_array_equal(y, x * mask[:, :, None, None])


def test_dropout2d_zeroes_whole_channels_at_the_rate_p():
    x = np.ones((200, 50, 2, 3))
    y = F.dropout2d(x, 0.3, seed=7)
    per_channel = y.reshape(200, 50, -1)
    assert np.all(per_channel.min(axis=2) == per_channel.max(axis=2))
    dropped = float(np.mean(per_channel[:, :, 0] == 0))
    assert abs(dropped - 0.3) < 0.02, dropped
    np.testing.assert_array_equal(np.unique(y), [0.0, 1 / 0.7])


def test_dropout2d_finite_differences(rng):
    check_finite_differences(lambda x: F.dropout2d(x, 0.4, True, 5),
                             lambda dy, x: F.dropout2d_backward(dy, 0.4, True, 5),
                             {"x": rng.standard_normal((2, 3, 2, 2))}, ("x",), rng)


def test_dropout2d_identity_cases_copy(rng):
    x = rng.standard_normal((2, 3, 2, 2))
    for kwargs in ({"training": False}, {"p": 0.0}):
        y = F.dropout2d(x, **{"p": 0.5, **kwargs})
        np.testing.assert_array_equal(y, x)
        assert not np.shares_memory(y, x)
    np.testing.assert_array_equal(F.dropout2d(x, 1.0, seed=3), np.zeros_like(x))
    np.testing.assert_array_equal(F.dropout2d_backward(x, 0.5, training=False), x)
    assert F.dropout2d(np.zeros((0, 3, 2, 2)), 0.5, seed=1).shape == (0, 3, 2, 2)


def test_dropout2d_seed_none_follows_numpy_global_rng(rng):
    x = rng.standard_normal((4, 8, 2, 2))
    np.random.seed(3)
    first = F.dropout2d(x)
    np.random.seed(3)
    np.testing.assert_array_equal(F.dropout2d(x), first)


# ------------------------------------------------------------------- channel_scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SCALE_SHAPES, ids=str)
def test_channel_scale_matches_naive(shape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    w = _w(rng, shape[1], dtype)
    y = F.channel_scale(x, w)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(y, ref_channel_scale(x, w).astype(dtype))
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dw = F.channel_scale_backward(dy, x, w)
    rdx, rdw = ref_channel_scale_backward(dy, x, w)
    np.testing.assert_array_equal(dx, rdx.astype(dtype))
    tol = 1e-6 if dtype == np.float32 else 1e-14
    assert dw.dtype == dtype and dw.shape == w.shape
    assert_close(dw, rdw, tol, tol, "dweight")


@pytest.mark.parametrize("shape", SCALE_SHAPES, ids=str)
def test_channel_scale_finite_differences(shape, rng):
    check_finite_differences(
        lambda x, w: F.channel_scale(x, w),
        lambda dy, x, w: F.channel_scale_backward(dy, x, w),
        {"x": rng.standard_normal(shape), "w": _w(rng, shape[1])}, ("x", "w"), rng)


def test_channel_scale_empty(rng):
    dx, dw = F.channel_scale_backward(np.zeros((0, 3, 2)), np.zeros((0, 3, 2)),
                                      np.ones(3))
    assert dx.shape == (0, 3, 2)
    np.testing.assert_array_equal(dw, np.zeros(3))
    assert F.channel_scale(np.zeros((2, 0, 3)), np.zeros(0)).shape == (2, 0, 3)


# ------------------------------------------------------- layouts and thread counts


def test_non_contiguous_inputs_give_the_same_results(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    s = rng.standard_normal((2, 3, 1, 1))
    w = rng.standard_normal(3)
    dy = rng.standard_normal(x.shape)
    strided = np.repeat(x, 2, axis=3)[..., ::2]
    for layout in (strided, np.asfortranarray(x)):
        np.testing.assert_array_equal(F.multiply([layout, s]), F.multiply([x, s]))
        for g, r in zip(F.multiply_backward(np.asfortranarray(dy), [layout, s]),
                        F.multiply_backward(dy, [x, s]), strict=True):
            np.testing.assert_array_equal(g, r)
        np.testing.assert_array_equal(F.pad(layout, (1, 0, 2, -1)),
                                      F.pad(x, (1, 0, 2, -1)))
        np.testing.assert_array_equal(F.channel_scale(layout, w[::-1][::-1]),
                                      F.channel_scale(x, w))
        np.testing.assert_array_equal(F.dropout2d(layout, 0.5, seed=1),
                                      F.dropout2d(x, 0.5, seed=1))
        for g, r in zip(F.channel_scale_backward(dy, layout, w),
                        F.channel_scale_backward(dy, x, w), strict=True):
            np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_invariance(dtype, rng):
    x = rng.standard_normal((4, 6, 9, 7)).astype(dtype)
    s = rng.standard_normal((4, 6, 1, 1)).astype(dtype)
    t = rng.standard_normal((1, 6, 9, 1)).astype(dtype)
    w = rng.standard_normal(6).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    cases = {
        "multiply": lambda: F.multiply([x, s, t]),
        "multiply_backward": lambda: tuple(F.multiply_backward(dy, [x, s, t])),
        "pad": lambda: F.pad(x, (2, -1, 1, 3)),
        "pad_backward": lambda: F.pad_backward(dy, (2, -1, 1, 3)),
        "dropout2d": lambda: F.dropout2d(x, 0.5, seed=9),
        "channel_scale": lambda: F.channel_scale(x, w),
        "channel_scale_backward": lambda: F.channel_scale_backward(dy, x, w),
    }
    for what, fn in cases.items():
        assert_thread_count_invariant(fn, what)


# ------------------------------------------------------------------- PyTorch parity

#: float64 against float64 torch, float32 against float32 torch (relative).
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def _torch_close(ours, theirs, dtype, what):
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, what
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * max(
        1.0, float(np.max(np.abs(theirs), initial=0.0))), err_msg=what)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_multiply_matches_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    for shapes in MULTIPLY_SHAPES + [[(8, 16, 14, 14), (8, 16, 1, 1)]]:
        xs = [rng.standard_normal(s).astype(dtype) for s in shapes]
        ts = [torch.tensor(x, requires_grad=True) for x in xs]
        ty = ts[0]
        for t in ts[1:]:
            ty = ty * t
        y = F.multiply(xs)
        dy = rng.standard_normal(y.shape).astype(dtype)
        ty.backward(torch.tensor(dy))
        _torch_close(y, ty, dtype, f"{shapes} y")
        for i, (g, t) in enumerate(zip(F.multiply_backward(dy, xs), ts,
                                       strict=True)):
            _torch_close(g, t.grad, dtype, f"{shapes} dx[{i}]")


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pad_matches_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    for shape, pad in PAD_CASES:
        x = rng.standard_normal(shape).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        ty = torch.nn.functional.pad(tx, pad, value=0.25)
        y = F.pad(x, pad, value=0.25)
        dy = rng.standard_normal(y.shape).astype(dtype)
        ty.backward(torch.tensor(dy))
        _torch_close(y, ty, dtype, f"{pad} y")
        _torch_close(F.pad_backward(dy, pad), tx.grad, dtype, f"{pad} dx")


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dropout2d_matches_torch_given_the_mask(dtype, rng):
    """torch's feature dropout draws ``noise`` of shape (N, C, 1, 1), Bernoulli(1-p)
    divided by 1-p in x's dtype, and returns ``x * noise``: with our mask as its
    noise it gives our result and gradient bit for bit; and torch's own draws have
    the same structure (whole channels, zero or x / (1 - p))."""
    torch = pytest.importorskip("torch")
    p, seed = 0.4, 21
    x = rng.standard_normal((3, 5, 4, 4)).astype(dtype)
    keep = ref_channel_mask(3, 5, p, seed)
    noise = torch.tensor(keep[:, :, None, None].astype(dtype)).div_(1 - p)
    tx = torch.tensor(x, requires_grad=True)
    ty = tx * noise
    dy = rng.standard_normal(x.shape).astype(dtype)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(F.dropout2d(x, p, True, seed), ty.detach().numpy())
    np.testing.assert_array_equal(F.dropout2d_backward(dy, p, True, seed),
                                  tx.grad.numpy())
    torch.manual_seed(0)
    theirs = torch.nn.functional.dropout2d(torch.tensor(x), p, True).numpy()
    kept = np.abs(theirs).reshape(3, 5, -1).max(axis=2) > 0
    scale = x.dtype.type(1 / (1 - p))
    np.testing.assert_array_equal(theirs, np.where(kept[:, :, None, None],
                                                   x * scale, 0))
    ours = F.dropout2d(x, p, True, seed)
    np.testing.assert_array_equal(ours, np.where(keep[:, :, None, None],
                                                 x * scale, 0))


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_channel_scale_matches_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    for shape in SCALE_SHAPES + [(16, 32, 7, 7)]:
        x = rng.standard_normal(shape).astype(dtype)
        w = _w(rng, shape[1], dtype)
        tx = torch.tensor(x, requires_grad=True)
        tw = torch.tensor(w, requires_grad=True)
        ty = tw.reshape(-1, *([1] * (len(shape) - 2))) * tx  # gamma[:, None, None] * x
        y = F.channel_scale(x, w)
        dy = rng.standard_normal(shape).astype(dtype)
        ty.backward(torch.tensor(dy))
        dx, dw = F.channel_scale_backward(dy, x, w)
        _torch_close(y, ty, dtype, f"{shape} y")
        _torch_close(dx, tx.grad, dtype, f"{shape} dx")
        _torch_close(dw, tw.grad, dtype, f"{shape} dweight")


# ----------------------------------------------------------------------- bad input


def test_multiply_rejects_bad_input():
    a = np.zeros((2, 3))
    with pytest.raises(TypeError, match=r"multiply: xs must be a list of at least 2"):
        F.multiply(a)
    with pytest.raises(TypeError, match=r"multiply: xs must be a list of at least 2"):
        F.multiply([a])
    with pytest.raises(ValueError, match=r"multiply: xs\[1\] has shape \(4,\), which "
                       r"does not broadcast.*axis -1 is 4 but the others make it 3"):
        F.multiply([a, np.zeros(4)])
    with pytest.raises(TypeError, match=r"multiply: xs\[1\] has dtype float32 but "
                       r"xs\[0\] has dtype float64"):
        F.multiply([a, a.astype(np.float32)])
    with pytest.raises(TypeError, match=r"multiply: xs\[0\] must have dtype float32 "
                       r"or float64, got int64"):
        F.multiply([a.astype(np.int64), a])
    with pytest.raises(ValueError, match=r"multiply: xs\[1\] must have at least 1 "
                       r"dimension"):
        F.multiply([a, np.array(2.0)])
    with pytest.raises(ValueError, match=r"multiply_backward: dy must have shape "
                       r"\(2, 3\), got \(3, 2\)"):
        F.multiply_backward(np.zeros((3, 2)), [a, a])
    with pytest.raises(TypeError, match=r"multiply_backward: dy has dtype float32"):
        F.multiply_backward(a.astype(np.float32), [a, a])


@pytest.mark.parametrize("pad, error, message", [
    ((1,), ValueError, r"pad: pad must hold 2 or 4 ints.*got 1"),
    ((1, 1, 1, 1, 1, 1), ValueError, r"pad: pad must hold 2 or 4 ints"),
    ((1.0, 1), TypeError, r"pad: pad must be a tuple of 2 or 4 ints"),
    ((True, 1), TypeError, r"pad: pad must be a tuple of 2 or 4 ints"),
    (1, TypeError, r"pad: pad must be a tuple of 2 or 4 ints"),
    (None, TypeError, r"pad: pad must be a tuple"),
    ((2**31, 0), ValueError, r"pad: pad amounts must lie within"),
    ((-4, 0), ValueError, r"pad: pad \(-4, 0\) crops more than the 3 entries of "
                          r"axis -1 of x"),
    ((-4, 2), ValueError, r"crops more than the 3 entries"),
    ((0, 0, -1, -2), ValueError, r"pad \(-1, -2\) crops more than the 2 entries of "
                                 r"axis -2"),
])
def test_pad_rejects_bad_pad(pad, error, message):
    with pytest.raises(error, match=message):
        F.pad(np.zeros((2, 3)), pad)


def test_pad_rejects_bad_mode_value_and_input():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"pad: mode must be 'constant', got "
                       r"'reflect' \(not implemented here\)"):
        F.pad(x, (1, 1), "reflect")
    with pytest.raises(ValueError, match=r"pad: mode must be 'constant', got 'zeros'"):
        F.pad(x, (1, 1), mode="zeros")
    with pytest.raises(TypeError, match=r"pad: mode must be the str 'constant'"):
        F.pad(x, (1, 1), mode=None)
    for value in ("1", True, [1.0]):
        with pytest.raises(TypeError, match=r"pad: value must be a real number"):
            F.pad(x, (1, 1), value=value)
    with pytest.raises(ValueError, match=r"pad: pad of 4 amounts pads the last 2 "
                       r"axes, but x is 1-D"):
        F.pad(np.zeros(3), (1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"pad: x must have at least 1 dimension"):
        F.pad(np.array(1.0), (1, 1))
    with pytest.raises(TypeError, match=r"pad: x must have dtype float32 or float64"):
        F.pad(x.astype(np.int32), (1, 1))
    with pytest.raises(ValueError, match=r"pad_backward: dy has shape \(2, 1\), "
                       r"smaller than the padding"):
        F.pad_backward(np.zeros((2, 1)), (1, 1))
    with pytest.raises(ValueError, match=r"pad_backward: pad \(-4, 2\) crops more"):
        F.pad_backward(np.zeros((2, 1)), (-4, 2))
    with pytest.raises(TypeError, match=r"pad_backward: dy must be a numpy.ndarray"):
        F.pad_backward([[1.0]], (1, 1))


def test_dropout2d_rejects_bad_input():
    x = np.zeros((2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"dropout2d: x must be 4-D, got 3-D"):
        F.dropout2d(np.zeros((2, 3, 4)), seed=1)
    with pytest.raises(ValueError, match=r"dropout2d: p must be a finite number in "
                       r"\[0.0, 1.0\], got 1.5"):
        F.dropout2d(x, 1.5, seed=1)
    with pytest.raises(TypeError, match=r"dropout2d: training must be a bool"):
        F.dropout2d(x, 0.5, "yes", seed=1)
    with pytest.raises(ValueError, match=r"dropout2d: seed must lie in \[0, 2\*\*64\)"):
        F.dropout2d(x, 0.5, seed=-1)
    with pytest.raises(TypeError, match=r"dropout2d_backward: seed is required"):
        F.dropout2d_backward(x, 0.5)
    with pytest.raises(ValueError, match=r"dropout2d_backward: dy must be 4-D"):
        F.dropout2d_backward(np.zeros((2, 3)), 0.5, seed=1)


def test_channel_scale_rejects_bad_input():
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"channel_scale: weight has 2 entries but x "
                       r"has 3 channels"):
        F.channel_scale(x, np.ones(2))
    with pytest.raises(ValueError, match=r"channel_scale: weight must be 1-D"):
        F.channel_scale(x, np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"channel_scale: x must have a batch and a "
                       r"channel axis"):
        F.channel_scale(np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match=r"channel_scale: weight has dtype float32"):
        F.channel_scale(x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"channel_scale_backward: dy must have "
                       r"shape \(2, 3, 4\)"):
        F.channel_scale_backward(np.zeros((2, 3, 5)), x, np.ones(3))
    with pytest.raises(TypeError, match=r"channel_scale_backward: dy must be a "
                       r"numpy.ndarray"):
        F.channel_scale_backward(None, x, np.ones(3))
