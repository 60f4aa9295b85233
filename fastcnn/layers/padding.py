"""ZeroPadding2D: zeros around each channel map, Keras's layer on NCHW batches
(``torch.nn.ZeroPad2d``)."""

from __future__ import annotations

from typing import Any

from .._checks import is_int
from ..functional import _validate as v
from ..functional.pad import pad_backward_trusted, pad_trusted
from .base import Layer, Window


def _padding(op: str, padding) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras's three spellings as ``((top, bottom), (left, right))``."""
    if is_int(padding):
        pairs = ((padding, padding), (padding, padding))
    elif isinstance(padding, tuple | list) and len(padding) == 2 and all(
            is_int(p) for p in padding):
        pairs = ((padding[0], padding[0]), (padding[1], padding[1]))
    elif isinstance(padding, tuple | list) and len(padding) == 2 and all(
            isinstance(p, tuple | list) and len(p) == 2 and all(is_int(q) for q in p)
            for p in padding):
        pairs = (tuple(padding[0]), tuple(padding[1]))
    else:
        raise TypeError(
            f"{op}: padding must be an int, a pair (rows, cols) or a pair of pairs "
            f"((top, bottom), (left, right)), got {padding!r:.200}.")
    amounts = [q for p in pairs for q in p]
    if min(amounts) < 0 or max(amounts) > v.MAX_SIZE:
        raise ValueError(f"{op}: padding amounts must lie in [0, 2**31 - 1], got "
                         f"{padding!r:.200}.")
    return ((int(pairs[0][0]), int(pairs[0][1])), (int(pairs[1][0]), int(pairs[1][1])))


class ZeroPadding2D(Layer):
    """Add rows and columns of zeros around every channel map (Keras's
    ``ZeroPadding2D``; ``torch.nn.ZeroPad2d((left, right, top, bottom))``).

    Parameters
    ----------
    padding : int, (int, int) or ((int, int), (int, int))
        An int pads all four sides alike; ``(rows, cols)`` pads ``rows`` above and
        below and ``cols`` left and right; ``((top, bottom), (left, right))`` each
        side on its own. Amounts are >= 0 (:func:`fastcnn.functional.pad` crops
        with negative ones).
    name : str, optional

    Shape: (N, C, H, W) -> (N, C, H + top + bottom, W + left + right).
    """

    # A 1x1 window with the padding before it: receptive fields pass through.
    connectivity = "window"

    def __init__(self, padding=1, name: str | None = None) -> None:
        super().__init__(name=name)
        self.padding = _padding(self._op, padding)

    def _config(self) -> dict[str, Any]:
        return {"padding": [list(self.padding[0]), list(self.padding[1])]}

    def window(self, input_shape=None) -> Window:
        return Window(kernel=(1, 1), stride=(1, 1),
                      padding=(self.padding[0][0], self.padding[1][0]),
                      dilation=(1, 1))

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = self._check_shape(input_shape, 3)
        (top, bottom), (left, right) = self.padding
        h, w = h + top + bottom, w + left + right
        if max(h, w) > v.MAX_SIZE:
            raise ValueError(f"{self._op}: padding {self.padding} makes maps of "
                             f"{h} x {w}, more than 2**31 - 1 on a side.")
        return (c, h, w)

    def _amounts(self) -> tuple[int, int, int, int]:
        (top, bottom), (left, right) = self.padding
        return left, right, top, bottom

    def _forward(self, x, training):
        self._cache = True
        return pad_trusted(x, *self._amounts())

    def _backward(self, dy):
        return pad_backward_trusted(dy, *self._amounts())
