"""Inverted dropout with a counter-based mask.

The keep/drop decision for flat element ``i`` is a pure function of ``(seed, i)``:
``u = uniform01(seed, i)`` and the element is kept where ``u >= p``. ``uniform01`` is
output number ``i`` of a SplitMix64 generator started at state ``seed`` (Steele, Lea
and Flood 2014), so no generator state is carried between elements: the mask is the
same for any thread count, for float32 and float64, for forward and backward, and a
CUDA twin that repeats the same uint64 arithmetic reproduces it bit for bit.

Every integer below is uint64 (module-level ``np.uint64`` constants, an ``np.uint64``
seed and index): Numba would turn a mix of uint64 and int64 into float64, which
would silently break the hash. Multiplication wraps modulo 2**64, as SplitMix64
needs.
"""

import numpy as np
from numba import prange

from .._jit import cpu_helper, cpu_kernel

#: 2**64 / golden ratio, SplitMix64's state increment.
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ONE = np.uint64(1)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
#: 2**-53: the top 53 bits of a uint64, scaled, are a double in [0, 1) exactly.
_INV_2_53 = 1.0 / 9007199254740992.0


@cpu_helper
def splitmix64(state):
    """SplitMix64's output function (a bijective mix) of a uint64 ``state``."""
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@cpu_helper
def uniform01(seed, index):
    """Output ``index`` (0-based) of SplitMix64 seeded with ``seed``, as a float64 in
    ``[0, 1)``. Both arguments are uint64."""
    z = splitmix64(seed + (index + _ONE) * GOLDEN)
    return np.float64(z >> _S11) * _INV_2_53


@cpu_kernel
def dropout_apply(x, y, p, scale, seed):
    """``y[i] = x[i] * (scale if uniform01(seed, i) >= p else 0)``.

    Used for the forward pass (``x`` the input) and the backward pass (``x`` the
    upstream gradient): the gradient of inverted dropout is the same masked scaling.
    Dropped elements are multiplied by zero rather than set to zero, so NaN and inf
    propagate as in PyTorch. ``p`` is a float64, ``scale`` has ``y``'s dtype and
    ``seed`` is a uint64.

    Shape: x (M,), y (M,) (flat views). Parallel over ``M``.
    """
    zero = y.dtype.type(0)
    for i in prange(x.shape[0]):
        keep = uniform01(seed, np.uint64(i)) >= p
        y[i] = x[i] * (scale if keep else zero)


@cpu_kernel
def dropout2d_apply(x, y, p, scale, seed):
    """``y[r, :] = x[r, :] * (scale if uniform01(seed, r) >= p else 0)``: channel
    dropout (``dropout2d``), whole rows kept or dropped.

    Row ``r`` is channel ``c`` of sample ``n`` (``r = n * C + c``), so its mask is
    the one :func:`dropout_apply` gives flat element ``r`` of an ``(N, C)`` array.
    Forward and backward alike (as :func:`dropout_apply`).

    Shape: x (R, S), y (R, S). Parallel over ``R``.
    """
    zero = y.dtype.type(0)
    for r in prange(x.shape[0]):
        factor = scale if uniform01(seed, np.uint64(r)) >= p else zero
        src = x[r]
        out = y[r]
        for s in range(x.shape[1]):
            out[s] = src[s] * factor
