"""Checks of argmax ``indices`` (PyTorch's flat ``ih * W + iw`` positions in a plane)
for the ops that take them: max_pool2d_backward(..., indices=) and max_unpool2d.

The kernels trust what passes here, and every index they read selects a position
to write or read: these checks keep each one inside its plane (and, for max
pooling, inside its own window).
"""

from __future__ import annotations

import numpy as np

from .. import backend


def index_array(op: str, name: str, value, shape: tuple[int, ...] | None
                ) -> np.ndarray:
    """``value`` as a host array of an integer dtype (not bool; PyTorch's int64
    indices and NumPy's intp both pass) and of ``shape`` (None: 4-D, with only the
    batch axis allowed to be empty). A CUDA device array is copied to the host to
    be checked; :func:`in_range` and :func:`window_indices` make it int64."""
    value = backend.to_host(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{op}: {name} must be a numpy.ndarray of int64 positions, got "
            f"{type(value).__name__}."
        )
    if value.dtype == np.bool_ or not np.issubdtype(value.dtype, np.integer):
        raise TypeError(
            f"{op}: {name} must have an integer dtype (int64 positions, as "
            f"max_pool2d(..., return_indices=True) gives), got {value.dtype}."
        )
    if shape is None:
        if value.ndim != 4:
            raise ValueError(
                f"{op}: {name} must be 4-D (the shape of x), got {value.ndim}-D "
                f"with shape {value.shape}."
            )
        if min(value.shape[1:]) == 0:
            raise ValueError(
                f"{op}: {name} has a zero-sized channel, height or width (only the "
                f"batch axis may be empty); got shape {value.shape}."
            )
    elif value.shape != tuple(shape):
        raise ValueError(
            f"{op}: {name} must have shape {tuple(shape)}, got {value.shape}."
        )
    return value


def in_range(op: str, name: str, indices: np.ndarray, limit: int, what: str
             ) -> np.ndarray:
    """``indices`` (any integer dtype) as int64, every entry in ``[0, limit)``;
    ``what`` says what the range is (quoted in the message)."""
    bad = (indices < 0) | (indices >= limit)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{op}: {name} must lie in [0, {limit}) ({what}), got "
            f"{int(indices[where])} at {name}[{', '.join(map(str, where))}]."
        )
    return np.ascontiguousarray(indices, dtype=np.int64)


def _axis_taps(out_size: int, k: int, s: int, p: int, d: int, size: int):
    """Per output position of one axis: the first tap's offset ``o*s - p`` and
    whether any tap lies inside ``[0, size)``."""
    start = np.arange(out_size, dtype=np.int64) * s - p
    # The first tap inside is the first start + multiple of d that is >= 0.
    first = np.where(start < 0, start + ((d - 1 - start) // d) * d, start)
    has_tap = first <= np.minimum(start + (k - 1) * d, size - 1)
    return start, has_tap


def window_indices(op: str, name: str, indices: np.ndarray, geo, h: int, w: int
                   ) -> np.ndarray:
    """Check max-pool ``indices`` of shape ``(N, C, OH, OW)`` against the windows of
    ``geo`` (a :class:`~fastcnn.functional.pool.PoolGeometry`) on an ``h x w``
    input: each must be a tap of its own window inside the input. A window with
    no tap inside the input (possible with dilation only) routes no gradient, so
    its index, whatever it is (PyTorch's is computed from a tap outside the input),
    becomes -1.
    Returns the int64 indices the kernels may trust."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (geo.kernel, geo.stride, geo.padding,
                                              geo.dilation)
    oh_size, ow_size = geo.out_hw
    start_h, taps_h = _axis_taps(oh_size, kh, sh, ph, dh, h)
    start_w, taps_w = _axis_taps(ow_size, kw, sw, pw, dw, w)
    live = taps_h[:, None] & taps_w[None, :]
    idx = indices.astype(np.int64, copy=False)
    with np.errstate(all="ignore"):
        # Outside [0, h*w) the division is meaningless; the first test refuses it.
        ih, iw = np.divmod(idx, w)
        rh = ih - start_h[:, None]
        rw = iw - start_w[None, :]
    inside = (indices >= 0) & (indices < h * w)
    on_tap = (inside & (rh >= 0) & (rh <= (kh - 1) * dh) & (rh % dh == 0)
              & (rw >= 0) & (rw <= (kw - 1) * dw) & (rw % dw == 0))
    bad = live & ~on_tap
    if bad.any():
        n, c, oh, ow = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{op}: {name}[{n}, {c}, {oh}, {ow}] = {int(indices[n, c, oh, ow])} is "
            f"not a position (row * {w} + column) of its own window on the {h}x{w} "
            f"input (rows {int(start_h[oh])} + {dh}*j, columns {int(start_w[ow])} "
            f"+ {dw}*j); pass the indices max_pool2d(..., return_indices=True) "
            f"returned for the same x and arguments."
        )
    return np.ascontiguousarray(np.where(live, idx, -1), dtype=np.int64)
