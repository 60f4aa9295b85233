"""Fuzzing every layer in fastcnn.layers.LAYERS: random valid configurations build,
run forward and backward with the shapes compute_output_shape promises and the
values of the functional op (itself fuzzed against the naive references); random
invalid constructor, build, forward and backward arguments raise ValueError or
TypeError."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import fastcnn.functional as F
from fastcnn import layers as L

from ..fuzz_support import (
    COUNTS,
    FLOATS,
    NON_FINITE,
    NOT_BOOLS,
    NOT_INTS,
    NOT_REALS,
    bad_arrays,
    bad_sizes,
    data,
    examples,
    expect_rejected,
)

small = st.integers(1, 3)
#: Layers of one input (merge layers, called on lists, are tested in
#: tests/model/test_graph.py).
SINGLE = sorted(name for name, cls in L.LAYERS.items() if not cls.takes_many)
pairs = st.one_of(small, st.tuples(small, small))


def _pool_kwargs(draw, dilated):
    k = draw(st.tuples(small, small))
    kw = {"kernel_size": k, "stride": draw(st.one_of(st.none(), pairs)),
          "padding": (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2))),
          "ceil_mode": draw(st.booleans())}
    if dilated:
        kw["dilation"] = draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    else:
        kw["count_include_pad"] = draw(st.booleans())
    return kw


@st.composite
def layer_case(draw, name):
    """(cls, kwargs, per-sample input shape, functional reference of forward)."""
    image = (draw(st.integers(1, 4)), draw(st.integers(7, 9)), draw(st.integers(7, 9)))
    flat = (draw(st.integers(1, 6)),)
    cls = L.LAYERS[name]
    if name == "Conv2D":
        groups = draw(st.sampled_from([g for g in (1, 2) if image[0] % g == 0]))
        padding = draw(st.one_of(st.integers(0, 2), st.just("same"), st.just("valid")))
        kw = {"out_channels": groups * draw(small), "kernel_size": draw(pairs),
              "stride": draw(pairs), "padding": padding,
              "dilation": draw(st.integers(1, 2)), "groups": groups,
              "bias": draw(st.booleans())}
        return cls, kw, image, lambda lay, x, t: F.conv2d(
            x, lay.params["weight"], lay.params.get("bias"), lay.stride, lay.padding,
            lay.dilation, lay.groups)
    if name in ("DepthwiseConv2D", "SeparableConv2D"):
        padding = draw(st.one_of(st.integers(0, 2), st.just("same"), st.just("valid")))
        kw = {"kernel_size": draw(pairs), "depth_multiplier": draw(small),
              "stride": draw(pairs), "padding": padding,
              "dilation": draw(st.integers(1, 2)), "bias": draw(st.booleans())}
        if name == "DepthwiseConv2D":
            return cls, kw, image, lambda lay, x, t: F.conv2d(
                x, lay.params["weight"], lay.params.get("bias"), lay.stride,
                lay.padding, lay.dilation, x.shape[1])
        kw["out_channels"] = draw(small)

        def separable(lay, x, t):
            mid = F.conv2d(x, lay.params["depthwise_weight"], None, lay.stride,
                           lay.padding, lay.dilation, x.shape[1])
            return F.conv2d(mid, lay.params["pointwise_weight"], lay.params.get("bias"))
        return cls, kw, image, separable
    if name == "Conv2DTranspose":
        groups = draw(st.sampled_from([g for g in (1, 2) if image[0] % g == 0]))
        stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2))
        kw = {"out_channels": groups * draw(small), "kernel_size": draw(pairs),
              "stride": stride, "padding": draw(st.integers(0, 1)),
              "output_padding": draw(st.integers(0, stride - 1)),
              "dilation": dilation, "groups": groups, "bias": draw(st.booleans())}
        return cls, kw, image, lambda lay, x, t: F.conv_transpose2d(
            x, lay.params["weight"], lay.params.get("bias"), lay.stride,
            lay.padding, lay.output_padding, lay.groups, lay.dilation)
    if name == "UpSampling2D":
        size = draw(pairs)
        kw = {"size": size}
        sh, sw = (size, size) if isinstance(size, int) else size
        return cls, kw, image, lambda lay, x, t: np.repeat(
            np.repeat(x, sh, axis=2), sw, axis=3)
    if name in ("MaxPool2D", "AvgPool2D"):
        kw = _pool_kwargs(draw, name == "MaxPool2D")
        fn = F.max_pool2d if name == "MaxPool2D" else F.avg_pool2d
        return cls, kw, image, lambda lay, x, t: fn(x, **kw)
    if name == "GlobalAvgPool2D":
        return cls, {}, image, lambda lay, x, t: F.global_avg_pool2d(x)
    if name == "AdaptiveAvgPool2D":
        size = st.one_of(st.none(), st.integers(0, 10))
        out = draw(st.one_of(st.integers(0, 10), st.tuples(size, size)))
        return cls, {"output_size": out}, image, lambda lay, x, t: (
            F.adaptive_avg_pool2d(x, out))
    if name == "Dense":
        kw = {"out_features": draw(st.integers(1, 5)), "bias": draw(st.booleans())}
        return cls, kw, flat, lambda lay, x, t: F.linear(
            x, lay.params["weight"], lay.params.get("bias"))
    if name in ("BatchNorm2D", "BatchNorm1D"):
        kw = {"momentum": draw(st.sampled_from([0.0, 0.1, 1.0])),
              "eps": draw(st.sampled_from([1e-5, 0.1])), "affine": draw(st.booleans())}
        shape = image if name == "BatchNorm2D" else draw(st.sampled_from(
            [flat, (flat[0], draw(st.integers(1, 4)))]))  # (F,) or (C, L)

        def bn(lay, x, t):
            return F.batch_norm(x, lay.buffers["running_mean"].copy(),
                                lay.buffers["running_var"].copy(),
                                lay.params.get("weight"), lay.params.get("bias"), t,
                                lay.momentum, lay.eps)
        return cls, kw, shape, bn
    if name in ("LayerNorm", "GroupNorm", "LayerNorm2D"):
        return _sample_norm_case(draw, cls, image, flat)
    if name == "ZeroPadding2D":
        amount = st.integers(0, 2)
        padding = draw(st.one_of(amount, st.tuples(amount, amount),
                                 st.tuples(st.tuples(amount, amount),
                                           st.tuples(amount, amount))))
        (top, bottom), (left, right) = cls(padding).padding
        return cls, {"padding": padding}, image, lambda lay, x, t: np.pad(
            x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    if name == "SpatialDropout2D":
        p = draw(st.sampled_from([0.0, 0.3, 1.0]))
        # Masks are checked by tests/ops/test_structure_ops.py; here the identity.
        return cls, {"p": p}, image, lambda lay, x, t: None if t and p else x
    shape = draw(st.sampled_from([image, flat]))
    if name == "Scale":
        kw = {"init_value": draw(st.floats(-2, 2))}
        return cls, kw, shape, lambda lay, x, t: F.channel_scale(
            x, lay.params["weight"])
    if name == "Flatten":
        return cls, {}, shape, lambda lay, x, t: x.reshape(x.shape[0], -1)
    if name == "Reshape":
        target = draw(st.sampled_from([(-1,), (1, -1), (-1, 1),
                                       tuple(reversed(shape))]))
        return (cls, {"target_shape": target}, shape,
                lambda lay, x, t: x.reshape(x.shape[0], *target))
    if name == "LeakyReLU":
        kw = {"negative_slope": draw(st.floats(-2, 2))}
        return cls, kw, shape, lambda lay, x, t: F.leaky_relu(x, kw["negative_slope"])
    if name == "Softmax":
        dim = draw(st.integers(1, len(shape))) * draw(st.sampled_from([1, -1]))
        return cls, {"dim": dim}, shape, lambda lay, x, t: F.softmax(x, dim)
    if name == "Dropout":
        kw = {"p": draw(st.sampled_from([0.0, 0.3, 1.0]))}
        return cls, kw, shape, None  # the mask is checked by test_dropout.py
    if name == "GELU":
        kw = {"approximate": draw(st.sampled_from(["none", "tanh"]))}
        return cls, kw, shape, lambda lay, x, t: F.gelu(x, kw["approximate"])
    if name == "ELU":
        kw = {"alpha": draw(st.floats(-2, 2))}
        return cls, kw, shape, lambda lay, x, t: F.elu(x, kw["alpha"])
    if name == "Softplus":
        kw = {"beta": draw(st.sampled_from([0.5, 1.0, 2.0, -1.0])),
              "threshold": draw(st.sampled_from([20.0, 1.0, -3.0]))}
        return cls, kw, shape, lambda lay, x, t: F.softplus(x, **kw)
    fn = {"ReLU": F.relu, "Sigmoid": F.sigmoid, "Tanh": F.tanh, "SiLU": F.silu,
          "Hardswish": F.hardswish, "Hardsigmoid": F.hardsigmoid,
          "ReLU6": F.relu6, "Mish": F.mish}[name]
    return cls, {}, shape, lambda lay, x, t: fn(x)


def _sample_norm_case(draw, cls, image, flat):
    """LayerNorm (any trailing shape), GroupNorm (a group count that divides the
    channels) and LayerNorm2D, with the functional op as reference."""
    shape = image if cls is L.LayerNorm2D else draw(st.sampled_from([image, flat]))
    eps = draw(st.sampled_from([1e-5, 1e-6, 0.1]))
    affine = draw(st.booleans())

    def params(lay):
        return lay.params.get("weight"), lay.params.get("bias")

    if cls is L.LayerNorm:
        k = draw(st.integers(1, len(shape)))
        kw = {"normalized_shape": shape[len(shape) - k:], "eps": eps,
              "elementwise_affine": affine}
        return cls, kw, shape, lambda lay, x, t: F.layer_norm(
            x, lay.normalized_shape, *params(lay), lay.eps)
    if cls is L.GroupNorm:
        groups = draw(st.sampled_from([g for g in (1, 2, 3) if shape[0] % g == 0]))
        kw = {"num_groups": groups, "eps": eps, "affine": affine}
        return cls, kw, shape, lambda lay, x, t: F.group_norm(
            x, lay.num_groups, *params(lay), lay.eps)
    return cls, {"eps": eps, "affine": affine}, shape, lambda lay, x, t: (
        F.layer_norm2d(x, *params(lay), lay.eps))


def _fits(cls, kw, shape):
    try:
        cls(**kw).compute_output_shape(shape)
    except ValueError:
        return False
    return True


@examples(3.0)
@given(st.sampled_from(SINGLE), st.sampled_from(FLOATS), st.data())
def test_valid_configurations_run_and_match_the_functional_op(name, dtype, draw):
    cls, kw, shape, reference = draw.draw(layer_case(name))
    if not _fits(cls, kw, shape):  # a window larger than the input: see below
        expect_rejected(lambda: cls(**kw).build(shape), f"{name} {kw} on {shape}")
        return
    COUNTS["valid"] += 1
    layer = cls(**kw)
    layer.build(shape, dtype=dtype, rng=np.random.default_rng(0))
    n = draw.draw(st.integers(2, 3))
    x = draw.draw(data((n, *shape), dtype))
    training = draw.draw(st.booleans())
    expected = None if reference is None else reference(layer, x, training)
    y = layer.forward(x, training=training)
    assert y.shape == (n, *layer.compute_output_shape(shape)) and y.dtype == dtype
    if expected is not None:
        np.testing.assert_array_equal(y, expected, err_msg=f"{name} {kw}")
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == dtype
    assert set(layer.grads) == set(layer.params)
    for key, grad in layer.grads.items():
        assert grad.shape == layer.params[key].shape and grad.dtype == dtype


# ------------------------------------------------------------------------- invalid

_SIZE = [*NOT_INTS, *bad_sizes(1)]
BAD_INIT = {
    # 0 output channels or features is valid (an empty output, as in PyTorch:
    # tests/test_zero_size.py), so it is not among the bad values.
    "Conv2D": {"out_channels": [-1, 2**31, 2**64, *NOT_INTS[:10]],
               "kernel_size": _SIZE, "stride": _SIZE, "dilation": _SIZE,
               "padding": [*bad_sizes(0), "full", ""], "groups": [0, 2**64, None, 1.0],
               "bias": NOT_BOOLS, "kernel_initializer": ["nope", None, 3, ["torch"]],
               "name": ["", 3, b"n"]},
    "DepthwiseConv2D": {"kernel_size": _SIZE, "stride": _SIZE, "dilation": _SIZE,
                        "depth_multiplier": [0, -1, 2**64, None, 1.0, True],
                        "padding": [*bad_sizes(0), "full", ""], "bias": NOT_BOOLS,
                        "kernel_initializer": ["nope", None]},
    "SeparableConv2D": {"out_channels": [-1, 2**31, 2**64, 2.0, True],
                        "kernel_size": _SIZE, "stride": _SIZE,
                        "depth_multiplier": [0, -1, None, 1.0, True],
                        "padding": [*bad_sizes(0), "full"], "bias": NOT_BOOLS,
                        "kernel_initializer": ["nope", None]},
    "Dense": {"out_features": [-1, 2**31, 2**64, None, 2.0, True, "3"],
              "bias": NOT_BOOLS, "kernel_initializer": ["nope", None]},
    "MaxPool2D": {"kernel_size": _SIZE, "stride": [v for v in _SIZE if v is not None],
                  "padding": bad_sizes(0), "dilation": _SIZE, "ceil_mode": NOT_BOOLS},
    "AvgPool2D": {"kernel_size": _SIZE, "stride": [v for v in _SIZE if v is not None],
                  "padding": bad_sizes(0), "ceil_mode": NOT_BOOLS,
                  "count_include_pad": NOT_BOOLS},
    # None alone is refused too (PyTorch's too); only entries of a pair may be None.
    "AdaptiveAvgPool2D": {"output_size": [*bad_sizes(0), (None, -1), (2.0, None)]},
    "LeakyReLU": {"negative_slope": [*NOT_REALS, *NON_FINITE]},
    "GELU": {"approximate": ["erf", "", None, True, "TANH"]},
    "ELU": {"alpha": [*NOT_REALS, *NON_FINITE]},
    "Softplus": {"beta": [*NOT_REALS, *NON_FINITE, 0.0],
                 "threshold": [*NOT_REALS, *NON_FINITE]},
    "Softmax": {"dim": [0, None, 1.0, True, "1"]},
    "Dropout": {"p": [*NOT_REALS, *NON_FINITE, -0.1, 1.1]},
    "SpatialDropout2D": {"p": [*NOT_REALS, *NON_FINITE, -0.1, 1.1]},
    "ZeroPadding2D": {"padding": [-1, (1, -1), ((1, 2), (0, -1)), 2**31, (0, 2**40),
                                  1.0, None, "same", True, (1,), (1, 2, 3),
                                  ((1,), (2,)), ((1, 2), 3), ((1, 2.0), (0, 0))]},
    "Scale": {"init_value": [*NOT_REALS, *NON_FINITE]},
    "BatchNorm2D": {"momentum": [*NOT_REALS, *NON_FINITE, -0.1, 1.1],
                    "eps": [*NOT_REALS, *NON_FINITE, 0.0, -1e-5],
                    "affine": NOT_BOOLS},
}
BAD_INIT["BatchNorm1D"] = BAD_INIT["BatchNorm2D"]
_EPS = [*NOT_REALS, *NON_FINITE, 0.0, -1e-5]
BAD_INIT["LayerNorm"] = {
    "normalized_shape": [(), [], None, -1, (2, -1), 2.0, "3", (2**31,), True, [2.0]],
    "eps": _EPS, "elementwise_affine": NOT_BOOLS}
BAD_INIT["GroupNorm"] = {"num_groups": [0, -1, 2**31, 2**64, None, 2.0, True, "2"],
                         "eps": _EPS, "affine": NOT_BOOLS}
BAD_INIT["LayerNorm2D"] = {"eps": _EPS, "affine": NOT_BOOLS}
REQUIRED = {"Conv2D": {"out_channels": 2, "kernel_size": 1},
            "DepthwiseConv2D": {"kernel_size": 1},
            "SeparableConv2D": {"out_channels": 2, "kernel_size": 1},
            "Dense": {"out_features": 2}, "MaxPool2D": {"kernel_size": 1},
            "AvgPool2D": {"kernel_size": 1}, "AdaptiveAvgPool2D": {"output_size": 1},
            "LayerNorm": {"normalized_shape": 2}, "GroupNorm": {"num_groups": 1}}


@examples(3.0)
@given(st.sampled_from(SINGLE), st.data())
def test_invalid_constructor_arguments(name, draw):
    cls = L.LAYERS[name]
    bad = BAD_INIT.get(name, {})
    arg = draw.draw(st.sampled_from([*bad, "unknown_argument", "name"]))
    kw = dict(REQUIRED.get(name, {}))
    if arg == "unknown_argument":
        kw["unknown_argument"] = 1
    elif arg == "name":
        kw["name"] = draw.draw(st.sampled_from(["", 3, b"n", ["a"]]))
    else:
        kw[arg] = draw.draw(st.sampled_from(bad[arg]))
    expect_rejected(lambda: cls(**kw), f"{name}({kw!r:.100})")


@examples(3.0)
@given(st.sampled_from(SINGLE), st.sampled_from(FLOATS), st.data())
def test_invalid_build_forward_and_backward_arguments(name, dtype, draw):
    cls, kw, shape, _ = draw.draw(layer_case(name))
    if not _fits(cls, kw, shape):
        return
    layer = cls(**kw)
    stage = draw.draw(st.sampled_from(["build", "forward", "backward"]))
    if stage == "build":
        bad_shape = draw.draw(st.sampled_from([
            (), None, 3, [-2], (2**31,), (2**64, 1), (1.0,), (True,), "3", (-1,),
            (*shape, -1), np.array(shape),
        ]))
        bad_dtype = draw.draw(st.sampled_from(["float16", int, object(), "x", None]))
        expect_rejected(lambda: layer.build(bad_shape), f"{name}.build({bad_shape!r})")
        expect_rejected(lambda: cls(**kw).build(shape, dtype=bad_dtype),
                        f"{name}.build(dtype={bad_dtype!r})")
        expect_rejected(lambda: cls(**kw).build(shape, rng=3), f"{name}.build(rng=3)")
        return
    layer.build(shape, dtype=dtype)
    x = np.zeros((2, *shape), dtype)
    if stage == "forward":
        bad_x = draw.draw(st.sampled_from([
            *bad_arrays(x), x[0], x[:, None],
            np.zeros((2, *shape[:-1], shape[-1] + 1), dtype),
            x.astype(np.float32 if dtype == np.float64 else np.float64),
        ]))
        training = draw.draw(st.sampled_from([True, False, "yes", None, 1]))
        if not isinstance(training, bool):
            expect_rejected(lambda: layer.forward(x, training=training),
                            f"{name}.forward(training={training!r})")
        if isinstance(bad_x, np.ndarray) and bad_x.dtype in FLOATS and \
                bad_x.shape == x.shape and not layer.params and not layer.buffers:
            return  # a parameter-free layer takes either float dtype
        expect_rejected(lambda: layer.forward(bad_x), f"{name}.forward x "
                        f"{getattr(bad_x, 'shape', bad_x)!r:.60}")
        return
    y = layer.forward(x, training=False)
    bad_dy = draw.draw(st.sampled_from([
        *bad_arrays(y), y[:1], y[:, None], np.zeros((*y.shape, 1), dtype),
        y.astype(np.float32 if dtype == np.float64 else np.float64),
    ]))
    expect_rejected(lambda: layer.backward(bad_dy), f"{name}.backward dy "
                    f"{getattr(bad_dy, 'shape', bad_dy)!r:.60}")
