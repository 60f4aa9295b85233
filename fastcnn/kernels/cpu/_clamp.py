"""The CPU side of :mod:`fastcnn.kernels._clamp`: the store a kernel's epilogue
makes."""

from .._jit import cpu_helper


@cpu_helper
def _clamp(v, lo, hi):
    """``v`` limited to ``[lo, hi]``: ``lo`` below it, ``hi`` above it, ``v`` itself
    in between and when NaN (both comparisons false), as ``relu`` and ``relu6``
    give it. With ``(-inf, inf)`` every value, -0.0 and NaN included, is kept."""
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v
