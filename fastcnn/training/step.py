"""One training step on one process: forward, loss, backward, optimizer step."""

from __future__ import annotations

import math

from .. import backend
from .. import metrics as metrics_mod


def train_batch(model, x, y, class_weight, check_finite=False, sample_weight=None):
    """One step; returns ``(loss, host output, target)``. With ``check_finite``, a
    non-finite loss returns ``(loss, None, None)`` before backward and the update,
    so the weights stay those that gave it. ``sample_weight`` (N,) is passed to
    the loss only when given (a custom loss need not take it otherwise)."""
    out = model.forward(x, training=True)
    target = model.loss.prepare_target(y, out)
    extra = () if sample_weight is None else (sample_weight,)
    loss = model.loss.forward(out, target, class_weight, *extra)
    if check_finite and not math.isfinite(loss):  # a host float: ~0.1 us
        return loss, None, None
    model.backward(model.loss.backward(out, target, class_weight, *extra),
                   input_grad=False)
    model.optimizer.step(model._named_grads())
    # The metrics run on the host: a copy of the (N, classes) output is small.
    return loss, backend.to_host(out), target


def batch_logs(model, loss, out, target) -> dict[str, float]:
    """The loss and the model's metrics of one batch, as callbacks see them."""
    return {"loss": loss, **metrics_mod.batch_values(model.metrics, out, target)}
