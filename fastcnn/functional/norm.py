"""batch_norm and its backward, with torch.nn.functional.batch_norm's meanings."""

from __future__ import annotations

import numpy as np

from .. import backend
from . import _validate as v


def _check_x(op: str, x: np.ndarray) -> np.ndarray:
    return v.float_array(op, "x", x, ndim=(2, 3, 4))


def _per_channel(op: str, x: np.ndarray, name: str, array, required: bool):
    """Validate a ``(C,)`` parameter of x's dtype; None passes where allowed."""
    if array is None:
        if required:
            raise ValueError(
                f"{op}: {name} is required when training=False (the running "
                f"statistics normalise the input), got None."
            )
        return None
    checked = v.float_array(op, name, array, ndim=1)
    v.same_dtype(op, "x", x, **{name: checked})
    v.shape_is(op, name, checked, (x.shape[1],))
    return checked


def _check_running(op: str, x, running_mean, running_var, training: bool):
    rm = _per_channel(op, x, "running_mean", running_mean, not training)
    rv = _per_channel(op, x, "running_var", running_var, not training)
    if (rm is None) != (rv is None):
        raise ValueError(
            f"{op}: running_mean and running_var must both be arrays or both be "
            f"None, got {type(running_mean).__name__} and "
            f"{type(running_var).__name__}."
        )
    return rm, rv


def _check_batch_size(op: str, x: np.ndarray) -> int:
    """The number of values per channel; training needs more than one, since a
    single value has no spread (and its unbiased variance divides by zero)."""
    count = x.size // x.shape[1]
    if count < 2:
        raise ValueError(
            f"{op}: expected more than 1 value per channel when training, got x of "
            f"shape {x.shape}."
        )
    return count


def _view3(x: np.ndarray) -> np.ndarray:
    """(N, C), (N, C, L) or (N, C, H, W) as the (N, C, S) view the kernels take."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _invstd(var: np.ndarray, eps: float) -> np.ndarray:
    # A negative (or NaN) running variance gives NaN, silently, as in PyTorch.
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 / np.sqrt(var + eps)


def _eval_stats(running_mean: np.ndarray, running_var: np.ndarray, eps: float):
    running_mean = backend.to_host(running_mean)
    running_var = backend.to_host(running_var)
    return running_mean.astype(np.float64), _invstd(running_var.astype(np.float64), eps)


def _saved_stats(op: str, stats, n_chan: int):
    """``(mean, invstd)`` as :func:`batch_norm` returned them: two float64 (C,)
    host arrays."""
    if not isinstance(stats, tuple) or len(stats) != 2 or not all(
            isinstance(a, np.ndarray) and a.dtype == np.float64
            and a.shape == (n_chan,) for a in stats):
        raise ValueError(
            f"{op}: stats must be the (mean, invstd) pair that batch_norm(..., "
            f"return_stats=True) returned: two float64 arrays of shape ({n_chan},)."
        )
    return stats


def _batch_stats(dev, x3: np.ndarray):
    """Per-channel mean and m2, as NumPy arrays (the (C,) statistics come back from
    the device, so the small float64 arithmetic on them stays NumPy's)."""
    n_chan = x3.shape[1]
    mean = dev.empty(n_chan, np.float64)
    m2 = dev.empty(n_chan, np.float64)
    dev.kernels("norm").batch_norm_stats(x3, mean, m2)
    return dev.to_host(mean), dev.to_host(m2)


def batch_norm(x: np.ndarray, running_mean: np.ndarray | None,
               running_var: np.ndarray | None, weight: np.ndarray | None = None,
               bias: np.ndarray | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5, *,
               return_stats: bool = False):
    """Batch normalisation over the batch (and spatial) axes of each channel.

    Parameters
    ----------
    x : ndarray
        Input, float32 or float64.
    running_mean, running_var : ndarray or None
        Running statistics of x's dtype. With ``training=True`` they are updated in
        place, ``running = (1 - momentum) * running + momentum * batch``, the variance
        with the batch's unbiased variance; they may both be None there (no running
        statistics are kept). With ``training=False`` they normalise the input.
    weight, bias : ndarray, optional
        Per-channel scale and shift (ones and zeros when None).
    training : bool
        Normalise with the batch's statistics (biased variance) instead of the
        running ones; needs more than one value per channel.
    momentum : float
        Weight of the batch statistics in the running update, in ``[0, 1]``.
    eps : float
        Positive number added to the variance before the square root.
    return_stats : bool
        Return ``(y, (mean, invstd))`` instead of ``y``: the float64 per-channel
        statistics ``y`` was normalised with (the batch's when training), which
        :func:`batch_norm_backward` takes as ``stats`` instead of recomputing them
        (as torch's ``native_batch_norm`` returns ``save_mean`` and
        ``save_invstd``).

    Shape: x (N, C), (N, C, L) or (N, C, H, W); running_mean, running_var, weight,
    bias (C,) -> y like x (and mean, invstd (C,) float64 with ``return_stats``).

    Any axis may be empty, as in PyTorch: the result is then empty and the running
    statistics are left unchanged (training still refuses exactly 1 value per
    channel).
    """
    op = "batch_norm"
    x = _check_x(op, x)
    training = v.boolean(op, "training", training)
    momentum = v.real_number(op, "momentum", momentum, low=0.0, high=1.0)
    eps = v.real_number(op, "eps", eps, low=0.0, low_open=True)
    return_stats = v.boolean(op, "return_stats", return_stats)
    rm, rv = _check_running(op, x, running_mean, running_var, training)
    n_chan = x.shape[1]
    weight = _per_channel(op, x, "weight", weight, False)
    bias = _per_channel(op, x, "bias", bias, False)
    if weight is None:
        weight = np.ones(n_chan, dtype=x.dtype)
    if bias is None:
        bias = np.zeros(n_chan, dtype=x.dtype)
    dev = backend.device_of(x, weight, bias)
    if x.size == 0:
        # No values (or no channels): an empty result, and the running statistics
        # stay as they are, as in PyTorch (which refuses only 1 value per channel).
        y = dev.zeros(x.shape, x.dtype)
        if return_stats:
            return y, (np.zeros(n_chan), np.zeros(n_chan))
        return y
    k = dev.kernels("norm")
    x3 = _view3(x)
    if training:
        count = _check_batch_size(op, x)
        if rm is not None:
            for name, array in (("running_mean", running_mean),
                                ("running_var", running_var)):
                if isinstance(array, np.ndarray) and not array.flags.writeable:
                    raise ValueError(
                        f"{op}: {name} is read-only, but training=True updates it "
                        f"in place."
                    )
        mean, m2 = _batch_stats(dev, x3)
        invstd = _invstd(m2 / count, eps)
    else:
        mean, invstd = _eval_stats(rm, rv, eps)
    y = dev.empty(x.shape, x.dtype)
    k.batch_norm_apply(x3, mean, invstd, weight, bias, _view3(y))
    if training and rm is not None:
        # Written into the caller's arrays (not the validated copies), in float64
        # and rounded once, as PyTorch's CPU kernel does.
        unbiased = m2 / (count - 1)
        if not isinstance(running_mean, np.ndarray) or not isinstance(
                running_var, np.ndarray):
            _update_on_device(running_mean, momentum * mean
                              + (1.0 - momentum) * backend.to_host(rm))
            _update_on_device(running_var, momentum * unbiased
                              + (1.0 - momentum) * backend.to_host(rv))
        else:
            running_mean[...] = momentum * mean + (1.0 - momentum) * rm
            running_var[...] = momentum * unbiased + (1.0 - momentum) * rv
    if return_stats:
        return y, (mean, invstd)
    return y


def _update_on_device(target, value: np.ndarray) -> None:
    """``target[...] = value`` for a device array: rounded to its dtype on the host
    (as NumPy's assignment rounds), then copied in."""
    value = np.asarray(value, dtype=target.dtype)
    if backend.is_device_array(target):
        backend.cuda_device().copy_into(target, value)
    else:
        target[...] = value


def batch_norm_backward(dy: np.ndarray, x: np.ndarray,
                        running_mean: np.ndarray | None,
                        running_var: np.ndarray | None,
                        weight: np.ndarray | None = None, training: bool = False,
                        eps: float = 1e-5, *, stats=None):
    """Gradients of :func:`batch_norm` with respect to x, weight and bias.

    Returns ``(dx, dweight, dbias)`` for the upstream gradient ``dy``; dweight and
    dbias are returned even where the forward pass had no weight or bias (as if
    weight were ones). With ``training=True`` the gradient goes through the batch
    statistics, recomputed from x, and the running statistics are not used (they
    may be None); with ``training=False`` the running statistics are constants.
    ``stats``, the ``(mean, invstd)`` that ``batch_norm(..., return_stats=True)``
    returned for this ``x``, are used instead of recomputing them (a pass over x
    saved; the same result, bit for bit).

    Shape: dy, x (N, C), (N, C, L) or (N, C, H, W); running_mean, running_var,
    weight (C,) -> dx like x, dweight (C,), dbias (C,); all zeros (or empty) where x
    is empty.
    """
    op = "batch_norm_backward"
    x = _check_x(op, x)
    dy = v.float_array(op, "dy", dy, ndim=(2, 3, 4))
    v.same_dtype(op, "x", x, dy=dy)
    v.shape_is(op, "dy", dy, x.shape)
    training = v.boolean(op, "training", training)
    eps = v.real_number(op, "eps", eps, low=0.0, low_open=True)
    rm, rv = _check_running(op, x, running_mean, running_var, training)
    n_chan = x.shape[1]
    weight = _per_channel(op, x, "weight", weight, False)
    if weight is None:
        weight = np.ones(n_chan, dtype=x.dtype)
    dev = backend.device_of(dy, x, weight)
    if x.size == 0:
        # Sums over no values: every gradient is zero (or empty).
        return (dev.zeros(x.shape, x.dtype),
                dev.zeros(n_chan, x.dtype),
                dev.zeros(n_chan, x.dtype))
    k = dev.kernels("norm")
    x3 = _view3(x)
    if stats is not None:
        mean, invstd = _saved_stats(op, stats, n_chan)
    elif training:
        count = _check_batch_size(op, x)
        mean, m2 = _batch_stats(dev, x3)
        invstd = _invstd(m2 / count, eps)
    else:
        mean, invstd = _eval_stats(rm, rv, eps)
    dx = dev.empty(x.shape, x.dtype)
    dweight = dev.empty(n_chan, x.dtype)
    dbias = dev.empty(n_chan, x.dtype)
    k.batch_norm_backward(
        _view3(dy), x3, mean, invstd, weight, training, _view3(dx), dweight, dbias
    )
    return dx, dweight, dbias
