"""Per-batch transforms for :class:`fastcnn.datasets.Loader`, composable.

A transform is any callable ``transform(x_batch, rng) -> x_batch`` taking a NCHW
batch and a numpy Generator. :class:`RandomCrop` and :class:`RandomFlip` wrap
:func:`~fastcnn.datasets.random_crop` and :func:`~fastcnn.datasets.random_flip`
in that form; :class:`Compose` chains several, every one drawing from the same
generator in turn, so a seeded Loader gives the same batches every run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .transforms import _pair, random_crop, random_flip

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class Compose:
    """Apply ``transforms`` in order: ``Compose([t1, t2])(x, rng) ==
    t2(t1(x, rng), rng)``.

    Parameters
    ----------
    transforms : sequence of callables
        Each ``transform(x_batch, rng) -> x_batch``.

    Shape: ``(N, ...)`` -> whatever the last transform returns.
    """

    def __init__(self, transforms) -> None:
        transforms = list(transforms)
        for i, transform in enumerate(transforms):
            if not callable(transform):
                raise TypeError(
                    f"Compose: transforms[{i}] must be a callable "
                    f"transform(x_batch, rng) -> x_batch, got {transform!r}."
                )
        self.transforms = transforms

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            x = transform(x, rng)
        return x

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class RandomCrop:
    """:func:`~fastcnn.datasets.random_crop` as a transform: zero-pad by
    ``padding`` and crop a random window of ``size`` per sample.

    Parameters
    ----------
    size : int or (int, int), optional
        Output height and width (default: the input's).
    padding : int
        Zeros added on every side before cropping.

    Shape: ``(N, C, H, W)`` -> ``(N, C, h, w)``.
    """

    def __init__(self, size: int | tuple[int, int] | None = None,
                 padding: int = 4) -> None:
        if size is not None:
            size = _pair(size, "size", "RandomCrop")
        if isinstance(padding, bool) or not isinstance(padding, int | np.integer):
            raise TypeError(f"RandomCrop: padding must be an int, got {padding!r}.")
        if padding < 0:
            raise ValueError(f"RandomCrop: padding must be >= 0, got {padding!r}.")
        self.size, self.padding = size, int(padding)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return random_crop(x, self.size, self.padding, rng)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size!r}, padding={self.padding})"


class RandomFlip:
    """:func:`~fastcnn.datasets.random_flip` as a transform: mirror each image
    left-right with probability ``p``.

    Parameters
    ----------
    p : float
        In [0, 1].

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """

    def __init__(self, p: float = 0.5) -> None:
        if not isinstance(p, int | float) or isinstance(p, bool) or not 0 <= p <= 1:
            raise ValueError(f"RandomFlip: p must lie in [0, 1], got {p!r}.")
        self.p = float(p)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return random_flip(x, rng, self.p)

    def __repr__(self) -> str:
        return f"RandomFlip(p={self.p})"
