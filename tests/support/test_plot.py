"""Plots render to real image files (looked at by hand; here: valid PNGs)."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from fastcnn import models, plot  # noqa: E402
from fastcnn.callbacks import History  # noqa: E402


def _png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    return data


def test_learning_curves(tmp_path):
    history = History()
    for i in range(60):
        history.on_batch_end(i, {"loss": 2.3 * np.exp(-i / 20)})
    for e in range(3):
        history.on_epoch_end(e, {"loss": 1.0 / (e + 1), "accuracy": 0.5 + 0.1 * e})
    fig = plot.learning_curves(history, tmp_path / "curves.png")
    _png(tmp_path / "curves.png")
    fig.clf()


def test_filters_and_feature_maps(tmp_path):
    model = models.lenet5(input_shape=(1, 28, 28))
    plot.filters(model.layers[0], tmp_path / "filters.png").clf()
    _png(tmp_path / "filters.png")
    image = np.random.default_rng(0).random((1, 28, 28)).astype(np.float32)
    plot.feature_maps(model, image, 1, tmp_path / "maps.png").clf()
    _png(tmp_path / "maps.png")


def test_bad_arguments():
    model = models.lenet5(input_shape=(1, 28, 28))
    with pytest.raises(ValueError, match="weight must be 4-D"):
        plot.filters(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="layer must be an index"):
        plot.feature_maps(model, np.zeros((1, 28, 28)), 99)
    with pytest.raises(ValueError, match="not feature maps"):
        plot.feature_maps(model, np.zeros((1, 28, 28), np.float32), 7)


def test_feature_maps_of_a_graph_model_follow_its_graph(tmp_path):
    model = models.resnet(8, input_shape=(1, 8, 8), num_classes=3, width=4)
    image = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    names = [layer.name for layer in model.layers]
    fig = plot.feature_maps(model, image, names.index("stage2_block1_add"),
                            tmp_path / "maps.png")
    _png(tmp_path / "maps.png")
    # The whole model's forward: the ReLU after the join keeps its input, the
    # join's output, which the panels must show (channel 0 in the second panel).
    model.forward(image[None], training=False)
    joined = model.layers[names.index("stage2_block1_relu2")]._cache
    shown = np.asarray(fig.axes[1].images[0].get_array())
    np.testing.assert_array_equal(shown, joined[0, 0])
    fig.clf()
