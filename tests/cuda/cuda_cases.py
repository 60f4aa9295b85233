"""Tiny argument sets for every kernel, shared by the CUDA tests.

``CASES[(module, function)]`` is a list of builders ``build(rng, dtype) -> (args,
outs)``: positional arguments for the CPU kernel and its CUDA twin, and the positions
of the arrays they write. ``tests/cuda/test_cuda_kernels.py`` runs both and compares the
outputs (on the simulator); ``tools/gpu_check.py --ptx`` runs the CUDA launchers in
recording mode to learn each kernel's argument types. Shapes stay tiny: the
simulator runs about 2,000 GPU threads a second.

This module imports NumPy only, so that the PTX subprocess can import it before
numba.
"""

from __future__ import annotations

import numpy as np

#: Kernels that are scalar helpers rather than array kernels: their CUDA twins are
#: device functions, checked through the kernels that call them.
DEVICE_HELPERS = {("dropout", "splitmix64"), ("dropout", "uniform01")}

CASES: dict[tuple[str, str], list] = {}


def case(module: str, function: str):
    def register(build):
        CASES.setdefault((module, function), []).append(build)
        return build

    return register


def _normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _empty(shape, dtype):
    # NaN-filled, so an element a kernel forgets to write shows up.
    return np.full(shape, np.nan, dtype=dtype)


# ---------------------------------------------------------------------------- conv

# (n, c_in, hp, wp, c_out, kh, kw, sh, sw, dh, dw, groups, pt, pl): the padded
# input is hp x wp, of which pt rows (pl columns) on each side are padding.
CONV_GEOMETRIES = [
    (2, 3, 6, 5, 6, 3, 2, 1, 1, 1, 1, 1, 1, 0),  # 2 channel chunks, the last partial
    (1, 4, 7, 7, 4, 3, 3, 2, 1, 1, 2, 2, 1, 1),  # groups, stride and dilation
    (1, 3, 5, 6, 3, 2, 2, 1, 2, 2, 1, 3, 0, 0),  # depthwise
    (1, 2, 6, 6, 4, 3, 3, 1, 1, 1, 1, 2, 1, 1),  # depthwise x2, CPU's own kernels
    (1, 2, 7, 8, 2, 2, 2, 2, 2, 2, 1, 1, 1, 0),  # sh = dh = 2: dx rows no tap hits
]
#: conv2d_backward_params with its positions split into several chunks (50: 17, 17
#: and 16 with the tests' TILE = 2), whose partial tiles the last block adds.
PARAMS_SPLIT_GEOMETRY = (2, 2, 7, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1)


def _conv_shapes(geo):
    n, c_in, hp, wp, c_out, kh, kw, sh, sw, dh, dw, groups, pt, pl = geo
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    return ((n, c_in, hp - 2 * pt, wp - 2 * pl), (c_out, c_in // groups, kh, kw),
            (n, c_out, oh, ow), (pt, pl, sh, sw, dh, dw, groups))


def _conv_builders(geo):
    xs, ws, ys, hyper = _conv_shapes(geo)

    def forward(rng, dtype):
        args = (_normal(rng, xs, dtype), _normal(rng, ws, dtype),
                _normal(rng, ws[0], dtype), _empty(ys, dtype), *hyper)
        return args, (3,)

    def backward_input(rng, dtype):
        args = (_normal(rng, ys, dtype), _normal(rng, ws, dtype), _empty(xs, dtype),
                *hyper)
        return args, (2,)

    def backward_weight(rng, dtype):
        args = (_normal(rng, ys, dtype), _normal(rng, xs, dtype), _empty(ws, dtype),
                *hyper)
        return args, (2,)

    def backward_bias(rng, dtype):
        return (_normal(rng, ys, dtype), _empty(ws[0], dtype)), (1,)

    def backward_params(rng, dtype):
        args = (_normal(rng, ys, dtype), _normal(rng, xs, dtype), _empty(ws, dtype),
                _empty(ws[0], dtype), *hyper)
        return args, (2, 3)

    return forward, backward_input, backward_weight, backward_bias, backward_params


case("conv", "conv2d_backward_params")(_conv_builders(PARAMS_SPLIT_GEOMETRY)[4])
for _geo in CONV_GEOMETRIES:
    _f, _i, _w, _b, _p = _conv_builders(_geo)
    case("conv", "conv2d_forward")(_f)
    case("conv", "conv2d_backward_input")(_i)
    case("conv", "conv2d_backward_weight")(_w)
    case("conv", "conv2d_backward_bias")(_b)
    case("conv", "conv2d_backward_params")(_p)


# The fused ReLU / ReLU6 epilogue (kernels._clamp), on the first geometry.
_FIRST_FORWARD = _conv_builders(CONV_GEOMETRIES[0])[0]
for _clamp in ((0.0, np.inf), (0.0, 6.0)):

    @case("conv", "conv2d_forward")
    def _(rng, dtype, clamp=_clamp):
        args, out = _FIRST_FORWARD(rng, dtype)
        return (*args, clamp), out

    @case("dense", "linear_forward")
    def _(rng, dtype, clamp=_clamp):
        return (_normal(rng, (5, 7), dtype), _normal(rng, (7, 3), dtype),
                _normal(rng, 3, dtype), _empty((5, 3), dtype), clamp), (3,)


# ---------------------------------------------------------------------------- pool

# (x shape, (kh, kw, sh, sw, ph, pw, dh, dw), output hw)
MAX_POOL_GEOMETRIES = [
    ((2, 2, 4, 4), (2, 2, 2, 2, 0, 0, 1, 1), (2, 2)),
    ((1, 2, 5, 6), (3, 2, 1, 2, 1, 1, 1, 1), (5, 4)),  # overlapping, padded
    ((1, 1, 6, 6), (2, 2, 2, 1, 1, 0, 2, 2), (3, 4)),  # dilated
]


def _pool_input(rng, shape, dtype):
    """Normal values with a tie and a NaN."""
    x = _normal(rng, shape, dtype)
    flat = x.reshape(-1)
    flat[1] = flat[0]
    flat[7] = np.nan
    return x


def _max_pool_builders(geo):
    xs, hyper, ohw = geo
    ys = (*xs[:2], *ohw)

    def forward(rng, dtype):
        return (_pool_input(rng, xs, dtype), _empty(ys, dtype), *hyper), (1,)

    def backward(rng, dtype):
        x = _pool_input(rng, xs, dtype)
        return (_normal(rng, ys, dtype), x, _empty(xs, dtype), *hyper), (2,)

    return forward, backward


def _gated_max_pool_builder(geo, gate):
    xs, hyper, ohw = geo
    ys = (*xs[:2], *ohw)

    def backward(rng, dtype):
        # A post-activation input: zeros (ties), a six, an inf and the NaN.
        x = np.maximum(_pool_input(rng, xs, dtype), 0) * 4
        flat = x.reshape(-1)
        flat[2], flat[3] = 6.0, np.inf
        lo, hi = (np.dtype(dtype).type(np.nan if v is None else v) for v in gate)
        return (_normal(rng, ys, dtype), x, _empty(xs, dtype), lo, hi, *hyper), (2,)

    return backward


for _geo in MAX_POOL_GEOMETRIES:
    _f, _b = _max_pool_builders(_geo)
    case("pool", "max_pool2d_forward")(_f)
    case("pool", "max_pool2d_backward")(_b)
    for _gate in ((0.0, None), (0.0, 6.0), (None, None)):
        case("pool", "max_pool2d_backward_gated")(_gated_max_pool_builder(_geo, _gate))

# (x shape, (kh, kw, sh, sw, ph, pw, count_include_pad), output hw)
AVG_POOL_GEOMETRIES = [
    ((2, 2, 4, 4), (2, 2, 2, 2, 0, 0, True), (2, 2)),
    ((1, 2, 5, 5), (3, 3, 2, 2, 1, 1, False), (3, 3)),
    ((1, 1, 5, 4), (3, 2, 2, 1, 1, 1, True), (3, 5)),
]


def _avg_pool_builders(geo):
    xs, hyper, ohw = geo
    ys = (*xs[:2], *ohw)

    def forward(rng, dtype):
        return (_normal(rng, xs, dtype), _empty(ys, dtype), *hyper), (1,)

    def backward(rng, dtype):
        return (_normal(rng, ys, dtype), _empty(xs, dtype), *hyper), (1,)

    return forward, backward


for _geo in AVG_POOL_GEOMETRIES:
    _f, _b = _avg_pool_builders(_geo)
    case("pool", "avg_pool2d_forward")(_f)
    case("pool", "avg_pool2d_backward")(_b)


@case("pool", "global_avg_pool2d_forward")
def _(rng, dtype):
    return (_normal(rng, (2, 3, 3, 4), dtype), _empty((2, 3), dtype)), (1,)


@case("pool", "global_avg_pool2d_backward")
def _(rng, dtype):
    return (_normal(rng, (2, 3), dtype), _empty((2, 3, 3, 4), dtype)), (1,)


# ----------------------------------------------------------------------- pool_more

# Max pooling with indices on the MAX_POOL_GEOMETRIES above, plus a window with no
# tap inside the input (dilation 3 with ceil_mode on a 1x1 plane).
MAX_INDEX_GEOMETRIES = [*MAX_POOL_GEOMETRIES,
                        ((2, 1, 1, 1), (2, 2, 2, 2, 1, 1, 3, 3), (1, 1))]


def _window_taps(o, k, s, p, d, size):
    taps = o * s - p + d * np.arange(k)
    return taps[(taps >= 0) & (taps < size)]


def _random_window_indices(rng, xs, hyper, ohw):
    """A random tap inside the input of each window (-1 for a window with none):
    indices the op layer would accept, not only argmaxes."""
    kh, kw, sh, sw, ph, pw, dh, dw = hyper
    idx = np.empty((*xs[:2], *ohw), np.int64)
    for n, c, oh, ow in np.ndindex(idx.shape):
        rows = _window_taps(oh, kh, sh, ph, dh, xs[2])
        cols = _window_taps(ow, kw, sw, pw, dw, xs[3])
        idx[n, c, oh, ow] = (rng.choice(rows) * xs[3] + rng.choice(cols)
                             if rows.size and cols.size else -1)
    return idx


def _max_index_builders(geo):
    xs, hyper, ohw = geo
    ys = (*xs[:2], *ohw)

    def forward(rng, dtype):
        # _pool_input's tie and NaN need 8 elements; the 1x1 planes have 2.
        big = np.prod(xs) >= 8
        x = _pool_input(rng, xs, dtype) if big else _normal(rng, xs, dtype)
        return (x, _empty(ys, dtype), np.full(ys, -7, np.int64), *hyper), (1, 2)

    def backward(rng, dtype):
        return (_normal(rng, ys, dtype), _random_window_indices(rng, xs, hyper, ohw),
                _empty(xs, dtype), *hyper), (2,)

    return forward, backward


for _geo in MAX_INDEX_GEOMETRIES:
    _f, _b = _max_index_builders(_geo)
    case("pool_more", "max_pool2d_forward_indices")(_f)
    case("pool_more", "max_pool2d_backward_indices")(_b)

# (x shape, output hw): repeated and out-of-plane indices, which kernels skip.
UNPOOL_GEOMETRIES = [((2, 2, 2, 3), (4, 6)), ((1, 3, 3, 2), (3, 5))]


def _unpool_indices(rng, xs, ohw):
    size = ohw[0] * ohw[1]
    idx = rng.integers(0, size, xs).astype(np.int64)
    flat = idx.reshape(-1)
    flat[1] = flat[0]  # a repeat within the first plane
    flat[2] = flat[0]
    flat[3] = -1
    flat[-1] = size
    return idx


def _unpool_builders(geo):
    xs, ohw = geo
    ys = (*xs[:2], *ohw)

    def forward(rng, dtype):
        return (_normal(rng, xs, dtype), _unpool_indices(rng, xs, ohw),
                _empty(ys, dtype)), (2,)

    def backward(rng, dtype):
        return (_normal(rng, ys, dtype), _unpool_indices(rng, xs, ohw),
                _empty(xs, dtype)), (2,)

    return forward, backward


for _geo in UNPOOL_GEOMETRIES:
    _f, _b = _unpool_builders(_geo)
    case("pool_more", "max_unpool2d_forward")(_f)
    case("pool_more", "max_unpool2d_backward")(_b)

# (x shape, output hw): even bins, overlapping bins, an output larger than the input.
ADAPTIVE_GEOMETRIES = [((2, 2, 4, 4), (2, 2)), ((1, 2, 5, 7), (3, 4)),
                       ((1, 1, 3, 2), (5, 3))]


def _adaptive_builders(geo):
    xs, ohw = geo
    ys = (*xs[:2], *ohw)

    def forward(rng, dtype):
        return (_normal(rng, xs, dtype), _empty(ys, dtype)), (1,)

    def backward(rng, dtype):
        return (_normal(rng, ys, dtype), _empty(xs, dtype)), (1,)

    return forward, backward


for _geo in ADAPTIVE_GEOMETRIES:
    _f, _b = _adaptive_builders(_geo)
    case("pool_more", "adaptive_avg_pool2d_forward")(_f)
    case("pool_more", "adaptive_avg_pool2d_backward")(_b)


# --------------------------------------------------------------------------- dense


@case("dense", "linear_forward")
def _(rng, dtype):
    return (_normal(rng, (5, 7), dtype), _normal(rng, (7, 3), dtype),
            _normal(rng, 3, dtype), _empty((5, 3), dtype)), (3,)


@case("dense", "linear_backward_input")
def _(rng, dtype):
    return (_normal(rng, (5, 3), dtype), _normal(rng, (3, 7), dtype),
            _empty((5, 7), dtype)), (2,)


@case("dense", "linear_backward_weight")
def _(rng, dtype):
    return (_normal(rng, (5, 3), dtype), _normal(rng, (5, 7), dtype),
            _empty((3, 7), dtype)), (2,)


@case("dense", "linear_backward_bias")
def _(rng, dtype):
    return (_normal(rng, (5, 3), dtype), _empty(3, dtype)), (1,)


# The matrix product's tiles are (TILE * MICRO)^2 outputs, stepping TILE along the
# summed axis: 8 x 8 by 2 with the tests' TILE = 2. (N, IN, OUT) = (11, 5, 13) has
# two blocks each way, partial on every edge (11 = 8 + 3, 13 = 8 + 5, 5 = 2 + 2 + 1).
@case("dense", "linear_forward")
def _(rng, dtype):
    return (_normal(rng, (11, 5), dtype), _normal(rng, (5, 13), dtype),
            _normal(rng, 13, dtype), _empty((11, 13), dtype)), (3,)


@case("dense", "linear_backward_input")
def _(rng, dtype):
    return (_normal(rng, (11, 13), dtype), _normal(rng, (13, 9), dtype),
            _empty((11, 9), dtype)), (2,)


@case("dense", "linear_backward_weight")
def _(rng, dtype):
    return (_normal(rng, (5, 11), dtype), _normal(rng, (5, 13), dtype),
            _empty((11, 13), dtype)), (2,)


for _clamp in (None, (0.0, np.inf)):

    @case("dense", "linear_forward_untransposed")
    def _(rng, dtype, clamp=_clamp):
        return (_normal(rng, (11, 5), dtype), _normal(rng, (13, 5), dtype),
                _normal(rng, 13, dtype), _empty((11, 13), dtype), clamp), (3,)


# (N, OUT, IN): [dw | db] is (OUT, IN + 1); the ones column (db) inside a partial
# tile, then alone in a block of its own (IN a multiple of 8), then with N < TILE.
for _shape in ((5, 11, 12), (3, 9, 8), (1, 3, 2)):

    @case("dense", "linear_backward_params")
    def _(rng, dtype, shape=_shape):
        n, c_out, c_in = shape
        return (_normal(rng, (n, c_out), dtype), _normal(rng, (n, c_in), dtype),
                _empty((c_out, c_in), dtype), _empty(c_out, dtype)), (2, 3)


# ---------------------------------------------------------------------- activation


def _special(rng, size, dtype):
    """Normal values with a zero, a NaN and a large value mixed in."""
    x = (3 * rng.standard_normal(size)).astype(dtype)
    x[0] = 0
    x[1] = np.nan
    x[2] = 40
    return x


for _name in ("relu", "sigmoid", "tanh"):

    @case("activation", f"{_name}_forward")
    def _(rng, dtype):
        return (_special(rng, 13, dtype), _empty(13, dtype)), (1,)


@case("activation", "relu_backward")
def _(rng, dtype):
    return (_normal(rng, 13, dtype), _special(rng, 13, dtype), _empty(13, dtype)), (2,)


for _name in ("sigmoid", "tanh"):

    @case("activation", f"{_name}_backward")
    def _(rng, dtype):
        y = rng.uniform(-1, 1, 13).astype(dtype)
        return (_normal(rng, 13, dtype), y, _empty(13, dtype)), (2,)


@case("activation", "leaky_relu_forward")
def _(rng, dtype):
    return (_special(rng, 13, dtype), dtype(0.1), _empty(13, dtype)), (2,)


@case("activation", "leaky_relu_backward")
def _(rng, dtype):
    return (_normal(rng, 13, dtype), _special(rng, 13, dtype), dtype(0.1),
            _empty(13, dtype)), (3,)


for _name in ("softmax", "log_softmax"):

    @case("activation", f"{_name}_forward")
    def _(rng, dtype):
        x = (3 * rng.standard_normal((5, 4))).astype(dtype)
        x[1, 2] = np.nan
        return (x, _empty((5, 4), dtype)), (1,)

    @case("activation", f"{_name}_backward")
    def _(rng, dtype):
        y = rng.uniform(-2, 1, (5, 4)).astype(dtype)
        return (_normal(rng, (5, 4), dtype), y, _empty((5, 4), dtype)), (2,)


# ---------------------------------------------------------------------------- loss


@case("loss", "sum_in_order")
def _(rng, dtype):
    return (_normal(rng, 11, dtype), _empty(1, dtype)), (1,)


# (N, C, S): one position per sample, and several with positions of one sample in
# different CUDA blocks.
CE_SHAPES = [(5, 4, 1), (2, 3, 5)]


def _ce_args(rng, dtype, smoothing, shape):
    n, c, s = shape
    logits = (2 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, c, (n, s)).astype(np.int64)
    # Some positions ignored: one label inside [0, C) is the ignored one here.
    labels[rng.random((n, s)) < 0.3] = 1
    weight = rng.uniform(0.5, 2, c).astype(dtype)
    keep = dtype(1 - smoothing)
    spread = dtype(smoothing / c)
    return logits, labels, weight, keep, spread, np.int64(1)


def _ce_prob_args(rng, dtype, smoothing, shape):
    logits, _, weight, keep, spread, _ = _ce_args(rng, dtype, smoothing, shape)
    target = rng.uniform(0, 1, shape).astype(dtype)
    return logits, target, weight, keep, spread


for _smoothing, _shape in ((0.0, CE_SHAPES[0]), (0.2, CE_SHAPES[0]),
                           (0.2, CE_SHAPES[1])):

    @case("loss", "cross_entropy_forward")
    def _(rng, dtype, smoothing=_smoothing, shape=_shape):
        args = _ce_args(rng, dtype, smoothing, shape)
        return (*args, _empty((shape[0], shape[2]), dtype)), (6,)

    @case("loss", "cross_entropy_backward")
    def _(rng, dtype, smoothing=_smoothing, shape=_shape):
        args = _ce_args(rng, dtype, smoothing, shape)
        return (*args, dtype(0.2), _empty(shape, dtype)), (7,)

    @case("loss", "cross_entropy_prob_forward")
    def _(rng, dtype, smoothing=_smoothing, shape=_shape):
        args = _ce_prob_args(rng, dtype, smoothing, shape)
        return (*args, _empty((shape[0], shape[2]), dtype)), (5,)

    @case("loss", "cross_entropy_prob_backward")
    def _(rng, dtype, smoothing=_smoothing, shape=_shape):
        args = _ce_prob_args(rng, dtype, smoothing, shape)
        return (*args, dtype(0.2), _empty(shape, dtype)), (6,)


def _ce_plain_args(rng, dtype):
    logits = (2 * rng.standard_normal((5, 4))).astype(dtype)
    return logits, rng.integers(0, 4, 5).astype(np.int64)


@case("loss", "cross_entropy_plain_forward")
def _(rng, dtype):
    return (*_ce_plain_args(rng, dtype), _empty(5, dtype)), (2,)


@case("loss", "cross_entropy_plain_backward")
def _(rng, dtype):
    return (*_ce_plain_args(rng, dtype), dtype(0.2), _empty((5, 4), dtype)), (3,)


@case("loss", "cross_entropy_plain_forward_backward")
def _(rng, dtype):
    return (*_ce_plain_args(rng, dtype), dtype(0.2), _empty(5, dtype),
            _empty(1, dtype), _empty((5, 4), dtype)), (3, 4, 5)


@case("loss", "mse_forward")
def _(rng, dtype):
    return (_normal(rng, 9, dtype), _normal(rng, 9, dtype), _empty(9, dtype)), (2,)


@case("loss", "mse_backward")
def _(rng, dtype):
    return (_normal(rng, 9, dtype), _normal(rng, 9, dtype), dtype(2 / 9),
            _empty(9, dtype)), (3,)


def _bce_args(rng, dtype, per_element):
    x = (4 * rng.standard_normal(9)).astype(dtype)
    t = rng.uniform(0, 1, 9).astype(dtype)
    size = 9 if per_element else 1
    return (x, t, rng.uniform(0.5, 2, size).astype(dtype),
            rng.uniform(0.5, 3, size).astype(dtype))


for _per_element in (False, True):

    @case("loss", "bce_with_logits_forward")
    def _(rng, dtype, per_element=_per_element):
        return (*_bce_args(rng, dtype, per_element), _empty(9, dtype)), (4,)

    @case("loss", "bce_with_logits_backward")
    def _(rng, dtype, per_element=_per_element):
        args = _bce_args(rng, dtype, per_element)
        return (*args, dtype(1 / 9), _empty(9, dtype)), (5,)


# ------------------------------------------------------------------------- dropout


@case("dropout", "dropout_apply")
def _(rng, dtype):
    x = _normal(rng, 37, dtype)
    seed = np.uint64(0xDEADBEEFCAFEF00D)
    return (x, _empty(37, dtype), 0.3, dtype(1 / 0.7), seed), (1,)


@case("dropout", "dropout2d_apply")
def _(rng, dtype):
    x = _normal(rng, (13, 3), dtype)
    seed = np.uint64(0xDEADBEEFCAFEF00D)
    return (x, _empty((13, 3), dtype), 0.4, dtype(1 / 0.6), seed), (1,)


# ---------------------------------------------------------------------------- norm


@case("norm", "batch_norm_stats")
def _(rng, dtype):
    x = (5 + rng.standard_normal((3, 2, 5))).astype(dtype)
    return (x, _empty(2, np.float64), _empty(2, np.float64)), (1, 2)


@case("norm", "batch_norm_apply")
def _(rng, dtype):
    return (_normal(rng, (3, 2, 5), dtype), rng.standard_normal(2),
            rng.uniform(0.5, 2, 2), _normal(rng, 2, dtype), _normal(rng, 2, dtype),
            _empty((3, 2, 5), dtype)), (5,)


for _training in (True, False):

    @case("norm", "batch_norm_backward")
    def _(rng, dtype, training=_training):
        x = _normal(rng, (3, 2, 5), dtype)
        mean = x.astype(np.float64).mean(axis=(0, 2))
        invstd = 1 / np.sqrt(x.astype(np.float64).var(axis=(0, 2)) + 1e-5)
        return (_normal(rng, (3, 2, 5), dtype), x, mean, invstd,
                _normal(rng, 2, dtype), training, _empty((3, 2, 5), dtype),
                _empty(2, dtype), _empty(2, dtype)), (6, 7, 8)


# ---------------------------------------------------------------------- layer_norm
# (R, D) rows, (N, G, K, S) groups and (N, C, S) pixels: a few hundred outputs, a
# row longer than the patched block so the strided sums run.


def _stats_of(x, axis):
    """float64 mean and invstd over ``axis`` (what the stats kernels give)."""
    x = x.astype(np.float64)
    return x.mean(axis=axis), 1 / np.sqrt(x.var(axis=axis) + 1e-5)


@case("layer_norm", "row_stats")
def _(rng, dtype):
    x = (5 + rng.standard_normal((4, 9))).astype(dtype)
    return (x, 1e-5, _empty(4, np.float64), _empty(4, np.float64)), (2, 3)


@case("layer_norm", "layer_norm_apply")
def _(rng, dtype):
    return (_normal(rng, (4, 9), dtype), rng.standard_normal(4),
            rng.uniform(0.5, 2, 4), _normal(rng, 9, dtype), _normal(rng, 9, dtype),
            _empty((4, 9), dtype)), (5,)


@case("layer_norm", "layer_norm_backward")
def _(rng, dtype):
    x = _normal(rng, (5, 9), dtype)
    return (_normal(rng, (5, 9), dtype), x, *_stats_of(x, 1), _normal(rng, 9, dtype),
            _empty((5, 9), dtype), _empty(9, dtype), _empty(9, dtype)), (5, 6, 7)


@case("layer_norm", "group_norm_apply")
def _(rng, dtype):
    return (_normal(rng, (2, 3, 2, 5), dtype), rng.standard_normal((2, 3)),
            rng.uniform(0.5, 2, (2, 3)), _normal(rng, (3, 2), dtype),
            _normal(rng, (3, 2), dtype), _empty((2, 3, 2, 5), dtype)), (5,)


@case("layer_norm", "group_norm_backward")
def _(rng, dtype):
    x = _normal(rng, (2, 3, 2, 5), dtype)
    return (_normal(rng, (2, 3, 2, 5), dtype), x, *_stats_of(x, (2, 3)),
            _normal(rng, (3, 2), dtype), _empty((2, 3, 2, 5), dtype),
            _empty((3, 2), dtype), _empty((3, 2), dtype)), (5, 6, 7)


@case("layer_norm", "layer_norm2d_stats")
def _(rng, dtype):
    x = (5 + rng.standard_normal((2, 3, 7))).astype(dtype)
    return (x, 1e-6, _empty((2, 7), np.float64), _empty((2, 7), np.float64)), (2, 3)


@case("layer_norm", "layer_norm2d_apply")
def _(rng, dtype):
    return (_normal(rng, (2, 3, 7), dtype), rng.standard_normal((2, 7)),
            rng.uniform(0.5, 2, (2, 7)), _normal(rng, 3, dtype),
            _normal(rng, 3, dtype), _empty((2, 3, 7), dtype)), (5,)


@case("layer_norm", "layer_norm2d_backward")
def _(rng, dtype):
    x = _normal(rng, (2, 3, 7), dtype)
    return (_normal(rng, (2, 3, 7), dtype), x, *_stats_of(x, 1),
            _normal(rng, 3, dtype), _empty((2, 3, 7), dtype), _empty(3, dtype),
            _empty(3, dtype)), (5, 6, 7)


# --------------------------------------------------------------------------- optim

# Every branch of the fused updates: weight decay on and off, first and later
# momentum steps, Nesterov, L2 and decoupled decay, amsgrad, centered and momentum
# RMSprop. State arrays start non-zero (a later step) except where noted.
_SGD_SETTINGS = [  # (lr, weight_decay, momentum, dampening, nesterov, first_step)
    (0.1, 0.01, 0.9, 0.0, False, True),
    (0.1, 0.0, 0.9, 0.3, False, False),
    (0.05, 0.02, 0.8, 0.0, True, False),
    (0.1, 0.0, 0.0, 0.0, False, False),
]
_ADAM_SETTINGS = [  # (weight_decay, decoupled, amsgrad, step)
    (0.0, False, False, 1),
    (0.1, False, True, 3),
    (0.01, True, True, 2),
]
_RMSPROP_SETTINGS = [  # (weight_decay, momentum, centered)
    (0.0, 0.0, False),
    (0.1, 0.9, True),
    (0.0, 0.5, False),
]


def _state(rng, dtype, positive=False):
    values = rng.standard_normal(9)
    return (np.abs(values) if positive else values).astype(dtype)


for _sgd in _SGD_SETTINGS:

    @case("optim", "sgd_update")
    def _(rng, dtype, s=_sgd):
        return (_normal(rng, 9, dtype), _normal(rng, 9, dtype), _state(rng, dtype),
                *s), (0, 2)


for _adam in _ADAM_SETTINGS:

    @case("optim", "adam_update")
    def _(rng, dtype, s=_adam):
        weight_decay, decoupled, amsgrad, step = s
        beta1, beta2, lr = 0.9, 0.999, 0.01
        return (_normal(rng, 9, dtype), _normal(rng, 9, dtype), _state(rng, dtype),
                _state(rng, dtype, True), _state(rng, dtype, True), lr, beta1, beta2,
                lr / (1 - beta1**step), float(np.sqrt(1 - beta2**step)), 1e-8,
                weight_decay, decoupled, amsgrad), (0, 2, 3, 4)


for _rmsprop in _RMSPROP_SETTINGS:

    @case("optim", "rmsprop_update")
    def _(rng, dtype, s=_rmsprop):
        weight_decay, momentum, centered = s
        square_avg = _state(rng, dtype, True) + dtype(1)  # above grad_avg**2
        grad_avg = (_state(rng, dtype) / dtype(4)).astype(dtype)
        return (_normal(rng, 9, dtype), _normal(rng, 9, dtype), square_avg, grad_avg,
                _state(rng, dtype), 0.01, 0.99, 1e-8, weight_decay, momentum,
                centered), (0, 2, 3, 4)


@case("optim", "clip_by_value")
def _(rng, dtype):
    grad = (3 * rng.standard_normal(9)).astype(dtype)
    grad[4] = np.nan
    return (grad, _empty(9, dtype), 1.5), (1,)


@case("optim", "scale_by")
def _(rng, dtype):
    return (_normal(rng, 9, dtype), _empty(9, dtype), 0.3), (1,)


# --------------------------------------------------------------------------- merge


@case("merge", "add_forward")
def _(rng, dtype):
    return (_normal(rng, 11, dtype), _normal(rng, 11, dtype), _empty(11, dtype)), (2,)


@case("merge", "channel_copy_in")
def _(rng, dtype):
    # y starts filled: the kernel writes channels 2..4 only, the rest must survive.
    return (_normal(rng, (2, 3, 5), dtype), 2, _normal(rng, (2, 6, 5), dtype)), (2,)


@case("merge", "channel_copy_out")
def _(rng, dtype):
    return (_normal(rng, (2, 6, 5), dtype), 1, _empty((2, 4, 5), dtype)), (2,)


def _i64(*values):
    return np.array(values, np.int64)


# Broadcast products as functional/merge.py describes them: (dims, a strides,
# b strides). A squeeze-and-excitation gate, x (2, 3, 2, 2) * s (2, 3, 1, 1) merged
# to (6, 4); a (1, 3, 4) * b (2, 3, 1); and a gate on the middle axis only.
MULTIPLY_TABLES = [
    (_i64(6, 4), _i64(4, 1), _i64(1, 0)),
    (_i64(2, 3, 4), _i64(0, 4, 1), _i64(3, 1, 0)),
    (_i64(2, 3, 4), _i64(0, 1, 0), _i64(12, 4, 1)),
]


def _table_size(dims, strides):
    return int(np.prod([n for n, s in zip(dims, strides, strict=True) if s]))


for _tables in MULTIPLY_TABLES:

    @case("merge", "multiply_forward")
    def _(rng, dtype, t=_tables):
        dims, sa, sb = t
        return (_normal(rng, _table_size(dims, sa), dtype), sa,
                _normal(rng, _table_size(dims, sb), dtype), sb, dims,
                _empty(int(np.prod(dims)), dtype)), (5,)

    # The gradient of each operand: a (broadcast, summed) and b (full or not).
    @case("merge", "multiply_backward")
    def _(rng, dtype, t=_tables):
        dims, sa, sb = t
        return (_normal(rng, int(np.prod(dims)), dtype),
                _normal(rng, _table_size(dims, sb), dtype), sb, sa, dims,
                _empty(_table_size(dims, sa), dtype)), (5,)

    @case("merge", "multiply_backward")
    def _(rng, dtype, t=_tables):
        dims, sa, sb = t
        return (_normal(rng, int(np.prod(dims)), dtype),
                _normal(rng, _table_size(dims, sa), dtype), sa, sb, dims,
                _empty(_table_size(dims, sb), dtype)), (5,)


# ----------------------------------------------------------------------------- pad

# (x shape, y shape, top, left): padding, cropping, and both at once.
PAD_GEOMETRIES = [((2, 3, 4), (2, 5, 7), 1, 2), ((1, 4, 5), (1, 2, 3), -1, -1),
                  ((2, 2, 3), (2, 5, 2), 2, -1)]

for _geo in PAD_GEOMETRIES:

    @case("pad", "pad_constant")
    def _(rng, dtype, g=_geo):
        xs, ys, top, left = g
        return (_normal(rng, xs, dtype), _empty(ys, dtype), np.int64(top),
                np.int64(left), dtype(-1.5)), (1,)


# --------------------------------------------------------------------------- scale


@case("scale", "channel_scale_forward")
def _(rng, dtype):
    return (_normal(rng, (2, 3, 4), dtype), _normal(rng, 3, dtype),
            _empty((2, 3, 4), dtype)), (2,)


@case("scale", "channel_scale_backward_weight")
def _(rng, dtype):
    return (_normal(rng, (3, 5, 4), dtype), _normal(rng, (3, 5, 4), dtype),
            _empty(5, dtype)), (2,)


# ------------------------------------------------- activation: gelu, silu, elu, ...


def _kinks(rng, dtype):
    """``_special`` values followed by the kinks of hardswish, hardsigmoid and relu6
    and large magnitudes (infinities would make the simulator warn on inf * 0; the
    op tests cover them on the CPU)."""
    x = _special(rng, 17, dtype)
    x[-6:] = [-3, 3, 6, -40, 1e4, -1e4]
    return x


for _name in ("gelu", "gelu_tanh", "silu", "hardswish", "hardsigmoid", "relu6",
              "mish"):

    @case("activation", f"{_name}_forward")
    def _(rng, dtype):
        return (_kinks(rng, dtype), _empty(17, dtype)), (1,)

    @case("activation", f"{_name}_backward")
    def _(rng, dtype):
        return (_normal(rng, 17, dtype), _kinks(rng, dtype), _empty(17, dtype)), (2,)


@case("activation", "elu_forward")
def _(rng, dtype):
    return (_kinks(rng, dtype), dtype(1.3), _empty(17, dtype)), (2,)


@case("activation", "elu_backward")
def _(rng, dtype):
    return (_normal(rng, 17, dtype), _kinks(rng, dtype), dtype(1.3),
            _empty(17, dtype)), (3,)


@case("activation", "softplus_forward")
def _(rng, dtype):
    return (_kinks(rng, dtype), dtype(2.0), dtype(15.0), _empty(17, dtype)), (3,)


@case("activation", "softplus_backward")
def _(rng, dtype):
    return (_normal(rng, 17, dtype), _kinks(rng, dtype), dtype(2.0), dtype(15.0),
            _empty(17, dtype)), (4,)


@case("conv", "conv2d_add_bias")
def _(rng, dtype):
    return (_normal(rng, 3, dtype), _normal(rng, (2, 3, 2, 3), dtype)), (1,)
