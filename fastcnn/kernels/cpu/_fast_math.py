"""exp and erfc in plain arithmetic, so that loops calling them vectorise.

Numba compiles ``math.exp`` and ``math.erfc`` to calls into the C library, one
element at a time (no vector math library is linked: ``numba -s`` reports SVML
off), so an element-wise kernel built on them runs scalar: exact GELU took a
quarter of a ConvNeXt training step. The helpers here are a polynomial and a
power of two made from its bits instead, which LLVM vectorises.

They compute in float64 and serve the float32 kernels of GELU, sigmoid and SiLU
(the float64 kernels keep the C library's functions): rounded to float32, the
results are within a few units in the last place of the exact values
(docs/NUMERICS.md states the bounds; tests/ops/test_fast_math.py checks them).
"""

import math

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from .._jit import cpu_helper

_LOG2E = 1.4426950408889634
#: ln 2 split in two (Cody and Waite): ``k * _LN2_HI`` is exact for the ``k`` here.
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
#: 1 / n! for n = 2 .. 12: the Taylor series of exp on ``|r| <= ln(2) / 2``, whose
#: truncation error there is below 2e-16 relative.
_INV_FACT = tuple(1.0 / math.factorial(n) for n in range(2, 13))


@cpu_helper
def _exp_nonpositive(x):
    """``exp(x)`` for float64 ``x <= 0`` (and NaN), to about 1e-15 relative:
    ``2**k * exp(r)`` with ``r = x - k ln 2`` in ``[-ln2/2, ln2/2]``, ``exp(r)`` by
    its Taylor series. Arguments below -708 give 0 (exact: -inf; the others are
    below 3e-308, far under float32's range), NaN gives NaN (``k`` of a
    NaN is forced to 0), and positive ones are taken as 0."""
    tiny = x < -708.0
    x = -708.0 if tiny else x
    x = 0.0 if x > 0.0 else x
    k = math.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    c = _INV_FACT
    p = c[10]
    p = p * r + c[9]
    p = p * r + c[8]
    p = p * r + c[7]
    p = p * r + c[6]
    p = p * r + c[5]
    p = p * r + c[4]
    p = p * r + c[3]
    p = p * r + c[2]
    p = p * r + c[1]
    p = p * r + c[0]
    p = p * r + 1.0
    p = p * r + 1.0
    k = 0.0 if k != k else k  # NaN: any scale; p carries the NaN
    e = p * _pow2(k)
    return 0.0 if tiny else e


@intrinsic
def _pow2(typingctx, k):
    """``2.0**k`` for a float64 holding an integer ``k`` in ``[-1022, 1023]``
    (the normal numbers; no check), from its bits: ``k + 1023`` shifted into the
    exponent field. The same value as a table lookup, which LLVM made a gather:
    float32 GELU's forward 1.11-1.25 -> 0.79-0.83 ms on 2**20 elements (2
    threads), the same bits."""
    if k != types.float64:
        return None

    def codegen(context, builder, signature, args):
        int64 = ir.IntType(64)
        biased = builder.add(builder.fptosi(args[0], int64), ir.Constant(int64, 1023))
        return builder.bitcast(builder.shl(biased, ir.Constant(int64, 52)),
                               ir.DoubleType())

    return types.float64(types.float64), codegen


@cpu_helper
def _exp_small(p):
    """``exp(p)`` for ``p`` in ``[-1.3, 0]`` without a table: ``exp(p/8)`` by its
    Taylor series to degree 7 (truncation below 2e-11), squared three times
    (about 1e-10 relative in all: ample for float32 results)."""
    r = p * 0.125
    q = 1.0 / 5040.0
    q = q * r + 1.0 / 720.0
    q = q * r + 1.0 / 120.0
    q = q * r + 1.0 / 24.0
    q = q * r + 1.0 / 6.0
    q = q * r + 0.5
    q = q * r + 1.0
    q = q * r + 1.0
    q = q * q
    q = q * q
    return q * q


@cpu_helper
def _erfc_from_gauss(z, gauss):
    """``erfc(z)`` for float64 ``z``, given ``gauss = exp(-z*z)`` (which the
    caller may need too: one exponential serves both; two in one loop kept LLVM
    from vectorising it), to about 1.2e-7 relative everywhere (Press et al.,
    Numerical Recipes, ``erfcc``: a Chebyshev fit of ``log(erfc(z) / t) + z*z``
    in ``t = 1 / (1 + z/2)``), so the tail ``erfc(z) -> 0`` keeps its relative
    precision; ``erfc(-z) = 2 - erfc(z)``. NaN gives NaN, +-inf give 0 and 2."""
    a = abs(z)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = 0.17087277
    poly = poly * t - 0.82215223
    poly = poly * t + 1.48851587
    poly = poly * t - 1.13520398
    poly = poly * t + 0.27886807
    poly = poly * t - 0.18628806
    poly = poly * t + 0.09678418
    poly = poly * t + 0.37409196
    poly = poly * t + 1.00002368
    poly = poly * t - 1.26551223
    tail = t * gauss * _exp_small(poly)
    return 2.0 - tail if z < 0.0 else tail
