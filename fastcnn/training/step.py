"""One training step on one process: forward, loss, backward, optimizer step."""

from __future__ import annotations

import math

from .. import backend
from .. import metrics as metrics_mod
from .flat_params import packed


def train_batch(model, x, y, class_weight, check_finite=False, sample_weight=None):
    """One step; returns ``(loss, host output, target)``. With ``check_finite``, a
    non-finite loss returns ``(loss, None, None)`` without the update, so the
    weights stay those that gave it. ``sample_weight`` (N,) is passed to the loss
    only when given (a custom loss need not take it otherwise).

    The loss is read (``float``) once, after backward is queued: on a GPU the step
    runs without waiting for the host until then. The output is copied to the
    host only for the model's metrics (None without any)."""
    out = model.forward(x, training=True)
    target = model.loss.prepare_target(y, out)
    extra = () if sample_weight is None else (sample_weight,)
    loss, grad = model.loss.forward_backward(out, target, class_weight, *extra)
    model.backward(grad, input_grad=False)
    if check_finite:
        loss = float(loss)
        if not math.isfinite(loss):
            return loss, None, None
    # The parameters share flat arrays: one kernel call (one GPU launch, one
    # parallel region on the CPU) updates them all.
    flat = packed(model)
    model.optimizer.step(model._named_grads(), flat=flat)
    host_out = backend.to_host(out) if model.metrics else None
    return float(loss), host_out, target


def batch_logs(model, loss, out, target) -> dict[str, float]:
    """The loss and the model's metrics of one batch, as callbacks see them."""
    return {"loss": loss, **metrics_mod.batch_values(model.metrics, out, target)}
