"""CUDA twins of :mod:`fastcnn.kernels.cpu.optim`: the fused optimizer updates and
gradient clipping, one thread per element.

The arithmetic is the CPU kernels', operation for operation, with the
hyper-parameters cast through the parameter's dtype. On the simulator the results
are the CPU's bit for bit; on a GPU NVVM may contract ``a * b + c`` into one fused
multiply-add (it does by default), so they agree to one rounding per operation.
Parameters, gradients and optimizer state stay where they are: launched with device
arrays, nothing crosses the bus.
"""

import math

from numba import cuda

from .._jit import cuda_kernel
from . import _launch

#: Threads per block (patched small by tests).
THREADS_PER_BLOCK = 256


@cuda_kernel
def _sgd_update(param, grad, momentum_buffer, lr, weight_decay, momentum,
                dampening, nesterov, first_step):
    i = cuda.grid(1)
    if i < param.shape[0]:
        t = param.dtype.type
        p = param[i]
        d = grad[i]
        if weight_decay != 0:
            d = d + t(weight_decay) * p
        if momentum != 0:
            momentum_t = t(momentum)
            if first_step:
                b = d
            else:
                b = momentum_buffer[i] * momentum_t
                b = b + t(1 - dampening) * d
            momentum_buffer[i] = b
            d = d + momentum_t * b if nesterov else b
        param[i] = p - t(lr) * d


def sgd_update(param, grad, momentum_buffer, lr, weight_decay, momentum, dampening,
               nesterov, first_step):
    """One SGD step in place (see the CPU kernel).

    Shape: param, grad, momentum_buffer (M,) (flat views). Grid: one thread per
    element.
    """
    _launch.run_threads(_sgd_update, param.shape[0], THREADS_PER_BLOCK,
                        (param, grad, momentum_buffer, lr, weight_decay, momentum,
                         dampening, nesterov, first_step), out=(0, 2))


@cuda_kernel
def _adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2,
                 step_size, bias_correction2_sqrt, eps, weight_decay, decoupled,
                 amsgrad):
    i = cuda.grid(1)
    if i < param.shape[0]:
        t = param.dtype.type
        p = param[i]
        g = grad[i]
        if weight_decay != 0:
            if decoupled:
                p = p * t(1 - lr * weight_decay)
            else:
                g = g + t(weight_decay) * p
        m = exp_avg[i]
        m = m + t(1 - beta1) * (g - m)
        exp_avg[i] = m
        v = exp_avg_sq[i] * t(beta2)
        v = v + t(1 - beta2) * g * g
        exp_avg_sq[i] = v
        if amsgrad:
            vmax = max_exp_avg_sq[i]
            if not (vmax >= v or vmax != vmax):
                vmax = v
            max_exp_avg_sq[i] = vmax
            v = vmax
        denom = math.sqrt(v) / t(bias_correction2_sqrt) + t(eps)
        param[i] = p - t(step_size) * (m / denom)


def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2,
                step_size, bias_correction2_sqrt, eps, weight_decay, decoupled,
                amsgrad):
    """One Adam/AdamW step in place (see the CPU kernel).

    Shape: param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (M,) (flat views).
    Grid: one thread per element.
    """
    _launch.run_threads(_adam_update, param.shape[0], THREADS_PER_BLOCK,
                        (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1,
                         beta2, step_size, bias_correction2_sqrt, eps, weight_decay,
                         decoupled, amsgrad), out=(0, 2, 3, 4))


@cuda_kernel
def _rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha,
                    eps, weight_decay, momentum, centered):
    i = cuda.grid(1)
    if i < param.shape[0]:
        t = param.dtype.type
        keep_t = t(1 - alpha)
        p = param[i]
        g = grad[i]
        if weight_decay != 0:
            g = g + t(weight_decay) * p
        s = square_avg[i] * t(alpha)
        s = s + keep_t * g * g
        square_avg[i] = s
        if centered:
            a = grad_avg[i]
            a = a + keep_t * (g - a)
            grad_avg[i] = a
            avg = math.sqrt(s - a * a)
        else:
            avg = math.sqrt(s)
        avg = avg + t(eps)
        if momentum > 0:
            b = momentum_buffer[i] * t(momentum)
            b = b + g / avg
            momentum_buffer[i] = b
            param[i] = p - t(lr) * b
        else:
            param[i] = p - t(lr) * (g / avg)


def rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha,
                   eps, weight_decay, momentum, centered):
    """One RMSprop step in place (see the CPU kernel).

    Shape: param, grad, square_avg, grad_avg, momentum_buffer (M,) (flat views).
    Grid: one thread per element.
    """
    _launch.run_threads(_rmsprop_update, param.shape[0], THREADS_PER_BLOCK,
                        (param, grad, square_avg, grad_avg, momentum_buffer, lr,
                         alpha, eps, weight_decay, momentum, centered),
                        out=(0, 2, 3, 4))


@cuda_kernel
def _clip_by_value(grad, out, limit):
    i = cuda.grid(1)
    if i < grad.shape[0]:
        high = grad.dtype.type(limit)
        low = -high
        g = grad[i]
        if g < low:
            g = low
        elif g > high:
            g = high
        out[i] = g


def clip_by_value(grad, out, limit):
    """``out = clip(grad, -limit, limit)`` (NaN passes through).

    Shape: grad, out (M,) (flat views). Grid: one thread per element.
    """
    _launch.run_threads(_clip_by_value, grad.shape[0], THREADS_PER_BLOCK,
                        (grad, out, limit), out=(1,))


@cuda_kernel
def _scale_by(grad, out, factor):
    i = cuda.grid(1)
    if i < grad.shape[0]:
        out[i] = grad[i] * grad.dtype.type(factor)


def scale_by(grad, out, factor):
    """``out = grad * factor`` with ``factor`` cast to the gradient's dtype.

    Shape: grad, out (M,) (flat views). Grid: one thread per element.
    """
    _launch.run_threads(_scale_by, grad.shape[0], THREADS_PER_BLOCK,
                        (grad, out, factor), out=(1,))
