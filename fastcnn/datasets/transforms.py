"""Per-channel normalisation and seeded augmentation of NCHW image batches.

Every function returns a new array and leaves its input untouched; the random ones
take a numpy Generator or an int seed, so the same seed gives the same batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._rng import RngLike, as_generator


def _check_nchw(x: np.ndarray, func: str) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        shape = getattr(x, "shape", type(x).__name__)
        raise ValueError(f"{func}: x must be a 4-D array (N, C, H, W), got {shape}.")


def _per_channel(value, c: int, name: str, func: str, dtype) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, c)
    if arr.size != c:
        raise ValueError(
            f"{func}: {name} needs one value or one per channel ({c}), got "
            f"{arr.size} values."
        )
    # Cast to x's dtype so float32 data stays float32 through the arithmetic.
    return arr.astype(dtype).reshape(1, c, 1, 1)


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each channel over samples and pixels.

    Accumulates in float64, so float32 data of any size gives accurate statistics.
    Compute them on the training set and pass them to :func:`normalize` for every
    split.

    Parameters
    ----------
    x : numpy.ndarray
        Images.

    Returns
    -------
    (mean, std) : tuple of float64 arrays, one value per channel.

    Shape: x ``(N, C, H, W)`` -> mean ``(C,)``, std ``(C,)``.
    """
    _check_nchw(x, "channel_stats")
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x.std(axis=(0, 2, 3), dtype=np.float64)
    return mean, std


def normalize(
    x: np.ndarray, mean: float | Sequence[float], std: float | Sequence[float]
) -> np.ndarray:
    """``(x - mean) / std`` per channel, in x's dtype.

    Parameters
    ----------
    x : numpy.ndarray
        Floating images.
    mean, std : float or sequence of float
        One value for all channels or one per channel; every std must be positive.

    Returns
    -------
    numpy.ndarray
        A new array of x's dtype.

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    _check_nchw(x, "normalize")
    if x.dtype.kind != "f":
        raise ValueError(f"normalize: x must be floating, got dtype {x.dtype}.")
    c = x.shape[1]
    m = _per_channel(mean, c, "mean", "normalize", x.dtype)
    s = _per_channel(std, c, "std", "normalize", x.dtype)
    if not np.all(s > 0):
        raise ValueError(f"normalize: std must be positive, got {s.ravel().tolist()}.")
    return (x - m) / s


def _pair(value, name: str, func: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer):
        value = (value, value)
    h, w = (int(v) for v in value)
    if h < 1 or w < 1:
        raise ValueError(f"{func}: {name} must be positive, got {value!r}.")
    return h, w


def random_crop(
    x: np.ndarray,
    size: int | tuple[int, int] | None = None,
    padding: int = 4,
    rng: RngLike = None,
) -> np.ndarray:
    """Zero-pad each image by ``padding`` and crop a random window of ``size``.

    Each sample gets its own offset, drawn uniformly over every window position, so
    with the default ``size`` (the input's) images shift by up to ``padding`` pixels
    in each direction, the CIFAR-style augmentation.

    Parameters
    ----------
    x : numpy.ndarray
        Images.
    size : int or (int, int), optional
        Output height and width (default: the input's).
    padding : int
        Zeros added on every side before cropping.
    rng : numpy.random.Generator or int, optional
        Random source or seed.

    Returns
    -------
    numpy.ndarray
        A new array of x's dtype.

    Shape: ``(N, C, H, W)`` -> ``(N, C, h, w)``.
    """
    _check_nchw(x, "random_crop")
    n, c, height, width = x.shape
    h, w = (height, width) if size is None else _pair(size, "size", "random_crop")
    if padding < 0:
        raise ValueError(f"random_crop: padding must be >= 0, got {padding!r}.")
    span_y, span_x = height + 2 * padding - h, width + 2 * padding - w
    if span_y < 0 or span_x < 0:
        raise ValueError(
            f"random_crop: size {(h, w)} is larger than the padded image "
            f"{(height + 2 * padding, width + 2 * padding)}."
        )
    gen = as_generator(rng, "random_crop")
    oy = gen.integers(0, span_y + 1, size=n)
    ox = gen.integers(0, span_x + 1, size=n)
    out = np.zeros((n, c, h, w), dtype=x.dtype)
    # Group samples by offset: at most (2 * padding + 1) ** 2 slice copies instead of
    # a gather over every pixel, and the padded image is never materialised.
    keys = oy * (span_x + 1) + ox
    for key in np.unique(keys):
        idx = np.flatnonzero(keys == key)
        dy, dx = divmod(int(key), span_x + 1)
        # Output row i reads padded row i + dy, i.e. input row i + dy - padding.
        sy, sx = dy - padding, dx - padding
        i0, i1 = max(0, -sy), min(h, height - sy)
        j0, j1 = max(0, -sx), min(w, width - sx)
        if i0 < i1 and j0 < j1:
            out[idx, :, i0:i1, j0:j1] = x[idx, :, i0 + sy : i1 + sy, j0 + sx : j1 + sx]
    return out


def random_flip(x: np.ndarray, rng: RngLike = None, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right with probability ``p``.

    Parameters
    ----------
    x : numpy.ndarray
        Images.
    rng : numpy.random.Generator or int, optional
        Random source or seed.
    p : float
        Probability that a sample is flipped, in [0, 1].

    Returns
    -------
    numpy.ndarray
        A new array of x's dtype.

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    _check_nchw(x, "random_flip")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random_flip: p must lie in [0, 1], got {p!r}.")
    gen = as_generator(rng, "random_flip")
    flip = gen.random(x.shape[0]) < p
    out = x.copy()
    out[flip] = x[flip, :, :, ::-1]
    return out
