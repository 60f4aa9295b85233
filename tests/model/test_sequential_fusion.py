"""A Sequential runs a Conv2D or Dense followed by a ReLU or ReLU6 layer as one
kernel (the clamp in the producer's store; the activation layer adopts the output),
with bitwise the results of running the layers one by one."""

import numpy as np
import pytest

import fastcnn
from fastcnn import layers as L
from fastcnn.functional import activation as activation_ops
from fastcnn.optimizers import SGD


def net(dtype="float64", last=L.ReLU):
    return fastcnn.Sequential(
        [L.Conv2D(3, 3, padding=1), L.ReLU(), L.MaxPool2D(2),
         L.Conv2D(4, 3), L.ReLU6(), L.Flatten(), L.Dense(5), last(), L.Dense(3)],
        dtype=dtype,
    )


def built(dtype, seed=0, last=L.ReLU):
    model = net(dtype, last)
    model.build((2, 8, 8), rng=np.random.default_rng(seed))
    return model


def one_by_one(model, x, dy):
    """Forward and backward layer by layer: nothing fused."""
    out = x
    for layer in model.layers:
        out = layer.forward(out, training=True)
    grad = dy
    for layer in reversed(model.layers):
        grad = layer.backward(grad)
    return out, grad


def batch(dtype, n=3):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 2, 8, 8)).astype(dtype) * 3
    x[0, 0, :2] = np.nan  # NaN, and exact zeros, reach the clamps
    x[1, 1] = 0.0
    return x, rng.standard_normal((n, 3)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_forward_and_backward_equal_the_layers_one_by_one(dtype):
    x, dy = batch(dtype)
    fused, plain = built(dtype), built(dtype)
    out = fused.forward(x, training=True)
    grad = fused.backward(dy)
    ref_out, ref_grad = one_by_one(plain, x, dy)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(grad, ref_grad)
    for a, b in zip(fused.layers, plain.layers, strict=True):
        for key in a.grads:
            np.testing.assert_array_equal(a.grads[key], b.grads[key], err_msg=key)


def test_fused_pairs_run_no_activation_kernel(monkeypatch):
    calls = []
    original = activation_ops.elementwise_trusted

    def counting(kernel, *args, **kwargs):
        calls.append(kernel)
        return original(kernel, *args, **kwargs)

    monkeypatch.setattr(activation_ops, "elementwise_trusted", counting)
    for module in ("fastcnn.layers.activation",):
        monkeypatch.setattr(f"{module}.elementwise_trusted", counting)
    model = built("float64")
    x, dy = batch("float64")
    model.forward(x, training=True)
    assert [c for c in calls if c.endswith("_forward")] == []
    model.backward(dy)
    # Backward still runs each activation's gradient (it reads the adopted output),
    # except the first ReLU's: the MaxPool2D after it applies it in its kernel.
    assert sorted(c for c in calls if c.endswith("_backward")) == [
        "relu6_backward", "relu_backward"]


def test_hand_replaced_parameters_run_the_activation_layer():
    """A producer on the checked op path applies no clamp: the ReLU runs itself."""
    x, dy = batch("float64")
    model, plain = built("float64"), built("float64")
    for m in (model, plain):
        m.layers[0].params["weight"] = np.asfortranarray(m.layers[0].params["weight"])
    np.testing.assert_array_equal(model.forward(x, training=True),
                                  one_by_one(plain, x, dy)[0])
    assert not model.layers[0].applied_next_clamp


def test_a_producer_with_its_own_activation_is_not_fused():
    model = fastcnn.Sequential([L.Dense(4, activation="relu6"), L.ReLU()],
                               dtype="float64")
    model.build((3,), rng=np.random.default_rng(0))
    x = np.random.default_rng(2).standard_normal((2, 3)) * 10
    y = model.forward(x)
    dense = model.layers[0]
    np.testing.assert_array_equal(y, dense.forward(x))  # ReLU after ReLU6: as is
    np.testing.assert_allclose(y, np.clip(
        x @ dense.params["weight"].T + dense.params["bias"], 0, 6), 1e-12, 1e-12)
    assert not model.layers[0].applied_next_clamp


def test_training_steps_equal_unfused_training():
    """Ten SGD steps of the fused model equal those of the same network whose
    ReLUs are LeakyReLU(0) (never fused; the same function and gradient)."""
    x, _ = batch("float64", n=4)
    x = np.nan_to_num(x)
    y = np.array([0, 1, 2, 1])
    fused = built("float64")
    plain = fastcnn.Sequential(
        [L.Conv2D(3, 3, padding=1), L.LeakyReLU(0.0), L.MaxPool2D(2),
         L.Conv2D(4, 3), L.ReLU6(), L.Flatten(), L.Dense(5), L.LeakyReLU(0.0),
         L.Dense(3)], dtype="float64")
    plain.build((2, 8, 8), rng=np.random.default_rng(0))
    for m in (fused, plain):
        m.compile(SGD(0.05, momentum=0.9), "cross_entropy")
    for _ in range(10):
        assert fused.train_step(x, y) == plain.train_step(x, y)
    for a, b in zip(fused.layers, plain.layers, strict=True):
        for key in a.params:
            np.testing.assert_array_equal(a.params[key], b.params[key])
