"""``run_layer_test``: the one helper every layer test uses (after Keras's
``run_layer_test``).

For one layer configuration it checks, in order:

1. the config: ``get_config()`` is JSON-serialisable, names every ``__init__``
   argument, and ``cls(**config)`` (after a JSON round trip) gives the same config;
   the class is in the registry under its name;
2. ``compute_output_shape`` against the expected shape, without building;
3. build (float64): shapes, dtype, ``params``/``grads`` keys and shapes, parameter
   counts against the expected ones;
4. forward and backward: output/gradient shapes and dtypes, the input untouched, a
   Fortran-ordered input giving the same result;
5. float64 central differences of ``sum(forward(x) * dy)`` against ``dx`` and every
   ``grads`` entry (every element; shapes are small);
6. a float32 build from the same seed: float32 output close to the float64 one.
"""

from __future__ import annotations

import copy
import inspect
import json

import numpy as np

from fastcnn import layers as L

from ..gradcheck import assert_close, numeric_gradient


def _rng_state(layer):
    """Buffers and RNG states a forward pass may change (BatchNorm, Dropout)."""
    return ({k: b.copy() for k, b in layer.buffers.items()},
            {k: copy.deepcopy(g.bit_generator.state) for k, g in vars(layer).items()
             if isinstance(g, np.random.Generator)})


def _restore(layer, state):
    buffers, rngs = state
    for k, b in buffers.items():
        np.copyto(layer.buffers[k], b)
    for k, s in rngs.items():
        getattr(layer, k).bit_generator.state = copy.deepcopy(s)


def check_config_round_trip(layer_cls, init_kwargs):
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    params = inspect.signature(layer_cls.__init__).parameters
    # Every positional-or-keyword argument, in order; keyword-only ones (Keras's
    # "activation") only where set, and never an alias ("filters", "units").
    plain = [p for p, param in params.items()
             if p != "self" and param.kind != param.KEYWORD_ONLY]
    extra = [k for k in config if k not in plain]
    assert [k for k in config if k in plain] == plain, (
        f"{layer_cls.__name__}.get_config() keys {list(config)} are not exactly the "
        f"__init__ arguments"
    )
    assert set(extra) <= {"activation"}, extra
    assert config["name"] == layer.name
    text = json.dumps(config)
    rebuilt = layer_cls(**json.loads(text))
    assert rebuilt.get_config() == config
    assert L.get(layer_cls.__name__) is layer_cls
    assert L.LAYERS[layer_cls.__name__] is layer_cls
    return layer


def run_layer_test(layer_cls, init_kwargs, input_shape, expected_output_shape,
                   expected_trainable_params, expected_non_trainable_params=0,
                   batch_size=3, training=True, input_fn=None, seed=0,
                   fd_rtol=1e-5, fd_atol=1e-7, f32_rtol=1e-4, f32_atol=1e-5):
    """Run every generic check on ``layer_cls(**init_kwargs)``; returns the built
    float64 layer (after one forward/backward) for further checks.

    ``input_fn(rng, shape)`` makes the input (default standard normal).
    """
    rng = np.random.default_rng(seed)
    input_shape = tuple(input_shape)
    expected_output_shape = tuple(expected_output_shape)

    # 1-2. config and shape inference, no build.
    layer = check_config_round_trip(layer_cls, init_kwargs)
    assert layer.compute_output_shape(input_shape) == expected_output_shape
    assert not layer.built and layer.params == {}

    # 3. build.
    layer.build(input_shape, np.float64, np.random.default_rng(seed))
    assert layer.built
    assert layer.input_shape == input_shape
    assert layer.output_shape == expected_output_shape
    assert layer.dtype == np.float64
    assert set(layer.grads) == set(layer.params)
    # torch's parameter names: "weight" and "bias", or "<part>_weight" for a layer
    # of several weights (SeparableConv2D).
    assert all(k in ("weight", "bias") or k.endswith("_weight") for k in layer.params)
    for key, p in layer.params.items():
        assert p.dtype == np.float64, key
        assert layer.grads[key].shape == p.shape, key
    for key, b in layer.buffers.items():
        assert b.dtype == np.float64, key
    assert layer.count_params() == (expected_trainable_params,
                                    expected_non_trainable_params)

    # 4. forward and backward.
    shape = (batch_size, *input_shape)
    x = input_fn(rng, shape) if input_fn else rng.standard_normal(shape)
    x_before = x.copy()
    state = _rng_state(layer)
    y = layer.forward(x, training=training)
    assert y.shape == (batch_size, *expected_output_shape)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(x, x_before)
    _restore(layer, state)
    y_fortran = layer.forward(np.asfortranarray(x), training=training)
    np.testing.assert_allclose(y_fortran, y, rtol=1e-12, atol=1e-12)

    dy = rng.standard_normal(y.shape)
    _restore(layer, state)
    layer.forward(x, training=training)
    dx = layer.backward(dy)
    assert dx.shape == x.shape and dx.dtype == np.float64
    analytic = {k: g.copy() for k, g in layer.grads.items()}
    for key, g in analytic.items():
        assert g.shape == layer.params[key].shape and g.dtype == np.float64, key

    # 5. finite differences of every gradient.
    def scalar():
        _restore(layer, state)
        return float(np.sum(layer.forward(x, training=training) * dy))

    assert_close(dx, numeric_gradient(scalar, x), fd_rtol, fd_atol,
                 what=f"{layer_cls.__name__} dx")
    for key in layer.params:
        numeric = numeric_gradient(scalar, layer.params[key])
        assert_close(analytic[key], numeric, fd_rtol, fd_atol,
                     what=f"{layer_cls.__name__} d{key}")

    # 6. float32 from the same seed: the same layer up to rounding.
    layer32 = layer_cls(**init_kwargs)
    layer32.build(input_shape, np.float32, np.random.default_rng(seed))
    assert layer32.dtype == np.float32
    for key, p in layer32.params.items():
        assert p.dtype == np.float32
        np.testing.assert_allclose(p, layer.params[key], rtol=1e-6)
    reference = layer_cls(**init_kwargs)
    reference.build(input_shape, np.float64, np.random.default_rng(seed))
    y64 = reference.forward(x, training=training)
    y32 = layer32.forward(x.astype(np.float32), training=training)
    assert y32.dtype == np.float32 and y32.shape == y64.shape
    np.testing.assert_allclose(y32, y64, rtol=f32_rtol, atol=f32_atol)
    dx32 = layer32.backward(dy.astype(np.float32))
    assert dx32.dtype == np.float32 and dx32.shape == x.shape
    for g in layer32.grads.values():
        assert g.dtype == np.float32

    _restore(layer, state)
    layer.forward(x, training=training)
    layer.backward(dy)
    return layer
