"""Slow, obviously correct NumPy references for every op.

Each reference loops over outputs and reads the definition off the page: no tricks,
no vectorised cleverness, float64 accumulation. Tests compare the kernels with these.
Paddings are given as (before, after) pairs so the asymmetric ``"same"`` case is
covered too.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------- conv2d


def conv2d(x, w, b, stride, pad_h, pad_w, dilation, groups):
    """y[n, co, i, j] = b[co] + sum_{ci in group, kh, kw}
    w[co, ci, kh, kw] * xpad[n, ci, i*sh + kh*dh, j*sw + kw*dw]."""
    n_batch, c_in, h, wd = x.shape
    c_out, cin_g, kh_size, kw_size = w.shape
    sh, sw = stride
    dh, dw = dilation
    xp = np.pad(x, ((0, 0), (0, 0), pad_h, pad_w)).astype(np.float64)
    oh_size = (xp.shape[2] - dh * (kh_size - 1) - 1) // sh + 1
    ow_size = (xp.shape[3] - dw * (kw_size - 1) - 1) // sw + 1
    cout_g = c_out // groups
    y = np.zeros((n_batch, c_out, oh_size, ow_size))
    for n in range(n_batch):
        for co in range(c_out):
            g = co // cout_g
            for i in range(oh_size):
                for j in range(ow_size):
                    total = 0.0 if b is None else float(b[co])
                    for cil in range(cin_g):
                        for kh in range(kh_size):
                            for kw in range(kw_size):
                                r, c = i * sh + kh * dh, j * sw + kw * dw
                                ci = g * cin_g + cil
                                total += float(w[co, cil, kh, kw]) * xp[n, ci, r, c]
                    y[n, co, i, j] = total
    return y


def conv2d_backward(dy, x, w, stride, pad_h, pad_w, dilation, groups):
    """Scatter each output's gradient back through the taps that produced it."""
    n_batch, c_in, h, wd = x.shape
    c_out, cin_g, kh_size, kw_size = w.shape
    sh, sw = stride
    dh, dw = dilation
    xp = np.pad(x, ((0, 0), (0, 0), pad_h, pad_w)).astype(np.float64)
    dxp = np.zeros_like(xp)
    dwt = np.zeros(w.shape)
    cout_g = c_out // groups
    for n in range(n_batch):
        for co in range(c_out):
            g = co // cout_g
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    gval = float(dy[n, co, i, j])
                    for cil in range(cin_g):
                        for kh in range(kh_size):
                            for kw in range(kw_size):
                                r, c = i * sh + kh * dh, j * sw + kw * dw
                                ci = g * cin_g + cil
                                dxp[n, ci, r, c] += gval * float(w[co, cil, kh, kw])
                                dwt[co, cil, kh, kw] += gval * xp[n, ci, r, c]
    dx = dxp[:, :, pad_h[0] : pad_h[0] + h, pad_w[0] : pad_w[0] + wd]
    db = dy.astype(np.float64).sum(axis=(0, 2, 3))
    return dx, dwt, db
