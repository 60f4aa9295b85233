"""layer_norm, group_norm and layer_norm2d with their backwards: slow references,
float64 finite differences, PyTorch (forward and every gradient), properties,
saved statistics, thread-count invariance, empty inputs, fuzzed shapes and bad
input."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
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
from ..gradcheck import assert_close, check_finite_differences
from ..threads import assert_thread_count_invariant

# --------------------------------------------------------- slow, obvious references
# Every op normalises sets of elements of x: each set by its own mean and biased
# variance, each element then scaled and shifted by the parameter its position
# selects. The references loop over the sets with Python floats.


def _sets(op: str, shape, arg):
    """(list of index arrays into x.ravel(), parameter index of every element)."""
    flat = np.arange(math.prod(shape)).reshape(shape)
    if op == "layer_norm":
        d = math.prod(arg)
        return list(flat.reshape(-1, d)), flat.reshape(-1) % d
    channel = np.broadcast_to(
        np.arange(shape[1]).reshape((1, -1) + (1,) * (len(shape) - 2)), shape)
    if op == "group_norm":
        k = shape[1] // arg
        group = channel // max(k, 1)
        sets = [flat[n][group[n] == g] for n in range(shape[0]) for g in range(arg)]
    else:  # layer_norm2d: the channels at each pixel
        sets = [flat[n, :, i, j] for n in range(shape[0]) for i in range(shape[2])
                for j in range(shape[3])]
    return sets, channel.reshape(-1)


def _param(p, size):
    return np.ones(size) if p is None else np.asarray(p, np.float64).reshape(-1)


def naive_forward(op, x, arg, weight, bias, eps):
    sets, pidx = _sets(op, x.shape, arg)
    size = int(pidx.max()) + 1 if pidx.size else 0
    w, b = _param(weight, size), np.zeros(size) if bias is None else _param(bias, size)
    xf = np.asarray(x, np.float64).reshape(-1)
    y = np.zeros(xf.size)
    for idx in sets:
        vals = [float(xf[i]) for i in idx]
        mean = sum(vals) / len(vals)
        var = sum((v - mean) ** 2 for v in vals) / len(vals)
        sigma = math.sqrt(var + eps)
        for i in idx:
            y[i] = (xf[i] - mean) / sigma * w[pidx[i]] + b[pidx[i]]
    return y.reshape(x.shape)


def naive_backward(op, dy, x, arg, weight, eps):
    """The textbook gradient: per set, ``dx = (g - mean(g) - xhat * mean(g * xhat))
    / sigma`` with ``g = weight * dy``; dweight and dbias summed over the sets."""
    sets, pidx = _sets(op, x.shape, arg)
    size = int(pidx.max()) + 1 if pidx.size else 0
    w = _param(weight, size)
    xf = np.asarray(x, np.float64).reshape(-1)
    gf = np.asarray(dy, np.float64).reshape(-1)
    dx = np.zeros(xf.size)
    dw = np.zeros(size)
    db = np.zeros(size)
    for idx in sets:
        vals = xf[idx]
        mean = sum(float(v) for v in vals) / len(idx)
        sigma = math.sqrt(sum((float(v) - mean) ** 2 for v in vals) / len(idx) + eps)
        xhat = (vals - mean) / sigma
        g = gf[idx] * w[pidx[idx]]
        dx[idx] = (g - g.mean() - xhat * np.mean(g * xhat)) / sigma
        np.add.at(dw, pidx[idx], gf[idx] * xhat)
        np.add.at(db, pidx[idx], gf[idx])
    return dx.reshape(x.shape), dw, db


# ------------------------------------------------------------ the ops, uniformly
# op -> (forward(x, arg, w, b, eps, **kw), backward(dy, x, arg, w, eps, **kw),
#        parameter shape for (x shape, arg))

OPS = {
    "layer_norm": (
        lambda x, a, w, b, e, **kw: F.layer_norm(x, a, w, b, e, **kw),
        lambda dy, x, a, w, e, **kw: F.layer_norm_backward(dy, x, a, w, e, **kw),
        lambda shape, a: tuple(a)),
    "group_norm": (
        lambda x, a, w, b, e, **kw: F.group_norm(x, a, w, b, e, **kw),
        lambda dy, x, a, w, e, **kw: F.group_norm_backward(dy, x, a, w, e, **kw),
        lambda shape, a: (shape[1],)),
    "layer_norm2d": (
        lambda x, a, w, b, e, **kw: F.layer_norm2d(x, w, b, e, **kw),
        lambda dy, x, a, w, e, **kw: F.layer_norm2d_backward(dy, x, w, e, **kw),
        lambda shape, a: (shape[1],)),
}

#: (op, x shape, arg): normalized_shape for layer_norm, num_groups for group_norm.
CONFIGS = [
    ("layer_norm", (4, 6), (6,)),
    ("layer_norm", (2, 3, 4, 5), (4, 5)),
    ("layer_norm", (2, 3, 4, 5), (3, 4, 5)),
    ("layer_norm", (3, 1), (1,)),  # one value per row: y = bias
    ("layer_norm", (7,), (7,)),  # no batch axis, as torch allows
    ("group_norm", (3, 6), 3),
    ("group_norm", (2, 6, 3), 2),
    ("group_norm", (2, 4, 3, 5), 1),
    ("group_norm", (2, 4, 3, 5), 4),  # instance norm
    ("group_norm", (1, 6, 2, 2), 3),
    ("layer_norm2d", (2, 3, 4, 5), None),
    ("layer_norm2d", (1, 5, 1, 3), None),
    ("layer_norm2d", (2, 1, 2, 2), None),  # one channel: y = bias
]


def _id(config):
    op, shape, arg = config
    return f"{op}-{shape}-{arg}"


def _inputs(rng, op, shape, arg, dtype=np.float64, affine=True):
    """x with an offset and spread per set (so the statistics matter), dy,
    weight and bias (None where not ``affine``)."""
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3) + rng.uniform(-3, 3)
    pshape = OPS[op][2](shape, arg)
    w = rng.standard_normal(pshape).astype(dtype) if affine else None
    b = rng.standard_normal(pshape).astype(dtype) if affine else None
    dy = rng.standard_normal(shape).astype(dtype)
    return x.astype(dtype), dy, w, b


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
@pytest.mark.parametrize("affine", [True, False])
def test_match_naive(config, affine, rng):
    op, shape, arg = config
    forward, backward, pshape = OPS[op]
    x, dy, w, b = _inputs(rng, op, shape, arg, affine=affine)
    eps = 1e-3
    y = forward(x, arg, w, b, eps)
    assert y.dtype == np.float64 and y.shape == shape and y.flags.c_contiguous
    assert_close(y, naive_forward(op, x, arg, w, b, eps), 1e-12, 1e-12, "y")
    got = backward(dy, x, arg, w, eps)
    want = naive_backward(op, dy, x, arg, w, eps)
    want = (want[0], want[1].reshape(pshape(shape, arg)),
            want[2].reshape(pshape(shape, arg)))
    for name, a, e in zip(("dx", "dweight", "dbias"), got, want, strict=True):
        assert a.dtype == np.float64
        assert_close(a, e, 1e-11, 1e-11, f"{op} {name}")


@pytest.mark.parametrize("config", CONFIGS[:3] + CONFIGS[6:9] + CONFIGS[10:11],
                         ids=_id)
def test_float32_matches_naive(config, rng):
    op, shape, arg = config
    forward, backward, _ = OPS[op]
    x, dy, w, b = _inputs(rng, op, shape, arg, np.float32)
    y = forward(x, arg, w, b, 1e-5)
    assert y.dtype == np.float32
    assert_close(y, naive_forward(op, x, arg, w, b, 1e-5), 1e-5, 1e-5, "y")
    got = backward(dy, x, arg, w, 1e-5)
    want = naive_backward(op, dy, x, arg, w, 1e-5)
    for name, a, e in zip(("dx", "dweight", "dbias"), got, want, strict=True):
        assert a.dtype == np.float32
        assert_close(a.reshape(-1), e.reshape(-1), 1e-4, 1e-4, name)


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[6], CONFIGS[8], CONFIGS[10]],
                         ids=_id)
def test_finite_differences(config, rng):
    op, shape, arg = config
    forward, backward, _ = OPS[op]
    x, _, w, b = _inputs(rng, op, shape, arg)

    def fwd(x, weight, bias):
        return forward(x, arg, weight, bias, 1e-5)

    def bwd(dy, x, weight, bias):
        return backward(dy, x, arg, weight, 1e-5)

    check_finite_differences(fwd, bwd, {"x": x, "weight": w, "bias": b},
                             ("x", "weight", "bias"), rng, atol=1e-6)


# ------------------------------------------------------------------- properties


def test_outputs_are_standardised(rng):
    x = rng.standard_normal((3, 8, 4, 5)) * 4 + 7
    y = F.layer_norm(x, (8, 4, 5), eps=1e-12)
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(1, 2, 3)), 1, atol=1e-9)
    y = F.group_norm(x, 4, eps=1e-12).reshape(3, 4, -1)
    np.testing.assert_allclose(y.mean(axis=2), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=2), 1, atol=1e-9)
    y = F.layer_norm2d(x, eps=1e-12)
    np.testing.assert_allclose(y.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=1), 1, atol=1e-9)


def test_the_ops_agree_where_they_coincide(rng):
    x = rng.standard_normal((2, 6, 3, 4))
    dy = rng.standard_normal(x.shape)
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    # group_norm with one group is a layer_norm over (C, H, W) with per-channel
    # affine; an int normalized_shape is the 1-tuple.
    full = F.layer_norm(x, (6, 3, 4))
    np.testing.assert_allclose(F.group_norm(x, 1), full, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(F.layer_norm(x, 4), F.layer_norm(x, (4,)))
    np.testing.assert_array_equal(F.layer_norm(x, [3, 4]), F.layer_norm(x, (3, 4)))
    # layer_norm2d is layer_norm over C, channels last.
    last = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    want = F.layer_norm(last, (6,), w, b, 1e-6).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(F.layer_norm2d(x, w, b), want, rtol=1e-13, atol=1e-13)
    dlast = np.ascontiguousarray(dy.transpose(0, 2, 3, 1))
    gl = F.layer_norm_backward(dlast, last, 6, w, 1e-6)
    g2 = F.layer_norm2d_backward(dy, x, w)
    np.testing.assert_allclose(g2[0], gl[0].transpose(0, 3, 1, 2), 1e-12, 1e-12)
    np.testing.assert_allclose(g2[1], gl[1], 1e-12, 1e-12)
    np.testing.assert_allclose(g2[2], gl[2], 1e-12, 1e-12)


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_no_weight_equals_unit_weight(config, rng):
    op, shape, arg = config
    forward, backward, pshape = OPS[op]
    x, dy, _, _ = _inputs(rng, op, shape, arg)
    ones, zeros = np.ones(pshape(shape, arg)), np.zeros(pshape(shape, arg))
    np.testing.assert_array_equal(forward(x, arg, None, None, 1e-5),
                                  forward(x, arg, ones, zeros, 1e-5))
    for a, e in zip(backward(dy, x, arg, None, 1e-5),
                    backward(dy, x, arg, ones, 1e-5), strict=True):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[7], CONFIGS[10]], ids=_id)
def test_saved_stats_give_the_same_gradients(config, rng):
    """return_stats gives what normalised y; backward with them skips the passes
    over x and must agree with recomputing, bit for bit."""
    op, shape, arg = config
    forward, backward, _ = OPS[op]
    x, dy, w, b = _inputs(rng, op, shape, arg)
    y, stats = forward(x, arg, w, b, 1e-4, return_stats=True)
    np.testing.assert_array_equal(y, forward(x, arg, w, b, 1e-4))
    assert all(s.dtype == np.float64 for s in stats)
    for a, e in zip(backward(dy, x, arg, w, 1e-4, stats=stats),
                    backward(dy, x, arg, w, 1e-4), strict=True):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("op, shape, stats_shape", [
    ("layer_norm", (2, 3, 4), (6,)), ("group_norm", (2, 6, 5), (2, 3)),
    ("layer_norm2d", (2, 3, 4, 5), (2, 20))])
def test_stats_shapes(op, shape, stats_shape, rng):
    arg = {"layer_norm": (4,), "group_norm": 3}.get(op)
    _, stats = OPS[op][0](rng.standard_normal(shape), arg, None, None, 1e-5,
                          return_stats=True)
    assert [s.shape for s in stats] == [stats_shape] * 2


def test_accurate_with_a_large_mean(rng):
    # Two-pass statistics: a mean 1e4 times the spread still normalises to ~1e-9.
    x = rng.standard_normal((4, 6, 5, 5)) + 1e4
    c = x - x.mean(axis=1, keepdims=True)
    want = c / np.sqrt((c**2).mean(axis=1, keepdims=True))
    np.testing.assert_allclose(F.layer_norm2d(x, eps=1e-300), want, atol=1e-9)
    flat = x.reshape(4, -1)
    c = flat - flat.mean(axis=1, keepdims=True)
    want = (c / np.sqrt((c**2).mean(axis=1, keepdims=True))).reshape(x.shape)
    np.testing.assert_allclose(F.layer_norm(x, (6, 5, 5), eps=1e-300), want,
                               atol=1e-9)
    np.testing.assert_allclose(F.group_norm(x, 1, eps=1e-300), want, atol=1e-9)


def test_non_contiguous_inputs(rng):
    x = rng.standard_normal((3, 4, 5, 6))
    dy = rng.standard_normal(x.shape)
    w = rng.standard_normal(4)
    strided = np.repeat(x, 2, axis=3)[..., ::2]
    wide = np.repeat(w, 2)[::2]
    assert not strided.flags.c_contiguous and not wide.flags.c_contiguous
    for forward, backward in ((lambda x, w: F.group_norm(x, 2, w),
                               lambda dy, x, w: F.group_norm_backward(dy, x, 2, w)),
                              (F.layer_norm2d, F.layer_norm2d_backward)):
        want = forward(x, w)
        np.testing.assert_array_equal(forward(strided, wide), want)
        np.testing.assert_array_equal(forward(np.asfortranarray(x), w), want)
        for a, e in zip(backward(np.asfortranarray(dy), strided, wide),
                        backward(dy, x, w), strict=True):
            np.testing.assert_array_equal(a, e)
    w6 = rng.standard_normal(6)
    np.testing.assert_array_equal(F.layer_norm(np.asfortranarray(x), 6, w6[::-1]),
                                  F.layer_norm(x, 6, w6[::-1].copy()))


def test_nan_poisons_only_its_own_set(rng):
    x = rng.standard_normal((2, 4, 3, 3))
    x[1, 0, 1, 2] = np.nan
    y = F.layer_norm(x, 3)
    assert np.isnan(y[1, 0, 1]).all() and np.isnan(y).sum() == 3
    y = F.group_norm(x, 2)
    assert np.isnan(y[1, :2]).all() and np.isnan(y).sum() == 18
    y = F.layer_norm2d(x)
    assert np.isnan(y[1, :, 1, 2]).all() and np.isnan(y).sum() == 4
    dx, dw, db = F.layer_norm2d_backward(np.ones_like(x), x)
    assert np.isnan(dx).sum() == 4 and np.isnan(dw).all() and np.isfinite(db).all()
    dx, dw, db = F.group_norm_backward(np.ones_like(x), x, 2)
    assert np.isnan(dx).sum() == 18 and np.isnan(dw[:2]).all()
    assert np.isfinite(dw[2:]).all()


# Shapes with several row shares (layer_norm), groups, and pixel blocks per image
# (layer_norm2d), so the weight-gradient sums are split across parallel tasks.
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("config", [
    ("layer_norm", (64, 40, 16), (16,)), ("layer_norm", (6, 3, 30, 40), (30, 40)),
    ("group_norm", (6, 8, 9, 7), 4), ("layer_norm2d", (3, 6, 30, 40), None)],
    ids=_id)
def test_thread_count_invariance(config, dtype, rng):
    op, shape, arg = config
    forward, backward, _ = OPS[op]
    x, dy, w, b = _inputs(rng, op, shape, arg, dtype)
    assert_thread_count_invariant(lambda: forward(x, arg, w, b, 1e-5),
                                  f"{op} {shape}")
    assert_thread_count_invariant(lambda: backward(dy, x, arg, w, 1e-5),
                                  f"{op}_backward {shape}")


# ------------------------------------------------------------------- PyTorch parity


def _torch_forward(torch, op, t, arg, tw, tb, eps):
    tf = torch.nn.functional
    if op == "layer_norm":
        return tf.layer_norm(t, arg, tw, tb, eps)
    if op == "group_norm":
        return tf.group_norm(t, arg, tw, tb, eps)
    return tf.layer_norm(t.permute(0, 2, 3, 1), (t.shape[1],), tw, tb,
                         eps).permute(0, 3, 1, 2)


def _torch_case(torch, op, x, dy, arg, w, b, eps):
    tx = torch.tensor(x, requires_grad=True)
    pshape = OPS[op][2](x.shape, arg)
    # fastcnn returns dweight/dbias as if weight were ones; ask torch for the same.
    tw = torch.tensor(np.ones(pshape, x.dtype) if w is None else w,
                      requires_grad=True)
    tb = torch.tensor(np.zeros(pshape, x.dtype) if b is None else b,
                      requires_grad=True)
    ty = _torch_forward(torch, op, tx, arg, tw, tb, eps)
    ty.backward(torch.tensor(dy))
    return (ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy())


TORCH_GRID = list(itertools.product(CONFIGS, [True, False], [1e-5, 1e-2]))


@pytest.mark.torch
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_matches_pytorch_over_grid(dtype, tol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    for (op, shape, arg), affine, eps in TORCH_GRID:
        forward, backward, _ = OPS[op]
        x, dy, w, b = _inputs(rng, op, shape, arg, dtype, affine)
        want = _torch_case(torch, op, x, dy, arg, w, b, eps)
        got = (forward(x, arg, w, b, eps), *backward(dy, x, arg, w, eps))
        what = f"{op} {shape} {arg} affine={affine} eps={eps}"
        for name, a, e in zip(("y", "dx", "dweight", "dbias"), got, want,
                              strict=True):
            assert a.dtype == dtype and a.shape == e.shape, f"{what} {name}"
            # Relative to the largest magnitude (dweight sums over many terms).
            scale = max(1.0, float(np.max(np.abs(e))))
            assert_close(a, e, tol, tol * scale, f"{what} {name}")


@pytest.mark.torch
@pytest.mark.parametrize("op, shape, arg", [
    ("layer_norm", (0, 4), (4,)), ("layer_norm", (3, 0), (0,)),
    ("layer_norm", (2, 0, 3), (3,)), ("group_norm", (0, 4, 3), 2),
    ("group_norm", (2, 4, 0), 2), ("group_norm", (2, 0, 3), 1),
    ("layer_norm2d", (0, 3, 2, 2), None), ("layer_norm2d", (2, 3, 0, 2), None)])
def test_empty_inputs_match_pytorch(op, shape, arg):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    forward, backward, pshape = OPS[op]
    x, dy, w, b = _inputs(rng, op, shape, arg)
    y = forward(x, arg, w, b, 1e-5)
    dx, dw, db = backward(dy, x, arg, w, 1e-5)
    assert y.shape == dx.shape == shape
    assert dw.shape == db.shape == pshape(shape, arg)
    assert not dw.any() and not db.any()
    if math.prod(pshape(shape, arg)):  # torch indexes an empty weight otherwise
        ty, tdx, tdw, tdb = _torch_case(torch, op, x, dy, arg, w, b, 1e-5)
        assert ty.shape == tdx.shape == shape
        if op == "group_norm" and shape[0] and not x.size:
            # torch's dweight over empty maps is 0 * rstd with rstd = 1 / sqrt(0 / 0
            # + eps) = NaN; a sum over no values is 0 here.
            assert np.isnan(tdw).all()
            tdw = np.zeros_like(tdw)
        np.testing.assert_array_equal(dw, tdw)
        np.testing.assert_array_equal(db, tdb)
    _, stats = forward(x, arg, w, b, 1e-5, return_stats=True)
    for a, e in zip(backward(dy, x, arg, w, 1e-5, stats=stats), (dx, dw, db),
                    strict=True):
        np.testing.assert_array_equal(a, e)


# ----------------------------------------------------------------------- bad input


def test_rejects_bad_normalized_shape():
    x = np.zeros((2, 3, 4))
    for bad in [(), [], None, 2.0, True, (3, "4"), "4", (4.0,)]:
        with pytest.raises(TypeError, match=r"layer_norm: normalized_shape must be "
                           r"an int or a non-empty tuple of ints"):
            F.layer_norm(x, bad)
    with pytest.raises(ValueError, match=r"normalized_shape must hold sizes in "
                       r"\[0, 2\*\*31 - 1\], got \(-4,\)"):
        F.layer_norm(x, (-4,))
    with pytest.raises(ValueError, match=r"layer_norm: x must end with "
                       r"normalized_shape \(3,\) \(shape \(\*, 3\)\), got x of shape "
                       r"\(2, 3, 4\)"):
        F.layer_norm(x, 3)
    with pytest.raises(ValueError, match=r"layer_norm_backward: x must end with"):
        F.layer_norm_backward(x, x, (2, 2, 3, 4))
    # A 0-D x is not a (1,) vector (NumPy's ascontiguousarray would make it one).
    with pytest.raises(ValueError, match=r"layer_norm: x must have at least 1 "
                       r"dimension, got a 0-D array"):
        F.layer_norm(np.array(2.0), 1)
    with pytest.raises(ValueError, match=r"layer_norm_backward: dy must have at "
                       r"least 1 dimension"):
        F.layer_norm_backward(np.array(2.0), np.ones(1), 1)


@pytest.mark.parametrize("op", OPS)
def test_rejects_bad_parameters(op):
    shape = (2, 4, 3, 3)
    arg = {"layer_norm": (3, 3), "group_norm": 2}.get(op)
    forward, backward, pshape = OPS[op]
    x = np.zeros(shape)
    good = np.ones(pshape(shape, arg))
    name = op
    with pytest.raises(ValueError, match=rf"{name}: weight must have shape "
                       rf"{re.escape(str(good.shape))}, got"):
        forward(x, arg, np.ones(tuple(s + 1 for s in good.shape)), None, 1e-5)
    with pytest.raises(ValueError, match=rf"{name}: bias must be {good.ndim}-D"):
        forward(x, arg, None, good[None], 1e-5)
    with pytest.raises(TypeError, match=rf"{name}: weight has dtype float32 but x "
                       rf"has dtype float64"):
        forward(x, arg, good.astype(np.float32), None, 1e-5)
    with pytest.raises(TypeError, match=rf"{name}: bias must be a numpy.ndarray"):
        forward(x, arg, None, good.tolist(), 1e-5)
    with pytest.raises(TypeError, match=rf"{name}: x must have dtype float32 or "
                       rf"float64, got int64"):
        forward(x.astype(np.int64), arg, None, None, 1e-5)
    with pytest.raises(TypeError, match=rf"{name}: x must be a numpy.ndarray"):
        forward(x.tolist(), arg, None, None, 1e-5)
    for eps in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"{name}: eps must be a finite number "
                           r"in \(0.0, inf\]"):
            forward(x, arg, None, None, eps)
        with pytest.raises(ValueError, match=rf"{name}_backward: eps must be"):
            backward(x, x, arg, None, eps)
    with pytest.raises(TypeError, match=rf"{name}: eps must be a real number"):
        forward(x, arg, None, None, "1e-5")
    with pytest.raises(TypeError, match=rf"{name}: return_stats must be a bool"):
        forward(x, arg, None, None, 1e-5, return_stats=1)
    with pytest.raises(TypeError, match=rf"{name}_backward: dy has dtype float32 "
                       rf"but x has dtype float64"):
        backward(x.astype(np.float32), x, arg, None, 1e-5)
    with pytest.raises(ValueError, match=rf"{name}_backward: dy must have shape "
                       rf"\(2, 4, 3, 3\), got \(2, 4, 3, 2\)"):
        backward(x[..., :2], x, arg, None, 1e-5)
    with pytest.raises(ValueError, match=rf"{name}_backward: weight must have"):
        backward(x, x, arg, np.ones(tuple(s + 1 for s in good.shape)), 1e-5)


@pytest.mark.parametrize("op", OPS)
def test_rejects_bad_stats(op, rng):
    shape = (2, 4, 3, 3)
    arg = {"layer_norm": (3, 3), "group_norm": 2}.get(op)
    forward, backward, _ = OPS[op]
    x = rng.standard_normal(shape)
    _, (mean, invstd) = forward(x, arg, None, None, 1e-5, return_stats=True)
    for bad in [(mean,), [mean, invstd], (mean, invstd[:-1]),
                (mean.astype(np.float32), invstd), (mean, invstd.tolist()),
                (mean, invstd, mean), "stats", (mean[None], invstd)]:
        with pytest.raises(ValueError, match=rf"{op}_backward: stats must be the "
                           rf"\(mean, invstd\) pair that {op}\(\.\.\., "
                           r"return_stats=True\) returned"):
            backward(x, x, arg, None, 1e-5, stats=bad)


def test_group_norm_rejects_bad_num_groups():
    x = np.zeros((2, 6, 3))
    with pytest.raises(ValueError, match=r"group_norm: x has 6 channels, which "
                       r"num_groups=4 does not divide \(shape \(2, 6, 3\)\)"):
        F.group_norm(x, 4)
    with pytest.raises(ValueError, match=r"group_norm_backward: x has 6 channels"):
        F.group_norm_backward(x, x, 5)
    for bad, error in [(0, ValueError), (-2, ValueError), (2**31, ValueError),
                       (2.0, TypeError), (True, TypeError), (None, TypeError),
                       ("2", TypeError)]:
        with pytest.raises(error, match=r"group_norm: num_groups must be"):
            F.group_norm(x, bad)
    with pytest.raises(ValueError, match=r"group_norm: x must be at least 2-D "
                       r"\(N, C, \*\), got 1-D"):
        F.group_norm(np.zeros(6), 1)


@pytest.mark.parametrize("shape", [(4,), (2, 3), (2, 3, 4), (1, 2, 3, 4, 5)])
def test_layer_norm2d_needs_4d_input(shape):
    x = np.zeros(shape)
    with pytest.raises(ValueError, match=rf"layer_norm2d: x must be 4-D, got "
                       rf"{len(shape)}-D"):
        F.layer_norm2d(x)
    with pytest.raises(ValueError, match=r"layer_norm2d_backward: x must be 4-D"):
        F.layer_norm2d_backward(x, x)


# ------------------------------------------------------------------------ fuzzing


@st.composite
def norm_case(draw, fill=data):
    """(op, x, arg, weight, bias, eps): valid arguments in any memory layout."""
    op = draw(st.sampled_from(sorted(OPS)))
    dtype = draw(st.sampled_from(FLOATS))
    if op == "layer_norm":
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
        k = draw(st.integers(1, len(shape)))
        arg = shape[len(shape) - k:]
        arg = arg[0] if k == 1 and draw(st.booleans()) else arg
    elif op == "group_norm":
        groups = draw(st.integers(1, 3))
        shape = (draw(st.integers(1, 3)), groups * draw(st.integers(1, 3)),
                 *draw(st.lists(st.integers(1, 4), max_size=2)))
        arg = groups
    else:
        shape = tuple(draw(st.integers(1, 4)) for _ in range(4))
        arg = None
    pshape = OPS[op][2](shape, (arg,) if isinstance(arg, int) and op == "layer_norm"
                        else arg)
    x = draw(fill(shape, dtype))
    weight = draw(st.one_of(st.none(), data(pshape, dtype)))
    bias = draw(st.one_of(st.none(), data(pshape, dtype)))
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.5]))
    return op, x, arg, weight, bias, eps


def _naive_arg(op, arg):
    return (arg,) if op == "layer_norm" and isinstance(arg, int) else arg


@examples(2.0)
@given(norm_case(), st.integers(0, 2**32 - 1))
def test_fuzz_matches_naive(case, seed):
    COUNTS["valid"] += 1
    op, x, arg, weight, bias, eps = case
    forward, backward, _ = OPS[op]
    dy = np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype)
    y = forward(x, arg, weight, bias, eps)
    grads = backward(dy, x, arg, weight, eps)
    ref_arg = _naive_arg(op, arg)
    ry = naive_forward(op, x, ref_arg, weight, bias, eps)
    rgrads = naive_backward(op, dy, x, ref_arg, weight, eps)
    # Normalising divides by sigma: errors scale with |x - mean| / sigma.
    tol = 1e-9 if x.dtype == np.float64 else 1e-4
    what = f"{op} {x.shape} {arg}"
    assert_ieee_close(y, ry, x.dtype, f"{what} y", tol=tol)
    for name, got, ref in zip(("dx", "dweight", "dbias"), grads, rgrads, strict=True):
        assert_ieee_close(got.reshape(-1), ref.reshape(-1), x.dtype,
                          f"{what} {name}", tol=tol)


@examples(0.5)
@given(norm_case(fill=extreme_data), st.integers(0, 2**32 - 1))
def test_fuzz_extreme_values_stay_in_their_set(case, seed):
    """±inf or NaN in a set makes its statistics NaN (as in torch), so the whole
    set's output and input gradient; sets without them stay finite."""
    COUNTS["extreme"] += 1
    op, x, arg, weight, bias, eps = case
    forward, backward, _ = OPS[op]
    y = forward(x, arg, None, None, eps)
    dx, dw, db = backward(np.ones_like(x), x, arg, None, eps)
    assert y.shape == dx.shape == x.shape
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == x.dtype
    sets, _ = _sets(op, x.shape, _naive_arg(op, arg))
    flat = np.asarray(x, np.float64).reshape(-1)
    with np.errstate(all="ignore"):
        big = np.abs(flat) > 1e15  # squares overflow float32 and near-float64
    for idx in sets:
        if not np.isfinite(flat[idx]).all():
            assert np.isnan(y.reshape(-1)[idx]).all(), f"{op} {x.shape}"
            assert np.isnan(dx.reshape(-1)[idx]).all(), f"{op} {x.shape}"
        elif not big[idx].any():
            assert np.isfinite(y.reshape(-1)[idx]).all(), f"{op} {x.shape}"


@examples(3.0)
@given(norm_case(), st.data())
def test_fuzz_invalid_arguments(case, draw):
    op, x, arg, weight, bias, eps = case
    forward, backward, pshape = OPS[op]
    pshape = pshape(x.shape, _naive_arg(op, arg))
    dy = np.zeros_like(x)
    which = draw.draw(st.sampled_from(["x", "dy", "weight", "bias", "eps", "arg",
                                       "return_stats", "stats"]))
    kw = {}
    if which == "x":
        bad = [*bad_arrays(x)]
        if op == "layer_norm2d":
            bad += [x[0], x[None]]
        elif op == "group_norm":
            # 1-D, or a channel count num_groups does not divide.
            bad += [x.reshape(-1)] + [x[:, :1]] * (arg > 1)
        else:
            bad += [np.zeros((*x.shape[:-1], x.shape[-1] + 1), x.dtype)]
        x = draw.draw(st.sampled_from(bad))
    elif which == "dy":
        dy = draw.draw(st.sampled_from([*bad_arrays(dy), dy[None], other_float(dy),
                                        np.zeros((*dy.shape[:-1], dy.shape[-1] + 1),
                                                 dy.dtype)]))
    elif which in ("weight", "bias"):
        good = np.ones(pshape, x.dtype)
        value = draw.draw(st.sampled_from(
            [*bad_arrays(good, optional=True), good[None], other_float(good),
             np.ones((*pshape[:-1], pshape[-1] + 1), x.dtype)]))
        weight, bias = (value, bias) if which == "weight" else (weight, value)
    elif which == "eps":
        eps = draw.draw(st.sampled_from([*NOT_REALS, *NON_FINITE, 0.0, -1e-5]))
    elif which == "arg":
        if op == "layer_norm2d":
            return  # no such argument
        arg = draw.draw(st.sampled_from(
            [*NOT_INTS, 0, -1, 2**31, 2**64] if op == "group_norm" else
            [v for v in NOT_INTS if not isinstance(v, tuple | list)]
            + [(), -1, (x.shape[-1] + 1,), (*x.shape, 1)]))
    elif which == "return_stats":
        kw["return_stats"] = draw.draw(st.sampled_from(NOT_BOOLS))
    else:
        # Never a valid pair: (zeros(1), zeros(1)) is one for an x of one row.
        kw["stats"] = draw.draw(st.sampled_from([(), "s", (np.zeros((1, 1)),) * 2,
                                                 (np.zeros(1, np.float32),) * 2,
                                                 (None, None)]))
    what = f"{op} {which}"
    if which not in ("dy", "stats"):
        expect_rejected(lambda: forward(x, arg, weight, bias, eps, **kw), what)
    if which not in ("bias", "return_stats"):
        expect_rejected(lambda: backward(dy, x, arg, weight, eps, **kw), what)
