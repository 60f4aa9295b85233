"""Blocked matrix products of the convolution kernels: ``dst += coef @ src``
on C-contiguous float rows, four output rows at a time, the loop over columns
innermost and contiguous so that LLVM vectorises it."""

from .._jit import cpu_helper


@cpu_helper
def _gemm_4(dst, d0, coef, c0, src, n_rows, count):
    """``dst[d0 + i, :count] += coef[c0 + i, :n_rows] @ src[:n_rows, :count]`` for
    ``i < 4``: four output rows by four source rows per pass (sixteen multiply-adds
    per four loads), rows sliced one at a time so the loop over columns vectorises.
    """
    o0 = dst[d0, :count]
    o1 = dst[d0 + 1, :count]
    o2 = dst[d0 + 2, :count]
    o3 = dst[d0 + 3, :count]
    w0, w1, w2, w3 = coef[c0], coef[c0 + 1], coef[c0 + 2], coef[c0 + 3]
    k = 0
    while k + 4 <= n_rows:
        a0, a1, a2, a3 = w0[k], w0[k + 1], w0[k + 2], w0[k + 3]
        b0, b1, b2, b3 = w1[k], w1[k + 1], w1[k + 2], w1[k + 3]
        c0_, c1, c2, c3 = w2[k], w2[k + 1], w2[k + 2], w2[k + 3]
        e0, e1, e2, e3 = w3[k], w3[k + 1], w3[k + 2], w3[k + 3]
        r0 = src[k, :count]
        r1 = src[k + 1, :count]
        r2 = src[k + 2, :count]
        r3 = src[k + 3, :count]
        for j in range(count):
            x0, x1, x2, x3 = r0[j], r1[j], r2[j], r3[j]
            o0[j] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
            o1[j] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
            o2[j] += c0_ * x0 + c1 * x1 + c2 * x2 + c3 * x3
            o3[j] += e0 * x0 + e1 * x1 + e2 * x2 + e3 * x3
        k += 4
    while k < n_rows:
        a0, b0, c0_, e0 = w0[k], w1[k], w2[k], w3[k]
        r0 = src[k, :count]
        for j in range(count):
            x0 = r0[j]
            o0[j] += a0 * x0
            o1[j] += b0 * x0
            o2[j] += c0_ * x0
            o3[j] += e0 * x0
        k += 1


@cpu_helper
def _gemm_1(dst, d0, coef, c0, src, n_rows, count):
    """:func:`_gemm_4` for one output row (the last ``C_out % 4``)."""
    o0 = dst[d0, :count]
    w0 = coef[c0]
    for k in range(n_rows):
        a0 = w0[k]
        r0 = src[k, :count]
        for j in range(count):
            o0[j] += a0 * r0[j]
