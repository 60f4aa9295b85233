"""Parameters packed into flat arrays (``fastcnn/training/flat_params.py``) and the
optimizers' one-call update over them give bitwise the per-parameter results, keep
per-parameter state that saves and restores as before, and fall back where one call
cannot stand for many."""

import numpy as np
import pytest

import fastcnn
from fastcnn import layers as L
from fastcnn.optimizers import SGD, Adam, AdamW, RMSprop
from fastcnn.training import flat_params as _flat_params

OPTIMIZERS = [
    lambda: SGD(0.1),
    lambda: SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda: Adam(0.01, weight_decay=0.01, amsgrad=True),
    lambda: AdamW(0.01, weight_decay=0.1),
    lambda: RMSprop(0.01, momentum=0.5, centered=True),
    lambda: SGD(0.1, momentum=0.9, clipvalue=0.05),
]


def model():
    m = fastcnn.Sequential([L.Conv2D(3, 3), L.ReLU(), L.Flatten(), L.Dense(4),
                            L.BatchNorm1D(),
                            L.Dense(2)], dtype="float64")
    m.build((1, 5, 5), rng=np.random.default_rng(0))
    return m


def gradients(m, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 1, 5, 5))
    m.forward(x, training=True)
    m.backward(rng.standard_normal((3, 2)), input_grad=False)


def run(make, packed, steps=3):
    m = model()
    opt = make()
    for step in range(steps):
        gradients(m, step)
        flat = _flat_params.packed(m) if packed else None
        opt.step(list(m._named_grads()), flat=flat)
    return m, opt


@pytest.mark.parametrize("make", OPTIMIZERS, ids=lambda f: repr(f()))
def test_one_call_over_flat_arrays_equals_one_call_per_parameter(make):
    (flat_model, flat_opt), (plain_model, plain_opt) = run(make, True), run(make, False)
    for a, b in zip(flat_model.layers, plain_model.layers, strict=True):
        for key in a.params:
            np.testing.assert_array_equal(a.params[key], b.params[key])
    flat_arrays, flat_scalars = flat_opt.get_state()
    plain_arrays, plain_scalars = plain_opt.get_state()
    assert flat_scalars == plain_scalars
    assert sorted(flat_arrays) == sorted(plain_arrays)
    for key, value in plain_arrays.items():
        np.testing.assert_array_equal(flat_arrays[key], value, err_msg=key)
        assert flat_arrays[key].shape == value.shape


def test_packing_keeps_values_and_makes_views():
    m = model()
    before = {k: v.copy() for k, v in m._named_params().items()}
    flat = _flat_params.packed(m)
    assert flat is _flat_params.packed(m)  # unchanged: the same pack
    for name, value in m._named_params().items():
        np.testing.assert_array_equal(value, before[name])
    assert flat.param.size == sum(v.size for v in before.values())
    m.layers[0].params["weight"] += 1  # a view: the flat array sees it
    start, stop = flat.spans[0]
    np.testing.assert_array_equal(flat.param[start:stop],
                                  (before["0.weight"] + 1).ravel())


def test_a_replaced_parameter_makes_a_new_pack():
    m = model()
    flat = _flat_params.packed(m)
    m.layers[3].params["bias"] = m.layers[3].params["bias"].copy()
    assert not flat.matches(list(m._named_grads()))
    again = _flat_params.packed(m)
    assert again is not flat and again.matches(list(m._named_grads()))


def test_restored_state_is_merged_into_flat_state_and_stepped_once():
    """A state restored from get_state (separate arrays) continues exactly as the
    per-parameter path continues it."""
    flat_model, flat_opt = run(lambda: Adam(0.01), True, steps=2)
    plain_model, plain_opt = run(lambda: Adam(0.01), False, steps=2)
    arrays, scalars = plain_opt.get_state()
    fresh = Adam(0.01)
    fresh.set_state(arrays, scalars, params=flat_model._named_params())
    for m, opt, packed in ((flat_model, fresh, True), (plain_model, plain_opt, False)):
        gradients(m, 7)
        opt.step(list(m._named_grads()),
                 flat=_flat_params.packed(m) if packed else None)
    for a, b in zip(flat_model.layers, plain_model.layers, strict=True):
        for key in a.params:
            np.testing.assert_array_equal(a.params[key], b.params[key])


def test_clipnorm_and_custom_updates_take_the_per_parameter_path():
    class Halving(SGD):
        def update(self, param, grad, state):
            param -= 0.5 * grad  # not one of the element-wise updates we know

    for opt in (SGD(0.1, clipnorm=0.5), Halving(0.1)):
        m = model()
        gradients(m, 0)
        flat = _flat_params.packed(m)
        assert not opt._step_flat(flat, list(m._named_grads()))
        opt.step(list(m._named_grads()), flat=flat)  # still steps, per parameter
        assert opt.iterations == 1


def test_parameters_at_different_steps_take_the_per_parameter_path():
    m = model()
    opt = Adam(0.01)
    gradients(m, 0)
    named = list(m._named_grads())
    opt.step(named[:2])  # only two parameters stepped
    flat = _flat_params.packed(m)
    assert not opt._step_flat(flat, list(m._named_grads()))


def test_a_frozen_layer_is_left_out_of_the_pack():
    m = model()
    m.layers[0].trainable = False
    flat = _flat_params.packed(m)
    assert all(not name.startswith("0.") for name in flat.names)


def test_cpu_train_step_packs_and_calls_the_update_kernel_once(monkeypatch):
    """A CPU train_step updates every parameter in one kernel call (one parallel
    region), with bitwise the parameters of per-parameter steps."""
    from fastcnn.kernels.cpu import optim as cpu_optim

    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 1, 5, 5))
    y = np.array([0, 1, 1, 0])
    fused, plain = model(), model()
    fused.compile(SGD(0.1, momentum=0.9), "cross_entropy")
    plain.compile(SGD(0.1, momentum=0.9), "cross_entropy")
    calls = []
    original = cpu_optim.sgd_update
    monkeypatch.setattr(cpu_optim, "sgd_update",
                        lambda *a: (calls.append(1), original(*a))[1])
    for _ in range(3):
        calls.clear()
        fused.train_step(x, y)
        assert len(calls) == 1
        _, grad = plain.loss.forward_backward(plain.forward(x, training=True),
                                                 y, None)
        plain.backward(grad, input_grad=False)
        plain.optimizer.step(plain._named_grads())
    flat = fused._flat_params
    assert flat is not None
    for (name, p, _), (_, q, _) in zip(fused._named_grads(), plain._named_grads(),
                                       strict=True):
        assert np.shares_memory(p, flat.param)
        np.testing.assert_array_equal(p, q, err_msg=name)


def test_a_model_with_a_user_layer_type_is_not_packed_and_still_trains():
    """A user's layer that keeps its own reference to a parameter (and assigns new
    gradient arrays) must keep training that array: no pack, per-parameter steps."""

    class CachedScale(L.Layer):
        def _build(self, input_shape, dtype, rng):
            self.params["scale"] = np.ones(input_shape[0], dtype=dtype)
            self.scale = self.params["scale"]  # held across calls

        def _forward(self, x, training):
            self._cache = x
            return x * self.scale

        def _backward(self, dy):
            self.grads["scale"] = (dy * self._cache).sum(axis=0)
            return dy * self.scale

    m = fastcnn.Sequential([L.Flatten(), L.Dense(4), CachedScale(), L.Dense(2)],
                           dtype="float64")
    m.build((1, 3, 3), rng=np.random.default_rng(0))
    m.compile(SGD(0.1), "cross_entropy")
    held = m.layers[2].scale
    x = np.random.default_rng(2).standard_normal((5, 1, 3, 3))
    y = np.array([0, 1, 0, 1, 1])
    before = held.copy()
    for _ in range(3):
        m.train_step(x, y)
    assert _flat_params.packed(m) is None
    assert m.layers[2].params["scale"] is held
    assert not np.array_equal(held, before)
