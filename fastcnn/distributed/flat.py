"""One contiguous array that holds several arrays back to back.

The gradient allreduce sends one message per step: the gradients are packed into a
persistent flat buffer (one copy each, no allocation), reduced in place, and the
optimizer reads them through views of that buffer. The same buffer carries a few
extra slots after the arrays (the batch's sample count, loss and metric sums), so
those ride along in the same message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


class FlatBuffer:
    """Named arrays laid out one after another in a single 1-D array.

    Parameters
    ----------
    shapes : mapping of str to tuple of int
        The arrays, in layout order.
    dtype : numpy dtype
    extra : int
        Slots after the arrays (:attr:`extra`), for values that travel with them.

    Attributes
    ----------
    array : ndarray
        The whole buffer, contiguous: hand this to MPI.
    body : ndarray
        The part that holds the named arrays.
    extra : ndarray
        The ``extra`` slots after them.
    views : dict[str, ndarray]
        A view of ``array`` for every name, in its shape.

    Shape: array (sum of sizes + extra,).
    """

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], dtype,
                 extra: int = 0) -> None:
        if not isinstance(extra, int) or isinstance(extra, bool) or extra < 0:
            raise ValueError(f"FlatBuffer: extra must be an int >= 0, got {extra!r}.")
        sizes = {name: int(np.prod(shape, dtype=np.int64))
                 for name, shape in shapes.items()}
        total = sum(sizes.values())
        self.array = np.zeros(total + extra, dtype=dtype)
        self.body = self.array[:total]
        self.extra = self.array[total:]
        self.views: dict[str, np.ndarray] = {}
        offset = 0
        for name, shape in shapes.items():
            self.views[name] = self.array[offset : offset + sizes[name]].reshape(shape)
            offset += sizes[name]

    def pack(self, arrays: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
             scale: float | None = None) -> None:
        """Copy every named array into its place (times ``scale`` if given).

        Shape: each array has its view's shape.
        """
        items = arrays.items() if isinstance(arrays, Mapping) else arrays
        seen = 0
        for name, value in items:
            view = self._view("pack", name, value)
            if scale is None:
                np.copyto(view, value)
            else:
                np.multiply(value, view.dtype.type(scale), out=view)
            seen += 1
        if seen != len(self.views):
            raise ValueError(
                f"FlatBuffer.pack: got {seen} arrays for a buffer of "
                f"{len(self.views)}."
            )

    def unpack(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Copy every view back into the array of the same name (in place).

        Shape: each array has its view's shape.
        """
        for name, value in arrays.items():
            np.copyto(value, self._view("unpack", name, value))

    def _view(self, op: str, name: str, value: np.ndarray) -> np.ndarray:
        view = self.views.get(name)
        if view is None:
            raise KeyError(f"FlatBuffer.{op}: no array named {name!r} in the buffer.")
        if np.shape(value) != view.shape:
            raise ValueError(
                f"FlatBuffer.{op}: {name} has shape {np.shape(value)} but the "
                f"buffer holds {view.shape}."
            )
        return view
