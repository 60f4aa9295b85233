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


# --------------------------------------------------------------------------- pooling


def pool_out_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output length: floor (or ceil) of the window count, minus a
    ceil-mode window that would start in the right padding."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _max_window(plane, i, j, kernel, stride, padding, dilation):
    """(value, (r, c)) of window (i, j), PyTorch CPU's rule: scan the taps inside the
    plane row-major from -inf at the first one; a larger value or any NaN takes over.
    A window with no tap inside gives (-inf, None)."""
    taps = []
    for a in range(kernel[0]):
        r = i * stride[0] - padding[0] + a * dilation[0]
        for b in range(kernel[1]):
            c = j * stride[1] - padding[1] + b * dilation[1]
            if 0 <= r < plane.shape[0] and 0 <= c < plane.shape[1]:
                taps.append((r, c))
    if not taps:
        return -np.inf, None
    best, where = -np.inf, taps[0]
    for r, c in taps:
        val = float(plane[r, c])
        if val > best or np.isnan(val):
            best, where = val, (r, c)
    return best, where


def max_pool2d(x, kernel, stride, padding, dilation, ceil_mode):
    n_batch, chans, h, w = x.shape
    oh = pool_out_size(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    ow = pool_out_size(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    y = np.empty((n_batch, chans, oh, ow))
    for n in range(n_batch):
        for ch in range(chans):
            for i in range(oh):
                for j in range(ow):
                    y[n, ch, i, j] = _max_window(
                        x[n, ch], i, j, kernel, stride, padding, dilation
                    )[0]
    return y


def max_pool2d_backward(dy, x, kernel, stride, padding, dilation):
    """Each window's gradient goes to its one winner."""
    dx = np.zeros(x.shape)
    for n in range(dy.shape[0]):
        for ch in range(dy.shape[1]):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    _, where = _max_window(
                        x[n, ch], i, j, kernel, stride, padding, dilation
                    )
                    if where is not None:
                        dx[n, ch, where[0], where[1]] += float(dy[n, ch, i, j])
    return dx


def _avg_window(i, j, shape, kernel, stride, padding, count_include_pad):
    """(rows, cols, divisor) of average window (i, j), PyTorch's rule: the window is
    cut at the end of the right padding, then the divisor is its size counting
    padding, or the number of inputs it covers."""
    bounds = []
    for o, size, k, s, p in zip((i, j), shape, kernel, stride, padding, strict=True):
        start = o * s - p
        end = min(start + k, size + p)
        bounds.append((start, end, range(max(start, 0), min(end, size))))
    (h0, h1, rows), (w0, w1, cols) = bounds
    divisor = (h1 - h0) * (w1 - w0) if count_include_pad else len(rows) * len(cols)
    return rows, cols, divisor


def avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad):
    n_batch, chans, h, w = x.shape
    oh = pool_out_size(h, kernel[0], stride[0], padding[0], 1, ceil_mode)
    ow = pool_out_size(w, kernel[1], stride[1], padding[1], 1, ceil_mode)
    y = np.empty((n_batch, chans, oh, ow))
    for n in range(n_batch):
        for ch in range(chans):
            for i in range(oh):
                for j in range(ow):
                    rows, cols, divisor = _avg_window(
                        i, j, (h, w), kernel, stride, padding, count_include_pad
                    )
                    total = sum(float(x[n, ch, r, c]) for r in rows for c in cols)
                    y[n, ch, i, j] = total / divisor
    return y


def avg_pool2d_backward(dy, x, kernel, stride, padding, count_include_pad):
    dx = np.zeros(x.shape)
    for n in range(dy.shape[0]):
        for ch in range(dy.shape[1]):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    rows, cols, divisor = _avg_window(
                        i, j, x.shape[2:], kernel, stride, padding, count_include_pad
                    )
                    for r in rows:
                        for c in cols:
                            dx[n, ch, r, c] += float(dy[n, ch, i, j]) / divisor
    return dx


def global_avg_pool2d(x):
    return x.astype(np.float64).mean(axis=(2, 3))


def global_avg_pool2d_backward(dy, x):
    h, w = x.shape[2], x.shape[3]
    share = dy.astype(np.float64)[:, :, None, None] / (h * w)
    return np.broadcast_to(share, x.shape).copy()


# ----------------------------------------------------------------------------- dropout

_U64 = (1 << 64) - 1


def dropout_uniform(seed, index):
    """Output ``index`` of SplitMix64 seeded with ``seed``, as a double in [0, 1),
    computed with Python's unbounded ints and an explicit 64-bit mask."""
    z = (seed + (index + 1) * 0x9E3779B97F4A7C15) & _U64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64
    z ^= z >> 31
    return (z >> 11) / 2.0**53


def dropout_mask(shape, p, seed):
    """Boolean keep-mask: element i (C order) is kept where uniform(seed, i) >= p."""
    size = int(np.prod(shape, dtype=np.int64))
    keep = [dropout_uniform(seed, i) >= p for i in range(size)]
    return np.array(keep, dtype=bool).reshape(shape)


def dropout(x, p, training, seed):
    """Kept elements times 1/(1-p) (rounded to x's dtype, as PyTorch's scalar is),
    dropped elements times 0; identity when not training or p == 0."""
    if not training or p == 0:
        return x.copy()
    scale = x.dtype.type(0.0 if p == 1 else 1.0 / (1.0 - p))
    keep = dropout_mask(x.shape, p, seed)
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        y[i] = x[i] * (scale if keep[i] else x.dtype.type(0))
    return y


# -------------------------------------------------------------------------- batch_norm


def _bn_channel_values(x, c):
    """All values of channel c of an (N, C) or (N, C, H, W) array, as float64."""
    return [float(v) for v in np.asarray(x, dtype=np.float64)[:, c].reshape(-1)]


def batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """Returns (y, new_running_mean, new_running_var) in float64; the running
    statistics are not modified (new ones are returned; None stays None)."""
    n_chan = x.shape[1]
    y = np.zeros(x.shape)
    new_mean = None if running_mean is None else np.array(running_mean, np.float64)
    new_var = None if running_var is None else np.array(running_var, np.float64)
    for c in range(n_chan):
        vals = _bn_channel_values(x, c)
        m = len(vals)
        if training:
            mean = sum(vals) / m
            ssd = sum((v - mean) ** 2 for v in vals)
            var = ssd / m
            if new_mean is not None:
                new_mean[c] = (1 - momentum) * new_mean[c] + momentum * mean
                new_var[c] = (1 - momentum) * new_var[c] + momentum * ssd / (m - 1)
        else:
            mean = float(running_mean[c])
            var = float(running_var[c])
        w = 1.0 if weight is None else float(weight[c])
        b = 0.0 if bias is None else float(bias[c])
        y[:, c] = (np.asarray(x[:, c], np.float64) - mean) / np.sqrt(var + eps) * w + b
    return y, new_mean, new_var


def batch_norm_backward(dy, x, running_mean, running_var, weight, training, eps):
    """Returns (dx, dweight, dbias) in float64. In training the mean and variance
    depend on x, which gives the textbook
    dx = w / sigma * (dy - mean(dy) - xhat * mean(dy * xhat))."""
    n_chan = x.shape[1]
    dx = np.zeros(x.shape)
    dweight = np.zeros(n_chan)
    dbias = np.zeros(n_chan)
    for c in range(n_chan):
        xc = np.asarray(x[:, c], np.float64)
        gc = np.asarray(dy[:, c], np.float64)
        if training:
            vals = _bn_channel_values(x, c)
            m = len(vals)
            mean = sum(vals) / m
            var = sum((v - mean) ** 2 for v in vals) / m
        else:
            mean = float(running_mean[c])
            var = float(running_var[c])
        sigma = np.sqrt(var + eps)
        xhat = (xc - mean) / sigma
        w = 1.0 if weight is None else float(weight[c])
        dweight[c] = float(np.sum(gc * xhat))
        dbias[c] = float(np.sum(gc))
        if training:
            dx[:, c] = w / sigma * (gc - gc.mean() - xhat * np.mean(gc * xhat))
        else:
            dx[:, c] = gc * w / sigma
    return dx, dweight, dbias


# ------------------------------------------------------- linear, activations, losses


def linear(x, w, b):
    """y[n, o] = b[o] + sum_k x[n, k] * w[o, k]."""
    y = np.zeros((x.shape[0], w.shape[0]))
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            total = 0.0 if b is None else float(b[o])
            for k in range(x.shape[1]):
                total += float(x[n, k]) * float(w[o, k])
            y[n, o] = total
    return y


def linear_backward(dy, x, w):
    """Scatter each output's gradient to the input and weight it was made from."""
    dx = np.zeros(x.shape)
    dw = np.zeros(w.shape)
    db = np.zeros(w.shape[0])
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            g = float(dy[n, o])
            db[o] += g
            for k in range(x.shape[1]):
                dx[n, k] += g * float(w[o, k])
                dw[o, k] += g * float(x[n, k])
    return dx, dw, db


def _map(fn, *arrays):
    """Apply a scalar function elementwise, in float64."""
    out = np.zeros(arrays[0].shape)
    for idx in np.ndindex(out.shape):
        out[idx] = fn(*(float(a[idx]) for a in arrays))
    return out


def relu(x):
    return _map(lambda v: v if v > 0 or v != v else 0.0, x)


def relu_backward(dy, x):
    # PyTorch's threshold_backward: zero where x <= 0, so a NaN input passes the
    # gradient on (torch.relu's grad at NaN is 1).
    return _map(lambda g, v: 0.0 if v <= 0 else g, dy, x)


def leaky_relu(x, slope):
    return _map(lambda v: v if v > 0 else slope * v, x)


def leaky_relu_backward(dy, x, slope):
    return _map(lambda g, v: g if v > 0 else slope * g, dy, x)


def _sigmoid(v):
    if v >= 0:
        return 1.0 / (1.0 + np.exp(-v))
    return np.exp(v) / (1.0 + np.exp(v))


def sigmoid(x):
    return _map(_sigmoid, x)


def sigmoid_backward(dy, y):
    """d sigmoid / dx = s * (1 - s), from the output s."""
    return _map(lambda g, s: g * s * (1.0 - s), dy, y)


def tanh(x):
    return _map(np.tanh, x)


def tanh_backward(dy, y):
    return _map(lambda g, t: g * (1.0 - t * t), dy, y)


def _vectors(shape, dim):
    """Index tuples of every 1-D slice along ``dim``: lists of full indices."""
    rest = [s for i, s in enumerate(shape) if i != dim]
    for outer in np.ndindex(*rest):
        outer = list(outer)
        yield [tuple(outer[:dim] + [j] + outer[dim:]) for j in range(shape[dim])]


def softmax(x, dim):
    """exp(x_j) / sum_i exp(x_i) along ``dim`` (shifted by the max so exp stays
    finite; the shift cancels)."""
    dim = dim % x.ndim
    y = np.zeros(x.shape)
    for idx in _vectors(x.shape, dim):
        vals = [float(x[i]) for i in idx]
        m = max(vals)
        exps = [np.exp(v - m) for v in vals]
        total = sum(exps)
        for i, e in zip(idx, exps, strict=True):
            y[i] = e / total
    return y


def softmax_backward(dy, y, dim):
    """dx_j = sum_i dy_i * dy_i/dx_j with the Jacobian y_i * ([i == j] - y_j)."""
    dim = dim % y.ndim
    dx = np.zeros(y.shape)
    for idx in _vectors(y.shape, dim):
        for j in idx:
            dx[j] = sum(
                float(dy[i]) * float(y[i]) * ((1.0 if i == j else 0.0) - float(y[j]))
                for i in idx
            )
    return dx


def log_softmax(x, dim):
    """x_j - log(sum_i exp(x_i)) along ``dim`` (the max shift keeps it finite)."""
    dim = dim % x.ndim
    y = np.zeros(x.shape)
    for idx in _vectors(x.shape, dim):
        vals = [float(x[i]) for i in idx]
        m = max(vals)
        log_total = m + np.log(sum(np.exp(v - m) for v in vals))
        for i, v in zip(idx, vals, strict=True):
            y[i] = v - log_total
    return y


def log_softmax_backward(dy, y, dim):
    """dx_j = sum_i dy_i * ([i == j] - softmax_j), softmax = exp(y)."""
    dim = dim % y.ndim
    dx = np.zeros(y.shape)
    for idx in _vectors(y.shape, dim):
        for j in idx:
            p = np.exp(float(y[j]))
            dx[j] = sum(float(dy[i]) * ((1.0 if i == j else 0.0) - p) for i in idx)
    return dx


def _ce_coefficients(label, n_classes, weight, smoothing):
    """The weight a sample puts on each class's -log p: torch's
    (1 - e) * w[t] * [c == t] + (e / C) * w[c]."""
    w = np.ones(n_classes) if weight is None else np.asarray(weight, np.float64)
    coef = np.array([smoothing / n_classes * w[c] for c in range(n_classes)])
    coef[label] += (1.0 - smoothing) * w[label]
    return coef


def _ce_denominator(labels, weight, reduction):
    if reduction != "mean":
        return 1.0
    if weight is None:
        return float(len(labels))
    return sum(float(weight[t]) for t in labels)


def cross_entropy(logits, labels, weight, reduction, smoothing):
    n, n_classes = logits.shape
    logp = log_softmax(logits, 1)
    losses = np.zeros(n)
    for i in range(n):
        coef = _ce_coefficients(labels[i], n_classes, weight, smoothing)
        losses[i] = -sum(coef[c] * logp[i, c] for c in range(n_classes))
    if reduction == "none":
        return losses
    return float(np.sum(losses)) / _ce_denominator(labels, weight, reduction)


def cross_entropy_backward(logits, labels, weight, reduction, smoothing):
    """d/dz_j of -sum_c coef_c * log p_c is sum_c coef_c * (p_j - [c == j])."""
    n, n_classes = logits.shape
    p = softmax(logits.astype(np.float64), 1)
    scale = 1.0 / _ce_denominator(labels, weight, reduction)
    dz = np.zeros((n, n_classes))
    for i in range(n):
        coef = _ce_coefficients(labels[i], n_classes, weight, smoothing)
        for j in range(n_classes):
            dz[i, j] = scale * sum(
                coef[c] * (p[i, j] - (1.0 if c == j else 0.0)) for c in range(n_classes)
            )
    return dz


def _ce_positions(logits, labels):
    """Logits and labels as a batch (an unbatched (C,) input is one sample), whether
    the labels are probabilities (the logits' shape), and each position's index
    tuple (sample, d1, ...)."""
    z = logits[None] if logits.ndim == 1 else logits
    t = labels[None] if logits.ndim == 1 else labels
    probs = t.shape == z.shape
    return z, t, probs, list(np.ndindex(z.shape[0], *z.shape[2:]))


def _ce_position_coefficients(z, t, probs, pos, weight, smoothing, ignore_index):
    """The weight a position puts on each class's -log p (None if ignored): for
    class indices torch's (1 - e) * w[t] * [c == t] + (e / C) * w[c]; for
    probabilities w[c] * ((1 - e) * q[c] + e / C)."""
    n_classes = z.shape[1]
    if probs:
        w = np.ones(n_classes) if weight is None else np.asarray(weight, np.float64)
        return [w[c] * ((1.0 - smoothing) * float(t[(pos[0], c, *pos[1:])])
                        + smoothing / n_classes) for c in range(n_classes)]
    label = int(t[pos])
    if label == ignore_index:
        return None
    return list(_ce_coefficients(label, n_classes, weight, smoothing))


def _ce_targets_denominator(z, t, probs, positions, weight, ignore_index):
    """torch's mean: kept positions' class weights (their count without weights)
    for indices; the number of positions for probabilities (NaN without classes)."""
    if probs:
        return float(len(positions)) if z.shape[1] else 0.0
    kept = [int(t[pos]) for pos in positions if int(t[pos]) != ignore_index]
    return sum(1.0 if weight is None else float(weight[k]) for k in kept)


def _ce_log_softmax(z, pos):
    vals = [float(z[(pos[0], c, *pos[1:])]) for c in range(z.shape[1])]
    m = max(vals)
    lse = m + np.log(sum(np.exp(v - m) for v in vals))
    return [v - lse for v in vals]


def cross_entropy_targets(logits, labels, weight, reduction, smoothing, ignore_index):
    """torch.nn.functional.cross_entropy, one position at a time: logits (N, C,
    d1, ...) or (C,); class indices (N, d1, ...) with ``ignore_index``, or
    probabilities of the logits' shape."""
    z, t, probs, positions = _ce_positions(logits, labels)
    losses = np.zeros((z.shape[0], *z.shape[2:]))
    for pos in positions:
        coef = _ce_position_coefficients(z, t, probs, pos, weight, smoothing,
                                         ignore_index)
        if coef is not None:
            logp = _ce_log_softmax(z, pos)
            losses[pos] = -sum(k * lp for k, lp in zip(coef, logp, strict=True))
    if reduction == "none":
        return losses.reshape(()) if logits.ndim == 1 else losses
    total = float(np.sum(losses))
    if reduction == "sum":
        return total
    denominator = _ce_targets_denominator(z, t, probs, positions, weight,
                                          ignore_index)
    return total / denominator if denominator else float("nan")


def cross_entropy_targets_backward(logits, labels, weight, reduction, smoothing,
                                   ignore_index):
    """d/dz_j of -sum_c coef_c * log p_c is sum_c coef_c * (p_j - [c == j]); zero
    at ignored positions."""
    z, t, probs, positions = _ce_positions(logits, labels)
    scale = 1.0
    if reduction == "mean":
        denominator = _ce_targets_denominator(z, t, probs, positions, weight,
                                              ignore_index)
        scale = 1.0 / denominator if denominator else float("nan")
    dz = np.zeros(z.shape)
    for pos in positions:
        coef = _ce_position_coefficients(z, t, probs, pos, weight, smoothing,
                                         ignore_index)
        if coef is None:
            continue
        p = np.exp(_ce_log_softmax(z, pos))
        for j in range(z.shape[1]):
            dz[(pos[0], j, *pos[1:])] = scale * sum(
                k * (p[j] - (1.0 if c == j else 0.0)) for c, k in enumerate(coef))
    return dz.reshape(logits.shape)


def _reduce(losses, reduction):
    if reduction == "none":
        return losses
    total = float(np.sum(losses))
    return total / losses.size if reduction == "mean" else total


def mse_loss(x, t, reduction):
    return _reduce(_map(lambda a, b: (a - b) ** 2, x, t), reduction)


def mse_loss_backward(x, t, reduction):
    scale = 1.0 / x.size if reduction == "mean" else 1.0
    return _map(lambda a, b: 2.0 * (a - b) * scale, x, t)


def _softplus(v):
    return max(v, 0.0) + np.log1p(np.exp(-abs(v)))


def bce_with_logits(x, t, weight, reduction, pos_weight):
    """-w * (pw * t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x))), with
    log(sigmoid(x)) = -softplus(-x) and log(1 - sigmoid(x)) = -softplus(x)."""
    w = np.broadcast_to(1.0 if weight is None else weight, x.shape)
    pw = np.broadcast_to(1.0 if pos_weight is None else pos_weight, x.shape)
    losses = _map(
        lambda v, tv, wv, pv: wv * (pv * tv * _softplus(-v) + (1 - tv) * _softplus(v)),
        x, t, w, pw,
    )
    return _reduce(losses, reduction)


def bce_with_logits_backward(x, t, weight, reduction, pos_weight):
    """d/dx: w * (-pw * t * (1 - sigmoid(x)) + (1 - t) * sigmoid(x))."""
    w = np.broadcast_to(1.0 if weight is None else weight, x.shape)
    pw = np.broadcast_to(1.0 if pos_weight is None else pos_weight, x.shape)
    scale = 1.0 / x.size if reduction == "mean" else 1.0
    return _map(
        lambda v, tv, wv, pv: scale
        * wv
        * (-pv * tv * (1 - _sigmoid(v)) + (1 - tv) * _sigmoid(v)),
        x, t, w, pw,
    )
