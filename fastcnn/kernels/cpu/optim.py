"""Fused element-wise optimizer updates: SGD, Adam/AdamW (amsgrad), RMSprop, and the
gradient clipping that precedes them.

Each kernel reproduces, element by element, PyTorch's single-tensor rule written as
NumPy formulas (the reference the tests hold it to), operation for operation and
rounding for rounding: hyper-parameters arrive as Python floats computed on the
host as NumPy code would (``1 - beta1``, ``lr / (1 - beta1**t)``, ...) and are cast
through the parameter's dtype once, as NumPy casts a Python scalar that meets a
float32 array; every intermediate is rounded to that dtype. The kernels are compiled
with :func:`cpu_kernel_strict` (no fused multiply-add), so the results are bitwise
those of the NumPy formulas in float64 and float32 alike.

Every array is a flat view of one parameter (``param.reshape(-1)``): the update of
element ``i`` reads and writes element ``i`` only, so the ``prange`` over elements
gives the same bits for any thread count.
"""

import math

from numba import prange

from .._jit import cpu_kernel_strict


@cpu_kernel_strict
def sgd_update(param, grad, momentum_buffer, lr, weight_decay, momentum,
               dampening, nesterov, first_step):
    """One SGD step in place: ``d = g + wd * p``; ``b = d`` on the first step, else
    ``b = momentum * b + (1 - dampening) * d``; ``d = d + momentum * b`` (Nesterov)
    or ``d = b``; ``p = p - lr * d``.

    ``momentum_buffer`` is read and written only where ``momentum != 0`` (pass any
    array of the right size otherwise); weight decay applies only where
    ``weight_decay != 0``, as in the NumPy rule.

    Shape: param, grad, momentum_buffer (M,) (flat views). Parallel over ``M``.
    """
    t = param.dtype.type
    use_decay = weight_decay != 0
    use_momentum = momentum != 0
    lr_t, decay_t, momentum_t = t(lr), t(weight_decay), t(momentum)
    keep_t = t(1 - dampening)
    for i in prange(param.shape[0]):
        p = param[i]
        d = grad[i]
        if use_decay:
            d = d + decay_t * p
        if use_momentum:
            if first_step:
                b = d
            else:
                b = momentum_buffer[i] * momentum_t
                b = b + keep_t * d
            momentum_buffer[i] = b
            d = d + momentum_t * b if nesterov else b
        param[i] = p - lr_t * d


@cpu_kernel_strict
def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2,
                step_size, bias_correction2_sqrt, eps, weight_decay, decoupled,
                amsgrad):
    """One Adam/AdamW step in place (PyTorch's rule at step ``t``).

    Weight decay (where ``weight_decay != 0``): ``p = p * (1 - lr * wd)`` when
    ``decoupled`` (AdamW), else ``g = g + wd * p``. Then ``m = m + (1 - b1) *
    (g - m)``; ``v = v * b2 + (1 - b2) * g * g``; with ``amsgrad`` ``vmax =
    maximum(vmax, v)`` (NaN propagates) replaces ``v`` below; ``p = p - step_size *
    (m / (sqrt(v) / bias_correction2_sqrt + eps))``, where the host passes
    ``step_size = lr / (1 - b1**t)`` and ``bias_correction2_sqrt = sqrt(1 - b2**t)``.
    ``max_exp_avg_sq`` is touched only with ``amsgrad``.

    Shape: param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (M,) (flat views).
    Parallel over ``M``.
    """
    t = param.dtype.type
    use_decay = weight_decay != 0
    decay_t = t(weight_decay)
    shrink_t = t(1 - lr * weight_decay)
    keep1_t, beta2_t, keep2_t = t(1 - beta1), t(beta2), t(1 - beta2)
    step_t, bc2_t, eps_t = t(step_size), t(bias_correction2_sqrt), t(eps)
    for i in prange(param.shape[0]):
        p = param[i]
        g = grad[i]
        if use_decay:
            if decoupled:
                p = p * shrink_t
            else:
                g = g + decay_t * p
        m = exp_avg[i]
        m = m + keep1_t * (g - m)
        exp_avg[i] = m
        v = exp_avg_sq[i] * beta2_t
        v = v + keep2_t * g * g
        exp_avg_sq[i] = v
        if amsgrad:
            vmax = max_exp_avg_sq[i]
            if not (vmax >= v or vmax != vmax):
                vmax = v
            max_exp_avg_sq[i] = vmax
            v = vmax
        denom = math.sqrt(v) / bc2_t + eps_t
        param[i] = p - step_t * (m / denom)


@cpu_kernel_strict
def rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha,
                   eps, weight_decay, momentum, centered):
    """One RMSprop step in place (PyTorch's rule, ``eps`` outside the root).

    ``g = g + wd * p`` (where ``weight_decay != 0``); ``s = s * alpha + (1 - alpha)
    * g * g``; centered: ``a = a + (1 - alpha) * (g - a)`` and ``avg = sqrt(s - a *
    a) + eps``, else ``avg = sqrt(s) + eps``; with ``momentum > 0``: ``b = b *
    momentum + g / avg`` and ``p = p - lr * b``, else ``p = p - lr * (g / avg)``.
    ``grad_avg`` is touched only when ``centered``, ``momentum_buffer`` only when
    ``momentum > 0``.

    Shape: param, grad, square_avg, grad_avg, momentum_buffer (M,) (flat views).
    Parallel over ``M``.
    """
    t = param.dtype.type
    use_decay = weight_decay != 0
    use_momentum = momentum > 0
    lr_t, alpha_t, keep_t, eps_t = t(lr), t(alpha), t(1 - alpha), t(eps)
    decay_t, momentum_t = t(weight_decay), t(momentum)
    for i in prange(param.shape[0]):
        p = param[i]
        g = grad[i]
        if use_decay:
            g = g + decay_t * p
        s = square_avg[i] * alpha_t
        s = s + keep_t * g * g
        square_avg[i] = s
        if centered:
            a = grad_avg[i]
            a = a + keep_t * (g - a)
            grad_avg[i] = a
            avg = math.sqrt(s - a * a)
        else:
            avg = math.sqrt(s)
        avg = avg + eps_t
        if use_momentum:
            b = momentum_buffer[i] * momentum_t
            b = b + g / avg
            momentum_buffer[i] = b
            param[i] = p - lr_t * b
        else:
            param[i] = p - lr_t * (g / avg)


@cpu_kernel_strict
def clip_by_value(grad, out, limit):
    """``out = clip(grad, -limit, limit)`` (``np.clip``; NaN passes through).

    Shape: grad, out (M,) (flat views). Parallel over ``M``.
    """
    t = grad.dtype.type
    high = t(limit)
    low = -high
    for i in prange(grad.shape[0]):
        g = grad[i]
        if g < low:
            g = low
        elif g > high:
            g = high
        out[i] = g


@cpu_kernel_strict
def scale_by(grad, out, factor):
    """``out = grad * factor`` with ``factor`` cast to the gradient's dtype (the
    ``clipnorm`` rescaling).

    Shape: grad, out (M,) (flat views). Parallel over ``M``.
    """
    factor_t = grad.dtype.type(factor)
    for i in prange(grad.shape[0]):
        out[i] = grad[i] * factor_t
