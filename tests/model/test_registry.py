"""One from_config for layers, losses, optimizers, schedules and callbacks: a bad
entry is always a ValueError that names it."""

import pytest

from fastcnn import callbacks, layers, losses, optimizers, schedules

MODULES = {
    "layers": (layers, "Dense", {"out_features": 3}, {"out_features": "three"}),
    "losses": (losses, "CrossEntropy", {"label_smoothing": 0.1},
               {"label_smoothing": "much"}),
    "optimizers": (optimizers, "SGD", {"lr": 0.1}, {"lr": -1.0}),
    "schedules": (schedules, "StepLR", {"step_size": 2}, {"step_size": 0}),
    "callbacks": (callbacks, "EarlyStopping", {"patience": 2}, {"patience": -1}),
}


@pytest.fixture(params=sorted(MODULES))
def registry(request):
    return request.param, *MODULES[request.param]


def test_a_good_entry_builds_its_class(registry):
    _, module, name, config, _ = registry
    made = module.from_config({"class_name": name, "config": config})
    assert type(made).__name__ == name


@pytest.mark.parametrize("entry, fragment", [
    (5, "is not a dict {'class_name': ..., 'config': {...}} but a int"),
    (["Dense"], "is not a dict"),
    ({"class_name": "NoSuchThing"}, "has unknown .*type 'NoSuchThing'; known types"),
    ({"class_name": ["x"]}, "has unknown .*type \\['x'\\]"),
    ({"config": {}}, "has unknown .*type None"),
])
def test_a_malformed_entry_or_unknown_type_is_a_value_error(registry, entry,
                                                            fragment):
    label, module, *_ = registry
    prefix = f"fastcnn.{label}.from_config: the entry "
    with pytest.raises(ValueError, match=prefix + fragment):
        module.from_config(entry)


def test_a_config_that_is_not_a_dict_is_a_value_error(registry):
    _, module, name, _, _ = registry
    with pytest.raises(ValueError, match=f"\\({name}\\) has a 'config' that is not "
                                         f"a dict of arguments: \\[1, 2\\]"):
        module.from_config({"class_name": name, "config": [1, 2]})


def test_an_unknown_keyword_is_a_value_error_naming_the_entry(registry):
    _, module, name, _, _ = registry
    with pytest.raises(ValueError, match=f"my entry \\({name}\\) has bad arguments "
                                         f"\\{{'no_such_argument': 1\\}}: "):
        module.from_config({"class_name": name, "config": {"no_such_argument": 1}},
                           "my entry")


def test_an_invalid_value_is_a_value_error_naming_the_entry(registry):
    _, module, name, _, bad = registry
    with pytest.raises(ValueError, match=f"\\({name}\\) has bad arguments"):
        module.from_config({"class_name": name, "config": bad})


def test_unknown_types_are_named_by_kind():
    with pytest.raises(ValueError, match="unknown loss type 'Hinge'"):
        losses.from_config({"class_name": "Hinge"})
    with pytest.raises(ValueError, match="unknown optimizer type 'Adagrad'"):
        optimizers.from_config({"class_name": "Adagrad"})
    with pytest.raises(ValueError, match="unknown schedule type 'Cyclic'"):
        schedules.from_config({"class_name": "Cyclic"})
    with pytest.raises(ValueError, match="unknown callback type 'LambdaCallback'"):
        callbacks.from_config({"class_name": "LambdaCallback"})
    with pytest.raises(ValueError, match="has unknown type 'Swish'"):
        layers.from_config({"class_name": "Swish"})


@pytest.mark.parametrize("schedule", [
    schedules.StepLR(3, gamma=0.5),
    schedules.MultiStepLR([2, 5], gamma=0.2),
    schedules.ExponentialLR(0.9),
    schedules.CosineWithWarmup(10, 100, min_lr=0.01),
    schedules.OneCycle(0.1, 60),
])
def test_schedules_round_trip_through_their_config(schedule):
    entry = {"class_name": type(schedule).__name__, "config": schedule.get_config()}
    again = schedules.from_config(entry)
    assert again.get_config() == schedule.get_config()
    assert [again(s, 0.1) for s in range(0, 60, 7)] == [
        schedule(s, 0.1) for s in range(0, 60, 7)]


@pytest.mark.parametrize("callback", [
    callbacks.EarlyStopping("val_accuracy", min_delta=0.01, patience=3,
                            restore_best_weights=True, baseline=0.5,
                            start_from_epoch=1, verbose=1),
    callbacks.ModelCheckpoint("m-{epoch}.zip", monitor="loss", save_best_only=True),
    callbacks.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_lr=1e-4),
    callbacks.CSVLogger("log.csv", separator=";", append=True),
    callbacks.TerminateOnNaN(),
])
def test_callbacks_round_trip_through_their_config(callback):
    entry = {"class_name": type(callback).__name__, "config": callback.get_config()}
    again = callbacks.from_config(entry)
    assert type(again) is type(callback)
    assert again.get_config() == callback.get_config()


def test_callbacks_of_functions_are_not_registered():
    assert "LambdaCallback" not in callbacks.CALLBACKS
    assert "LearningRateScheduler" not in callbacks.CALLBACKS
