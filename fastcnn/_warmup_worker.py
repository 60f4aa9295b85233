"""A compile worker of :func:`fastcnn.warmup`: ``python -m fastcnn._warmup_worker``.

Reads one JSON job from stdin, runs the kernels it names on zeros (each layer at its
own input shape, forward in both modes and backward; an optimizer step on each
layer's parameters; a loss), and exits. Nothing is returned but the side effect
that matters: every kernel it ran is now in Numba's on-disk cache, where the
process that started the worker loads it instead of compiling it.

A job is ``{"dtype": str, "batch_size": int, "layers": [{"entry": <layer config
entry>, "input_shape": [...], "input_grad": bool, "adopt": bool (its forward is
applied by the layer before it), "part": null or one part of a Conv2D (see
:func:`run_conv_part`)}, ...], "optimizer": entry or
null, "loss": entry or null, "output_shape": [...]}``, the optimizer and loss as
``{"class_name": ..., "config": ...}`` entries (as a saved model holds them); it
comes from the parent process, never from a file.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def run_layer(spec: dict, dtype: np.dtype, batch_size: int, optimizer) -> None:
    """Forward (evaluation and training mode) and backward through one layer
    built from ``spec``, then an optimizer step on its parameters."""
    from . import layers

    layer = layers.from_config(spec["entry"])
    input_shape = tuple(spec["input_shape"])
    layer.build(input_shape, dtype, np.random.default_rng(0))
    x = np.zeros((batch_size, *input_shape), dtype=dtype)
    if spec.get("part") is not None:
        run_conv_part(layer, spec["part"], x, optimizer)
        return
    if spec.get("adopt"):
        # The model applies this activation in the kernel before it: only its
        # backward runs a kernel of its own.
        out = layer.adopt_clamped(x)
    else:
        layer.forward(x, training=False)
        out = layer.forward(x, training=True)
    layer.backward(np.ones_like(out), input_grad=spec["input_grad"])
    if optimizer is not None and layer.trainable and layer.params:
        optimizer.step((f"{layer.name}.{key}", param, layer.grads[key])
                       for key, param in layer.params.items())


def run_conv_part(layer, part: str, x: np.ndarray, optimizer) -> None:
    """One part of a Conv2D (no activation): ``"forward"`` (both modes),
    ``"forward+input"`` (and the input gradient, which runs forward kernels),
    ``"weight"`` (the weight and bias gradients, an optimizer step on them) or
    ``"input"`` (the input gradient alone)."""
    from .functional.conv import conv2d_backward_trusted

    if part not in ("forward", "forward+input", "weight", "input"):
        raise ValueError(f"run_conv_part: unknown part {part!r}")
    dy = np.ones((x.shape[0], *layer.output_shape), dtype=x.dtype)
    weight = layer.params["weight"]
    if part in ("forward", "forward+input"):
        layer.forward(x, training=False)
        layer.forward(x, training=True)
    if part in ("input", "forward+input"):
        conv2d_backward_trusted(dy, x, weight, layer._geo, param_grads=False)
    if part != "weight":
        return
    _, dweight, dbias = conv2d_backward_trusted(dy, x, weight, layer._geo,
                                                input_grad=False)
    grads = {"weight": dweight, "bias": dbias}
    if optimizer is not None and layer.trainable:
        optimizer.step((f"{layer.name}.{key}", param, grads[key])
                       for key, param in layer.params.items())


def run_loss(entry: dict, dtype: np.dtype, batch_size: int, output_shape) -> None:
    """The forward and backward kernels of the loss ``entry`` names
    (``{"class_name": ..., "config": ...}``) on zeros."""
    from . import losses

    loss_fn = losses.from_config(entry)
    out = np.zeros((batch_size, *output_shape), dtype=dtype)
    target = loss_fn.prepare_target(np.zeros((batch_size, *out.shape[2:]), np.int64)
                                    if isinstance(loss_fn, losses.CrossEntropy)
                                    else np.zeros_like(out), out)
    loss_fn.forward(out, target)
    loss_fn.backward(out, target)


def run_job(job: dict) -> None:
    """Everything one job names (see the module docstring)."""
    from . import optimizers

    dtype = np.dtype(job["dtype"])
    batch_size = job["batch_size"]
    optimizer = None
    if job.get("optimizer") is not None:
        optimizer = optimizers.from_config(job["optimizer"])
    for spec in job["layers"]:
        run_layer(spec, dtype, batch_size, optimizer)
    if job.get("loss") is not None:
        run_loss(job["loss"], dtype, batch_size, tuple(job["output_shape"]))


def main() -> int:
    run_job(json.load(sys.stdin))
    return 0


if __name__ == "__main__":
    sys.exit(main())
