"""Compile a model's kernels ahead of time, with progress.

Numba compiles each kernel on its first call (and caches it on disk). A fresh
machine therefore pays tens of seconds on the first training step; ``warmup`` moves
that cost to a moment of the user's choosing and shows which layer is compiling.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def warmup(model, batch_size: int = 2, loss: str | None = None,
           verbose: bool = True) -> float:
    """Compile every kernel ``model`` needs for training and inference.

    Runs forward (training and evaluation mode) and backward through each layer of
    a *copy* of the model, then the loss, on zeros of the model's input shape and
    dtype. The model itself, its optimizer state and NumPy's global RNG are left
    untouched.

    Parameters
    ----------
    model : fastcnn.Sequential
        A built model (``input_shape`` given or inferred).
    batch_size : int
        Rows of the dummy batch; kernels compile per dtype and layout, not per
        size, so a small batch suffices.
    loss : str, optional
        A loss name to compile too; default the compiled model's loss, or
        ``"cross_entropy"`` for an uncompiled model with a 1-D output.
    verbose : bool
        Print one progress line per layer to stderr.

    Returns
    -------
    float
        Seconds spent.

    Shape: dummy x (batch_size, *model.input_shape).
    """
    from . import losses
    from .model import Sequential

    if not isinstance(model, Sequential):
        raise TypeError(f"warmup: model must be a fastcnn.Sequential, got "
                        f"{type(model).__name__}.")
    if not model.built:
        raise ValueError("warmup: the model is not built; give it an input_shape or "
                         "call it on data first.")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) \
            or batch_size < 1:
        raise ValueError(f"warmup: batch_size must be a positive int, got "
                         f"{batch_size!r}.")
    start = time.perf_counter()
    state = np.random.get_state()
    try:
        # The config comes from a live model, not a file: no size limit.
        twin = Sequential.from_config(model.get_config(), max_params=None)
        twin.load_state_dict(model.state_dict())
        # from_config builds on the default device; compile where the model runs.
        twin.to(getattr(model, "device", "cpu"))
    finally:
        np.random.set_state(state)
    count = len(twin.layers)

    def report(step: str, index: int, layer) -> None:
        if verbose:
            elapsed = time.perf_counter() - start
            print(f"\rwarmup: {step} {index + 1}/{count} {layer.name:<20s} "
                  f"{elapsed:6.1f} s", end="", file=sys.stderr, flush=True)

    x = np.zeros((batch_size, *twin.input_shape), dtype=twin.dtype)
    out = x
    for i, layer in enumerate(twin.layers):
        report("forward ", i, layer)
        layer.forward(out, training=False)
        out = layer.forward(out, training=True)
    dy = np.ones_like(out)
    for i in range(count - 1, -1, -1):
        report("backward", i, twin.layers[i])
        dy = twin.layers[i].backward(dy)
    chosen = loss if loss is not None else (model.loss or (
        "cross_entropy" if len(twin.output_shape) == 1 else None))
    if chosen is not None:
        loss_fn = losses.get(chosen)
        target = loss_fn.prepare_target(np.zeros(batch_size, dtype=np.int64)
                                        if isinstance(loss_fn, losses.CrossEntropy)
                                        else np.zeros_like(out), out)
        loss_fn.forward(out, target)
        loss_fn.backward(out, target)
    seconds = time.perf_counter() - start
    if verbose:
        print(f"\rwarmup: compiled {count} layers in {seconds:.1f} s" + " " * 30,
              file=sys.stderr, flush=True)
    return seconds
