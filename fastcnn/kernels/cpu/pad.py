"""Constant padding and cropping of the last two axes (``F.pad``, ``ZeroPadding2D``).

One kernel does both directions: ``y`` is ``x`` placed at row ``top`` and column
``left`` of a canvas filled with ``value``. Positive offsets pad, negative ones crop
(the part of ``x`` outside ``y`` is dropped), and the gradient of either is the same
kernel with the offsets negated and ``value`` 0: ``dx`` reads ``dy`` where ``x``
landed in ``y`` and is 0 where ``x`` was cropped away.
"""

import numpy as np
from numba import prange

from .._jit import cpu_kernel


@cpu_kernel
def pad_constant(x, y, top, left, value):
    """``y[b, i, j] = x[b, i - top, j - left]`` where that lies inside ``x``, else
    ``value`` (of y's dtype).

    Shape: x (B, H, W), y (B, Ho, Wo); ``top`` and ``left`` int64 of any sign.
    Parallel over ``B * Ho``: every row of y is written by one iteration.
    """
    h, w = x.shape[1], x.shape[2]
    rows, wo = y.shape[1], y.shape[2]
    # Output columns [lo, hi) read x; the others are value.
    lo = min(max(left, 0), wo)
    hi = max(min(w + left, wo), lo)
    for task in prange(y.shape[0] * rows):
        t = np.int64(task)
        b = t // rows
        i = t % rows
        r = i - top
        out = y[b, i]
        if 0 <= r < h:
            # Slices, not x[j - left]: a signed index costs a wraparound check
            # that keeps the copy from vectorising.
            src = x[b, r, lo - left:hi - left]
            mid = out[lo:hi]
            for j in range(lo):
                out[j] = value
            for j in range(hi - lo):
                mid[j] = src[j]
            for j in range(hi, wo):
                out[j] = value
        else:
            for j in range(wo):
                out[j] = value
