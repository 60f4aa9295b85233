"""conv2d and conv2d_backward: references, finite differences, PyTorch, properties,
thread-count invariance and bad input."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcnn.functional as F
from fastcnn.functional.conv import conv_geometry
from fastcnn.kernels._clamp import bounds

from .. import naive
from ..gradcheck import assert_close, check_finite_differences
from ..threads import assert_thread_count_invariant


def _random_case(rng, n, c_in, h, w, c_out, k, groups, dtype=np.float64):
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = rng.standard_normal((c_out, c_in // groups, *k)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, wt, b


def _reference(x, wt, b, stride, padding, dilation, groups):
    geo = conv_geometry("test", x.shape, wt.shape, stride, padding, dilation, groups)
    return geo, naive.conv2d(x, wt, b, geo.stride, geo.pad_h, geo.pad_w, geo.dilation,
                             groups)


# (n, c_in, h, w, c_out, kernel, stride, padding, dilation, groups)
CASES = [
    (2, 3, 7, 6, 4, (3, 3), 1, 0, 1, 1),
    (1, 2, 8, 5, 3, (2, 3), 2, 1, 1, 1),
    (2, 4, 9, 9, 4, (3, 3), 3, 2, 1, 2),
    (1, 3, 7, 8, 3, (3, 2), 1, "same", 2, 3),  # depthwise, asymmetric "same"
    (2, 2, 6, 7, 2, (2, 2), 1, "same", 1, 1),  # even kernel: odd pixel after
    (1, 4, 10, 7, 6, (3, 3), (2, 1), (1, 2), (2, 1), 2),
]


def _assert_matches_naive(case, rng):
    """conv2d and its three gradients on ``case`` against the naive reference (float64,
    1e-12); returns the inputs and the upstream gradient used."""
    n, c_in, h, w, c_out, k, stride, padding, dilation, groups = case
    x, wt, b = _random_case(rng, n, c_in, h, w, c_out, k, groups)
    geo, expected = _reference(x, wt, b, stride, padding, dilation, groups)
    y = F.conv2d(x, wt, b, stride, padding, dilation, groups)
    assert_close(y, expected, 1e-12, 1e-12, "y")
    dy = rng.standard_normal(y.shape)
    dx, dw, db = F.conv2d_backward(dy, x, wt, stride, padding, dilation, groups)
    rdx, rdw, rdb = naive.conv2d_backward(dy, x, wt, geo.stride, geo.pad_h, geo.pad_w,
                                          geo.dilation, groups)
    assert_close(dx, rdx, 1e-12, 1e-12, "dx")
    assert_close(dw, rdw, 1e-12, 1e-12, "dweight")
    assert_close(db, rdb, 1e-12, 1e-12, "dbias")
    return x, wt, b, dy


@pytest.mark.parametrize("case", CASES)
def test_forward_and_backward_match_naive(case, rng):
    _assert_matches_naive(case, rng)


def test_float32_matches_naive(rng):
    x, wt, b = _random_case(rng, 2, 4, 9, 8, 6, (3, 3), 2, dtype=np.float32)
    geo, expected = _reference(x, wt, b, 1, 1, 1, 2)
    y = F.conv2d(x, wt, b, 1, 1, 1, 2)
    assert y.dtype == np.float32
    assert_close(y, expected, 1e-5, 1e-5, "y")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    grads = F.conv2d_backward(dy, x, wt, 1, 1, 1, 2)
    refs = naive.conv2d_backward(dy, x, wt, geo.stride, geo.pad_h, geo.pad_w,
                                 geo.dilation, 2)
    for name, got, ref in zip(("dx", "dweight", "dbias"), grads, refs, strict=True):
        assert got.dtype == np.float32
        assert_close(got, ref, 1e-4, 1e-4, name)


# Shapes that make the CPU kernels split the work: several tiles of output positions
# per image and several chunks of input channels per tile, or several whole images
# per tile (checked below, so the test cannot silently stop covering the split),
# with 4 + 1 output-row blocks.
TILED_CASES = [
    (1, 20, 26, 26, 5, (3, 3), 1, 1, 1, 1),
    (1, 40, 48, 48, 6, (3, 3), 2, 1, 1, 2),
    # Small images: several per task, the last task short of a full group.
    (7, 6, 10, 10, 5, (3, 3), 1, 0, 1, 1),
    (10, 4, 9, 9, 6, (3, 2), 2, 1, 1, 2),
]


# (n, c_in, h, c_out, kernel, stride, groups, input_grad) -> kernel_plan's names
PLAN_CASES = [
    # the rows weight gradient writes the bias gradient itself
    ((4, 6, 14, 16, (5, 5), 1, 1, True), ("forward:rows", "input:rows", "weight:rows")),
    ((2, 1, 12, 6, (5, 5), 1, 1, False), ("forward:rows", "weight:rows")),
    ((2, 3, 9, 6, (3, 5), 2, 1, True),
     ("forward:im2col", "input:direct", "weight:direct", "bias")),
    ((2, 8, 6, 8, (3, 3), 1, 1, True), ("winograd", "weight:winograd", "bias")),
    ((2, 8, 30, 64, (1, 1), 1, 1, True),
     ("forward:shifted", "input:rows", "weight:rows")),
    ((2, 8, 6, 96, (3, 3), 2, 1, True),
     ("forward:im2col", "input:direct", "weight:gemm", "bias")),
    # depthwise: dx is the forward of dy with flipped filters where each channel
    # has one filter; several images side by side from 64 columns on
    ((2, 4, 6, 4, (3, 3), 1, 4, True),
     ("forward:depthwise", "weight:depthwise", "bias")),
    ((2, 4, 6, 8, (3, 3), 1, 4, True),
     ("forward:depthwise", "input:depthwise", "weight:depthwise", "bias")),
    ((16, 4, 6, 4, (3, 3), 1, 4, True),
     ("forward:depthwise_rows", "weight:depthwise_rows", "bias")),
    # strided depthwise: the weight gradient reads the forward's stride phases
    ((2, 4, 7, 4, (3, 3), 2, 4, True),
     ("forward:depthwise", "input:depthwise_phases", "weight:depthwise", "bias")),
]

_PLAN_NAMES = {
    "_conv2d_forward_rows": "forward:rows",
    "_conv2d_forward_shifted": "forward:shifted",
    "_conv2d_forward_im2col": "forward:im2col", "winograd_conv3x3": "winograd",
    "conv2d_depthwise": "forward:depthwise",
    "conv2d_depthwise_rows": "forward:depthwise_rows",
    "conv2d_depthwise_rows_weight_grad": "weight:depthwise_rows",
    "_conv2d_backward_input_direct": "input:direct",
    "conv2d_backward_input_rows": "input:rows",
    "conv2d_depthwise_input_grad": "input:depthwise",
    "conv2d_depthwise_input_grad_phases": "input:depthwise_phases",
    "_conv2d_backward_weight_direct": "weight:direct",
    "_conv2d_backward_weight_rows": "weight:rows",
    "conv2d_backward_weight_gemm": "weight:gemm",
    "winograd_weight_grad3x3": "weight:winograd",
    "conv2d_depthwise_weight_grad": "weight:depthwise",
    "conv2d_backward_bias": "bias",
}


@pytest.mark.parametrize("case, expected", PLAN_CASES)
def test_kernel_plan_names_the_kernels_that_run(case, expected, rng, monkeypatch):
    # fastcnn.warmup shares the compiling out by kernel_plan: it must name exactly
    # the kernels the dispatch in conv.py runs.
    from fastcnn.kernels.cpu import _conv_plan
    from fastcnn.kernels.cpu import conv as kernels

    n, c_in, h, c_out, k, stride, groups, input_grad = case
    ran = []
    for name, token in _PLAN_NAMES.items():
        original = getattr(kernels, name)

        def record(*args, _original=original, _token=token):
            ran.append(_token)
            return _original(*args)

        monkeypatch.setattr(kernels, name, record)
    x = rng.standard_normal((n, c_in, h, h))
    wt = rng.standard_normal((c_out, c_in // groups, *k))
    y = F.conv2d(x, wt, np.zeros(c_out), stride, 1, 1, groups)
    F.conv2d_backward(np.ones_like(y), x, wt, stride, 1, 1, groups,
                      input_grad=input_grad)
    plan = _conv_plan.kernel_plan(x.shape, wt.shape, y.shape, (stride, stride),
                                  (1, 1), groups, input_grad)
    assert plan == expected
    assert tuple(dict.fromkeys(ran)) == expected


@pytest.mark.parametrize("case", TILED_CASES)
def test_tiled_and_chunked_paths_match_naive(case, rng):
    from fastcnn.kernels.cpu._conv_plan import _gemm_tiles

    n, c_in, h, w, c_out, k, stride, padding, dilation, groups = case
    geo = conv_geometry("test", (n, c_in, h, w), (c_out, c_in // groups, *k), stride,
                        padding, dilation, groups)
    positions = geo.out_hw[0] * geo.out_hw[1]
    tile, chunk, images = _gemm_tiles.py_func(c_out // groups, positions, k[0] * k[1],
                                              c_in // groups, n)
    if images == 1:
        assert tile < positions and chunk < c_in // groups, (tile, chunk)
    else:
        assert tile == images * positions and n % images, (tile, images)
    x, wt, b, dy = _assert_matches_naive(case, rng)
    args = (stride, padding, dilation, groups)
    assert_thread_count_invariant(lambda: F.conv2d(x, wt, b, *args), "conv2d tiled")
    assert_thread_count_invariant(lambda: F.conv2d_backward(dy, x, wt, *args),
                                  "conv2d_backward tiled")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("dilation,groups", [(1, 1), (2, 2)])
def test_both_stride_1_forward_kernels_match_naive(dtype, dilation, groups, rng):
    # conv2d_forward picks one of three kernels for stride 1 by shape; each must be
    # right on any shape (several tiles of the shifted kernel's q range here), and
    # all give the same bits (they sum in the same order).
    from fastcnn.kernels.cpu import conv as kernels

    x, wt, b = _random_case(rng, 3, 8, 30, 27, 6, (3, 2), groups, dtype=dtype)
    geo, expected = _reference(x, wt, b, 1, (2, 1), dilation, groups)
    xp = np.pad(x, ((0, 0), (0, 0), geo.pad_h, geo.pad_w))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    results = []
    for name in ("_conv2d_forward_shifted", "_conv2d_forward_rows",
                 "_conv2d_forward_im2col"):
        y = np.full(expected.shape, np.nan, dtype=dtype)
        kernel = getattr(kernels, name)
        no_clamp = bounds(None, dtype)
        if name == "_conv2d_forward_im2col":
            kernel(xp, wt, b, y, 1, 1, dilation, dilation, groups, *no_clamp)
        elif name == "_conv2d_forward_rows":  # padded already: no more padding
            kernel(xp, wt, b, y, 0, 0, dilation, dilation, groups, *no_clamp)
        else:
            kernel(xp, wt, b, y, dilation, dilation, groups, *no_clamp)
        assert_close(y, expected, tol, tol, name)
        results.append(y.tobytes())
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("c_out,groups", [(6, 1), (13, 1), (24, 2), (3, 1)])
def test_rows_forward_of_one_image_is_its_row_of_the_batch(c_out, groups, dtype, rng):
    """A batch too small to fill four tasks is split over blocks of output
    channels as well (``_channel_blocks``); the blocks start at multiples of four
    rows, so every output keeps its micro-kernel and its bits."""
    from fastcnn.kernels.cpu import conv as kernels

    assert kernels._channel_blocks(1, c_out // groups)[0] == min(
        4, (c_out // groups + 3) // 4)
    x, wt, b = _random_case(rng, 9, 2 * groups, 12, 11, c_out, (5, 3), groups,
                            dtype=dtype)
    whole = F.conv2d(x, wt, b, 1, (2, 1), 1, groups)
    for i in (0, 4, 8):
        alone = F.conv2d(x[i : i + 1], wt, b, 1, (2, 1), 1, groups)
        assert alone.tobytes() == whole[i : i + 1].tobytes()
    two = F.conv2d(x[3:5], wt, b, 1, (2, 1), 1, groups)
    assert two.tobytes() == whole[3:5].tobytes()


# (pad_t, pad_l, pad_b, pad_r): symmetric, one-sided, padding wider than the
# kernel reaches, and none (the kernels' contiguous copy of whole rows).
ROWS_PADDINGS = [(2, 2, 2, 2), (1, 0, 2, 3), (0, 3, 0, 0), (4, 5, 4, 5), (0, 0, 0, 0)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pads", ROWS_PADDINGS)
def test_rows_kernels_read_x_as_if_padded(pads, dtype, rng):
    """The rows forward and weight gradient read ``x`` as if zero-padded (no
    padded copy): bitwise what they give on the padded copy itself, and the
    bias gradient the weight gradient writes is bitwise the bias kernel's."""
    from fastcnn.kernels.cpu import conv as kernels

    pad_t, pad_l, pad_b, pad_r = pads
    x, wt, b = _random_case(rng, 5, 3, 9, 11, 6, (3, 4), 1, dtype=dtype)
    xp = np.pad(x, ((0, 0), (0, 0), (pad_t, pad_b), (pad_l, pad_r)))
    out_hw = (xp.shape[2] - 2, xp.shape[3] - 3)
    no_clamp = bounds(None, dtype)
    virtual = np.full((5, 6, *out_hw), np.nan, dtype=dtype)
    kernels._conv2d_forward_rows(x, wt, b, virtual, pad_t, pad_l, 1, 1, 1, *no_clamp)
    padded = np.full_like(virtual, np.nan)
    kernels._conv2d_forward_rows(xp, wt, b, padded, 0, 0, 1, 1, 1, *no_clamp)
    assert virtual.tobytes() == padded.tobytes()
    expected = naive.conv2d(xp, wt, b, (1, 1), (0, 0), (0, 0), (1, 1), 1)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert_close(virtual, expected, tol, tol, "y")

    dy = rng.standard_normal(virtual.shape).astype(dtype)
    grads = []
    for source, top, left in ((x, pad_t, pad_l), (xp, 0, 0)):
        dwt, db = np.full_like(wt, np.nan), np.full(6, np.nan, dtype=dtype)
        finite = np.ones(5, dtype=np.bool_)
        kernels._conv2d_backward_weight_rows(dy, source, dwt, db, top, left, 1, 1, 1,
                                             finite)
        assert finite.all()
        grads.append((dwt.tobytes(), db.tobytes()))
    assert grads[0] == grads[1]
    db_alone = np.full(6, np.nan, dtype=dtype)
    kernels.conv2d_backward_bias(dy, db_alone)
    assert grads[0][1] == db_alone.tobytes()
    dwt = np.full_like(wt, np.nan)
    kernels._conv2d_backward_weight_rows(dy, x, dwt, np.empty(0, dtype), pad_t,
                                         pad_l, 1, 1, 1, np.ones(5, dtype=np.bool_))
    assert dwt.tobytes() == grads[0][0]  # no bias: the same weight gradient


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_weight_grad_keeps_an_inf_to_the_weights_it_touches(dtype, rng):
    """The rows weight gradient multiplies zeros past each dy row's end by input
    values no window covers there; an inf among them (0 * inf = NaN) must not
    reach weights whose windows never read it: those come out finite, as in the
    naive reference (the kernel hands such a batch to the direct one)."""
    x, wt, _ = _random_case(rng, 3, 2, 7, 8, 4, (3, 3), 1, dtype=dtype)
    x[1, 0, 3, 7] = np.inf  # the last column: only kw = 2 reads it
    dy = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    _, dweight, _ = F.conv2d_backward(dy, x, wt, 1, 0)
    expected = naive.conv2d_backward(dy, x, wt, (1, 1), (0, 0), (0, 0), (1, 1), 1)[1]
    finite = np.isfinite(expected)
    assert finite.any() and not finite.all()
    np.testing.assert_array_equal(np.isfinite(dweight), finite)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert_close(dweight[finite], expected[finite], tol, tol, "dweight")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_input_grad_keeps_an_inf_weight_to_the_inputs_it_touches(dtype, rng):
    """The rows input gradient multiplies the zeros it lays out between dy's
    rows by every weight; an inf weight (0 * inf = NaN) must not reach inputs
    whose windows never use it with a real dy value: those come out as the naive
    reference gives them (the dispatch hands such filters to the direct
    kernel)."""
    x, wt, _ = _random_case(rng, 2, 2, 7, 8, 3, (3, 3), 1, dtype=dtype)
    wt[1, 0, 0, 2] = np.inf
    dy = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
    dy[:, :, :, 0] = 0  # the inf tap reaches column kw = 2 only from dy's column 0
    dx = F.conv2d_backward(dy, x, wt, 1, 0)[0]
    expected = naive.conv2d_backward(dy, x, wt, (1, 1), (0, 0), (0, 0), (1, 1), 1)[0]
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(expected))
    finite = np.isfinite(expected)
    assert finite.any() and not finite.all()
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert_close(dx[finite], expected[finite], tol, tol, "dx")


def test_rows_input_grad_of_one_image_is_its_slice_of_the_batch(rng):
    """The rows input gradient puts several images in a task and, for few
    images, splits the input channels over tasks: neither may change a bit of
    an image's gradient."""
    x, wt, _ = _random_case(rng, 9, 6, 14, 14, 16, (5, 5), 1, dtype=np.float32)
    dy = rng.standard_normal((9, 16, 10, 10)).astype(np.float32)
    whole = F.conv2d_backward(dy, x, wt, 1, 0)[0]
    for i in (0, 4, 8):
        alone = F.conv2d_backward(dy[i : i + 1], x[i : i + 1], wt, 1, 0)[0]
        assert alone.tobytes() == whole[i : i + 1].tobytes()


@pytest.mark.parametrize("case", CASES)
def test_finite_differences(case, rng):
    n, c_in, h, w, c_out, k, stride, padding, dilation, groups = case
    x, wt, b = _random_case(rng, n, c_in, h, w, c_out, k, groups)

    def forward(x, weight, bias):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    def backward(dy, x, weight, bias):
        return F.conv2d_backward(dy, x, weight, stride, padding, dilation, groups)

    check_finite_differences(forward, backward, {"x": x, "weight": wt, "bias": b},
                             ("x", "weight", "bias"), rng)


def test_vertical_edge_example():
    image = np.zeros((1, 1, 6, 6))
    image[..., :3] = 10.0
    edge = np.array([[1.0, 0.0, -1.0]] * 3)[None, None]
    out = F.conv2d(image, edge)
    assert out.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(out[0, 0], [[0, 30, 30, 0]] * 4)


def test_no_bias_equals_zero_bias(rng):
    x, wt, b = _random_case(rng, 1, 2, 5, 5, 3, (3, 3), 1)
    np.testing.assert_array_equal(F.conv2d(x, wt), F.conv2d(x, wt, np.zeros(3)))


def test_non_contiguous_and_fortran_inputs(rng):
    x, wt, b = _random_case(rng, 2, 3, 8, 8, 4, (3, 3), 1)
    expected = F.conv2d(x, wt, b, padding=1)
    strided = np.ascontiguousarray(np.repeat(x, 2, axis=3))[..., ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(F.conv2d(strided, wt, b, padding=1), expected)
    fortran = np.asfortranarray(x)
    np.testing.assert_array_equal(F.conv2d(fortran, np.asfortranarray(wt), b,
                                           padding=1), expected)
    dy = rng.standard_normal(expected.shape)
    want = F.conv2d_backward(dy, x, wt, padding=1)
    got = F.conv2d_backward(np.asfortranarray(dy), fortran, wt, padding=1)
    for a, e in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, e)


def test_nan_propagates(rng):
    x, wt, b = _random_case(rng, 1, 1, 5, 5, 1, (3, 3), 1)
    x[0, 0, 2, 2] = np.nan
    y = F.conv2d(x, wt, b)
    assert np.isnan(y).all()  # every 3x3 window of a 5x5 image covers the centre
    dx, dw, db = F.conv2d_backward(np.ones_like(y), x, wt)
    assert np.isnan(dw).all() and np.isfinite(db).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_invariance(dtype, rng):
    x, wt, b = _random_case(rng, 4, 4, 11, 9, 6, (3, 3), 2, dtype=dtype)
    dy = rng.standard_normal((4, 6, 11, 9)).astype(dtype)
    assert_thread_count_invariant(lambda: F.conv2d(x, wt, b, 1, 1, 1, 2), "conv2d")
    assert_thread_count_invariant(
        lambda: F.conv2d_backward(dy, x, wt, 1, 1, 1, 2), "conv2d_backward"
    )


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2), groups=st.integers(1, 3), cig=st.integers(1, 2),
    cog=st.integers(1, 2), h=st.integers(1, 8), w=st.integers(1, 8),
    kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3),
    sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
    dh=st.integers(1, 2), dw=st.integers(1, 2), seed=st.integers(0, 2**16),
)
def test_property_random_configurations(n, groups, cig, cog, h, w, kh, kw, sh, sw, ph,
                                        pw, dh, dw, seed):
    if dh * (kh - 1) + 1 > h + 2 * ph or dw * (kw - 1) + 1 > w + 2 * pw:
        with pytest.raises(ValueError, match="larger than the padded input"):
            F.conv2d(np.zeros((n, groups * cig, h, w)),
                     np.zeros((groups * cog, cig, kh, kw)),
                     padding=(ph, pw), dilation=(dh, dw), groups=groups)
        return
    r = np.random.default_rng(seed)
    x, wt, b = _random_case(r, n, groups * cig, h, w, groups * cog, (kh, kw), groups)
    args = ((sh, sw), (ph, pw), (dh, dw), groups)
    geo, expected = _reference(x, wt, b, *args)
    assert_close(F.conv2d(x, wt, b, *args), expected, 1e-12, 1e-12, "y")
    dy = r.standard_normal(expected.shape)
    got = F.conv2d_backward(dy, x, wt, *args)
    want = naive.conv2d_backward(dy, x, wt, geo.stride, geo.pad_h, geo.pad_w,
                                 geo.dilation, groups)
    for a, e in zip(got, want, strict=True):
        assert_close(a, e, 1e-12, 1e-12)


# ------------------------------------------------------------------- PyTorch parity

TORCH_GRID = [
    # (n, c_in, h, w, c_out, kernel, stride, padding, dilation, groups)
    (n, c_in, h, w, c_out, k, s, p, d, g)
    for (n, h, w), (c_in, c_out, g), k, s, p, d in itertools.product(
        [(1, 7, 7), (2, 9, 6)],
        [(2, 4, 1), (4, 6, 2), (3, 3, 3)],  # plain, groups=2, depthwise
        [(3, 3), (2, 3)],
        [1, 2, 3],
        [0, 1, 2, "same"],
        [1, 2],
    )
    if not (p == "same" and s != 1)
]


def _torch_conv(torch, x, wt, b, stride, padding, dilation, groups, dy):
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(wt, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride, padding, dilation, groups)
    ty.backward(torch.tensor(dy))
    return ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()


@pytest.mark.torch
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_matches_pytorch_over_grid(dtype, tol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    compared = 0
    for n, c_in, h, w, c_out, k, s, p, d, g in TORCH_GRID:
        if d * (k[0] - 1) + 1 > h + 2 * (p if isinstance(p, int) else 0):
            continue
        x, wt, b = _random_case(rng, n, c_in, h, w, c_out, k, g, dtype)
        y = F.conv2d(x, wt, b, s, p, d, g)
        dy = rng.standard_normal(y.shape).astype(dtype)
        ty, tdx, tdw, tdb = _torch_conv(torch, x, wt, b, s, p, d, g, dy)
        what = f"case {(n, c_in, h, w, c_out, k, s, p, d, g)}"
        assert_close(y, ty, tol, tol, what + " y")
        for got, want, name in zip(F.conv2d_backward(dy, x, wt, s, p, d, g),
                                   (tdx, tdw, tdb), ("dx", "dw", "db"), strict=True):
            assert_close(got, want, tol, tol, f"{what} {name}")
        compared += 1
    assert compared >= 200


# ----------------------------------------------------------------------- bad input


def _ok():
    return np.zeros((2, 4, 6, 6)), np.zeros((8, 4, 3, 3))


def test_rejects_wrong_ndim():
    x, wt = _ok()
    with pytest.raises(ValueError, match=r"conv2d: x must be 4-D, got 3-D"):
        F.conv2d(x[0], wt)
    with pytest.raises(ValueError, match=r"weight must be 4-D"):
        F.conv2d(x, wt[0])


def test_rejects_channel_mismatch():
    x, _ = _ok()
    with pytest.raises(ValueError, match=r"weight has 3 input channels per group but "
                       r"x has 4 channels \(groups=1\)"):
        F.conv2d(x, np.zeros((8, 3, 3, 3)))


def test_rejects_groups_not_dividing_channels():
    x, _ = _ok()
    with pytest.raises(ValueError, match=r"groups=3 does not divide the 4 input"):
        F.conv2d(x, np.zeros((6, 1, 3, 3)), groups=3)
    with pytest.raises(ValueError, match=r"groups=2 does not divide the 5 output"):
        F.conv2d(x, np.zeros((5, 2, 3, 3)), groups=2)
    with pytest.raises(ValueError, match=r"groups must be positive, got 0"):
        F.conv2d(x, np.zeros((8, 4, 3, 3)), groups=0)


def test_rejects_kernel_larger_than_padded_input():
    x, _ = _ok()
    with pytest.raises(ValueError, match=r"kernel's height with dilation \(7\)"):
        F.conv2d(x, np.zeros((8, 4, 7, 3)))
    with pytest.raises(ValueError, match=r"kernel's width with dilation \(9\)"):
        F.conv2d(x, np.zeros((8, 4, 1, 3)), dilation=4, padding=1)


@pytest.mark.parametrize("name, value", [("stride", 0), ("stride", (1, -1)),
                                         ("dilation", 0), ("padding", -1),
                                         ("padding", (0, -2))])
def test_rejects_non_positive_hyper_parameters(name, value):
    x, wt = _ok()
    with pytest.raises(ValueError, match=rf"conv2d: {name} must be .*got "
                       rf"{__import__('re').escape(repr(value))}"):
        F.conv2d(x, wt, **{name: value})


@pytest.mark.parametrize("name, value", [("stride", 1.5), ("padding", "full"),
                                         ("dilation", (1, 2, 3)), ("stride", True)])
def test_rejects_badly_typed_hyper_parameters(name, value):
    x, wt = _ok()
    with pytest.raises((TypeError, ValueError), match=rf"conv2d: {name} must be"):
        F.conv2d(x, wt, **{name: value})


@pytest.mark.parametrize("size,kernel,stride,dilation", [
    (7, 3, 2, 1), (8, 3, 2, 1), (9, 4, 3, 1), (6, 1, 2, 1), (10, 3, 2, 2),
    (5, 5, 4, 1), (2, 3, 3, 1)])
def test_same_padding_with_a_stride_follows_tensorflow(size, kernel, stride, dilation,
                                                        rng):
    # ceil(in / stride) outputs; the padding that needs, odd pixel at the bottom /
    # right: the same as that explicit padding, forward and backward.
    x = rng.standard_normal((2, 3, size, size + 1))
    wt = rng.standard_normal((4, 3, kernel, kernel))
    b = rng.standard_normal(4)
    got = F.conv2d(x, wt, b, stride=stride, padding="same", dilation=dilation)
    assert got.shape[2:] == (-(-size // stride), -(-(size + 1) // stride))
    pads = []
    for n in (size, size + 1):
        out = -(-n // stride)
        total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - n, 0)
        pads.append((total // 2, total - total // 2))
    xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    expected = F.conv2d(xp, wt, b, stride=stride, dilation=dilation)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(got.shape)
    dx, dw, db = F.conv2d_backward(dy, x, wt, stride=stride, padding="same",
                                   dilation=dilation)
    dxp, dw_ref, db_ref = F.conv2d_backward(dy, xp, wt, stride=stride,
                                            dilation=dilation)
    h0, w0 = pads[0][0], pads[1][0]
    np.testing.assert_allclose(dx, dxp[:, :, h0 : h0 + size, w0 : w0 + size + 1],
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)


def test_strided_same_conv2d_layer_matches_keras_shapes():
    from fastcnn import layers

    layer = layers.Conv2D(5, 3, stride=2, padding="same")
    layer.build((3, 15, 16), np.float64, np.random.default_rng(0))
    assert layer.output_shape == (5, 8, 8)
    assert layer.window().padding == (1, 0)  # totals 2 and 1: odd pixel after
    unbuilt = layers.Conv2D(5, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="depends on the input size"):
        unbuilt.window()
    assert unbuilt.window((3, 15, 16)).padding == (1, 0)


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.float16, np.complex128])
def test_rejects_non_float_dtypes(dtype):
    x, wt = _ok()
    with pytest.raises(TypeError, match=rf"x must have dtype float32 or float64, got "
                       rf"{np.dtype(dtype)}"):
        F.conv2d(x.astype(dtype), wt)


def test_rejects_mismatched_dtypes():
    x, wt = _ok()
    with pytest.raises(TypeError, match=r"weight has dtype float32 but x has dtype "
                       r"float64"):
        F.conv2d(x, wt.astype(np.float32))
    with pytest.raises(TypeError, match=r"bias has dtype float32"):
        F.conv2d(x, wt, np.zeros(8, np.float32))


def test_rejects_non_arrays():
    _, wt = _ok()
    with pytest.raises(TypeError, match=r"x must be a numpy.ndarray.*got list"):
        F.conv2d([[[[1.0]]]], wt)


def test_rejects_bad_bias_shape():
    x, wt = _ok()
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\), got \(7,\)"):
        F.conv2d(x, wt, np.zeros(7))


def test_empty_batch_gives_empty_output_and_zero_gradients():
    # As in PyTorch; tests/ops/test_zero_size.py compares the zero-size cases with it.
    x, wt = _ok()
    y = F.conv2d(x[:0], wt)
    assert y.shape == (0, *F.conv2d(x, wt).shape[1:])
    dx, dw, db = F.conv2d_backward(np.zeros(y.shape), x[:0], wt)
    assert dx.shape == x[:0].shape
    assert not dw.any() and dw.shape == wt.shape and not db.any()


def test_rejects_empty_images():
    x, wt = _ok()
    with pytest.raises(ValueError, match=r"x has a zero-sized height or width"):
        F.conv2d(x[:, :, :0], wt, padding=2)


def test_backward_rejects_wrong_dy_shape():
    x, wt = _ok()
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 8, 4, 4\), got "
                       r"\(2, 8, 5, 5\)"):
        F.conv2d_backward(np.zeros((2, 8, 5, 5)), x, wt)


def test_backward_without_input_grad_gives_the_same_weight_grads(rng):
    # A first layer skips dx; dweight and dbias must be exactly what they would be.
    x = rng.standard_normal((3, 2, 7, 6))
    wt = rng.standard_normal((4, 2, 3, 3))
    dy = rng.standard_normal((3, 4, 5, 3))
    full = F.conv2d_backward(dy, x, wt, stride=(1, 2), padding=1, dilation=(2, 1))
    skipped = F.conv2d_backward(dy, x, wt, stride=(1, 2), padding=1, dilation=(2, 1),
                                input_grad=False)
    assert skipped[0] is None
    np.testing.assert_array_equal(skipped[1], full[1])
    np.testing.assert_array_equal(skipped[2], full[2])
    with pytest.raises(TypeError, match="input_grad must be a bool"):
        F.conv2d_backward(dy, x, wt, stride=(1, 2), padding=1, dilation=(2, 1),
                          input_grad="no")


# --------------------------------- 1x1 input gradient through the forward kernels

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n", "c_in", "hw", "c_out"), [
    (3, 5, (4, 6), 7),      # several small images per task
    (2, 16, (24, 24), 8),   # one image per task, tiles of positions
    (1, 3, (1, 1), 2),
])
def test_pointwise_input_grad_is_bitwise_the_direct_kernel(n, c_in, hw, c_out, dtype):
    """An unpadded 1x1 convolution's dx comes from the forward kernel run on dy
    with the transposed filters; it must be bitwise what the direct kernel gives,
    NaN, infinities and signed zeros included."""
    from fastcnn.kernels.cpu import conv as cpu_conv
    from fastcnn.kernels.cpu._conv_plan import kernel_plan

    rng = np.random.default_rng(5)
    w = rng.standard_normal((c_out, c_in, 1, 1)).astype(dtype)
    dy = rng.standard_normal((n, c_out, *hw)).astype(dtype)
    dy.reshape(-1)[::7] = -0.0
    dy.reshape(-1)[-1] = np.inf
    w.reshape(-1)[1] = np.nan if c_in * c_out > 4 else w.reshape(-1)[1]
    dx = np.empty((n, c_in, *hw), dtype)
    cpu_conv.conv2d_backward_input(dy, w, dx, 0, 0, 1, 1, 1, 1, 1)
    direct = np.empty_like(dx)
    cpu_conv._conv2d_backward_input_direct(dy, w, direct, 1, 1, 1, 1, 1)
    np.testing.assert_array_equal(dx, direct)
    np.testing.assert_array_equal(np.signbit(dx), np.signbit(direct))
    plan = kernel_plan(dx.shape, w.shape, dy.shape, (1, 1), (1, 1), 1)
    assert not any(name.startswith("input:") for name in plan), plan


@pytest.mark.parametrize("pad", [1, 2])
def test_padded_input_gradient_crop_is_the_same_either_way(pad, rng, monkeypatch):
    # The strided input gradient is computed padded and cropped: by NumPy below
    # PARALLEL_CROP_ELEMENTS, by the parallel pad kernel from there; the bits
    # are the same.
    from fastcnn.kernels.cpu import conv as cpu_conv

    x_shape, w = (2, 3, 11, 13), rng.standard_normal((4, 3, 3, 3))
    oh = (x_shape[2] + 2 * pad - 3) // 2 + 1
    ow = (x_shape[3] + 2 * pad - 3) // 2 + 1
    dy = rng.standard_normal((2, 4, oh, ow))
    results = []
    for limit in (0, 1 << 30):
        monkeypatch.setattr(cpu_conv, "PARALLEL_CROP_ELEMENTS", limit)
        dx = np.full(x_shape, np.nan)
        cpu_conv.conv2d_backward_input(dy, w, dx, pad, pad, 2, 2, 1, 1, 1)
        results.append(dx)
    assert results[0].tobytes() == results[1].tobytes()
    x = rng.standard_normal(x_shape)
    expected = naive.conv2d_backward(dy, x, w, (2, 2), (pad, pad), (pad, pad),
                                     (1, 1), 1)[0]
    np.testing.assert_allclose(results[0], expected, rtol=1e-12, atol=1e-12)
