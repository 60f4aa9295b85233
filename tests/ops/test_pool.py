"""max_pool2d, avg_pool2d and global_avg_pool2d: forward and backward against the naive
references, finite differences, PyTorch and thread-count invariance, plus bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastcnn.functional as F

from .. import naive
from ..gradcheck import assert_close, check_finite_differences, max_rel_error
from ..threads import assert_thread_count_invariant

DTYPES = [np.float64, np.float32]
# Max pooling picks values and adds gradients in PyTorch's order, so it matches
# exactly; averages differ from references by rounding only.
TOL = {np.float64: dict(rtol=1e-12, atol=1e-13), np.float32: dict(rtol=2e-6, atol=1e-6)}


def _distinct(rng, shape, dtype=np.float64):
    """Values at least 1/size apart, so finite differences never cross a tie."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) / size - 0.5).astype(dtype)


def _pairs(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _max_ref(kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    k = _pairs(kernel_size)
    s = k if stride is None else _pairs(stride)
    return k, s, _pairs(padding), _pairs(dilation), ceil_mode


def _avg_ref(kernel_size, stride=None, padding=0):
    k = _pairs(kernel_size)
    s = k if stride is None else _pairs(stride)
    return k, s, _pairs(padding)


# ------------------------------------------------------------- (a) naive references

MAX_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1)),
    dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True),
    dict(kernel_size=2, stride=3, ceil_mode=True),
]
AVG_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1), count_include_pad=False),
    dict(kernel_size=2, stride=3, ceil_mode=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", MAX_CASES)
def test_max_pool_matches_naive(cfg, dtype, rng):
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    k, s, p, d, ceil = _max_ref(**cfg)
    y = F.max_pool2d(x, **cfg)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, naive.max_pool2d(x, k, s, p, d, ceil))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = F.max_pool2d_backward(dy, x, **cfg)
    assert dx.dtype == dtype
    assert_close(dx, naive.max_pool2d_backward(dy, x, k, s, p, d), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", AVG_CASES)
def test_avg_pool_matches_naive(cfg, dtype, rng):
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    cfg_geo = {key: val for key, val in cfg.items()
               if key in ("kernel_size", "stride", "padding")}
    k, s, p = _avg_ref(**cfg_geo)
    ceil = cfg.get("ceil_mode", False)
    cip = cfg.get("count_include_pad", True)
    y = F.avg_pool2d(x, **cfg)
    assert y.dtype == dtype
    assert_close(y, naive.avg_pool2d(x, k, s, p, ceil, cip), **TOL[dtype])
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = F.avg_pool2d_backward(dy, x, **cfg)
    assert dx.dtype == dtype
    assert_close(dx, naive.avg_pool2d_backward(dy, x, k, s, p, cip), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool_matches_naive(dtype, rng):
    x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
    y = F.global_avg_pool2d(x)
    assert y.shape == (2, 3) and y.dtype == dtype
    assert_close(y, naive.global_avg_pool2d(x), **TOL[dtype])
    dy = rng.standard_normal((2, 3)).astype(dtype)
    dx = F.global_avg_pool2d_backward(dy, x)
    assert dx.dtype == dtype
    assert_close(dx, naive.global_avg_pool2d_backward(dy, x), **TOL[dtype])


def test_stride_none_means_kernel_size(rng):
    x = rng.standard_normal((1, 2, 7, 8))
    np.testing.assert_array_equal(
        F.max_pool2d(x, (2, 3)), F.max_pool2d(x, [2, 3], stride=(2, 3))
    )
    np.testing.assert_array_equal(
        F.avg_pool2d(x, (2, 3)), F.avg_pool2d(x, (2, 3), stride=[2, 3])
    )


def test_max_pool_window_outside_input_gives_minus_inf_and_no_gradient():
    # Dilation 3 with ceil_mode: the only window's taps (-1 and 2) both miss a 1x1
    # input. PyTorch gives -inf too (and an out-of-range index, which we do not copy).
    x = np.ones((2, 1, 1, 1))
    cfg = dict(kernel_size=2, stride=2, padding=1, dilation=3, ceil_mode=True)
    y = F.max_pool2d(x, **cfg)
    assert y.shape == (2, 1, 1, 1) and np.all(y == -np.inf)
    dx = F.max_pool2d_backward(np.ones_like(y), x, **cfg)
    np.testing.assert_array_equal(dx, np.zeros_like(x))


# -------------------------------------------------------- (b) finite differences


@pytest.mark.parametrize("cfg", MAX_CASES)
def test_max_pool_finite_differences(cfg, rng):
    x = _distinct(rng, (1, 2, 7, 6))
    check_finite_differences(
        lambda x: F.max_pool2d(x, **cfg),
        lambda dy, x: F.max_pool2d_backward(dy, x, **cfg),
        {"x": x}, ["x"], rng,
    )


@pytest.mark.parametrize("cfg", AVG_CASES)
def test_avg_pool_finite_differences(cfg, rng):
    x = rng.standard_normal((1, 2, 7, 6))
    check_finite_differences(
        lambda x: F.avg_pool2d(x, **cfg),
        lambda dy, x: F.avg_pool2d_backward(dy, x, **cfg),
        {"x": x}, ["x"], rng,
    )


def test_global_avg_pool_finite_differences(rng):
    x = rng.standard_normal((2, 2, 3, 4))
    check_finite_differences(
        F.global_avg_pool2d, F.global_avg_pool2d_backward, {"x": x}, ["x"], rng
    )


# ------------------------------------------------------------------- (c) PyTorch

SHAPES = [(1, 2, 7, 5), (2, 3, 6, 6)]  # odd, non-square, batch 1; even, square
KERNELS = [1, 2, 3, (2, 3), (3, 2)]
STRIDES = [None, 1, 2, 3]


def _paddings(kernel):
    kh, kw = _pairs(kernel)
    return [
        p for p in (0, 1, (0, 1), (1, 0))
        if _pairs(p)[0] <= kh // 2 and _pairs(p)[1] <= kw // 2
    ]


def _fits(shape, kernel, stride, padding, dilation, ceil_mode):
    k = _pairs(kernel)
    s = k if stride is None else _pairs(stride)
    p, d = _pairs(padding), _pairs(dilation)
    return all(
        naive.pool_out_size(size, k[i], s[i], p[i], d[i], ceil_mode) >= 1
        for i, size in enumerate(shape[2:])
    )


def _max_grid():
    for shape, k, s, d, ceil in itertools.product(
        SHAPES, KERNELS, STRIDES, (1, 2, (1, 2)), (False, True)
    ):
        for p in _paddings(k):
            if _fits(shape, k, s, p, d, ceil):
                yield shape, dict(kernel_size=k, stride=s, padding=p, dilation=d,
                                  ceil_mode=ceil)


def _avg_grid():
    for shape, k, s, ceil, cip in itertools.product(
        SHAPES, KERNELS, STRIDES, (False, True), (False, True)
    ):
        for p in _paddings(k):
            if _fits(shape, k, s, p, 1, ceil):
                yield shape, dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil,
                                  count_include_pad=cip)


@pytest.fixture
def torch():
    """PyTorch as the oracle, on one thread: these ops are tiny, and its threads only
    fight Numba's for the cores."""
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(previous)


def _torch_pair(torch, fn, x, dy, cfg):
    xt = torch.tensor(x, requires_grad=True)
    yt = fn(xt, **cfg)
    yt.backward(torch.tensor(dy))
    return yt.detach().numpy(), xt.grad.numpy()


def _errors(worst, key, ours, theirs):
    abs_err = float(np.max(np.abs(ours.astype(np.float64) - theirs)))
    rel = max_rel_error(ours, theirs)
    old = worst.get(key, (0.0, 0.0))
    worst[key] = (max(old[0], abs_err), max(old[1], rel))


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_matches_torch_grid(dtype, torch):
    rng = np.random.default_rng(7)
    compared = 0
    worst: dict = {}
    for shape, cfg in _max_grid():
        x = rng.standard_normal(shape).astype(dtype)
        y = F.max_pool2d(x, **cfg)
        if np.isinf(y).any():
            # A window wholly outside the input: PyTorch's backward then uses an
            # out-of-range index (see the -inf test above), so there is no oracle.
            continue
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx = F.max_pool2d_backward(dy, x, **cfg)
        ty, tdx = _torch_pair(torch, torch.nn.functional.max_pool2d, x, dy, cfg)
        np.testing.assert_array_equal(y, ty, err_msg=str((shape, cfg)))
        assert_close(dx, tdx, **TOL[dtype], what=str((shape, cfg)))
        _errors(worst, "y", y, ty)
        _errors(worst, "dx", dx, tdx)
        compared += 1
    assert compared > 300
    print(f"max_pool2d {np.dtype(dtype)}: {compared} configs, worst {worst}")


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool_matches_torch_grid(dtype, torch):
    rng = np.random.default_rng(8)
    compared = 0
    worst: dict = {}
    for shape, cfg in _avg_grid():
        x = rng.standard_normal(shape).astype(dtype)
        y = F.avg_pool2d(x, **cfg)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx = F.avg_pool2d_backward(dy, x, **cfg)
        ty, tdx = _torch_pair(torch, torch.nn.functional.avg_pool2d, x, dy, cfg)
        assert_close(y, ty, **TOL[dtype], what=str((shape, cfg)))
        assert_close(dx, tdx, **TOL[dtype], what=str((shape, cfg)))
        _errors(worst, "y", y, ty)
        _errors(worst, "dx", dx, tdx)
        compared += 1
    assert compared > 300
    print(f"avg_pool2d {np.dtype(dtype)}: {compared} configs, worst {worst}")


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 2, 7, 5), (3, 4, 6, 6)])
def test_global_avg_pool_matches_torch(shape, dtype, rng, torch):
    x = rng.standard_normal(shape).astype(dtype)
    y = F.global_avg_pool2d(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = F.global_avg_pool2d_backward(dy, x)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.adaptive_avg_pool2d(xt, 1).reshape(shape[:2])
    yt.backward(torch.tensor(dy))
    assert_close(y, yt.detach().numpy(), **TOL[dtype])
    assert_close(dx, xt.grad.numpy(), **TOL[dtype])


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "cfg",
    [
        dict(kernel_size=3, stride=1, padding=1),
        dict(kernel_size=2, stride=1),
        dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(1, 2),
             ceil_mode=True),
    ],
)
def test_max_pool_ties_send_gradient_to_one_input_like_torch(cfg, dtype, rng, torch):
    # Whole-plane ties and a few-level image: many windows hold several equal maxima.
    x = np.concatenate(
        [np.ones((1, 1, 5, 6)), rng.integers(0, 3, (1, 1, 5, 6))], axis=1
    ).astype(dtype)
    y = F.max_pool2d(x, **cfg)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = F.max_pool2d_backward(dy, x, **cfg)
    ty, tdx = _torch_pair(torch, torch.nn.functional.max_pool2d, x, dy, cfg)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(dx, tdx)
    # One input per window: a unit dy on one window marks exactly one input.
    for oh, ow in np.ndindex(y.shape[2:]):
        unit = np.zeros_like(dy)
        unit[:, :, oh, ow] = 1
        marks = F.max_pool2d_backward(unit, x, **cfg)
        assert (np.count_nonzero(marks, axis=(2, 3)) == 1).all()
        assert (marks.sum(axis=(2, 3)) == 1).all()


def _tied_2x2_planes(dtype):
    """Planes of 2x2 blocks with every tie pattern at the maximum: for each nonempty
    subset of the 4 taps (15 of them), a block whose maximum sits at exactly those
    taps (the others lower), plus blocks with -inf and signed-zero ties."""
    blocks = []
    for mask in range(1, 16):
        taps = [(mask >> t) & 1 for t in range(4)]
        blocks.append([[2.0 if taps[0] else -1.0, 2.0 if taps[1] else 0.5],
                       [2.0 if taps[2] else -3.0, 2.0 if taps[3] else 1.0]])
    blocks.append([[-np.inf, -np.inf], [-np.inf, -np.inf]])
    blocks.append([[-0.0, 0.0], [-1.0, 0.0]])
    # The 17 blocks side by side make a 2 x 34 plane; a second channel mirrors it
    # left to right and a second sample swaps the channels (other tie taps).
    row = np.concatenate([np.asarray(b) for b in blocks], axis=1)
    x = np.stack([row, row[:, ::-1]])[None]
    return np.concatenate([x, x[:, ::-1]]).astype(dtype)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_2x2_stride_2_ties_match_torch(dtype, rng, torch):
    # The 2x2, stride-2 kernel is a separate fast path (_max_pool_2x2_backward);
    # torch sends each window's gradient to its first maximum in row-major order.
    from fastcnn.kernels.cpu import pool as cpu_pool

    x = _tied_2x2_planes(dtype)
    cfg = dict(kernel_size=2, stride=2)
    y = F.max_pool2d(x, **cfg)
    assert cpu_pool._is_2x2_max(x.shape, y.shape, 2, 2, 2, 2, 0, 0, 1, 1)
    dy = (rng.permutation(y.size).reshape(y.shape) + 1).astype(dtype)
    ty, tdx = _torch_pair(torch, torch.nn.functional.max_pool2d, x, dy, cfg)
    np.testing.assert_array_equal(y, ty)
    dx = F.max_pool2d_backward(dy, x, **cfg)
    np.testing.assert_array_equal(dx, tdx)
    # Exactly one nonzero per window, holding that window's dy.
    blocks = dx.reshape(*dx.shape[:2], y.shape[2], 2, y.shape[3], 2)
    assert (np.count_nonzero(blocks, axis=(3, 5)) == 1).all()
    np.testing.assert_array_equal(blocks.sum(axis=(3, 5)), dy)


@pytest.mark.torch
def test_max_pool_all_minus_inf_routes_to_first_tap_like_torch(rng, torch):
    x = np.full((1, 2, 4, 5), -np.inf)
    cfg = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    dy = rng.standard_normal(F.max_pool2d(x, **cfg).shape)
    ty, tdx = _torch_pair(torch, torch.nn.functional.max_pool2d, x, dy, cfg)
    np.testing.assert_array_equal(F.max_pool2d(x, **cfg), ty)
    np.testing.assert_array_equal(F.max_pool2d_backward(dy, x, **cfg), tdx)


# --------------------------------------------------------------- (d) hypothesis


@st.composite
def _pool_config(draw, with_dilation):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    cfg = dict(
        kernel_size=(kh, kw),
        stride=draw(st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3))),
        padding=(draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))),
        ceil_mode=draw(st.booleans()),
    )
    if with_dilation:
        cfg["dilation"] = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)),
             draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    dtype = draw(st.sampled_from(DTYPES))
    return shape, cfg, dtype, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=25, deadline=None)
@given(_pool_config(with_dilation=True))
def test_max_pool_property(case):
    shape, cfg, dtype, seed = case
    assume(_fits(shape, cfg["kernel_size"], cfg["stride"], cfg["padding"],
                 cfg["dilation"], cfg["ceil_mode"]))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    k, s, p, d, ceil = _max_ref(**cfg)
    y = F.max_pool2d(x, **cfg)
    np.testing.assert_array_equal(y, naive.max_pool2d(x, k, s, p, d, ceil))
    dy = rng.standard_normal(y.shape).astype(dtype)
    assert_close(F.max_pool2d_backward(dy, x, **cfg),
                 naive.max_pool2d_backward(dy, x, k, s, p, d), **TOL[dtype])


@settings(max_examples=25, deadline=None)
@given(_pool_config(with_dilation=False), st.booleans())
def test_avg_pool_property(case, count_include_pad):
    shape, cfg, dtype, seed = case
    assume(_fits(shape, cfg["kernel_size"], cfg["stride"], cfg["padding"], 1,
                 cfg["ceil_mode"]))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    k, s, p = _avg_ref(cfg["kernel_size"], cfg["stride"], cfg["padding"])
    y = F.avg_pool2d(x, **cfg, count_include_pad=count_include_pad)
    assert_close(y, naive.avg_pool2d(x, k, s, p, cfg["ceil_mode"], count_include_pad),
                 **TOL[dtype])
    dy = rng.standard_normal(y.shape).astype(dtype)
    assert_close(
        F.avg_pool2d_backward(dy, x, **cfg, count_include_pad=count_include_pad),
        naive.avg_pool2d_backward(dy, x, k, s, p, count_include_pad),
        **TOL[dtype],
    )


# ------------------------------------------------------------------- (e) threads


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_invariance(dtype, rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    mcfg = dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True)
    acfg = dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)
    dy_max = rng.standard_normal(F.max_pool2d(x, **mcfg).shape).astype(dtype)
    dy_avg = rng.standard_normal(F.avg_pool2d(x, **acfg).shape).astype(dtype)
    dy_glob = rng.standard_normal((2, 3)).astype(dtype)
    assert_thread_count_invariant(
        lambda: (F.max_pool2d(x, **mcfg), F.max_pool2d_backward(dy_max, x, **mcfg)),
        "max_pool2d",
    )
    assert_thread_count_invariant(
        lambda: (F.avg_pool2d(x, **acfg), F.avg_pool2d_backward(dy_avg, x, **acfg)),
        "avg_pool2d",
    )
    assert_thread_count_invariant(
        lambda: (F.global_avg_pool2d(x), F.global_avg_pool2d_backward(dy_glob, x)),
        "global_avg_pool2d",
    )


# --------------------------------------------------------------- (f) bad input

X = np.zeros((1, 2, 4, 4))
DY = np.zeros((1, 2, 2, 2))  # the output shape of a 2x2 window on X


def _windowed_ops():
    """(name, call) of each windowed op, called with X (and DY for the backwards)."""
    return [
        ("max_pool2d", lambda **kw: F.max_pool2d(X, **kw)),
        ("max_pool2d_backward", lambda **kw: F.max_pool2d_backward(DY, X, **kw)),
        ("avg_pool2d", lambda **kw: F.avg_pool2d(X, **kw)),
        ("avg_pool2d_backward", lambda **kw: F.avg_pool2d_backward(DY, X, **kw)),
    ]


BAD_HYPER = [
    (dict(kernel_size=0), ValueError, "kernel_size must be positive"),
    (dict(kernel_size=(2, -1)), ValueError, "kernel_size must be positive"),
    (dict(kernel_size=2.0), TypeError, "kernel_size must be an int"),
    (dict(kernel_size=True), TypeError, "kernel_size must be an int"),
    (dict(kernel_size=(2, 2, 2)), TypeError, "kernel_size must be an int"),
    (dict(kernel_size="2"), TypeError, "kernel_size must be an int"),
    (dict(kernel_size=2, stride=0), ValueError, "stride must be positive"),
    (dict(kernel_size=2, stride=-2), ValueError, "stride must be positive"),
    (dict(kernel_size=2, stride=1.5), TypeError, "stride must be an int"),
    (dict(kernel_size=2, padding=-1), ValueError, "padding must be >= 0"),
    (dict(kernel_size=2, padding=(0, 0.5)), TypeError, "padding must be an int"),
    (dict(kernel_size=3, padding=2), ValueError, "padding must be at most half"),
    (dict(kernel_size=(2, 1), padding=(1, 1)), ValueError,
     "padding must be at most half"),
    (dict(kernel_size=2, ceil_mode=1), TypeError, "ceil_mode must be a bool"),
    (dict(kernel_size=5), ValueError, "kernel_size=.*too small"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), BAD_HYPER)
@pytest.mark.parametrize("which", range(4))
def test_bad_hyper_parameters(which, kwargs, exc, match):
    name, call = _windowed_ops()[which]
    with pytest.raises(exc, match=f"^{name}: {match}"):
        call(**kwargs)


@pytest.mark.parametrize(
    ("dilation", "exc", "match"),
    [(0, ValueError, "dilation must be positive"),
     ((1, -1), ValueError, "dilation must be positive"),
     (None, TypeError, "dilation must be an int")],
)
def test_bad_dilation(dilation, exc, match):
    with pytest.raises(exc, match=f"max_pool2d: {match}"):
        F.max_pool2d(X, 2, dilation=dilation)
    with pytest.raises(exc, match=f"max_pool2d_backward: {match}"):
        F.max_pool2d_backward(DY, X, 2, dilation=dilation)


def test_dilation_counts_toward_output_size():
    with pytest.raises(ValueError, match="max_pool2d: kernel_size=.*dilation=.*small"):
        F.max_pool2d(X, 2, dilation=4)


@pytest.mark.parametrize("op", [F.avg_pool2d, F.avg_pool2d_backward])
def test_bad_count_include_pad(op):
    args = (X,) if op is F.avg_pool2d else (DY, X)
    with pytest.raises(TypeError, match="count_include_pad must be a bool"):
        op(*args, 2, count_include_pad="yes")


ALL_OPS = [
    ("max_pool2d", lambda x: F.max_pool2d(x, 2)),
    ("avg_pool2d", lambda x: F.avg_pool2d(x, 2)),
    ("global_avg_pool2d", F.global_avg_pool2d),
    ("max_pool2d_backward", lambda x: F.max_pool2d_backward(DY, x, 2)),
    ("avg_pool2d_backward", lambda x: F.avg_pool2d_backward(DY, x, 2)),
    ("global_avg_pool2d_backward",
     lambda x: F.global_avg_pool2d_backward(np.zeros((1, 2)), x)),
]


@pytest.mark.parametrize(("name", "op"), ALL_OPS)
def test_x_wrong_ndim(name, op):
    with pytest.raises(ValueError, match=f"^{name}: x must be 4-D, got 3-D"):
        op(np.zeros((2, 4, 4)))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.float16])
@pytest.mark.parametrize(("name", "op"), ALL_OPS)
def test_x_bad_dtype(name, op, dtype):
    with pytest.raises(TypeError, match=f"^{name}: x must have dtype float32"):
        op(np.zeros((1, 2, 4, 4), dtype=dtype))


@pytest.mark.parametrize(("name", "op"), ALL_OPS)
def test_x_not_an_array(name, op):
    with pytest.raises(TypeError, match=f"^{name}: x must be a numpy.ndarray"):
        op(X.tolist())


@pytest.mark.parametrize(("name", "op"), ALL_OPS[:3])
def test_empty_batch_gives_an_empty_result(name, op):
    # As in PyTorch; tests/ops/test_zero_size.py compares every case with it.
    x = np.zeros((0, 2, 4, 4))
    assert op(x).shape == (0, *op(np.zeros((1, 2, 4, 4))).shape[1:])


SLIDING_OPS = [(name, op) for name, op in ALL_OPS if not name.startswith("global")]


@pytest.mark.parametrize(("name", "op"), SLIDING_OPS)
@pytest.mark.parametrize("shape", [(1, 2, 0, 4), (1, 0, 4, 4)])
def test_zero_sized_plane_or_channels(name, op, shape):
    # PyTorch refuses these for max and average pooling too.
    with pytest.raises(ValueError, match=f"^{name}: x has a zero-sized channel, "
                       f"height or width"):
        op(np.zeros(shape))


def test_global_average_of_an_empty_map_is_nan():
    # PyTorch's adaptive_avg_pool2d(x, 1): 0 / 0.
    assert np.isnan(F.global_avg_pool2d(np.zeros((1, 2, 0, 4)))).all()
    assert F.global_avg_pool2d_backward(np.ones((1, 2)),
                                        np.zeros((1, 2, 0, 4))).shape == (1, 2, 0, 4)


BACKWARDS = [
    ("max_pool2d_backward", lambda dy: F.max_pool2d_backward(dy, X, 2), (1, 2, 2, 2)),
    ("avg_pool2d_backward", lambda dy: F.avg_pool2d_backward(dy, X, 2), (1, 2, 2, 2)),
    ("global_avg_pool2d_backward", lambda dy: F.global_avg_pool2d_backward(dy, X),
     (1, 2)),
]


@pytest.mark.parametrize(("name", "op", "shape"), BACKWARDS)
def test_dy_mismatched_dtype(name, op, shape):
    with pytest.raises(TypeError, match=f"^{name}: dy has dtype float32 but x"):
        op(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize(("name", "op", "shape"), BACKWARDS)
def test_dy_wrong_shape(name, op, shape):
    bad = shape[:-1] + (shape[-1] + 1,)
    with pytest.raises(ValueError, match=rf"^{name}: dy must have shape \({shape[0]}"):
        op(np.zeros(bad))


@pytest.mark.parametrize(("name", "op", "shape"), BACKWARDS)
def test_dy_wrong_ndim(name, op, shape):
    with pytest.raises(ValueError, match=f"^{name}: dy must be {len(shape)}-D"):
        op(np.zeros(shape + (1,)))


@pytest.mark.parametrize(("name", "op", "shape"), BACKWARDS)
def test_dy_bad_dtype(name, op, shape):
    with pytest.raises(TypeError, match=f"^{name}: dy must have dtype"):
        op(np.zeros(shape, dtype=np.int64))


def test_non_contiguous_and_fortran_inputs(rng):
    base = rng.standard_normal((2, 3, 14, 7))
    x = np.ascontiguousarray(base[:, :, ::2])
    flipped = np.ascontiguousarray(x[:, :, ::-1])[:, :, ::-1]  # negative strides
    views = [base[:, :, ::2], np.asfortranarray(x), flipped]
    cfg = dict(kernel_size=3, stride=2, padding=1)
    dy = rng.standard_normal(F.max_pool2d(x, **cfg).shape)
    dyf = np.asfortranarray(dy)
    gdy = np.asfortranarray(rng.standard_normal((2, 3)))
    for xv in views:
        assert not xv.flags.c_contiguous
        np.testing.assert_array_equal(F.max_pool2d(xv, **cfg), F.max_pool2d(x, **cfg))
        np.testing.assert_array_equal(F.max_pool2d_backward(dyf, xv, **cfg),
                                      F.max_pool2d_backward(dy, x, **cfg))
        np.testing.assert_array_equal(F.avg_pool2d(xv, **cfg), F.avg_pool2d(x, **cfg))
        np.testing.assert_array_equal(F.avg_pool2d_backward(dyf, xv, **cfg),
                                      F.avg_pool2d_backward(dy, x, **cfg))
        np.testing.assert_array_equal(F.global_avg_pool2d(xv), F.global_avg_pool2d(x))
        np.testing.assert_array_equal(F.global_avg_pool2d_backward(gdy, xv),
                                      F.global_avg_pool2d_backward(gdy.copy(), x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates(dtype, rng):
    x = rng.standard_normal((1, 2, 5, 6)).astype(dtype)
    x[0, 0, 1, 2] = np.nan
    x[0, 1, 4, 5] = np.nan
    cfg = dict(kernel_size=3, stride=2, padding=1)
    k, s, p = _avg_ref(**cfg)
    y = naive.max_pool2d(x, k, s, p, (1, 1), False)
    assert np.isnan(y[0, 0]).any() and np.isnan(y[0, 1]).any()
    np.testing.assert_array_equal(F.max_pool2d(x, **cfg), y.astype(dtype))
    # An average is NaN exactly where a max is: in the windows holding a NaN.
    np.testing.assert_array_equal(np.isnan(F.avg_pool2d(x, **cfg)), np.isnan(y))
    assert np.isnan(F.global_avg_pool2d(x)).all()
    ones = np.ones(y.shape, dtype=dtype)
    # The gradient of an average does not read x, so it stays finite.
    assert np.isfinite(F.avg_pool2d_backward(ones, x, **cfg)).all()
    dx = F.max_pool2d_backward(ones, x, **cfg)
    expected = naive.max_pool2d_backward(ones, x, k, s, p, (1, 1))
    np.testing.assert_array_equal(dx, expected)
    # Every window holding the NaN of channel 0 sends its gradient to it.
    assert dx[0, 0, 1, 2] == np.isnan(y[0, 0]).sum()


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_tie_rule_matches_torch(dtype, rng, torch):
    x = rng.integers(0, 3, (1, 2, 6, 7)).astype(dtype)
    x[rng.random(x.shape) < 0.2] = np.nan
    cfg = dict(kernel_size=3, stride=1, padding=1)
    y = F.max_pool2d(x, **cfg)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty, tdx = _torch_pair(torch, torch.nn.functional.max_pool2d, x, dy, cfg)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(F.max_pool2d_backward(dy, x, **cfg), tdx)


# --------------------------------------------- the ReLU backward in the pool's pass

GATED_CASES = [dict(kernel_size=2), *MAX_CASES[1:3],
               dict(kernel_size=2, stride=2, padding=0, ceil_mode=False)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("cfg", GATED_CASES)
@pytest.mark.parametrize("hw", [(8, 8), (7, 9)])
def test_gated_max_pool_backward_is_the_activation_backward_after_it(
        cfg, hw, activation, dtype, rng):
    """``max_pool2d_backward_trusted(..., gate=)`` is bitwise the activation's
    backward applied to the plain pool backward, on an activation's output with
    ties at zero, sixes, infinities, NaN and negative zeros in dy."""
    from fastcnn.functional.pool import max_pool2d_backward_trusted, pool_geometry
    from fastcnn.kernels._clamp import CLAMPS

    x = rng.standard_normal((3, 4, *hw)).astype(dtype) * 5
    x.reshape(-1)[::11] = np.nan
    x.reshape(-1)[5::13] = np.inf
    x.reshape(-1)[3::17] = 6.0
    x = F.relu(x) if activation == "relu" else F.relu6(x)
    k, s, p, d, ceil = _max_ref(**cfg)
    geo = pool_geometry("t", x.shape, k, s, p, d, ceil)
    dy = rng.standard_normal((3, 4, *geo.out_hw)).astype(dtype)
    dy.reshape(-1)[::7] = -0.0
    plain = max_pool2d_backward_trusted(dy, x, geo)
    backward = F.relu_backward if activation == "relu" else F.relu6_backward
    expected = backward(plain, x)
    got = max_pool2d_backward_trusted(dy, x, geo, CLAMPS[activation])
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


def _hostile_2x2_inputs(rng, dtype):
    """Inputs of the 2x2 vector-row tests: rows of 1 to 40 blocks (around one
    and two vectors of either dtype), odd and even sizes, with ties (rounded
    values), sixes, signed zeros, infinities and NaN."""
    for h, w in [(2, 2), (3, 5), (28, 28), (10, 10), (6, 33), (5, 34), (4, 64),
                 (4, 65), (2, 80), (3, 81)]:
        x = np.round(rng.standard_normal((2, 3, h, w)) * 3).astype(dtype)
        flat = x.reshape(-1)
        flat[::11] = np.nan
        flat[5::13] = np.inf
        flat[7::19] = -np.inf
        flat[3::17] = 6.0
        flat[2::23] = -0.0
        yield x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gate", [(np.nan, np.nan), (0.0, np.nan), (0.0, 6.0)])
def test_max_pool_2x2_vector_rows_equal_the_general_kernel(gate, dtype, rng):
    """The 2x2, stride-2 backward (vector rows: whole blocks of lanes, then a
    masked partial one) is bitwise the general kernel's, on rows of 1 to 40
    blocks (around one and two vectors of either dtype), odd and even sizes,
    with ties, signed zeros, infinities and NaN, plain and gated."""
    from fastcnn.kernels.cpu import pool as cpu_pool

    lo, hi = (dtype(v) for v in gate)
    for x in _hostile_2x2_inputs(rng, dtype):
        h, w = x.shape[2:]
        dy = rng.standard_normal((2, 3, h // 2, w // 2)).astype(dtype)
        dy.reshape(-1)[::7] = -0.0
        fast = np.full_like(x, 7.0)
        general = np.full_like(x, 7.0)
        assert cpu_pool._is_2x2_max(x.shape, dy.shape, 2, 2, 2, 2, 0, 0, 1, 1)
        cpu_pool._max_pool_2x2_backward(dy, x, fast, lo, hi)
        cpu_pool._max_pool2d_backward_any(dy, x, general, lo, hi, 2, 2, 2, 2, 0, 0,
                                          1, 1)
        np.testing.assert_array_equal(fast, general)
        np.testing.assert_array_equal(np.signbit(fast), np.signbit(general))


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_2x2_vector_rows_forward_equals_the_general_kernel(dtype, rng):
    """The 2x2, stride-2 forward (vector rows) is bitwise the general kernel's,
    NaN, infinities, ties and signed zeros included."""
    from fastcnn.kernels.cpu import pool as cpu_pool

    for x in _hostile_2x2_inputs(rng, dtype):
        h, w = x.shape[2:]
        fast = np.full((2, 3, h // 2, w // 2), 7.0, dtype=dtype)
        general = fast.copy()
        cpu_pool._max_pool_2x2_forward(x, fast)
        cpu_pool._max_pool2d_forward_any(x, general, 2, 2, 2, 2, 0, 0, 1, 1)
        np.testing.assert_array_equal(fast, general)
        np.testing.assert_array_equal(np.signbit(fast), np.signbit(general))
