"""export_onnx: the file, run in onnxruntime, gives what ``predict`` gives.

The zoo's networks, and graph models using every exportable layer (each
activation, fused and as a layer; strided, dilated, grouped and "same" convs;
pools with ceil_mode and padding; BatchNorm with trained running statistics;
nested models, Add, Concatenate, Multiply, UpSampling2D, Conv2DTranspose, Reshape,
ZeroPadding2D, Scale, SpatialDropout2D). Skipped without onnx and onnxruntime (the
test extra installs both).
"""

import numpy as np
import pytest

import fastcnn
from fastcnn import layers, models
from fastcnn.io import export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

#: The issue's bound on float32 differences against predict.
TOLERANCE = 1e-4


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _trained_bn(model, rng):
    """Running statistics that are not the initial 0 and 1, as after training."""
    for layer in _all_layers(model):
        if "running_mean" in layer.buffers:
            c = layer.buffers["running_mean"].shape
            layer.buffers["running_mean"][...] = rng.normal(0, 0.5, c)
            layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, c)
            if "weight" in layer.params:
                layer.params["weight"][...] = rng.uniform(0.5, 1.5, c)
                layer.params["bias"][...] = rng.normal(0, 0.3, c)


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        else:
            yield layer


def _check(model, tmp_path, batch=3, seed=0, tolerance=TOLERANCE):
    rng = np.random.default_rng(seed)
    _trained_bn(model, rng)
    x = rng.standard_normal((batch, *model.input_shape)).astype(model.dtype)
    path = tmp_path / f"{model.name}.onnx"
    export_onnx(model, path)
    got = _run(path, x)
    want = model.predict(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    diff = float(np.max(np.abs(got - want)))
    assert diff < tolerance, diff
    # The batch axis is dynamic: another batch size runs from the same file.
    assert _run(path, x[:1]).shape == (1, *model.output_shape)
    return diff


@pytest.mark.parametrize("build", [
    lambda: models.lenet5(),
    lambda: models.simple_cnn(),
    lambda: models.resnet(depth=20),
], ids=["lenet5", "simple_cnn", "resnet20"])
def test_zoo_models_match_predict(build, tmp_path):
    _check(build(), tmp_path)


def _every_layer_model():
    x = fastcnn.Input((4, 12, 12))
    a = layers.Conv2D(8, 3, padding="same", activation="relu", name="c_same")(x)
    b = layers.Conv2D(8, 3, stride=2, padding="same", dilation=1, groups=2,
                      activation="silu", name="c_s2_groups")(x)
    b = layers.UpSampling2D(2, name="up")(b)
    c = layers.Conv2D(8, 3, padding=2, dilation=2, bias=False, name="c_dil")(x)
    c = layers.BatchNorm2D(name="bn")(c)
    c = layers.LayerNorm2D(name="ln2d")(c)
    c = layers.GroupNorm(4, name="gn")(c)
    c = layers.DepthwiseConv2D(3, padding=1, activation="relu6", name="dw")(c)
    c = layers.SeparableConv2D(8, 5, depth_multiplier=2, padding="same",
                               activation="hard_swish", name="sep")(c)
    s = layers.Add(name="add")([a, b, c])
    s = layers.GELU(name="gelu")(s)
    t = layers.Concatenate(name="cat")([s, layers.GELU(approximate="tanh",
                                                       name="gelu_tanh")(a)])
    t = layers.MaxPool2D(3, stride=2, padding=1, ceil_mode=True, name="max")(t)
    t = layers.Conv2DTranspose(6, 3, stride=2, padding=1, output_padding=1,
                               activation="elu", name="deconv")(t)
    t = layers.AvgPool2D(2, padding=1, count_include_pad=False, name="avg")(t)
    # Squeeze-and-excitation (Multiply, of three factors here), layer scale,
    # channel dropout, and zero padding that an average pool takes back off.
    g = layers.Dense(3, activation="relu", name="se_fc1")(
        layers.GlobalAvgPool2D(name="se_pool")(t))
    g = layers.Sigmoid(name="se_gate")(layers.Dense(6, name="se_fc2")(g))
    g = layers.Reshape((6, 1, 1), name="se_shape")(g)
    t = layers.Multiply(name="se")([t, g, g])
    t = layers.Scale(0.5, name="layer_scale")(t)
    t = layers.SpatialDropout2D(0.2, name="drop2d")(t)
    t = layers.ZeroPadding2D(((1, 1), (2, 0)), name="zpad")(t)
    t = layers.AvgPool2D(3, stride=1, name="unpad")(t)
    acts = [layers.LeakyReLU(0.1), layers.Hardswish(), layers.Hardsigmoid(),
            layers.ReLU6(), layers.Softplus(beta=2.0, threshold=1.0), layers.Mish(),
            layers.Sigmoid(), layers.Tanh(), layers.ELU(0.5), layers.ReLU()]
    for k, act in enumerate(acts):
        act.name = f"act{k}"
        t = act(t)
    inner = fastcnn.Sequential([layers.Conv2D(5, 1), layers.ReLU(),
                                layers.Dropout(0.3)], input_shape=(6, 8, 8),
                               name="inner")
    t = inner(t)
    t = layers.Reshape((5, -1), name="reshape")(t)
    t = layers.LayerNorm(64, name="ln")(t)
    t = layers.BatchNorm1D(name="bn1d_cl")(t)
    t = layers.Flatten(name="flat")(t)
    # Adaptive pooling with uneven bins (exported as two averaging MatMuls).
    side = layers.Flatten(name="adapt_flat")(
        layers.AdaptiveAvgPool2D((5, 7), name="adapt")(s))
    t = layers.Concatenate(name="cat_adapt")([t, side])
    t = layers.Dense(16, activation="gelu", name="fc")(t)
    t = layers.BatchNorm1D(name="bn1d")(t)
    t = layers.Dense(5, name="logits")(t)
    out = layers.Softmax(dim=-1, name="softmax")(t)
    model = fastcnn.Model(x, out, name="every_layer")
    # One multiplier per channel, all different: a gamma on the wrong axis shows.
    scale = next(la for la in model.layers if la.name == "layer_scale")
    scale.params["weight"][...] = np.linspace(0.5, 2.0, 6)
    for norm in model.layers:
        if norm.name in ("ln2d", "gn", "ln"):
            norm.params["weight"][...] = np.linspace(0.5, 2.0, norm.params[
                "weight"].size).reshape(norm.params["weight"].shape)
            norm.params["bias"][...] = -0.3 * norm.params["weight"]
    return model


def test_every_exportable_layer_matches_predict(tmp_path):
    _check(_every_layer_model(), tmp_path)


def test_global_pool(tmp_path):
    model = fastcnn.Sequential([layers.Conv2D(4, 3), layers.BatchNorm2D(affine=False),
                                layers.GlobalAvgPool2D(), layers.Dense(3)],
                               input_shape=(2, 9, 9))
    _check(model, tmp_path)


def test_float64(tmp_path):
    # onnxruntime's CPU provider has no float64 Conv, so a dense float64 model.
    model = fastcnn.Sequential([layers.Flatten(), layers.Dense(6), layers.BatchNorm1D(),
                                layers.ReLU(), layers.Dense(3), layers.Softmax()],
                               input_shape=(2, 3, 3), dtype="float64")
    assert _check(model, tmp_path, tolerance=1e-12) < 1e-12


def test_sample_norms_on_features_float64(tmp_path):
    # LayerNorm, GroupNorm and BatchNorm1D on (F,) and (C, L) samples, every
    # parameter different, against predict to float64 rounding.
    fastcnn.seed(4)
    model = fastcnn.Sequential([layers.Flatten(), layers.Dense(12),
                                layers.LayerNorm(12), layers.Reshape((4, 3)),
                                layers.GroupNorm(2, eps=1e-3), layers.BatchNorm1D(),
                                layers.LayerNorm((4, 3), elementwise_affine=False),
                                layers.Flatten(), layers.Dense(3)],
                               input_shape=(2, 3, 3), dtype="float64")
    rng = np.random.default_rng(2)
    for layer in model.layers[2:5]:
        for p in layer.params.values():
            p[...] = rng.standard_normal(p.shape)
    # onnxruntime takes LayerNormalization's variance in one pass, as E[x^2] -
    # E[x]^2, which costs a few digits more than the two passes here (1e-11 to
    # 2.3e-10 measured over seeds).
    _check(model, tmp_path, tolerance=1e-9)


def test_the_file_is_valid_onnx_with_named_weights(tmp_path):
    model = models.lenet5()
    export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    names = {init.name for init in proto.graph.initializer}
    assert set(model.state_dict()) <= names
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]


def test_a_custom_layer_is_refused_by_name(tmp_path):
    class Scale(layers.Layer):
        def _forward(self, x, training):
            return 2 * x

        def _backward(self, dy):
            return 2 * dy

    model = fastcnn.Sequential([layers.Flatten(), Scale(name="doubler")],
                               input_shape=(1, 2, 2))
    with pytest.raises(ValueError, match=r"layer '1' \(Scale 'doubler'\) has no ONNX"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="must be a fastcnn Sequential or Model"):
        export_onnx(layers.ReLU(), tmp_path / "m.onnx")
    unbuilt = fastcnn.Sequential([layers.Flatten(), layers.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        export_onnx(unbuilt, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="opset must be an int >= 17"):
        export_onnx(models.lenet5(), tmp_path / "m.onnx", opset=11)


def test_without_onnx_the_error_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install \"fastcnn\[onnx\]\""):
        export_onnx(models.lenet5(), tmp_path / "m.onnx")


def test_a_subclass_of_a_built_in_layer_is_refused(tmp_path):
    class Doubled(layers.ReLU):  # may compute anything under ReLU's contract
        pass

    model = fastcnn.Sequential([layers.Flatten(), Doubled()], input_shape=(1, 2, 2))
    with pytest.raises(ValueError, match=r"\(Doubled .*has no ONNX"):
        export_onnx(model, tmp_path / "m.onnx")


def test_cli_export_writes_a_file_onnxruntime_runs(tmp_path):
    import subprocess
    import sys

    model = models.lenet5()
    model.save(tmp_path / "lenet.fcnn")
    result = subprocess.run(
        [sys.executable, "-m", "fastcnn", "export", "--load", str(tmp_path /
         "lenet.fcnn"), "--output", str(tmp_path / "lenet.onnx")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "input (N, 1, 28, 28), output (N, 10)" in result.stdout
    x = np.random.default_rng(5).standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "lenet.onnx", x), model.predict(x),
                               rtol=0, atol=TOLERANCE)
    missing = subprocess.run(
        [sys.executable, "-m", "fastcnn", "export", "--load", str(tmp_path /
         "absent.fcnn"), "--output", str(tmp_path / "x.onnx")],
        capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_cli_export_weights_and_refusals(tmp_path):
    import subprocess
    import sys

    from fastcnn.io import load_weights

    model = models.lenet5()
    model.save(tmp_path / "lenet.fcnn")

    def cli(out):
        return subprocess.run(
            [sys.executable, "-m", "fastcnn", "export", "--load",
             str(tmp_path / "lenet.fcnn"), "--output", str(tmp_path / out)],
            capture_output=True, text=True, timeout=300)

    result = cli("w.npz")
    assert result.returncode == 0, result.stderr
    weights = load_weights(tmp_path / "w.npz")
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(weights[key], value)
    bad = cli("model.h5")
    assert bad.returncode == 2 and "ending in .onnx" in bad.stderr
    assert "Traceback" not in bad.stderr
