"""Dot-product helpers of the weight gradients: sums over output positions (or
tiles) of one gradient row times one input row, vectorised by reassociation."""

import numpy as np

from .._jit import cpu_helper, cpu_reduction


@cpu_reduction
def _dots_2x4(d0, d1, r0, r1, r2, r3, count):
    """The eight dot products of ``d0, d1`` with ``r0 .. r3`` over ``count`` elements,
    in one pass: each loaded element serves two or four multiply-adds, and the eight
    sums stay in vector registers (reassociation lets LLVM split each over lanes)."""
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = d0.dtype.type(0)
    for j in range(count):
        g0, g1 = d0[j], d1[j]
        v0, v1, v2, v3 = r0[j], r1[j], r2[j], r3[j]
        a00 += g0 * v0
        a01 += g0 * v1
        a02 += g0 * v2
        a03 += g0 * v3
        a10 += g1 * v0
        a11 += g1 * v1
        a12 += g1 * v2
        a13 += g1 * v3
    return a00, a01, a02, a03, a10, a11, a12, a13


@cpu_reduction
def _dots_4x4(d0, d1, d2, d3, r0, r1, r2, r3, count):
    """The sixteen dot products of ``d0 .. d3`` with ``r0 .. r3`` in one pass (see
    :func:`_dots_2x4`): eight loads serve sixteen multiply-adds."""
    z = d0.dtype.type(0)
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = z
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = z
    for j in range(count):
        g0, g1, g2, g3 = d0[j], d1[j], d2[j], d3[j]
        v0, v1, v2, v3 = r0[j], r1[j], r2[j], r3[j]
        a00 += g0 * v0
        a01 += g0 * v1
        a02 += g0 * v2
        a03 += g0 * v3
        a10 += g1 * v0
        a11 += g1 * v1
        a12 += g1 * v2
        a13 += g1 * v3
        a20 += g2 * v0
        a21 += g2 * v1
        a22 += g2 * v2
        a23 += g2 * v3
        a30 += g3 * v0
        a31 += g3 * v1
        a32 += g3 * v2
        a33 += g3 * v3
    return (a00, a01, a02, a03, a10, a11, a12, a13,
            a20, a21, a22, a23, a30, a31, a32, a33)


@cpu_reduction
def _dot(d0, r0, count):
    """``sum(d0[:count] * r0[:count])``, vectorised (see :func:`_dots_2x4`)."""
    acc = d0.dtype.type(0)
    for j in range(count):
        acc += d0[j] * r0[j]
    return acc


@cpu_helper
def _window(src, row_of, off_of, k, count):
    """Row ``k`` of the rows :func:`_add_dots` multiplies: ``src[row_of[k],
    off_of[k]:][:count]`` (a 1-D slice of a C-contiguous array: Numba knows it
    contiguous, so the dots over it vectorise)."""
    s = off_of[k]
    return src[row_of[k], s : s + count]


@cpu_helper
def _add_dots(part, co, co_stop, grad, g_off, g_start, src, row_of, off_of, n_rows,
              k0, count):
    """``part[c, k0 + k] += dot(grad[c - g_off, g_start:g_start + count], R[k])``
    for every ``c`` in ``[co, co_stop)`` and ``k < n_rows``, where row ``k`` of ``R``
    is ``src[row_of[k], off_of[k]:][:count]``: a patch's rows (``row_of[k] = k``,
    ``off_of[k] = 0``), or shifted windows of band rows (the rows weight
    gradient). Four output channels by four rows at a time, then two by four,
    then one."""
    g_stop = g_start + count
    while co + 4 <= co_stop:
        d0 = grad[co - g_off, g_start:g_stop]
        d1 = grad[co + 1 - g_off, g_start:g_stop]
        d2 = grad[co + 2 - g_off, g_start:g_stop]
        d3 = grad[co + 3 - g_off, g_start:g_stop]
        k = 0
        while k + 4 <= n_rows:
            sums = _dots_4x4(d0, d1, d2, d3, _window(src, row_of, off_of, k, count),
                             _window(src, row_of, off_of, k + 1, count),
                             _window(src, row_of, off_of, k + 2, count),
                             _window(src, row_of, off_of, k + 3, count), count)
            q = k0 + k
            for i in range(4):
                for t in range(4):
                    part[co + i, q + t] += sums[4 * i + t]
            k += 4
        while k < n_rows:
            row = _window(src, row_of, off_of, k, count)
            part[co, k0 + k] += _dot(d0, row, count)
            part[co + 1, k0 + k] += _dot(d1, row, count)
            part[co + 2, k0 + k] += _dot(d2, row, count)
            part[co + 3, k0 + k] += _dot(d3, row, count)
            k += 1
        co += 4
    while co + 2 <= co_stop:
        d0 = grad[co - g_off, g_start:g_stop]
        d1 = grad[co + 1 - g_off, g_start:g_stop]
        k = 0
        while k + 4 <= n_rows:
            a00, a01, a02, a03, a10, a11, a12, a13 = _dots_2x4(
                d0, d1, _window(src, row_of, off_of, k, count),
                _window(src, row_of, off_of, k + 1, count),
                _window(src, row_of, off_of, k + 2, count),
                _window(src, row_of, off_of, k + 3, count), count)
            q = k0 + k
            part[co, q] += a00
            part[co, q + 1] += a01
            part[co, q + 2] += a02
            part[co, q + 3] += a03
            part[co + 1, q] += a10
            part[co + 1, q + 1] += a11
            part[co + 1, q + 2] += a12
            part[co + 1, q + 3] += a13
            k += 4
        while k < n_rows:
            row = _window(src, row_of, off_of, k, count)
            part[co, k0 + k] += _dot(d0, row, count)
            part[co + 1, k0 + k] += _dot(d1, row, count)
            k += 1
        co += 2
    if co < co_stop:
        d0 = grad[co - g_off, g_start:g_stop]
        for k in range(n_rows):
            part[co, k0 + k] += _dot(d0, _window(src, row_of, off_of, k, count), count)


@cpu_reduction
def _dot64(d0, r0):
    """``sum(d0 * r0)`` of two rows of one length, each product and the sum in
    float64, vectorised (see :func:`_dots_2x4`): the order is fixed by the machine
    code and the length, never by the thread count."""
    acc = 0.0
    for j in range(d0.shape[0]):
        acc += np.float64(d0[j]) * np.float64(r0[j])
    return acc
