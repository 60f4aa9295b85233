"""Argument checks shared by the model and the training loop."""

from __future__ import annotations

import numbers

import numpy as np


def is_int(value) -> bool:
    """An integer, NumPy's included, but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(
        value, bool | np.bool_
    )


def int_arg(op: str, name: str, value, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``, or a TypeError/ValueError that
    names ``op`` and ``name``."""
    if not is_int(value):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}.")
    return int(value)
