"""Tiny argument predicates shared across the package (imported by everything, so
this module imports nothing of fastcnn's)."""

from __future__ import annotations

import numbers

import numpy as np


def is_int(value) -> bool:
    """True for a Python or NumPy integer; False for bools (``True`` is an
    ``int`` in Python, but never a valid size or count here)."""
    return isinstance(value, numbers.Integral) and not isinstance(
        value, bool | np.bool_
    )
