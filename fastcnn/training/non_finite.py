"""fit's error for a loss that became NaN or infinite (``check_finite=True``)."""

from __future__ import annotations

import numpy as np

from .. import backend


def _weights_note(model, applied: bool) -> str:
    broken = next((name for name, param, _ in model._named_grads()
                   if not np.isfinite(backend.to_host(param)).all()), None)
    if broken is not None and applied:
        return (f"This step's update was applied (distributed training checks the "
                f"loss over all ranks after the step) and the weights now hold NaN "
                f"or infinity (first in {broken}); reload a checkpoint.")
    if broken is not None:
        return (f"The weights already hold NaN or infinity (first in {broken}): an "
                f"earlier step diverged; reload a checkpoint.")
    if applied:
        return "This step's update was applied; the weights are still finite."
    return ("This step's update was not applied: the model keeps the (finite) "
            "weights that gave this loss.")


def raise_non_finite(model, loss, epoch, epochs, step, n_steps, x, applied: bool,
                     class_weight=None, sample_weight: bool = False):
    """Raise the FloatingPointError for a non-finite ``loss``, with the likely
    causes and what happened to the weights (checked once, here). ``n_steps`` is
    None where a stream's epoch length is unknown; ``x`` is the data (or, for a
    stream, the batch)."""
    weights = _weights_note(model, applied)
    opt = model.optimizer
    low, high = float(np.min(x)), float(np.max(x))
    causes = [
        f"a learning rate too high (lr={opt.lr:g} in {type(opt).__name__}; try "
        f"10-100 times smaller, or clipnorm=1.0)",
        f"inputs not scaled (x ranges over [{low:g}, {high:g}]; scale it to "
        f"about [0, 1] or standardise it)",
        "NaN or infinity in x or y (none was found at the start of fit)",
    ]
    if class_weight is not None:
        causes.append("a class_weight of 0 for every sample of a batch")
    if sample_weight:
        causes.append("a sample_weight of 0 for every sample of a batch")
    of_steps = "" if n_steps is None else f"/{n_steps}"
    raise FloatingPointError(
        f"fit: the loss is {loss} at epoch {epoch + 1}/{epochs}, step "
        f"{step + 1}{of_steps}; training stopped (check_finite=True). {weights} "
        f"Likely causes: {'; '.join(causes)}. Pass check_finite=False to train "
        f"on regardless."
    )
