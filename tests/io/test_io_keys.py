"""Key mapping: load_state_dict's report, shape errors, strip_prefix, renumber_like,
and torch models that wrap or reorder their layers."""

import numpy as np
import pytest

import fastcnn
from fastcnn.io import renumber_like, strip_prefix
from fastcnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU


def _small():
    fastcnn.seed(0)
    return fastcnn.Sequential([Conv2D(2, 3), ReLU(), MaxPool2D(2), Flatten(),
                               Dense(3)], input_shape=(1, 6, 6))


def test_strict_false_reports_missing_and_unexpected_keys():
    model = _small()
    state = model.state_dict()
    partial = {"0.weight": state["0.weight"] + 1, "7.weight": np.zeros(2),
               "0.num_batches_tracked": np.array(1)}
    result = model.load_state_dict(partial, strict=False)
    assert result.missing_keys == ["0.bias", "4.weight", "4.bias"]
    assert result.unexpected_keys == ["7.weight"]
    missing, unexpected = result  # a NamedTuple, as torch's _IncompatibleKeys
    assert missing == result.missing_keys and unexpected == result.unexpected_keys
    np.testing.assert_array_equal(model.state_dict()["0.weight"],
                                  state["0.weight"] + 1)
    ok = model.load_state_dict(state)
    assert ok.missing_keys == [] and ok.unexpected_keys == []
    assert repr(ok) == "<All keys matched successfully>"
    with pytest.raises(TypeError, match="strict must be a bool"):
        model.load_state_dict(state, strict="no")


def test_shape_mismatch_names_the_key_and_both_shapes():
    model = _small()
    state = model.state_dict()
    state["4.weight"] = np.zeros((3, 9))
    for strict in (True, False):
        with pytest.raises(ValueError,
                           match=r"4\.weight has shape \(3, 9\) but the model's "
                                 r"4\.weight has shape \(3, 8\)"):
            model.load_state_dict(state, strict=strict)


def test_strict_errors_point_at_the_helpers():
    model = _small()
    wrapped = {f"features.{k}": v for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"strip_prefix\(state, 'features'\)"):
        model.load_state_dict(wrapped)
    shifted = {f"{int(k[0]) + 1}{k[1:]}": v for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="renumber_like"):
        model.load_state_dict(shifted)


def test_strip_prefix():
    state = {"features.0.weight": 1, "features.0.bias": 2, "classifier.1.weight": 3,
             "featuresx.0.weight": 4}
    assert strip_prefix(state, "features") == {"0.weight": 1, "0.bias": 2}
    assert strip_prefix(state, "features.") == {"0.weight": 1, "0.bias": 2}
    assert strip_prefix(state, "classifier") == {"1.weight": 3}
    with pytest.raises(ValueError, match=r"start with \['classifier.', 'features.'"):
        strip_prefix(state, "body")
    with pytest.raises(TypeError, match="prefix must be"):
        strip_prefix(state, "")
    with pytest.raises(TypeError, match="state must be"):
        strip_prefix([1], "a")


def test_renumber_like_pairs_layers_with_weights_in_order():
    model = _small()
    # Weights at other indices (say torch had Conv, ReLU, Pool, Dropout, Flatten,
    # Linear): 0 and 5 instead of 0 and 4.
    theirs = {"0.weight": np.ones((2, 1, 3, 3)), "0.bias": np.ones(2),
              "5.weight": np.full((3, 8), 2.0), "5.bias": np.full(3, 2.0)}
    mapped = renumber_like(theirs, model)
    assert sorted(mapped) == ["0.bias", "0.weight", "4.bias", "4.weight"]
    model.load_state_dict(mapped)
    assert (model.state_dict()["4.weight"] == 2).all()
    # Numeric indices sort as numbers (10 after 2), not as strings.
    assert renumber_like({"10.weight": theirs["5.weight"], "10.bias": theirs["5.bias"],
                          "2.weight": theirs["0.weight"], "2.bias": theirs["0.bias"]},
                         model).keys() == mapped.keys()


def test_renumber_like_refuses_a_wrong_pairing():
    model = _small()
    with pytest.raises(ValueError, match="1 modules with weights"):
        renumber_like({"0.weight": np.ones((2, 1, 3, 3)), "0.bias": np.ones(2)},
                      model)
    with pytest.raises(ValueError, match=r"'1' has \['weight'\]"):
        renumber_like({"0.weight": np.ones((2, 1, 3, 3)), "0.bias": np.ones(2),
                       "1.weight": np.ones((3, 8))}, model)
    with pytest.raises(ValueError, match=r"3\.weight has shape \(3, 9\) but the "
                                         r"model's 4\.weight has shape \(3, 8\)"):
        renumber_like({"0.weight": np.ones((2, 1, 3, 3)), "0.bias": np.ones(2),
                       "3.weight": np.ones((3, 9)), "3.bias": np.ones(3)}, model)
    with pytest.raises(ValueError, match="is not '<module>.<name>'"):
        renumber_like({"weight": 1}, model)


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.mark.torch
def test_lenet5_keys_match_an_equivalent_torch_sequential(torch):
    nn = torch.nn
    ours = fastcnn.models.lenet5()
    theirs = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))
    state = theirs.state_dict()
    assert list(state) == list(ours.state_dict())
    assert all(tuple(state[k].shape) == v.shape
               for k, v in ours.state_dict().items())
    ours.load_state_dict(state)  # torch tensors, strict

@pytest.mark.torch
def test_wrapped_and_reordered_torch_model(torch):
    nn = torch.nn

    class Net(nn.Module):
        # Pool before ReLU, a Dropout, and two submodules: every index differs.
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2),
                                          nn.ReLU())
            self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Flatten(),
                                            nn.Linear(8, 3))

        def forward(self, x):
            return self.classifier(self.features(x))

    torch.manual_seed(0)
    net = Net().eval()
    model = _small()
    with pytest.raises(ValueError, match="strip_prefix"):
        model.load_state_dict(net.state_dict())
    features = strip_prefix(net.state_dict(), "features")
    assert list(features) == ["0.weight", "0.bias"]
    model.load_state_dict(renumber_like(net.state_dict(), model))
    x = np.random.default_rng(0).standard_normal((4, 1, 6, 6)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=0, atol=1e-5)
