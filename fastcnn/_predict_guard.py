"""The lock ``Sequential.predict`` takes where concurrent calls would kill the
process."""

from __future__ import annotations

import contextlib
import threading

#: Serialises ``predict`` where the Numba threading layer is not thread-safe.
PREDICT_LOCK = threading.RLock()


def parallel_guard():
    """A lock for ``predict`` where concurrent parallel kernels would kill the
    process, else nothing.

    ``predict`` on a built model is safe to call from several Python threads with
    the "omp" and "tbb" threading layers: in evaluation mode no layer's output
    depends on what another call leaves in the layer (tested bit for bit). Numba's
    "workqueue" layer aborts the interpreter on concurrent parallel regions, so there
    the calls take turns. Before any parallel kernel has run the layer is not known
    yet, and the first call takes the lock too. Training (``fit``, ``train_step``)
    takes the model's own training lock: a second caller, from another thread or
    a callback, gets a RuntimeError (see ``Sequential._training``).
    """
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = None
    return PREDICT_LOCK if layer in (None, "workqueue") else contextlib.nullcontext()
