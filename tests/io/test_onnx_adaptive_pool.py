"""export_onnx of AdaptiveAvgPool2D: GlobalAveragePool for a 1x1 output, AveragePool
for even bins, two averaging MatMuls for uneven ones (each run in onnxruntime
against predict), and a clear refusal of an empty output."""

import numpy as np
import pytest

import fastcnn
from fastcnn import layers
from fastcnn.io import export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _model(output_size, shape=(3, 7, 9)):
    return fastcnn.Sequential([layers.Conv2D(4, 3, padding=1),
                               layers.AdaptiveAvgPool2D(output_size, name="adapt")],
                              input_shape=shape)


@pytest.mark.parametrize(("output_size", "shape", "operators"), [
    (1, (3, 7, 9), {"GlobalAveragePool"}),
    ((1, 1), (3, 4, 4), {"GlobalAveragePool"}),
    ((7, 3), (3, 7, 9), {"AveragePool"}),  # 7/7 and 9/3: even bins
    ((None, 3), (3, 8, 6), {"AveragePool"}),
    ((3, 4), (3, 7, 9), {"MatMul"}),  # bins overlap by a row and a column
    ((10, 2), (3, 7, 9), {"MatMul"}),  # more outputs than rows
])
def test_each_form_runs_in_onnxruntime_like_predict(tmp_path, output_size, shape,
                                                    operators):
    model = _model(output_size, shape)
    path = tmp_path / "adapt.onnx"
    export_onnx(model, path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    kinds = {node.op_type for node in proto.graph.node} - {"Conv", "Identity"}
    assert kinds == operators
    x = np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    want = model.predict(x)
    assert got.shape == want.shape == (3, *model.output_shape)
    assert float(np.max(np.abs(got - want))) < 1e-5


def test_an_empty_output_is_refused_by_name_and_why(tmp_path):
    model = _model((0, 3))
    with pytest.raises(ValueError, match=r"export_onnx: layer '1' \(AdaptiveAvgPool2D "
                       r"'adapt'\) has an empty output \(0, 3\); ONNX's pooling "
                       r"operators have no empty output"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
