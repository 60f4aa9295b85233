"""Every trainable parameter of a model as a view of one flat array, every gradient
as a view of another, so that an optimizer updates them all in one kernel launch.

Why: the optimizers' updates are element-wise, and a GPU launch costs far more than
the few thousand elements of a bias; a model with ten parameter arrays paid ten
launches per step. On the CPU each call costs a dispatch and a parallel region
(LeNet-5 at batch 1: a train_step 0.46-0.52 -> 0.41 ms with one call).

Packed, the layers still see their own arrays (views, of the shapes they built),
the backward kernels write the gradients straight into their views, and the
optimizer runs once over the flat arrays (:meth:`fastcnn.optimizers.Optimizer.step`
with ``flat=``).

Packing replaces each ``layer.params[key]`` and ``layer.grads[key]`` with a view
holding the same values. Anything that later replaces one of those arrays
(``set_weights`` with new arrays, moving the model, freezing a layer) makes the
pack stale: :func:`packed` notices (it compares the arrays by identity) and packs
again. ``fit`` / ``train_step`` pack on their first step, so an array taken from
``layer.params`` before it is the model's no longer: take parameters after
training starts, or through ``get_weights`` / ``state_dict`` (copies). A model
with a layer type of the user's is not packed (:func:`_builtin`): such a layer
may hold its own reference to a parameter.
"""

from __future__ import annotations

from .. import backend


class FlatParams:
    """The flat parameter and gradient arrays of a model and their per-parameter
    views, in ``model._named_grads()`` order.

    Attributes
    ----------
    names : tuple of str
        The parameters' state-dict names.
    param, grad : array
        1-D arrays (on the parameters' device) holding every parameter, and every
        gradient, one after another.
    spans : tuple of (int, int)
        ``(start, stop)`` of each parameter in the flat arrays.
    """

    def __init__(self, names, param, grad, spans, param_views, grad_views) -> None:
        self.names = tuple(names)
        self.param = param
        self.grad = grad
        self.spans = tuple(spans)
        self._param_views = tuple(param_views)
        self._grad_views = tuple(grad_views)

    def matches(self, named_grads) -> bool:
        """True while ``named_grads`` (``(name, param, grad)`` triples) are exactly
        this pack's names and views."""
        if len(named_grads) != len(self.names):
            return False
        for (name, param, grad), own, pv, gv in zip(
                named_grads, self.names, self._param_views, self._grad_views,
                strict=True):
            if name != own or param is not pv or grad is not gv:
                return False
        return True

    def views(self, flat) -> list:
        """``flat`` (1-D, the length of :attr:`param`) cut into the parameters'
        shapes, as views."""
        return [flat[start:stop].reshape(pv.shape)
                for (start, stop), pv in zip(self.spans, self._param_views,
                                             strict=True)]


def _trainable(model):
    """``(name, layer, key)`` of the parameters ``model._named_grads()`` yields."""
    for prefix, layer in model._keyed_layers():
        if layer.trainable:
            for key in layer.params:
                yield f"{prefix}.{key}", layer, key


def _builtin(layer) -> bool:
    """Whether ``layer`` is one of fastcnn's own types, which read their
    parameters from ``layer.params`` at every call and write gradients in place.
    A user's layer may keep its own reference to a parameter array (``self.w =
    self.params["w"]`` in ``_build``) or assign new gradient arrays: packing would
    leave it training an array the optimizer no longer updates."""
    return type(layer).__module__.startswith("fastcnn.")


def pack(model) -> FlatParams | None:
    """Put ``model``'s trainable parameters and gradients into flat arrays (see the
    module docstring); None where they cannot share one: no parameters, several
    dtypes or devices, or a layer type of the user's (see :func:`_builtin`)."""
    entries = list(_trainable(model))
    if not entries or not all(_builtin(layer) for _, layer, _ in entries):
        return None
    params = [layer.params[key] for _, layer, key in entries]
    dtypes = {p.dtype for p in params}
    devices = {backend.device_of(p).name for p in params}
    if len(dtypes) != 1 or len(devices) != 1:
        return None
    dev = backend.device_of(params[0])
    total = sum(int(p.size) for p in params)
    dtype = params[0].dtype
    flat_param = dev.zeros(total, dtype)  # held for the model's life: not pooled
    flat_grad = dev.zeros(total, dtype)
    spans, param_views, grad_views = [], [], []
    start = 0
    for (_, layer, key), param in zip(entries, params, strict=True):
        stop = start + int(param.size)
        shape = tuple(param.shape)
        pv = flat_param[start:stop].reshape(shape)
        gv = flat_grad[start:stop].reshape(shape)
        if param.size:
            dev.copy_into(pv, param)
            grad = layer.grads.get(key)
            if grad is not None and tuple(grad.shape) == shape:
                dev.copy_into(gv, grad)
        layer.params[key] = pv
        layer.grads[key] = gv
        spans.append((start, stop))
        param_views.append(pv)
        grad_views.append(gv)
        start = stop
    return FlatParams([name for name, _, _ in entries], flat_param, flat_grad,
                      spans, param_views, grad_views)


def packed(model) -> FlatParams | None:
    """``model``'s pack, made or made again where the parameters changed since."""
    flat = getattr(model, "_flat_params", None)
    if flat is None or not flat.matches(list(model._named_grads())):
        flat = model._flat_params = pack(model)
    return flat
