"""Mini-batches and a stratified split: index bookkeeping shared by the loaders."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ._rng import RngLike, as_generator


def batches(
    x: np.ndarray,
    y: np.ndarray | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    rng: RngLike = None,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Iterate over ``(x_batch, y_batch)`` pairs along the first axis.

    Parameters
    ----------
    x : numpy.ndarray
        Samples.
    y : numpy.ndarray, optional
        Targets, as many as samples; yielded as None when not given.
    batch_size : int
        Samples per batch; the last batch may be smaller unless ``drop_last``.
    shuffle : bool
        Visit the samples in a random order drawn from ``rng``.
    rng : numpy.random.Generator or int, optional
        Random source or seed for the shuffle.
    drop_last : bool
        Skip a final batch smaller than ``batch_size``.

    Yields
    ------
    (x_batch, y_batch)
        Views when not shuffled, copies when shuffled.

    Shape: x ``(N, ...)``, y ``(N, ...)`` -> ``(B, ...)``, ``(B, ...)``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(f"batches: batch_size must be an int, got {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"batches: batch_size must be >= 1, got {batch_size!r}.")
    n = len(x)
    if y is not None and len(y) != n:
        raise ValueError(f"batches: x has {n} samples but y has {len(y)}.")
    order = as_generator(rng, "batches").permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            sl = slice(start, start + batch_size)
            yield x[sl], (None if y is None else y[sl])
        else:
            idx = order[start : start + batch_size]
            yield x[idx], (None if y is None else y[idx])


def stratified_split(
    y: np.ndarray, test_fraction: float = 0.2, rng: RngLike = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train/test split that keeps each class's share in both parts.

    Each class contributes ``round(test_fraction * count)`` samples to the test part;
    both index arrays come back shuffled, so batches in their order are mixed.

    Parameters
    ----------
    y : numpy.ndarray
        Integer class labels.
    test_fraction : float
        Share of each class that goes to the test part, in (0, 1).
    rng : numpy.random.Generator or int
        Random source or seed (default 0: the same split every time).

    Returns
    -------
    (train_idx, test_idx) : int64 arrays

    Shape: y ``(N,)`` -> ``(N_train,)``, ``(N_test,)``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"stratified_split: test_fraction must lie in (0, 1), got "
            f"{test_fraction!r}."
        )
    y = np.asarray(y)
    gen = as_generator(rng, "stratified_split")
    train, test = [], []
    for cls in np.unique(y):
        members = gen.permutation(np.flatnonzero(y == cls))
        k = int(round(test_fraction * members.size))
        test.append(members[:k])
        train.append(members[k:])
    train_idx = gen.permutation(np.concatenate(train)).astype(np.int64)
    test_idx = gen.permutation(np.concatenate(test)).astype(np.int64)
    return train_idx, test_idx
