"""The fused optimizer kernels (fastcnn/kernels/cpu/optim.py) against NumPy
formulas, bit for bit, and their thread-count invariance.

``reference_update`` below is PyTorch's single-tensor rules as NumPy code, operation
for operation: the kernels must reproduce it exactly in float64 and float32,
including the casts of Python-float hyper-parameters to float32 that NumPy does. The
CUDA twins are compared with these kernels in tests/cuda/test_cuda_kernels.py (cases
in tests/cuda/cuda_cases.py).
"""

import math

import numpy as np
import pytest

from fastcnn.optimizers import SGD, Adam, AdamW, Optimizer, RMSprop

from ..threads import assert_thread_count_invariant

CONFIGS = [
    lambda: SGD(0.1),
    lambda: SGD(0.1, weight_decay=0.01),
    lambda: SGD(0.1, momentum=0.9, weight_decay=0.01),
    lambda: SGD(0.05, momentum=0.5, dampening=0.3),
    lambda: SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.02),
    lambda: Adam(0.01),
    lambda: Adam(0.01, weight_decay=0.1, amsgrad=True),
    lambda: AdamW(0.01, amsgrad=True),
    lambda: AdamW(0.02, betas=(0.8, 0.99), weight_decay=0.05),
    lambda: RMSprop(0.01),
    lambda: RMSprop(0.01, weight_decay=0.1, momentum=0.9, centered=True),
    lambda: RMSprop(0.01, alpha=0.9, momentum=0.5),
    lambda: SGD(0.1, momentum=0.9, clipnorm=0.5, clipvalue=0.8),
    lambda: Adam(0.01, clipvalue=0.3),
]


def reference_update(opt: Optimizer, param, grad, state):
    """The NumPy update of ``fastcnn.optimizers`` before the fused kernels."""
    if isinstance(opt, SGD):
        d_p = grad
        if opt.weight_decay != 0:
            d_p = d_p + opt.weight_decay * param
        if opt.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d_p.copy()
            else:
                buf *= opt.momentum
                buf += (1 - opt.dampening) * d_p
            d_p = d_p + opt.momentum * buf if opt.nesterov else buf
        param -= opt.lr * d_p
    elif isinstance(opt, Adam):
        beta1, beta2 = opt.betas
        if "step" not in state:
            state["step"] = np.zeros((), dtype=np.int64)
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            if opt.amsgrad:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        state["step"] += 1
        step = int(state["step"])
        if opt.weight_decay != 0:
            if opt._decoupled:
                param *= 1 - opt.lr * opt.weight_decay
            else:
                grad = grad + opt.weight_decay * param
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg += (1 - beta1) * (grad - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        step_size = opt.lr / (1 - beta1**step)
        bias_correction2_sqrt = math.sqrt(1 - beta2**step)
        if opt.amsgrad:
            np.maximum(state["max_exp_avg_sq"], exp_avg_sq,
                       out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        else:
            second = exp_avg_sq
        denom = np.sqrt(second) / bias_correction2_sqrt + opt.eps
        param -= step_size * (exp_avg / denom)
    else:
        if "square_avg" not in state:
            state["square_avg"] = np.zeros_like(param)
            if opt.momentum > 0:
                state["momentum_buffer"] = np.zeros_like(param)
            if opt.centered:
                state["grad_avg"] = np.zeros_like(param)
        if opt.weight_decay != 0:
            grad = grad + opt.weight_decay * param
        square_avg = state["square_avg"]
        square_avg *= opt.alpha
        square_avg += (1 - opt.alpha) * grad * grad
        if opt.centered:
            grad_avg = state["grad_avg"]
            grad_avg += (1 - opt.alpha) * (grad - grad_avg)
            avg = np.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = np.sqrt(square_avg)
        avg += opt.eps
        if opt.momentum > 0:
            buf = state.setdefault("momentum_buffer", np.zeros_like(param))
            buf *= opt.momentum
            buf += grad / avg
            param -= opt.lr * buf
        else:
            param -= opt.lr * (grad / avg)


def reference_clip(opt: Optimizer, grads):
    if opt.clipvalue is not None:
        grads = [np.clip(g, -opt.clipvalue, opt.clipvalue) for g in grads]
    if opt.clipnorm is not None:
        norms = np.array([np.linalg.norm(g.reshape(-1)) for g in grads],
                         dtype=grads[0].dtype)
        coef = min(opt.clipnorm / (float(np.linalg.norm(norms)) + 1e-6), 1.0)
        grads = [g * g.dtype.type(coef) for g in grads]
    return grads


def _problem(dtype, size=37, steps=4, seed=0):
    rng = np.random.default_rng(seed)
    params = {"0.weight": rng.standard_normal((size, 3)).astype(dtype),
              "0.bias": rng.standard_normal(size).astype(dtype)}
    grads = [{k: rng.standard_normal(p.shape).astype(dtype) for k, p in params.items()}
             for _ in range(steps)]
    return params, grads


def run_kernels(opt, params, grads):
    params = {k: p.copy() for k, p in params.items()}
    for g in grads:
        opt.step([(k, p, g[k]) for k, p in params.items()])
    return params


def run_reference(opt, params, grads):
    params = {k: p.copy() for k, p in params.items()}
    state = {}
    for g in grads:
        clipped = reference_clip(opt, [g[k] for k in params])
        for (k, p), grad in zip(params.items(), clipped, strict=True):
            reference_update(opt, p, grad, state.setdefault(k, {}))
    return params, state


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("make", CONFIGS, ids=lambda f: repr(f()))
def test_fused_kernels_equal_the_numpy_formulas_bit_for_bit(make, dtype):
    params, grads = _problem(dtype)
    opt = make()
    got = run_kernels(opt, params, grads)
    want, state = run_reference(make(), params, grads)
    for key in params:
        assert got[key].dtype == dtype
        assert got[key].tobytes() == want[key].tobytes(), key
    arrays, _ = opt.get_state()
    expected = {f"{k}/{slot}": v for k, slots in state.items()
                for slot, v in slots.items()}
    assert sorted(arrays) == sorted(expected)
    for key, value in expected.items():
        assert np.asarray(arrays[key]).tobytes() == np.asarray(value).tobytes(), key


def test_nan_and_inf_propagate_as_in_numpy():
    params = {"w": np.array([1.0, -2.0, 3.0, np.inf, 0.5])}
    grads = [{"w": np.array([np.nan, 1.0, -np.inf, 1.0, 0.0])}] * 2
    for make in (lambda: SGD(0.1, momentum=0.9, weight_decay=0.1),
                 lambda: Adam(0.1, amsgrad=True, weight_decay=0.1),
                 lambda: RMSprop(0.1, centered=True, momentum=0.5)):
        with np.errstate(invalid="ignore"):
            got = run_kernels(make(), params, grads)["w"]
            want = run_reference(make(), params, grads)[0]["w"]
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("make", [CONFIGS[4], CONFIGS[6], CONFIGS[10], CONFIGS[12]],
                         ids=["sgd", "adam", "rmsprop", "clip"])
def test_fused_kernels_are_thread_count_invariant(make):
    # Large enough that prange hands each thread a share.
    params, grads = _problem(np.float32, size=20_000, steps=2, seed=3)
    assert_thread_count_invariant(
        lambda: tuple(run_kernels(make(), params, grads).values()), repr(make())
    )


def test_non_contiguous_parameters_are_refused_clearly():
    param = np.ones((4, 4))[:, ::2]
    with pytest.raises(ValueError, match="must be C-contiguous"):
        SGD(0.1).step([("w", param, np.ones((4, 2)))])

