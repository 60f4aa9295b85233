"""Optimizers with PyTorch's exact update rules: SGD, Adam, AdamW, RMSprop.

Each optimizer updates parameters IN PLACE (layers keep references to their arrays)
from ``(name, param, grad)`` triples, where ``name`` is the state-dict key
(``"0.weight"``). Its state is plain arrays keyed by that name and a slot
(``state["0.weight"]["momentum_buffer"]``), so it saves to an ``.npz`` without pickle
and survives a save/load cycle bit for bit.

Every rule below is PyTorch's single-tensor CPU implementation, operation for
operation, so a float64 run matches ``torch.optim`` to rounding and a float32 run to
float32 rounding. Gradient clipping happens first, on the raw gradients, as it does
when ``torch.nn.utils.clip_grad_norm_`` is called before ``optimizer.step()``.

The updates run as fused element-wise kernels (``fastcnn/kernels/*/optim.py``) that
reproduce those formulas bit for bit on the CPU. Parameters may be NumPy arrays or
CUDA device arrays (a model on "cuda"): the state arrays then live beside their
parameter, on the device, and :meth:`Optimizer.get_state` returns host copies.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable

import numpy as np

from . import _registry, backend
from ._checks import is_int as _is_int
from .functional import _validate as v


def _flat(array):
    """The 1-D view of a parameter-shaped array that the kernels take."""
    if isinstance(array, np.ndarray) and not array.flags.c_contiguous:
        raise ValueError(
            "optimizer step: parameters, gradients and optimizer state must be "
            f"C-contiguous, got an array with strides {array.strides}."
        )
    return array.reshape(array.size)


def _kernels(array):
    """The optim kernels where ``array`` lives."""
    return backend.device_of(array).kernels("optim")


#: The largest step count (``iterations``, Adam's per-parameter ``step``) a restored
#: state may hold: exact in a float64 (``beta ** step``) and far from int64 overflow.
MAX_STEPS = 2**53

#: Slots whose values are running means of squares: negative ones would give NaN
#: from the square root, so a restored state may not hold them.
_NON_NEGATIVE_SLOTS = ("exp_avg_sq", "max_exp_avg_sq", "square_avg")


class Optimizer:
    """Base class: learning rate, clipping, state and the step counter.

    Parameters
    ----------
    lr : float
        Learning rate (>= 0). ``initial_lr`` keeps the value given here; schedules
        scale from it while ``lr`` holds the rate in use.
    clipnorm : float, optional
        Rescale all gradients together so that their global L2 norm is at most this
        (``torch.nn.utils.clip_grad_norm_``: factor ``clipnorm / (norm + 1e-6)``
        when below 1).
    clipvalue : float, optional
        Clip every gradient element to ``[-clipvalue, clipvalue]``.
    learning_rate : float, optional
        Keras's name for ``lr`` (give one or the other).
    """

    #: Hyper-parameters a schedule may change during training (saved with the state).
    dynamic = ("lr",)
    #: ``(flat params, {slot: (flat array, per-parameter views)})``: the flat state
    #: arrays of the last :meth:`step` with ``flat=`` (None before any).
    _flat_state = None

    def __init__(self, lr: float, clipnorm: float | None = None,
                 clipvalue: float | None = None, learning_rate: float | None = None):
        op = type(self).__name__
        if learning_rate is not None:
            default = inspect.signature(type(self).__init__).parameters["lr"].default
            if lr != default:
                raise ValueError(f"{op}: give lr or learning_rate (its Keras name), "
                                 f"not both; got lr={lr!r}, "
                                 f"learning_rate={learning_rate!r}.")
            lr = learning_rate
        self.lr = v.real_number(op, "lr", lr, low=0.0)
        self.initial_lr = self.lr
        self.clipnorm = (None if clipnorm is None else
                         v.real_number(op, "clipnorm", clipnorm, low=0.0,
                                       low_open=True))
        self.clipvalue = (None if clipvalue is None else
                          v.real_number(op, "clipvalue", clipvalue, low=0.0,
                                        low_open=True))
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.iterations = 0
        # Set by set_state() without params: the restored arrays are checked
        # against the parameters at the next step, before any kernel sees them.
        self._unchecked = False

    def slots(self) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """``(required, optional)``: the state slots one parameter has with this
        configuration. A parameter's state holds all the required slots or none
        (not stepped yet), plus any of the optional ones.

        None (the base class; a custom optimizer that does not say): any slot
        names, and a 0-d slot is taken for a scalar, as Adam's step. A subclass
        that keeps other slots than its parent overrides this.

        Shape: no arrays.
        """
        return None

    # ------------------------------------------------------------------ stepping

    def step(self, params: Iterable[tuple[str, np.ndarray, np.ndarray]],
             flat=None) -> None:
        """Apply one update to every ``(name, param, grad)`` (params change in place).

        ``flat``: a :class:`fastcnn.training.flat_params.FlatParams` whose views these
        params and grads are. The built-in optimizers then update them all at once
        over the flat arrays (one kernel launch instead of one per parameter; the
        same result, the updates being element-wise), keeping each parameter's
        state as views of flat state arrays. Anything that does not fit (clipnorm,
        parameters at different steps, a subclass with its own ``update``) takes
        the per-parameter path.

        Shape: each grad has its param's shape and dtype.
        """
        params = list(params)
        if getattr(self, "_unchecked", False):
            self.check_state({name: param for name, param, _ in params})
        self.place_state(params)
        if flat is not None and self._step_flat(flat, params):
            self.iterations += 1
            return
        grads = self.clip([g for _, _, g in params])
        for (name, param, _), grad in zip(params, grads, strict=True):
            self.update(param, grad, self.state.setdefault(name, {}))
        self.iterations += 1

    def _step_flat(self, flat, params) -> bool:
        """One update over ``flat``'s arrays; False (nothing done) where it does not
        apply, and the caller updates parameter by parameter."""
        if (type(self).update not in _ELEMENTWISE_UPDATES or self.clipnorm is not None
                or not flat.matches(params)):
            return False
        merged = self._merged_state(flat)
        if merged is None:
            return False
        grad = flat.grad
        if self.clipvalue is not None:
            grad = self._elementwise("clip_by_value", grad, self.clipvalue)
        before = set(merged)
        self.update(flat.param, grad, merged)
        for slot, value in merged.items():
            if value.ndim == 0:  # a scalar (Adam's step): each parameter its own copy
                for name in flat.names:
                    held = self.state.setdefault(name, {}).get(slot)
                    if held is None:
                        self.state[name][slot] = value.copy()
                    else:
                        held[...] = value
            elif slot not in before:  # made by this update: shared out as views
                self._share_out(flat, slot, value)
        return True

    def _share_out(self, flat, slot, whole) -> None:
        """Give each parameter of ``flat`` its view of the flat state ``whole``."""
        views = flat.views(whole)
        for name, view in zip(flat.names, views, strict=True):
            self.state.setdefault(name, {})[slot] = view
        if self._flat_state is None or self._flat_state[0] is not flat:
            self._flat_state = (flat, {})
        self._flat_state[1][slot] = (whole, views)

    def _merged_state(self, flat) -> dict | None:
        """The state of every parameter of ``flat`` as one dict of flat arrays (and
        scalars), or None where the parameters' states differ in their slots or
        scalars. Slot arrays that are not this pack's views (restored, or made
        parameter by parameter) are copied into a new flat array once."""
        states = [self.state.get(name, {}) for name in flat.names]
        slots = set(states[0])
        if any(set(state) != slots for state in states):
            return None
        own = self._flat_state
        own = own[1] if own is not None and own[0] is flat else {}
        merged = {}
        for slot in sorted(slots):
            values = [state[slot] for state in states]
            if values[0].ndim == 0:
                if any(v.ndim != 0 or v != values[0] for v in values):
                    return None
                merged[slot] = values[0].copy()
                continue
            whole, views = own.get(slot, (None, ()))
            if whole is None or any(v is not view
                                    for v, view in zip(values, views, strict=True)):
                dev = backend.device_of(flat.param)
                whole = dev.zeros(flat.param.shape[0], flat.param.dtype)
                for view, value in zip(flat.views(whole), values, strict=True):
                    if value.size:
                        dev.copy_into(view, value)
                self._share_out(flat, slot, whole)
            merged[slot] = whole
        return merged

    def place_state(self, params: Iterable[tuple[str, object, object]]) -> None:
        """Move every state array to where its parameter lives (the device or the
        host), e.g. after ``model.to("cuda")`` or a restored state.

        Shape: ``(name, param, grad)`` triples as in :meth:`step`.
        """
        for name, param, _ in params:
            slots = self.state.get(name)
            if not slots:
                continue
            dev = backend.device_of(param)
            for slot, value in slots.items():
                if value.shape != param.shape or dev.holds(value):
                    continue  # a scalar (Adam's step count stays on the host)
                slots[slot] = dev.move_in(value)

    def clip(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        """The gradients after ``clipvalue`` and ``clipnorm`` (new arrays; the inputs
        are left alone)."""
        if self.clipvalue is not None:
            grads = [self._elementwise("clip_by_value", g, self.clipvalue)
                     for g in grads]
        if self.clipnorm is not None and grads:
            # torch: the norm of the per-tensor norms, each in the tensor's dtype.
            # Device gradients are copied to the host for it, so the norm is NumPy's
            # on either side (clipnorm costs one transfer of the gradients).
            norms = np.array([np.linalg.norm(backend.to_host(g).reshape(-1))
                              for g in grads], dtype=grads[0].dtype)
            total = np.linalg.norm(norms)
            coef = min(self.clipnorm / (float(total) + 1e-6), 1.0)
            grads = [self._elementwise("scale_by", g, coef) for g in grads]
        return grads

    @staticmethod
    def _elementwise(kernel: str, grad, scalar: float):
        """A new array (beside ``grad``) from the optim kernel ``kernel``."""
        out = backend.device_of(grad).empty_like(grad)
        getattr(_kernels(grad), kernel)(_flat(grad), _flat(out), float(scalar))
        return out

    def update(self, param: np.ndarray, grad: np.ndarray, state: dict) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------- serialisation

    def get_config(self) -> dict:
        """The ``__init__`` arguments (``lr`` is ``initial_lr``)."""
        return {"lr": self.initial_lr, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue}

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """``(arrays, scalars)``: the per-parameter arrays (NumPy, copied from the
        device where they live there) flattened to ``"<param>/<slot>"`` keys, and
        the step counter with the current values of the hyper-parameters schedules
        change."""
        arrays = {f"{name}/{slot}": backend.to_host(value)
                  for name, slots in self.state.items()
                  for slot, value in slots.items()}
        scalars = {"iterations": self.iterations}
        for attr in self.dynamic:
            value = getattr(self, attr)
            scalars[attr] = list(value) if isinstance(value, tuple) else value
        return arrays, scalars

    def set_state(self, arrays: dict[str, np.ndarray], scalars: dict,
                  params: dict | None = None) -> None:
        """Restore what :meth:`get_state` returned, after checking all of it (the
        state may come from an untrusted file): nothing changes if anything fails.

        Parameters
        ----------
        arrays : dict
            ``"<param>/<slot>"`` keys. Each slot must be one of :meth:`slots`, a
            parameter's slots must be all the required ones or none, every array
            must be finite, and the running means of squares non-negative; Adam's
            ``step`` is a 0-d int64 in ``[1, MAX_STEPS]``.
        scalars : dict
            ``iterations`` (an int in ``[0, MAX_STEPS]``) and the hyper-parameters
            in :attr:`dynamic`, which go through the constructor's own checks.
        params : dict, optional
            ``{name: parameter}``: every array must then belong to a parameter and
            have exactly its shape and dtype. Without it that check runs at the
            next :meth:`step`, before any kernel sees the arrays.

        Raises
        ------
        ValueError
            Anything that does not fit, naming the key or the hyper-parameter.

        Shape: each slot array has its parameter's shape (``step``: 0-d).
        """
        op = f"{type(self).__name__}: optimizer state"
        iterations, dynamic = self._checked_scalars(op, scalars)
        state = self._checked_arrays(op, arrays)
        if params is not None:
            self._check_against(op, state, params)
        self.state = state
        self.iterations = iterations
        for attr, value in dynamic.items():
            setattr(self, attr, value)
        self._unchecked = params is None and bool(state)

    def set_dynamic(self, **values) -> None:
        """Set hyper-parameters named in :attr:`dynamic` (what schedules change:
        ``lr``, ``momentum``, ``betas``) after the constructor's own checks, e.g.
        ``opt.set_dynamic(lr=0.01, betas=(0.85, 0.999))``. Nothing changes if a
        value is refused.

        Raises
        ------
        ValueError
            A value the constructor refuses (NaN, out of range), or a name not in
            :attr:`dynamic`.

        Shape: no arrays.
        """
        _, checked = self._checked_scalars(type(self).__name__, values)
        for attr, value in checked.items():
            setattr(self, attr, value)

    def check_state(self, params: dict) -> None:
        """Check that every state array belongs to a parameter of ``params``
        (``{name: parameter}``) with its exact shape and dtype.

        Shape: each slot array has its parameter's shape (``step``: 0-d).
        """
        self._check_against(f"{type(self).__name__}: optimizer state", self.state,
                            params)
        self._unchecked = False

    def _checked_scalars(self, op: str, scalars) -> tuple[int, dict]:
        if not isinstance(scalars, dict):
            raise ValueError(f"{op}: the scalars must be a dict, got {scalars!r:.100}.")
        unknown = set(scalars) - {"iterations", *self.dynamic}
        if unknown:
            raise ValueError(
                f"{op}: unknown scalars {sorted(map(str, unknown))!r:.200}; "
                f"{type(self).__name__} keeps iterations and {list(self.dynamic)}."
            )
        iterations = scalars.get("iterations", 0)
        if not _is_int(iterations) or not 0 <= iterations <= MAX_STEPS:
            raise ValueError(
                f"{op}: iterations must be an int in [0, 2**53], got "
                f"{iterations!r:.100}."
            )
        changed = {attr: scalars[attr] for attr in self.dynamic if attr in scalars}
        if not changed:
            return int(iterations), {}
        # The saved values of the hyper-parameters a schedule changes go through
        # the constructor's own checks, with the other arguments as configured
        # (SGD's nesterov needs momentum > 0, Adam's betas lie in [0, 1), ...).
        config = {**self.get_config(), **changed}
        try:
            probe = type(self)(**config)
        except (TypeError, ValueError) as error:
            text = str(error).removeprefix(f"{type(self).__name__}: ")
            raise ValueError(f"{op}: {text}") from None
        return int(iterations), {attr: getattr(probe, attr) for attr in changed}

    def _checked_arrays(self, op: str, arrays) -> dict[str, dict[str, np.ndarray]]:
        if not isinstance(arrays, dict):
            raise ValueError(f"{op}: the arrays must be a dict, got {arrays!r:.100}.")
        known = self.slots()
        required, optional = known or ((), ())
        state: dict[str, dict[str, np.ndarray]] = {}
        for key, value in arrays.items():
            name, sep, slot = str(key).rpartition("/")
            if not sep:
                raise ValueError(
                    f"{type(self).__name__}: optimizer state key {key!r:.100} is not "
                    f"'<param>/<slot>'."
                )
            if known and slot not in required and slot not in optional:
                raise ValueError(
                    f"{op}: {key!r:.100} is not a slot {type(self).__name__} keeps "
                    f"with this configuration ({[*required, *optional]})."
                )
            if isinstance(value, np.generic):  # a NumPy scalar: a 0-d array
                value = np.asarray(value)
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf":
                raise ValueError(
                    f"{op}: {key!r:.100} must be a numeric numpy array, got "
                    f"{getattr(value, 'dtype', type(value).__name__)}."
                )
            if slot == "step":
                scalar = value.shape == () and value.dtype == np.int64
                if not scalar or not 1 <= int(value) <= MAX_STEPS:
                    shown = f", value {int(value)}" if scalar else ""
                    raise ValueError(
                        f"{op}: {key!r:.100} must be a 0-d int64 in [1, 2**53], got "
                        f"shape {value.shape}, dtype {value.dtype}{shown}."
                    )
            elif known is None and value.ndim == 0:
                pass  # a custom optimizer's scalar slot
            elif value.ndim == 0 or value.dtype.kind != "f":
                raise ValueError(
                    f"{op}: {key!r:.100} must be a float array of its parameter's "
                    f"shape, got shape {value.shape} and dtype {value.dtype}."
                )
            elif not np.isfinite(value).all():
                raise ValueError(f"{op}: {key!r:.100} holds NaN or infinity.")
            elif slot in _NON_NEGATIVE_SLOTS and (value < 0).any():
                raise ValueError(
                    f"{op}: {key!r:.100} holds negative values; it is a running "
                    f"mean of squares."
                )
            # A C-contiguous copy: the kernels take flat views of it.
            state.setdefault(name, {})[slot] = np.array(value, order="C")
        for name, slots in state.items():
            held = set(slots) - set(optional)
            if known and held and held != set(required):
                raise ValueError(
                    f"{op}: {name!r:.100} has the slots {sorted(held)}, but "
                    f"{type(self).__name__} keeps all of {sorted(required)} for a "
                    f"parameter or none."
                )
        return state

    @staticmethod
    def _check_against(op: str, state: dict, params: dict) -> None:
        for name, slots in state.items():
            if name not in params:
                raise ValueError(
                    f"{op}: {name!r:.100} belongs to no parameter of the model."
                )
            param = params[name]
            for slot, value in slots.items():
                if slot == "step" or value.ndim == 0:
                    continue  # scalars (known slots were checked to be ndim > 0)
                if value.shape != tuple(param.shape) or value.dtype != param.dtype:
                    raise ValueError(
                        f"{op}: '{name}/{slot}' has shape {value.shape} and dtype "
                        f"{value.dtype} but {name} has shape {tuple(param.shape)} "
                        f"and dtype {param.dtype}."
                    )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov and weight decay.

    PyTorch's rule: ``g = grad + weight_decay * p``; ``b = g`` on the first step,
    else ``b = momentum * b + (1 - dampening) * g``; ``g = g + momentum * b``
    (Nesterov) or ``g = b``; ``p = p - lr * g``.

    Shape: params of any shape.
    """

    dynamic = ("lr", "momentum")

    def __init__(self, lr: float = 0.01, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, clipnorm: float | None = None,
                 clipvalue: float | None = None, learning_rate: float | None = None):
        super().__init__(lr, clipnorm, clipvalue, learning_rate)
        self.momentum = v.real_number("SGD", "momentum", momentum, low=0.0)
        self.dampening = v.real_number("SGD", "dampening", dampening)
        self.weight_decay = v.real_number("SGD", "weight_decay", weight_decay,
                                          low=0.0)
        self.nesterov = v.boolean("SGD", "nesterov", nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"SGD: nesterov=True needs momentum > 0 and dampening == 0, got "
                f"momentum={momentum!r}, dampening={dampening!r}."
            )

    def update(self, param, grad, state):
        buf, first_step = grad, False  # grad stands in for an unused buffer
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            first_step = buf is None
            if first_step:  # the kernel sets it to the first gradient
                buf = state["momentum_buffer"] = backend.device_of(param).empty_like(
                    param)
        _kernels(param).sgd_update(
            _flat(param), _flat(grad), _flat(buf), float(self.lr),
            float(self.weight_decay), float(self.momentum), float(self.dampening),
            bool(self.nesterov), first_step,
        )

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum,
                "dampening": self.dampening, "weight_decay": self.weight_decay,
                "nesterov": self.nesterov}

    def slots(self):
        # The buffer appears on the first step with momentum != 0 (a schedule may
        # turn momentum on later).
        return (), ("momentum_buffer",)


def _betas(op: str, betas) -> tuple[float, float]:
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise TypeError(f"{op}: betas must be a pair of floats, got {betas!r}.")
    return (v.real_number(op, "betas[0]", betas[0], low=0.0, high=1.0,
                          high_open=True),
            v.real_number(op, "betas[1]", betas[1], low=0.0, high=1.0,
                          high_open=True))


class Adam(Optimizer):
    """Adam (with ``amsgrad``), and with ``decoupled_weight_decay`` AdamW.

    PyTorch's rule, per parameter with its own step count t:
    ``m = m + (1 - b1) * (g - m)``; ``v = b2 * v + (1 - b2) * g * g``;
    ``denom = sqrt(v) / sqrt(1 - b2**t) + eps`` (``v`` replaced by its running
    maximum with amsgrad); ``p = p - lr / (1 - b1**t) * m / denom``. Weight decay is
    L2 (``g = g + wd * p``) here and ``p = p * (1 - lr * wd)`` in AdamW.

    Shape: params of any shape.
    """

    dynamic = ("lr", "betas")
    _decoupled = False

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 learning_rate: float | None = None):
        super().__init__(lr, clipnorm, clipvalue, learning_rate)
        op = type(self).__name__
        self.betas = _betas(op, betas)
        self.eps = v.real_number(op, "eps", eps, low=0.0)
        self.weight_decay = v.real_number(op, "weight_decay", weight_decay, low=0.0)
        self.amsgrad = v.boolean(op, "amsgrad", amsgrad)

    def slots(self):
        return (("step", "exp_avg", "exp_avg_sq") + ("max_exp_avg_sq",) * self.amsgrad,
                ())

    def update(self, param, grad, state):
        beta1, beta2 = self.betas
        if "step" not in state:
            state["step"] = np.zeros((), dtype=np.int64)
            for slot in ("exp_avg", "exp_avg_sq") + ("max_exp_avg_sq",) * self.amsgrad:
                state[slot] = backend.device_of(param).zeros(param.shape,
                                                             param.dtype)
        state["step"] += 1
        step = int(state["step"])
        # grad stands in for the running maximum where amsgrad is off (unused).
        maximum = state["max_exp_avg_sq"] if self.amsgrad else grad
        _kernels(param).adam_update(
            _flat(param), _flat(grad), _flat(state["exp_avg"]),
            _flat(state["exp_avg_sq"]), _flat(maximum), float(self.lr),
            float(beta1), float(beta2), self.lr / (1 - beta1**step),
            math.sqrt(1 - beta2**step), float(self.eps), float(self.weight_decay),
            self._decoupled, bool(self.amsgrad),
        )

    def get_config(self):
        return {**super().get_config(), "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (PyTorch's AdamW: default decay 0.01).

    Shape: params of any shape.
    """

    _decoupled = True

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 learning_rate: float | None = None):
        super().__init__(lr, betas, eps, weight_decay, amsgrad, clipnorm, clipvalue,
                         learning_rate)


class RMSprop(Optimizer):
    """RMSprop with PyTorch's rule (``eps`` added outside the square root).

    ``s = alpha * s + (1 - alpha) * g * g``; centered: ``a = a + (1 - alpha) *
    (g - a)`` and ``avg = sqrt(s - a * a) + eps``, else ``avg = sqrt(s) + eps``;
    with momentum ``b = momentum * b + g / avg`` and ``p = p - lr * b``, else
    ``p = p - lr * g / avg``.

    Shape: params of any shape.
    """

    dynamic = ("lr", "momentum")

    def __init__(self, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False, clipnorm: float | None = None,
                 clipvalue: float | None = None, learning_rate: float | None = None):
        super().__init__(lr, clipnorm, clipvalue, learning_rate)
        self.alpha = v.real_number("RMSprop", "alpha", alpha, low=0.0)
        self.eps = v.real_number("RMSprop", "eps", eps, low=0.0)
        self.weight_decay = v.real_number("RMSprop", "weight_decay", weight_decay,
                                          low=0.0)
        self.momentum = v.real_number("RMSprop", "momentum", momentum, low=0.0)
        self.centered = v.boolean("RMSprop", "centered", centered)

    def slots(self):
        # The momentum buffer appears once momentum > 0 (a schedule may change it).
        return ("square_avg",) + ("grad_avg",) * self.centered, ("momentum_buffer",)

    def update(self, param, grad, state):
        def zeros():
            return backend.device_of(param).zeros(param.shape, param.dtype)

        if "square_avg" not in state:
            state["square_avg"] = zeros()
            if self.centered:
                state["grad_avg"] = zeros()
        if self.momentum > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = zeros()
        # grad stands in for the slots this configuration does not use.
        _kernels(param).rmsprop_update(
            _flat(param), _flat(grad), _flat(state["square_avg"]),
            _flat(state["grad_avg"] if self.centered else grad),
            _flat(state["momentum_buffer"] if self.momentum > 0 else grad),
            float(self.lr), float(self.alpha), float(self.eps),
            float(self.weight_decay), float(self.momentum), bool(self.centered),
        )

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered}


OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop}


#: The updates that are element-wise with the same hyper-parameters for every
#: element, so that one call over flat arrays equals one call per parameter
#: (:meth:`Optimizer.step` with ``flat=``). A subclass with its own ``update``
#: is not among them.
_ELEMENTWISE_UPDATES = frozenset({SGD.update, Adam.update, RMSprop.update})


def get(identifier) -> Optimizer:
    """Resolve ``compile(optimizer=...)``: an :class:`Optimizer` or a name
    (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``) with default settings."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        for name, cls in OPTIMIZERS.items():
            if identifier.lower() == name.lower():
                return cls()
        raise ValueError(
            f"compile: unknown optimizer {identifier!r}; use one of "
            f"{[n.lower() for n in OPTIMIZERS]} or a fastcnn.optimizers.Optimizer."
        )
    raise TypeError(
        f"compile: optimizer must be a name or a fastcnn.optimizers.Optimizer, got "
        f"{identifier!r}."
    )


def from_config(config,
                label: str = "fastcnn.optimizers.from_config: the entry") -> Optimizer:
    """Rebuild an optimizer saved as ``{"class_name": ..., "config": {...}}``; it
    may come from an untrusted file (see :func:`fastcnn._registry.build`).

    Raises
    ------
    ValueError
        A bad entry, an unknown optimizer type or bad arguments; the message
        starts with ``label``.

    Shape: no arrays.
    """
    return _registry.build(OPTIMIZERS, config, label, noun="optimizer type")
