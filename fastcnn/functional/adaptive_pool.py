"""Adaptive average pooling (``torch.nn.functional.adaptive_avg_pool2d``) and its
backward: a requested output size, PyTorch's bins."""

from __future__ import annotations

import numpy as np

from .. import backend
from .._checks import is_int
from . import _validate as v


def adaptive_bins(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's bins over one axis: output ``o`` averages inputs
    ``[starts[o], stops[o])`` with ``starts[o] = floor(o * in / out)`` and
    ``stops[o] = ceil((o + 1) * in / out)``. Neighbouring bins overlap by one input
    where ``in`` is not a multiple of ``out``.

    Shape: two int64 arrays of ``out_size``.
    """
    o = np.arange(out_size, dtype=np.int64)
    return (o * in_size) // out_size, ((o + 1) * in_size + out_size - 1) // out_size


def output_size_arg(op: str, output_size) -> tuple[int | None, int | None]:
    """Validate ``output_size``: an int >= 0, or a pair of ints >= 0 or None (None
    keeps that input size), as PyTorch takes it; returned as a pair."""
    def entry_ok(value, allow_none):
        return (allow_none and value is None) or is_int(value)

    if is_int(output_size):
        pair = (output_size, output_size)
    elif (isinstance(output_size, tuple | list) and len(output_size) == 2
          and all(entry_ok(s, True) for s in output_size)):
        pair = tuple(output_size)
    else:
        raise TypeError(
            f"{op}: output_size must be an int or a pair of ints or None (None "
            f"keeps the input size), got {output_size!r:.200}."
        )
    for s in pair:
        if s is not None and not 0 <= s <= v.MAX_SIZE:
            raise ValueError(
                f"{op}: output_size must be >= 0 (and at most 2**31 - 1), got "
                f"{output_size!r}."
            )
    return tuple(None if s is None else int(s) for s in pair)


def adaptive_output_hw(op: str, x_shape, output_size) -> tuple[int, int]:
    """The output (OH, OW) for an input of ``x_shape`` (N, C, H, W)."""
    oh, ow = output_size_arg(op, output_size)
    # Positive indices: the simulator's device-array shapes refuse negative ones.
    return (x_shape[2] if oh is None else oh, x_shape[3] if ow is None else ow)


def _check_x(op: str, x) -> np.ndarray:
    x = v.float_array(op, "x", x, ndim=4)
    # As PyTorch: an empty batch or channel axis gives an empty result, an empty
    # plane has no bins to average.
    v.non_empty_axes(op, "x", x, (2, 3), "height or width (only the batch and "
                     "channel axes may be empty)")
    return x


def adaptive_avg_pool2d(x: np.ndarray, output_size) -> np.ndarray:
    """2-D adaptive average pooling: each output averages one bin of its plane.

    Parameters
    ----------
    x : ndarray
        Input images, float32 or float64.
    output_size : int or (int or None, int or None)
        The output's (OH, OW); None keeps that input size. 0 gives an empty
        output, as in PyTorch.

    Shape: x (N, C, H, W) -> (N, C, OH, OW). Output ``(oh, ow)`` averages rows
    ``[floor(oh*H/OH), ceil((oh+1)*H/OH))`` and the same for columns
    (:func:`adaptive_bins`): where H is a multiple of OH that is
    ``avg_pool2d(x, H // OH)``; otherwise neighbouring bins share a row. An output
    larger than the input repeats inputs.
    """
    op = "adaptive_avg_pool2d"
    x = _check_x(op, x)
    return adaptive_avg_pool2d_trusted(x, adaptive_output_hw(op, x.shape, output_size))


def adaptive_avg_pool2d_trusted(x, out_hw):
    """:func:`adaptive_avg_pool2d` on a checked, C-contiguous x and its output
    (OH, OW); checks nothing."""
    dev = backend.device_of(x)
    shape = (*x.shape[:2], *out_hw)
    if x.size == 0 or 0 in out_hw:
        return dev.zeros(shape, x.dtype)
    y = dev.empty(shape, x.dtype)
    dev.kernels("pool_more").adaptive_avg_pool2d_forward(x, y)
    return y


def adaptive_avg_pool2d_backward(dy: np.ndarray, x: np.ndarray,
                                 output_size) -> np.ndarray:
    """Gradient of :func:`adaptive_avg_pool2d` with respect to x: each ``dy``
    divided by its bin's size, spread over the bin (overlapping bins add up).

    Shape: dy (N, C, OH, OW), x (N, C, H, W) -> dx (N, C, H, W).
    """
    op = "adaptive_avg_pool2d_backward"
    x = _check_x(op, x)
    out_hw = adaptive_output_hw(op, x.shape, output_size)
    dy = v.float_array(op, "dy", dy, ndim=4)
    v.same_dtype(op, "x", x, dy=dy)
    v.shape_is(op, "dy", dy, (*x.shape[:2], *out_hw))
    return adaptive_avg_pool2d_backward_trusted(dy, x)


def adaptive_avg_pool2d_backward_trusted(dy, x):
    """:func:`adaptive_avg_pool2d_backward` on checked arguments (the output size
    is dy's); checks nothing."""
    dev = backend.device_of(x, dy)
    if dy.size == 0:
        return dev.zeros(x.shape, x.dtype)
    dx = dev.empty(x.shape, x.dtype)
    dev.kernels("pool_more").adaptive_avg_pool2d_backward(dy, dx)
    return dx
