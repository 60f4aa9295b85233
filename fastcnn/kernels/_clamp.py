"""Activations that the convolution and dense kernels apply as they store their
output, instead of in a pass of their own.

ReLU and ReLU6 limit a value to an interval, and their gradients can be read from
the output as well as from the input (``y <= 0`` exactly where ``x <= 0``, ``y >= 6``
exactly where ``x >= 6``, NaN where NaN), so a layer that applies them in its
kernel keeps no pre-activation: ``relu_backward(dy, y)`` is bitwise
``relu_backward(dy, x)``. Other activations need ``x`` and run as a layer of
their own after the kernel.
"""

import functools

import numpy as np

#: The activations a kernel can apply, as the interval they limit values to.
CLAMPS = {"relu": (0.0, np.inf), "relu6": (0.0, 6.0)}


@functools.lru_cache(maxsize=64)
def bounds(clamp, dtype) -> tuple:
    """``(lo, hi)`` in ``dtype`` for a kernel's ``clamp`` argument: an interval, or
    None for none (``(-inf, inf)``, which leaves every value, NaN included, as it
    is). Cached: the kernels' Python side calls it on every call."""
    lo, hi = (-np.inf, np.inf) if clamp is None else clamp
    kind = np.dtype(dtype).type
    return kind(lo), kind(hi)


def clamp_host(y, clamp):
    """``y`` limited to ``clamp``'s interval as the kernels do it (NaN kept), for the
    few outputs computed on the host (a layer with no inputs); ``y`` itself for
    None."""
    if clamp is None:
        return y
    lo, hi = bounds(clamp, y.dtype)
    return np.where(y < lo, lo, np.where(y > hi, hi, y)).astype(y.dtype)


@functools.lru_cache(maxsize=64)
def gate_bounds(clamp, dtype) -> tuple:
    """``(lo, hi)`` in ``dtype`` for a kernel's gradient ``gate``: the backward of
    the ReLU or ReLU6 whose interval ``clamp`` is, applied as the kernel stores a
    gradient (``max_pool2d_backward_gated``). A gradient is zeroed where its input
    ``v <= lo`` or ``v >= hi``; an infinite bound becomes NaN, which stops
    nothing (comparisons with NaN are false), so ``(0, nan)`` is
    ``relu_backward`` (``+inf`` passes) and ``(0, 6)`` is ``relu6_backward``, NaN
    inputs passing in both, as there. None: no gate, ``(nan, nan)``."""
    lo, hi = (-np.inf, np.inf) if clamp is None else clamp
    kind = np.dtype(dtype).type
    return tuple(kind(np.nan if np.isinf(v) else v) for v in (lo, hi))
