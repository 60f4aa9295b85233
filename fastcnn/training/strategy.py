"""Strategies: how the training loop's steps run, on one process or many.

The loop (:mod:`fastcnn.training.loop`) never asks which it has. A strategy has

- ``seed``: the fit seed every process uses; ``is_root``: whether this process
  prints (and writes files);
- ``callbacks_for_rank(callbacks)``: the callbacks this process runs;
- ``num_steps(n, batch_size)``, ``shard(order)``, ``step_rows(step, n,
  batch_size)``: the steps of an epoch of ``n`` rows, this process's share of an
  epoch's order, and the rows all processes together train on at a step;
- ``train_batch(x, y, class_weight) -> logs``: one step, the loss and metrics over
  all processes' rows (:class:`SingleProcess` also takes ``sample_weight=``);
  ``loss_checked_after_step``: whether a non-finite loss is seen only once the
  update is applied;
- ``agree(flag)``: True everywhere if ``flag`` is true anywhere (stop_training);
- ``average_buffers()``: make every process hold the same BatchNorm statistics;
- ``evaluate(x, y, batch_size) -> logs``: validation over all processes.

:class:`SingleProcess` is the plain one; :class:`fastcnn.distributed.DataParallel`
trains over MPI ranks.
"""

from __future__ import annotations

import math

from .step import batch_logs, train_batch


class SingleProcess:
    """Training in this process alone: every step on the whole batch.

    Parameters
    ----------
    model : Sequential
        Built and compiled.
    seed : int
        The fit seed.
    check_finite : bool
        Skip the update of a step whose loss is NaN or infinite (the loop then
        stops), so the weights stay those that gave it.

    Shape: no arrays.
    """

    is_root = True
    loss_checked_after_step = False

    def __init__(self, model, seed: int, check_finite: bool = False) -> None:
        self.model = model
        self.seed = seed
        self.check_finite = check_finite

    def callbacks_for_rank(self, callbacks: list) -> list:
        return list(callbacks)

    def num_steps(self, n: int, batch_size: int) -> int:
        return -(-n // batch_size)

    def shard(self, order):
        return order

    def step_rows(self, step: int, n: int, batch_size: int) -> int:
        return max(0, min(batch_size, n - step * batch_size))

    def train_batch(self, x, y, class_weight=None,
                    sample_weight=None) -> dict[str, float]:
        loss, out, target = train_batch(self.model, x, y, class_weight,
                                        self.check_finite, sample_weight)
        if self.check_finite and not math.isfinite(loss):
            return {"loss": loss}  # the step was not applied
        return batch_logs(self.model, loss, out, target)

    def agree(self, flag: bool) -> bool:
        return flag

    def average_buffers(self) -> None:
        pass

    def evaluate(self, x, y, batch_size: int = 32) -> dict[str, float]:
        return self.model.evaluate(x, y, batch_size=batch_size)


def make_strategy(model, distributed, seed: int, x, y, check_finite: bool):
    """fit's strategy for its ``distributed`` argument: a :class:`SingleProcess`,
    or a :class:`fastcnn.distributed.DataParallel` made on every rank at once (it
    broadcasts rank 0's weights and optimizer state)."""
    if not distributed:
        return SingleProcess(model, seed, check_finite)
    if distributed is not True and isinstance(distributed, bool | int | float):
        raise TypeError(
            f"fit: distributed must be True, False or an mpi4py communicator, "
            f"got {distributed!r}."
        )
    if getattr(model, "device", "cpu") != "cpu":
        raise ValueError(
            f"fit: distributed=True trains on the CPU only for now; this model "
            f"is on {model.device!r} (call model.to('cpu'))."
        )
    # Imported here: fastcnn.distributed is only for MPI jobs.
    from ..distributed import DataParallel

    return DataParallel(model, None if distributed is True else distributed,
                        seed=seed, x=x, y=y)
