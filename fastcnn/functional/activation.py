"""Activations and their backwards, with torch.nn.functional's argument meanings.

Every op takes an array of any shape (at least 1-D; zero-sized axes give an empty
result, as in PyTorch) and returns a new array of the same shape and dtype.
``sigmoid_backward``, ``tanh_backward``, ``softmax_backward`` and
``log_softmax_backward`` take the forward OUTPUT ``y``, as PyTorch's internal
backward functions do: it is what a layer keeps, and the gradient is cheaper from
it. The other backwards (relu, leaky_relu, gelu, silu, elu, softplus, hardswish,
hardsigmoid, relu6, mish) take the forward INPUT ``x``.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from . import _validate as v


def _pair_of(op: str, dy, other, other_name: str):
    """Validate an upstream gradient and the array it goes with (x or y)."""
    other = v.float_array_1d_or_more(op, other_name, other)
    dy = v.float_array(op, "dy", dy)
    v.same_dtype(op, other_name, other, dy=dy)
    v.shape_is(op, "dy", dy, other.shape)
    return dy, other


def elementwise_trusted(kernel_name: str, *arrays, scalars=()) -> np.ndarray:
    """Run the flat elementwise kernel ``kernel_name`` of the activation kernels
    (``"relu_forward"``, ``"relu_backward"``, ...) on checked, C-contiguous,
    same-shaped arrays; returns the output. The trusted path of every elementwise
    activation here: it checks nothing."""
    dev = backend.device_of(*arrays)
    out = dev.empty(arrays[0].shape, arrays[0].dtype)
    if out.size == 0:
        return out  # nothing to compute (and no zero-sized CUDA launch)
    kernel = getattr(dev.kernels("activation"), kernel_name)
    kernel(*(a.ravel() for a in arrays), *scalars, out.ravel())
    return out


def _slope(op: str, negative_slope, dtype) -> np.generic:
    slope = v.real_number(op, "negative_slope", negative_slope)
    return dtype.type(slope)


def relu(x: np.ndarray) -> np.ndarray:
    """Rectified linear unit ``max(x, 0)``; NaN propagates.

    Shape: x (*) -> (*), the same shape.
    """
    x = v.float_array_1d_or_more("relu", "x", x)
    return elementwise_trusted("relu_forward", x)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`relu`: ``dy`` where ``x > 0``, else 0.

    Shape: dy (*), x (*) -> dx (*).
    """
    dy, x = _pair_of("relu_backward", dy, x, "x")
    return elementwise_trusted("relu_backward", dy, x)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """Leaky ReLU: ``x`` where ``x > 0``, else ``negative_slope * x``.

    Parameters
    ----------
    x : ndarray
        Input, float32 or float64.
    negative_slope : float
        Slope for negative inputs (any finite number, as in PyTorch; it is cast to
        x's dtype).

    Shape: x (*) -> (*), the same shape.
    """
    op = "leaky_relu"
    x = v.float_array_1d_or_more(op, "x", x)
    slope = _slope(op, negative_slope, x.dtype)
    return elementwise_trusted("leaky_relu_forward", x, scalars=(slope,))


def leaky_relu_backward(dy: np.ndarray, x: np.ndarray,
                        negative_slope: float = 0.01) -> np.ndarray:
    """Gradient of :func:`leaky_relu`: ``dy`` where ``x > 0``, else
    ``negative_slope * dy``.

    Shape: dy (*), x (*) -> dx (*).
    """
    op = "leaky_relu_backward"
    dy, x = _pair_of(op, dy, x, "x")
    slope = _slope(op, negative_slope, x.dtype)
    return elementwise_trusted("leaky_relu_backward", dy, x, scalars=(slope,))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic sigmoid ``1 / (1 + exp(-x))``, computed without overflow.

    Shape: x (*) -> (*), the same shape.
    """
    x = v.float_array_1d_or_more("sigmoid", "x", x)
    return elementwise_trusted("sigmoid_forward", x)


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of :func:`sigmoid` from its output ``y``: ``dy * (1 - y) * y``.

    Shape: dy (*), y (*) -> dx (*).
    """
    dy, y = _pair_of("sigmoid_backward", dy, y, "y")
    return elementwise_trusted("sigmoid_backward", dy, y)


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent.

    Shape: x (*) -> (*), the same shape.
    """
    x = v.float_array_1d_or_more("tanh", "x", x)
    return elementwise_trusted("tanh_forward", x)


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of :func:`tanh` from its output ``y``: ``dy * (1 - y * y)``.

    Shape: dy (*), y (*) -> dx (*).
    """
    dy, y = _pair_of("tanh_backward", dy, y, "y")
    return elementwise_trusted("tanh_backward", dy, y)


def _dim(op: str, dim, ndim: int) -> int:
    """A valid axis of an ``ndim``-D array, normalised to be non-negative."""
    if not v._is_int(dim):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}.")
    if not -ndim <= dim < ndim:
        raise ValueError(
            f"{op}: dim must lie in [{-ndim}, {ndim - 1}] for a {ndim}-D input, "
            f"got {dim!r}."
        )
    return int(dim) % ndim


def _rows(array: np.ndarray, dim: int) -> np.ndarray:
    """``array`` with axis ``dim`` moved last, C-contiguous, as (rows, classes)."""
    moved = np.ascontiguousarray(np.moveaxis(array, dim, -1))
    return moved.reshape(-1, moved.shape[-1])


def _along_dim(kernel_name: str, arrays, dim: int) -> np.ndarray:
    """Run a row kernel over axis ``dim`` of same-shaped arrays; returns the output
    in the arrays' layout."""
    dev = backend.device_of(*arrays)
    if arrays[0].size == 0:
        # Empty rows or empty rows of classes: nothing to normalise.
        return dev.empty(arrays[0].shape, arrays[0].dtype)
    if dev.name != "cpu":
        return _along_dim_device(dev, kernel_name, arrays, dim)
    rows = [_rows(a, dim) for a in arrays]
    out = np.empty_like(rows[0])
    getattr(dev.kernels("activation"), kernel_name)(*rows, out)
    moved_shape = np.moveaxis(arrays[0], dim, -1).shape
    return np.ascontiguousarray(np.moveaxis(out.reshape(moved_shape), -1, dim))


def _along_dim_device(dev, kernel_name: str, arrays, dim: int):
    """:func:`_along_dim` where an array is on the device: rows are free views when
    ``dim`` is the last axis; any other axis goes through the host (slow path)."""
    shape = tuple(arrays[0].shape)
    if dim != len(shape) - 1:
        host = [dev.to_host(a) for a in arrays]
        return dev.move_in(_along_dim(kernel_name, host, dim))
    n_cols = shape[dim]
    rows = [a.reshape(arrays[0].size // n_cols, n_cols) for a in arrays]
    out = dev.empty(rows[0].shape, arrays[0].dtype)
    getattr(dev.kernels("activation"), kernel_name)(*rows, out)
    return out.reshape(shape)


def softmax(x: np.ndarray, dim: int = 1) -> np.ndarray:
    """Softmax along axis ``dim``: ``exp(x - max) / sum(exp(x - max))``.

    Parameters
    ----------
    x : ndarray
        Input of any shape, float32 or float64.
    dim : int
        The axis normalised (negative counts from the end).

    Shape: x (*) -> (*), the same shape; each slice along ``dim`` sums to 1.
    """
    op = "softmax"
    x = v.float_array_1d_or_more(op, "x", x)
    return softmax_trusted(x, _dim(op, dim, x.ndim))


def softmax_trusted(x, axis: int):
    """:func:`softmax` on a checked, C-contiguous x along a non-negative ``axis``;
    checks nothing."""
    return _along_dim("softmax_forward", (x,), axis)


def softmax_backward(dy: np.ndarray, y: np.ndarray, dim: int = 1) -> np.ndarray:
    """Gradient of :func:`softmax` from its output ``y``:
    ``y * (dy - sum(dy * y, dim))``.

    Shape: dy (*), y (*) -> dx (*).
    """
    op = "softmax_backward"
    dy, y = _pair_of(op, dy, y, "y")
    return softmax_backward_trusted(dy, y, _dim(op, dim, y.ndim))


def softmax_backward_trusted(dy, y, axis: int):
    """:func:`softmax_backward` on checked arguments; checks nothing."""
    return _along_dim("softmax_backward", (dy, y), axis)


def log_softmax(x: np.ndarray, dim: int = 1) -> np.ndarray:
    """Logarithm of :func:`softmax` along axis ``dim``, computed as
    ``(x - max) - log(sum(exp(x - max)))`` so that it never overflows.

    Parameters
    ----------
    x : ndarray
        Input of any shape, float32 or float64.
    dim : int
        The axis normalised (negative counts from the end).

    Shape: x (*) -> (*), the same shape.
    """
    op = "log_softmax"
    x = v.float_array_1d_or_more(op, "x", x)
    return _along_dim("log_softmax_forward", (x,), _dim(op, dim, x.ndim))


def log_softmax_backward(dy: np.ndarray, y: np.ndarray, dim: int = 1) -> np.ndarray:
    """Gradient of :func:`log_softmax` from its output ``y``:
    ``dy - exp(y) * sum(dy, dim)``.

    Shape: dy (*), y (*) -> dx (*).
    """
    op = "log_softmax_backward"
    dy, y = _pair_of(op, dy, y, "y")
    return _along_dim("log_softmax_backward", (dy, y), _dim(op, dim, y.ndim))


# ------------------------------------------------------------------------------------
# Smooth and piecewise-linear activations. Every backward takes the forward INPUT x,
# as relu_backward does.

#: gelu's ``approximate`` values and the kernel family each selects.
_GELU_KERNELS = {"none": "gelu", "tanh": "gelu_tanh"}


def gelu_kernel(op: str, approximate) -> str:
    """The kernel family (``"gelu"`` or ``"gelu_tanh"``) for gelu's
    ``approximate`` argument; raises on anything but "none" or "tanh"."""
    if not isinstance(approximate, str):
        raise TypeError(f"{op}: approximate must be 'none' or 'tanh', got "
                        f"{approximate!r:.100}.")
    if approximate not in _GELU_KERNELS:
        raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got "
                         f"{approximate!r:.100}.")
    return _GELU_KERNELS[approximate]


def softplus_args(op: str, beta, threshold) -> tuple[float, float]:
    """Checked softplus hyper-parameters: finite, ``beta`` non-zero."""
    beta = v.real_number(op, "beta", beta)
    if beta == 0:
        raise ValueError(f"{op}: beta must be a non-zero finite number, got "
                         f"{beta!r}.")
    return beta, v.real_number(op, "threshold", threshold)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """Gaussian error linear unit ``x * Phi(x)``, ``Phi`` the standard normal CDF.

    Parameters
    ----------
    x : ndarray
        Input, float32 or float64.
    approximate : {"none", "tanh"}
        "none": the exact ``0.5 * x * erfc(-x / sqrt(2))``; "tanh": PyTorch's
        ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))``.

    Shape: x (*) -> (*), the same shape.
    """
    op = "gelu"
    x = v.float_array_1d_or_more(op, "x", x)
    return elementwise_trusted(gelu_kernel(op, approximate) + "_forward", x)


def gelu_backward(dy: np.ndarray, x: np.ndarray,
                  approximate: str = "none") -> np.ndarray:
    """Gradient of :func:`gelu`: ``dy * (Phi(x) + x * phi(x))`` (exact), or the
    derivative of the tanh form.

    Shape: dy (*), x (*) -> dx (*).
    """
    op = "gelu_backward"
    dy, x = _pair_of(op, dy, x, "x")
    return elementwise_trusted(gelu_kernel(op, approximate) + "_backward", dy, x)


def silu(x: np.ndarray) -> np.ndarray:
    """Sigmoid linear unit (Swish) ``x * sigmoid(x)``, computed without overflow.

    Shape: x (*) -> (*), the same shape.
    """
    x = v.float_array_1d_or_more("silu", "x", x)
    return elementwise_trusted("silu_forward", x)


def silu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`silu`: ``dy * s * (1 + x * (1 - s))``, ``s = sigmoid(x)``.

    Shape: dy (*), x (*) -> dx (*).
    """
    dy, x = _pair_of("silu_backward", dy, x, "x")
    return elementwise_trusted("silu_backward", dy, x)


def elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Exponential linear unit: ``x`` where ``x > 0``, else
    ``alpha * (exp(x) - 1)`` (evaluated with expm1).

    Parameters
    ----------
    x : ndarray
        Input, float32 or float64.
    alpha : float
        Scale of the negative part (any finite number, as in PyTorch; cast to x's
        dtype).

    Shape: x (*) -> (*), the same shape.
    """
    op = "elu"
    x = v.float_array_1d_or_more(op, "x", x)
    alpha = x.dtype.type(v.real_number(op, "alpha", alpha))
    return elementwise_trusted("elu_forward", x, scalars=(alpha,))


def elu_backward(dy: np.ndarray, x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Gradient of :func:`elu`: ``dy`` where ``x > 0``, else
    ``dy * alpha * exp(x)``.

    Shape: dy (*), x (*) -> dx (*).
    """
    op = "elu_backward"
    dy, x = _pair_of(op, dy, x, "x")
    alpha = x.dtype.type(v.real_number(op, "alpha", alpha))
    return elementwise_trusted("elu_backward", dy, x, scalars=(alpha,))


def softplus(x: np.ndarray, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
    """Softplus ``log(1 + exp(beta * x)) / beta``, and ``x`` itself where
    ``x * beta > threshold`` (PyTorch's definition); never overflows.

    Parameters
    ----------
    x : ndarray
        Input, float32 or float64.
    beta : float
        Sharpness (finite, non-zero; cast to x's dtype).
    threshold : float
        Above this value of ``x * beta`` the result is ``x`` (finite; cast to x's
        dtype).

    Shape: x (*) -> (*), the same shape.
    """
    op = "softplus"
    x = v.float_array_1d_or_more(op, "x", x)
    beta, threshold = softplus_args(op, beta, threshold)
    return elementwise_trusted("softplus_forward", x, scalars=(
        x.dtype.type(beta), x.dtype.type(threshold)))


def softplus_backward(dy: np.ndarray, x: np.ndarray, beta: float = 1.0,
                      threshold: float = 20.0) -> np.ndarray:
    """Gradient of :func:`softplus`: ``dy`` where ``x * beta > threshold``, else
    ``dy * sigmoid(beta * x)``.

    Shape: dy (*), x (*) -> dx (*).
    """
    op = "softplus_backward"
    dy, x = _pair_of(op, dy, x, "x")
    beta, threshold = softplus_args(op, beta, threshold)
    return elementwise_trusted("softplus_backward", dy, x, scalars=(
        x.dtype.type(beta), x.dtype.type(threshold)))


def hardswish(x: np.ndarray) -> np.ndarray:
    """Hard swish ``x * relu6(x + 3) / 6`` (MobileNetV3).

    Shape: x (*) -> (*), the same shape.
    """
    x = v.float_array_1d_or_more("hardswish", "x", x)
    return elementwise_trusted("hardswish_forward", x)


def hardswish_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`hardswish`: 0 where ``x <= -3``, ``dy * (x / 3 + 0.5)``
    where ``-3 < x < 3``, else ``dy`` (PyTorch's choice at the kinks).

    Shape: dy (*), x (*) -> dx (*).
    """
    dy, x = _pair_of("hardswish_backward", dy, x, "x")
    return elementwise_trusted("hardswish_backward", dy, x)


def hardsigmoid(x: np.ndarray) -> np.ndarray:
    """Hard sigmoid ``relu6(x + 3) / 6``.

    Shape: x (*) -> (*), the same shape.
    """
    x = v.float_array_1d_or_more("hardsigmoid", "x", x)
    return elementwise_trusted("hardsigmoid_forward", x)


def hardsigmoid_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`hardsigmoid`: ``dy / 6`` where ``-3 < x < 3``, else 0.

    Shape: dy (*), x (*) -> dx (*).
    """
    dy, x = _pair_of("hardsigmoid_backward", dy, x, "x")
    return elementwise_trusted("hardsigmoid_backward", dy, x)


def relu6(x: np.ndarray) -> np.ndarray:
    """``min(max(x, 0), 6)``; NaN propagates.

    Shape: x (*) -> (*), the same shape.
    """
    x = v.float_array_1d_or_more("relu6", "x", x)
    return elementwise_trusted("relu6_forward", x)


def relu6_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`relu6`: ``dy`` where ``0 < x < 6``, else 0.

    Shape: dy (*), x (*) -> dx (*).
    """
    dy, x = _pair_of("relu6_backward", dy, x, "x")
    return elementwise_trusted("relu6_backward", dy, x)


def mish(x: np.ndarray) -> np.ndarray:
    """Mish ``x * tanh(softplus(x))``, computed without overflow.

    Shape: x (*) -> (*), the same shape.
    """
    x = v.float_array_1d_or_more("mish", "x", x)
    return elementwise_trusted("mish_forward", x)


def mish_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`mish`: ``dy * (t + x * sigmoid(x) * (1 - t**2))``,
    ``t = tanh(softplus(x))``.

    Shape: dy (*), x (*) -> dx (*).
    """
    dy, x = _pair_of("mish_backward", dy, x, "x")
    return elementwise_trusted("mish_backward", dy, x)
