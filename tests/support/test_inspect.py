"""fastcnn.inspect: the summary maths, receptive fields (against brute force) and
gradcheck (passing for every layer type, failing for a broken backward)."""

from __future__ import annotations

import numpy as np
import pytest

from fastcnn import layers as L
from fastcnn.inspect import (
    DENSE_EQUIVALENT_NOTE,
    gradcheck,
    layer_stats,
    model_stats,
    receptive_field,
    summary_table,
    totals,
)


def _lenet():
    return [L.Conv2D(6, 5), L.ReLU(), L.MaxPool2D(2), L.Conv2D(16, 5), L.ReLU(),
            L.MaxPool2D(2), L.Flatten(), L.Dense(120), L.ReLU(), L.Dense(10)]


class _Model:
    """Stands in for Sequential: anything with .layers and .input_shape."""

    def __init__(self, layers, input_shape):
        self.layers, self.input_shape = layers, input_shape
        shape = input_shape
        for layer in layers:
            layer.build(shape, np.float64, np.random.default_rng(0))
            shape = layer.output_shape


# ------------------------------------------------------------------ summary maths


@pytest.mark.parametrize("in_shape,params,dense_eq", [
    ((3, 32, 32), 456, 3072 * 4704),
    ((1, 32, 32), 156, 1024 * 4704),
])
def test_issue_dense_equivalent_checks(in_shape, params, dense_eq):
    row = layer_stats(L.Conv2D(6, 5), in_shape)
    assert row.output_shape == (6, 28, 28)
    assert row.trainable == params and row.non_trainable == 0
    assert row.dense_equivalent == dense_eq
    assert row.sharing_ratio == pytest.approx(dense_eq / params)
    text = summary_table([L.Conv2D(6, 5)], in_shape)
    assert f"{params:,}" in text and f"{dense_eq:,}" in text


def test_summary_of_3x32x32_conv_reads_14450688():
    assert "14,450,688" in summary_table([L.Conv2D(6, 5)], (3, 32, 32))


def test_macs_bytes_and_totals():
    rows = model_stats(_lenet(), (1, 32, 32))
    conv1, _, _, conv2, _, _, flat, fc1, _, fc2 = rows
    assert conv1.macs == 6 * 28 * 28 * 25
    assert conv2.macs == 16 * 10 * 10 * 6 * 25
    assert fc1.macs == 400 * 120 and fc2.macs == 120 * 10
    assert flat.output_shape == (400,) and flat.macs == 0
    assert conv1.param_bytes == 156 * 4 and conv1.activation_bytes == 6 * 28 * 28 * 4
    assert fc1.dense_equivalent == 400 * 120
    assert rows[1].dense_equivalent is None and rows[1].sharing_ratio is None
    t = totals(rows)
    assert t["trainable"] == 156 + 2416 + 48120 + 1210
    assert t["macs"] == sum(r.macs for r in rows)
    float64 = model_stats(_lenet(), (1, 32, 32), dtype=np.float64)
    assert float64[0].param_bytes == 2 * conv1.param_bytes


def test_lenet_trainable_total_matches_torch_count():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 10))
    expected = sum(p.numel() for p in net.parameters())
    assert totals(model_stats(_lenet(), (1, 32, 32)))["trainable"] == expected


def test_batch_norm_counts_buffers_as_non_trainable():
    row = layer_stats(L.BatchNorm2D(), (4, 3, 3))
    assert (row.trainable, row.non_trainable) == (8, 8)
    assert row.macs == 36 and row.dense_equivalent is None


def test_receptive_field_size_and_jump():
    rows = model_stats(_lenet(), (1, 32, 32))
    got = [(r.rf.size, r.rf.jump) for r in rows[:7]]
    assert got == [((5, 5), (1, 1)), ((5, 5), (1, 1)), ((6, 6), (2, 2)),
                   ((14, 14), (2, 2)), ((14, 14), (2, 2)), ((16, 16), (4, 4)),
                   ((16, 16), None)]
    assert rows[7].rf.whole and rows[7].rf.size == (32, 32)
    dil = layer_stats(L.Conv2D(1, 3, stride=2, dilation=(2, 1)), (1, 20, 20))
    assert dil.rf.size == (5, 3) and dil.rf.jump == (2, 2)


def test_summary_table_layout_and_formula():
    text = summary_table(_lenet(), (1, 32, 32))
    lines = text.splitlines()
    assert lines[0] == "Input: (1, 32, 32) (float32)"
    assert sum("(Conv2D)" in line for line in lines) == 2
    assert any(line.strip().startswith("Total") for line in lines)
    flat = " ".join(text.split())
    assert "prod(input shape) x prod(output shape)" in flat
    assert "jump_out = jump_in*stride" in flat
    assert text.endswith(DENSE_EQUIVALENT_NOTE)


def test_summary_accepts_a_model_and_does_not_build_unbuilt_layers():
    layers = _lenet()
    summary_table(layers, (1, 32, 32))
    assert not any(layer.built for layer in layers)
    model = _Model(_lenet(), (1, 32, 32))
    assert "float64" in summary_table(model).splitlines()[0]


def test_summary_needs_an_input_shape():
    with pytest.raises(ValueError, match="input_shape is unknown"):
        summary_table(_lenet())


# --------------------------------------------------------------- receptive fields


def test_issue_3x3_conv_over_6x6():
    conv = L.Conv2D(1, 3)
    conv.build((1, 6, 6))
    (r0, r1), (c0, c1) = receptive_field([conv], 0, (0, 0))
    assert ((r0, r1), (c0, c1)) == ((0, 3), (0, 3))
    assert (r1 - r0) * (c1 - c0) == 9


def _brute_force(layers, in_shape, layer_index, rng):
    """For every output position of layer ``layer_index``: the bounding box of the
    input pixels whose change moves that output (all channels together)."""
    for layer in layers:  # positive weights: a big input bump raises every output
        for p in layer.params.values():
            p[...] = rng.uniform(0.5, 1.5, p.shape)
    x = rng.uniform(0, 1, (1, *in_shape))

    def output(inp):
        out = inp
        for layer in layers[: layer_index + 1]:
            out = layer.forward(out)
        return out[0]

    base = output(x)
    h, w = in_shape[1:]
    moved = np.zeros((h, w, *base.shape[-2:]), dtype=bool)
    for i in range(h):
        for j in range(w):
            bumped = x.copy()
            bumped[0, :, i, j] += 1e6
            moved[i, j] = np.any(output(bumped) != base, axis=0)
    boxes = {}
    for oi in range(base.shape[-2]):
        for oj in range(base.shape[-1]):
            rows, cols = np.nonzero(moved[:, :, oi, oj])
            boxes[oi, oj] = (((0, 0), (0, 0)) if rows.size == 0 else (
                (int(rows.min()), int(rows.max()) + 1),
                (int(cols.min()), int(cols.max()) + 1)))
    return boxes


def _random_stack(rng):
    layers = []
    for _ in range(rng.integers(1, 4)):
        kind = rng.integers(0, 3)
        k = int(rng.integers(1, 4))
        stride = int(rng.integers(1, 3))
        pool_pad = int(rng.integers(0, k // 2 + 1))
        if kind == 0:
            layers.append(L.Conv2D(2, k, stride=stride, padding=int(rng.integers(0, 3)),
                                   dilation=int(rng.integers(1, 3))))
        elif kind == 1:
            layers.append(L.MaxPool2D(k, stride, padding=pool_pad,
                                      dilation=int(rng.integers(1, 3)),
                                      ceil_mode=bool(rng.integers(0, 2))))
        else:
            layers.append(L.AvgPool2D(k, stride, padding=pool_pad,
                                      ceil_mode=bool(rng.integers(0, 2))))
        if rng.integers(0, 3) == 0:
            layers.append(L.ReLU())
    return layers


def test_receptive_field_matches_brute_force_on_random_stacks():
    rng = np.random.default_rng(5)
    checked = 0
    while checked < 16:
        layers = _random_stack(rng)
        in_shape = (1, int(rng.integers(5, 9)), int(rng.integers(5, 9)))
        shape = in_shape
        try:
            for layer in layers:
                layer.build(shape, np.float64)
                shape = layer.output_shape
        except ValueError:  # the stack does not fit the image; draw another
            continue
        index = len(layers) - 1
        for pos, expected in _brute_force(layers, in_shape, index, rng).items():
            got = receptive_field(layers, index, pos)
            assert got == expected, (layers, in_shape, pos)
        checked += 1


def test_receptive_field_same_padding_and_dilation():
    conv = L.Conv2D(1, 2, padding="same", dilation=3)  # pads 1 before, 2 after
    conv.build((1, 5, 5), np.float64)
    boxes = _brute_force([conv], (1, 5, 5), 0, np.random.default_rng(0))
    # Output (0, 0) taps rows/cols -1 (padding) and 2: one input pixel.
    assert boxes[0, 0] == ((2, 3), (2, 3))
    for pos, expected in boxes.items():
        assert receptive_field([conv], 0, pos) == expected


def test_receptive_field_through_flatten_and_dense():
    model = _Model([L.Conv2D(2, 3), L.ReLU(), L.Flatten(), L.Dense(3)], (1, 5, 5))
    # Feature 13 of the flattened (2, 3, 3) map is channel 1, position (1, 1).
    assert receptive_field(model, 2, 13) == ((1, 4), (1, 4))
    assert receptive_field(model, -1, (2,)) == ((0, 5), (0, 5))
    assert receptive_field(model, 1, (2, 2)) == ((2, 5), (2, 5))


def test_receptive_field_softmax_along_a_spatial_axis():
    layers = [L.Conv2D(2, 3), L.Softmax(dim=2)]
    shape = (1, 7, 6)
    for layer in layers:
        layer.build(shape, np.float64)
        shape = layer.output_shape
    for pos, expected in _brute_force(layers, (1, 7, 6), 1,
                                      np.random.default_rng(1)).items():
        assert receptive_field(layers, 1, pos) == expected
    rf = model_stats(layers, (1, 7, 6))[1].rf
    assert rf.size == (3 + 4, 3) and rf.jump == (1, 1)


def test_summary_of_a_non_image_model_has_no_receptive_field():
    text = summary_table([L.Dense(8), L.ReLU(), L.Dense(2)], (5,))
    rows = model_stats([L.Dense(8), L.ReLU(), L.Dense(2)], (5,))
    assert all(r.rf.size is None for r in rows)
    assert totals(rows)["trainable"] == (5 * 8 + 8) + (8 * 2 + 2)
    total = next(line for line in text.splitlines() if line.strip().startswith("Total"))
    assert total.split()[1] == "66" and total.split()[-2:] == ["-", "-"]


def test_receptive_field_global_pool():
    model = _Model([L.Conv2D(2, 3), L.GlobalAvgPool2D()], (1, 6, 5))
    assert receptive_field(model, 1, 0) == ((0, 6), (0, 5))


@pytest.mark.parametrize("layer,position,error,match", [
    (5, (0, 0), ValueError, "must index one of the 2 layers"),
    (0.0, (0, 0), TypeError, "layer must be an int"),
    (0, (4, 0), ValueError, "outside the 4x4 output map"),
    (0, 3, TypeError, r"position must be a pair \(i, j\)"),
    (1, (0, 0), TypeError, "feature index"),
    (1, 32, ValueError, "is not a feature"),
])
def test_receptive_field_bad_arguments(layer, position, error, match):
    model = _Model([L.Conv2D(2, 3), L.Flatten()], (1, 6, 6))
    with pytest.raises(error, match=match):
        receptive_field(model, layer, position)


def test_receptive_field_needs_an_image():
    with pytest.raises(ValueError, match="must be an image"):
        receptive_field(_Model([L.Dense(2)], (4,)), 0, 0)


# ------------------------------------------------------------------------ gradcheck

GRADCHECK_CASES = {
    "Conv2D": ([L.Conv2D(2, 3, stride=2, padding=1, dilation=(1, 2), groups=2)],
               (2, 2, 6, 7)),
    "MaxPool2D": ([L.MaxPool2D(3, 2, padding=1, ceil_mode=True)], (2, 2, 5, 5)),
    "AvgPool2D": ([L.AvgPool2D(2, padding=1, count_include_pad=False)],
                  (2, 2, 5, 5)),
    "GlobalAvgPool2D": ([L.GlobalAvgPool2D()], (2, 3, 4, 4)),
    "AdaptiveAvgPool2D": ([L.AdaptiveAvgPool2D((3, None))], (2, 2, 5, 4)),
    "Dense": ([L.Dense(3)], (2, 5)),
    "Flatten": ([L.Flatten()], (2, 2, 3, 3)),
    "Reshape": ([L.Reshape((3, -1))], (2, 2, 3, 3)),
    "ReLU": ([L.ReLU()], (2, 6)),
    "LeakyReLU": ([L.LeakyReLU(0.1)], (2, 6)),
    "Sigmoid": ([L.Sigmoid()], (2, 6)),
    "Tanh": ([L.Tanh()], (2, 6)),
    "Softmax": ([L.Softmax()], (2, 6)),
    "GELU": ([L.GELU()], (2, 6)),
    "SiLU": ([L.SiLU()], (2, 6)),
    "ELU": ([L.ELU(0.5)], (2, 6)),
    "Softplus": ([L.Softplus(2.0)], (2, 6)),
    "Hardswish": ([L.Hardswish()], (2, 6)),
    "Hardsigmoid": ([L.Hardsigmoid()], (2, 6)),
    "ReLU6": ([L.ReLU6()], (2, 6)),
    "Mish": ([L.Mish()], (2, 6)),
    "Dropout": ([L.Dropout(0.4)], (2, 8)),
    "SpatialDropout2D": ([L.SpatialDropout2D(0.4)], (2, 4, 2, 2)),
    "ZeroPadding2D": ([L.ZeroPadding2D(((1, 0), (2, 1)))], (2, 2, 3, 3)),
    "Scale": ([L.Scale(0.5)], (2, 3, 2, 2)),
    "BatchNorm2D": ([L.BatchNorm2D()], (3, 2, 3, 3)),
    "BatchNorm1D": ([L.BatchNorm1D()], (4, 5)),
    "LayerNorm": ([L.LayerNorm((3, 3))], (2, 2, 3, 3)),
    "GroupNorm": ([L.GroupNorm(2)], (2, 4, 2, 2)),
    "LayerNorm2D": ([L.LayerNorm2D()], (2, 3, 2, 2)),
    "DepthwiseConv2D": ([L.DepthwiseConv2D(3, 2, stride=(1, 2), padding=1)],
                        (2, 2, 5, 6)),
    "SeparableConv2D": ([L.SeparableConv2D(3, 3, padding="same")], (2, 2, 5, 5)),
    "Conv2DTranspose": ([L.Conv2DTranspose(4, 3, stride=2, padding=1,
                                           output_padding=1, groups=2)],
                        (2, 2, 3, 4)),
    "UpSampling2D": ([L.UpSampling2D((2, 3))], (2, 2, 3, 3)),
}


def test_gradcheck_cases_cover_every_layer_type():
    # Merge layers join several tensors: gradcheck runs them in a graph Model
    # (tests/model/test_graph.py).
    assert set(GRADCHECK_CASES) == {
        name for name, cls in L.LAYERS.items() if not cls.takes_many}


@pytest.mark.parametrize("name", sorted(GRADCHECK_CASES))
def test_gradcheck_passes_for_every_layer_type(name):
    layers, x_shape = GRADCHECK_CASES[name]
    x = np.random.default_rng(1).standard_normal(x_shape).astype(np.float32)
    report = gradcheck(layers if len(layers) > 1 else layers[0], x)
    assert report.passed, str(report)
    # Every parameter is checked (gradcheck works on a copy), and the input.
    shapes = layers[-1].state_shapes(x_shape[1:])
    expected = {"x", *shapes} - {"running_mean", "running_var"}
    assert {r.tensor for r in report.rows} == expected


def _small_cnn(dtype=np.float32):
    layers = [L.Conv2D(3, 3, padding=1), L.BatchNorm2D(), L.ReLU(), L.MaxPool2D(2),
              L.Dropout(0.2), L.Flatten(), L.Dense(5), L.Tanh(), L.Dense(3)]
    shape = (2, 6, 6)
    for layer in layers:
        layer.build(shape, dtype, np.random.default_rng(4))
        shape = layer.output_shape
    return layers


def test_gradcheck_model_with_cross_entropy():
    model = _Model(_small_cnn(), (2, 6, 6))
    x = np.random.default_rng(2).standard_normal((4, 2, 6, 6))
    report = gradcheck(model, x, np.array([0, 2, 1, 2]))
    assert report.passed, str(report)
    checked = {(r.layer, r.tensor) for r in report.rows}
    assert checked == {(0, "weight"), (0, "bias"), (1, "weight"), (1, "bias"),
                       (6, "weight"), (6, "bias"), (8, "weight"), (8, "bias"),
                       (-1, "x")}
    assert all(r.checked == min(30, int(np.prod(r.shape))) for r in report.rows)
    text = str(report)
    assert text.startswith("gradcheck PASSED") and "max rel err" in text


def test_gradcheck_eval_mode_and_mse():
    layers = _small_cnn()
    x = np.random.default_rng(3).standard_normal((3, 2, 6, 6))
    y = np.random.default_rng(4).standard_normal((3, 3))
    report = gradcheck(layers, x, y, loss="mse", training=False)
    assert report.passed, str(report)


def test_gradcheck_accepts_a_loss_object_or_function():
    layers = [L.Dense(3)]
    x = np.random.default_rng(0).standard_normal((4, 5))
    y = np.random.default_rng(1).standard_normal((4, 3))

    def half_squares(out, target):
        return 0.5 * np.sum((out - target) ** 2), out - target

    assert gradcheck(layers, x, y, loss=half_squares).passed

    class Loss:
        name = "half_squares"

        def __call__(self, out, target):
            return half_squares(out, target)[0]

        def backward(self, out, target):
            return half_squares(out, target)[1]

    report = gradcheck(layers, x, y, loss=Loss())
    assert report.passed and report.loss == "half_squares"


def test_gradcheck_leaves_the_callers_layers_alone():
    layers = _small_cnn()
    weights = {(i, k): p.copy() for i, layer in enumerate(layers)
               for k, p in layer.params.items()}
    dropout_state = layers[4].rng.bit_generator.state
    x = np.random.default_rng(2).standard_normal((4, 2, 6, 6))
    gradcheck(layers, x, np.array([0, 1, 2, 0]))
    for (i, k), p in weights.items():
        assert layers[i].params[k].dtype == np.float32
        np.testing.assert_array_equal(layers[i].params[k], p)
    np.testing.assert_array_equal(layers[1].buffers["running_mean"], 0)
    assert layers[4].rng.bit_generator.state == dropout_state


def test_gradcheck_builds_unbuilt_layers_on_its_copy():
    layers = [L.Conv2D(2, 3), L.Flatten(), L.Dense(2)]
    report = gradcheck(layers, np.random.default_rng(0).standard_normal((2, 1, 5, 5)))
    assert report.passed and not any(layer.built for layer in layers)


def test_gradcheck_fails_for_a_broken_weight_gradient(monkeypatch):
    original = L.Conv2D._backward

    def broken(self, dy):
        dx = original(self, dy)
        self.grads["weight"] *= 1.01
        return dx

    monkeypatch.setattr(L.Conv2D, "_backward", broken)
    layers = [L.Conv2D(2, 3), L.ReLU(), L.Flatten(), L.Dense(2)]
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5))
    report = gradcheck(layers, x, np.array([0, 1]))
    assert not report.passed
    failed = {(r.layer, r.tensor) for r in report.rows if not r.passed}
    assert failed == {(0, "weight")}
    assert str(report).startswith("gradcheck FAILED") and " NO" in str(report)


def test_gradcheck_fails_for_a_broken_input_gradient(monkeypatch):
    # A ReLU whose backward forgets the mask: only dx can see it.
    monkeypatch.setattr(L.ReLU, "_backward", lambda self, dy: dy.copy())
    x = np.random.default_rng(0).standard_normal((2, 6))
    report = gradcheck(L.ReLU(), x)
    assert not report.passed and report.rows[-1].tensor == "x"


def test_gradcheck_bad_arguments():
    with pytest.raises(TypeError, match="x must be a real numpy.ndarray"):
        gradcheck(L.ReLU(), [1.0, 2.0])
    with pytest.raises(ValueError, match="loss must be one of"):
        gradcheck(L.Dense(2), np.ones((2, 3)), np.array([0, 1]), loss="hinge")
    with pytest.raises(TypeError, match="expected a Layer"):
        gradcheck(3, np.ones((2, 3)))
