"""2-D convolution (cross-correlation, as in PyTorch) and its three gradients.

Shared conventions
------------------
- ``xp`` is the input already zero-padded by the caller, shape
  ``(N, C_in, Hp, Wp)``; kernels never see padding, so every index is non-negative.
- ``w`` has PyTorch's layout ``(C_out, C_in // groups, KH, KW)``.
- ``y`` / ``dy`` have shape ``(N, C_out, OH, OW)`` with
  ``OH = (Hp - dh * (KH - 1) - 1) // sh + 1`` (same for width).
- Output channel ``co`` reads input channels ``g * cin_g ... (g + 1) * cin_g - 1``
  where ``g = co // (C_out // groups)``.

Each kernel's ``prange`` runs over an axis whose output slices are disjoint, and every
sum is taken in a fixed serial order inside one iteration, so results are bitwise the
same for any thread count.
"""

from numba import prange

from .._jit import cpu_kernel


@cpu_kernel
def conv2d_forward(xp, w, b, y, sh, sw, dh, dw, groups):
    """``y = conv(xp, w) + b``.

    Shape: xp (N, C_in, Hp, Wp), w (C_out, C_in/groups, KH, KW), b (C_out,),
    y (N, C_out, OH, OW). Parallel over ``N * C_out`` (one output plane each).
    """
    n_batch, c_out, oh_size, ow_size = y.shape
    cin_g, kh_size, kw_size = w.shape[1], w.shape[2], w.shape[3]
    cout_g = c_out // groups
    for task in prange(n_batch * c_out):
        n = task // c_out
        co = task % c_out
        ci0 = (co // cout_g) * cin_g
        plane = y[n, co]
        plane[:, :] = b[co]
        for cil in range(cin_g):
            xc = xp[n, ci0 + cil]
            for kh in range(kh_size):
                for kw in range(kw_size):
                    wv = w[co, cil, kh, kw]
                    for oh in range(oh_size):
                        src = xc[oh * sh + kh * dh, kw * dw :]
                        dst = plane[oh]
                        for ow in range(ow_size):
                            dst[ow] += wv * src[ow * sw]


@cpu_kernel
def conv2d_backward_input(dy, w, dxp, sh, sw, dh, dw, groups):
    """Gradient with respect to the padded input: ``dxp`` is overwritten.

    Shape: dy (N, C_out, OH, OW), w (C_out, C_in/groups, KH, KW),
    dxp (N, C_in, Hp, Wp). Parallel over ``N * C_in`` (one input plane each).
    """
    n_batch, c_in = dxp.shape[0], dxp.shape[1]
    c_out, oh_size, ow_size = dy.shape[1], dy.shape[2], dy.shape[3]
    cin_g, kh_size, kw_size = w.shape[1], w.shape[2], w.shape[3]
    cout_g = c_out // groups
    for task in prange(n_batch * c_in):
        n = task // c_in
        ci = task % c_in
        g = ci // cin_g
        cil = ci % cin_g
        plane = dxp[n, ci]
        plane[:, :] = 0
        for co in range(g * cout_g, (g + 1) * cout_g):
            gc = dy[n, co]
            for kh in range(kh_size):
                for kw in range(kw_size):
                    wv = w[co, cil, kh, kw]
                    for oh in range(oh_size):
                        dst = plane[oh * sh + kh * dh, kw * dw :]
                        src = gc[oh]
                        for ow in range(ow_size):
                            dst[ow * sw] += wv * src[ow]


@cpu_kernel
def conv2d_backward_weight(dy, xp, dwt, sh, sw, dh, dw, groups):
    """Gradient with respect to the weight: ``dwt`` is overwritten.

    Shape: dy (N, C_out, OH, OW), xp (N, C_in, Hp, Wp),
    dwt (C_out, C_in/groups, KH, KW). Parallel over ``C_out * C_in/groups``; each
    weight is one sum over ``n, oh, ow`` in that order.
    """
    n_batch, c_out, oh_size, ow_size = dy.shape
    cin_g, kh_size, kw_size = dwt.shape[1], dwt.shape[2], dwt.shape[3]
    cout_g = c_out // groups
    for task in prange(c_out * cin_g):
        co = task // cin_g
        cil = task % cin_g
        ci = (co // cout_g) * cin_g + cil
        for kh in range(kh_size):
            for kw in range(kw_size):
                acc = dwt.dtype.type(0)
                for n in range(n_batch):
                    xc = xp[n, ci]
                    gc = dy[n, co]
                    for oh in range(oh_size):
                        src = xc[oh * sh + kh * dh, kw * dw :]
                        grow = gc[oh]
                        for ow in range(ow_size):
                            acc += grow[ow] * src[ow * sw]
                dwt[co, cil, kh, kw] = acc


@cpu_kernel
def conv2d_backward_bias(dy, db):
    """Gradient with respect to the bias: ``db[co] = sum(dy[:, co])``.

    Shape: dy (N, C_out, OH, OW), db (C_out,). Parallel over ``C_out``.
    """
    n_batch, c_out, oh_size, ow_size = dy.shape
    for co in prange(c_out):
        acc = db.dtype.type(0)
        for n in range(n_batch):
            for oh in range(oh_size):
                row = dy[n, co, oh]
                for ow in range(ow_size):
                    acc += row[ow]
        db[co] = acc
