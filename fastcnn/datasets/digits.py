"""scikit-learn's bundled 8x8 digits: a dataset that needs no download at all."""

from __future__ import annotations

import numpy as np

from .batching import stratified_split


def load_digits(
    dtype=np.float32, test_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load the 1,797 8x8 handwritten digits that ship inside scikit-learn.

    The pixels (0..16) are scaled to [0, 1]. The split is stratified and seeded:
    the same ``seed`` gives the same split on every machine, independent of the
    scikit-learn version's own splitting helpers.

    Parameters
    ----------
    dtype : numpy dtype
        Floating dtype of the images (default float32).
    test_fraction : float
        Share of each class held out for testing (default 0.2).
    seed : int
        Seed of the split.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        Images in [0, 1] and int64 labels 0..9; 1,438 / 359 items by default.

    Raises
    ------
    ImportError
        scikit-learn is not installed (``pip install fastcnn[digits]``).

    Shape: x ``(N, 1, 8, 8)``, y ``(N,)``.
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"load_digits: dtype must be a floating type, got {dtype}.")
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError(
            "load_digits needs scikit-learn, which ships the 8x8 digits: "
            "pip install fastcnn[digits]  (or: pip install scikit-learn)"
        ) from exc
    bunch = _sk_load_digits()
    # The values are exact small integers, so dividing in the target dtype is exact
    # to that dtype's rounding.
    x = (bunch.data.reshape(-1, 1, 8, 8) / 16.0).astype(dtype)
    y = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])
