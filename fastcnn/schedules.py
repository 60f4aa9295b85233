"""Learning-rate schedules: pure functions of the step count.

A schedule is called as ``schedule(step, base_lr) -> lr``. ``step`` counts epochs or
batches (the :class:`~fastcnn.callbacks.LearningRateScheduler` callback chooses) and
``base_lr`` is the optimizer's ``initial_lr``. Being stateless, a schedule gives the
same rate after a save/load/resume cycle as in an uninterrupted run.

The formulas are PyTorch's closed forms (``torch.optim.lr_scheduler``'s
``_get_closed_form_lr``); OneCycle is ``OneCycleLR``'s, including the momentum cycle.
"""

from __future__ import annotations

import bisect
import math
import numbers

from . import _registry


def _int(op: str, name: str, value, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}.")
    return int(value)


def _real(op: str, name: str, value, low: float | None = None,
          high: float | None = None, low_open: bool = False) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or (low is not None and (
            value <= low if low_open else value < low)) or (
            high is not None and value > high):
        lo = "(" if low_open else "["
        raise ValueError(
            f"{op}: {name} must be a finite number in {lo}{low}, {high}], got "
            f"{value!r}."
        )
    return value


class Schedule:
    """Base class: ``schedule(step, base_lr) -> lr``."""

    def __call__(self, step: int, base_lr: float) -> float:
        raise NotImplementedError

    def momentum(self, step: int) -> float | None:
        """The momentum (or Adam's beta1) to use at ``step``; None leaves it."""
        return None

    def get_config(self) -> dict:
        return dict(vars(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class StepLR(Schedule):
    """``lr = base_lr * gamma ** (step // step_size)`` (torch ``StepLR``).

    Shape: no arrays.
    """

    def __init__(self, step_size: int, gamma: float = 0.1):
        self.step_size = _int("StepLR", "step_size", step_size, 1)
        self.gamma = _real("StepLR", "gamma", gamma, low=0.0)

    def __call__(self, step, base_lr):
        return base_lr * self.gamma ** (step // self.step_size)


class MultiStepLR(Schedule):
    """``lr = base_lr * gamma ** (number of milestones <= step)`` (torch
    ``MultiStepLR``).

    Shape: no arrays.
    """

    def __init__(self, milestones, gamma: float = 0.1):
        if not isinstance(milestones, list | tuple):
            raise TypeError(
                f"MultiStepLR: milestones must be a list of ints, got {milestones!r}."
            )
        values = [_int("MultiStepLR", "milestones", m, 0) for m in milestones]
        if values != sorted(values):
            raise ValueError(
                f"MultiStepLR: milestones must be increasing, got {milestones!r}."
            )
        self.milestones = values
        self.gamma = _real("MultiStepLR", "gamma", gamma, low=0.0)

    def __call__(self, step, base_lr):
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, step)


class ExponentialLR(Schedule):
    """``lr = base_lr * gamma ** step`` (torch ``ExponentialLR``).

    Shape: no arrays.
    """

    def __init__(self, gamma: float):
        self.gamma = _real("ExponentialLR", "gamma", gamma, low=0.0)

    def __call__(self, step, base_lr):
        return base_lr * self.gamma**step


class CosineWithWarmup(Schedule):
    """Linear warm-up, then cosine decay to ``min_lr``.

    For ``step < warmup_steps``: ``lr = base_lr * (step + 1) / warmup_steps``.
    Then with ``t = (step - warmup_steps) / (total_steps - warmup_steps)`` clipped to
    ``[0, 1]``: ``lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * t)) / 2``
    (torch ``CosineAnnealingLR``'s closed form after the warm-up).

    Shape: no arrays.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_lr: float = 0.0):
        op = "CosineWithWarmup"
        self.warmup_steps = _int(op, "warmup_steps", warmup_steps, 0)
        self.total_steps = _int(op, "total_steps", total_steps, 1)
        if self.total_steps <= self.warmup_steps:
            raise ValueError(
                f"{op}: total_steps ({total_steps!r}) must exceed warmup_steps "
                f"({warmup_steps!r})."
            )
        self.min_lr = _real(op, "min_lr", min_lr, low=0.0)

    def __call__(self, step, base_lr):
        if step < self.warmup_steps:
            return base_lr * (step + 1) / self.warmup_steps
        span = self.total_steps - self.warmup_steps
        t = min(max((step - self.warmup_steps) / span, 0.0), 1.0)
        return self.min_lr + (base_lr - self.min_lr) * (1 + math.cos(math.pi * t)) / 2


class OneCycle(Schedule):
    """The one-cycle policy (torch ``OneCycleLR``, two phases), ignoring ``base_lr``.

    The rate rises from ``max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start * total_steps - 1`` steps and anneals to ``initial / final_div_factor``
    at step ``total_steps - 1``; ``anneal_strategy`` is ``"cos"`` (``end + (start -
    end) * (1 + cos(pi * pct)) / 2``) or ``"linear"``. With ``cycle_momentum`` the
    momentum (SGD, RMSprop) or beta1 (Adam) moves the opposite way between
    ``max_momentum`` and ``base_momentum``.

    Shape: no arrays.
    """

    def __init__(self, max_lr: float, total_steps: int, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", div_factor: float = 25.0,
                 final_div_factor: float = 1e4, cycle_momentum: bool = True,
                 base_momentum: float = 0.85, max_momentum: float = 0.95):
        op = "OneCycle"
        self.max_lr = _real(op, "max_lr", max_lr, low=0.0, low_open=True)
        self.total_steps = _int(op, "total_steps", total_steps, 1)
        self.pct_start = _real(op, "pct_start", pct_start, low=0.0, high=1.0)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"{op}: anneal_strategy must be 'cos' or 'linear', got "
                f"{anneal_strategy!r}."
            )
        self.anneal_strategy = anneal_strategy
        self.div_factor = _real(op, "div_factor", div_factor, low=0.0, low_open=True)
        self.final_div_factor = _real(op, "final_div_factor", final_div_factor,
                                      low=0.0, low_open=True)
        if not isinstance(cycle_momentum, bool):
            raise TypeError(
                f"{op}: cycle_momentum must be a bool, got {cycle_momentum!r}."
            )
        self.cycle_momentum = cycle_momentum
        self.base_momentum = _real(op, "base_momentum", base_momentum, low=0.0)
        self.max_momentum = _real(op, "max_momentum", max_momentum, low=0.0)

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _phase_value(self, step, values):
        """torch's phase walk: values are (start, peak, end) of the two phases."""
        if step >= self.total_steps:
            raise ValueError(
                f"OneCycle: step {step} is past total_steps={self.total_steps}."
            )
        ends = (float(self.pct_start * self.total_steps) - 1,
                float(self.total_steps - 1))
        starts = (values[0], values[1])
        stops = (values[1], values[2])
        start_step = 0.0
        for i, end_step in enumerate(ends):
            if step <= end_step or i == len(ends) - 1:
                pct = (step - start_step) / (end_step - start_step)
                return self._anneal(starts[i], stops[i], pct)
            start_step = end_step
        raise AssertionError("unreachable")

    def __call__(self, step, base_lr):
        initial = self.max_lr / self.div_factor
        return self._phase_value(step, (initial, self.max_lr,
                                        initial / self.final_div_factor))

    def momentum(self, step):
        if not self.cycle_momentum:
            return None
        return self._phase_value(step, (self.max_momentum, self.base_momentum,
                                        self.max_momentum))


SCHEDULES = {"StepLR": StepLR, "MultiStepLR": MultiStepLR,
             "ExponentialLR": ExponentialLR, "CosineWithWarmup": CosineWithWarmup,
             "OneCycle": OneCycle}


def from_config(entry,
                label: str = "fastcnn.schedules.from_config: the entry") -> Schedule:
    """Rebuild a schedule from ``{"class_name": ..., "config": {...}}`` (its
    ``get_config()``); the entry may come from an untrusted file (see
    :func:`fastcnn._registry.build`).

    Raises
    ------
    ValueError
        A bad entry, an unknown schedule type or bad arguments; the message
        starts with ``label``.

    Shape: no arrays.
    """
    return _registry.build(SCHEDULES, entry, label, noun="schedule type")
