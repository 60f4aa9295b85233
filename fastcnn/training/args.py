"""Argument checks shared by the model and the training loop."""

from __future__ import annotations

from .._checks import is_int

__all__ = ["int_arg", "is_int"]


def int_arg(op: str, name: str, value, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``, or a TypeError/ValueError that
    names ``op`` and ``name``."""
    if not is_int(value):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}.")
    return int(value)
