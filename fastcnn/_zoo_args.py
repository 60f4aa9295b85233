"""Argument checks shared by the zoo's model builders."""

from __future__ import annotations


def _input_shape(name: str, input_shape) -> tuple[int, int, int]:
    ok = isinstance(input_shape, tuple | list) and len(input_shape) == 3
    if not ok or not all(isinstance(s, int) and s > 0 for s in input_shape):
        raise ValueError(
            f"{name}: input_shape must be (channels, height, width) with positive "
            f"ints, got {input_shape!r}."
        )
    return tuple(input_shape)


def _num_classes(name: str, num_classes) -> int:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        raise TypeError(f"{name}: num_classes must be an int, got {num_classes!r}.")
    if num_classes < 2:
        raise ValueError(f"{name}: num_classes must be at least 2, got {num_classes}.")
    return num_classes
