"""Activation layers (no parameters): ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, and
the activations of modern CNNs: GELU, SiLU, ELU, Softplus, Hardswish, Hardsigmoid,
ReLU6 and Mish.

Sigmoid, Tanh and Softmax keep their output, whose derivative is cheaper (the
functional backwards take ``y``); every other activation keeps its input.
"""

from __future__ import annotations

from typing import Any

from .._checks import is_int
from ..functional import _validate as v
from ..functional.activation import (
    elementwise_trusted,
    gelu_kernel,
    softmax_backward_trusted,
    softmax_trusted,
    softplus_args,
)
from ..kernels._clamp import CLAMPS
from .base import Layer


class ReLU(Layer):
    """``max(x, 0)`` elementwise.

    Shape: (N, *) -> (N, *).
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)

    #: The interval this layer limits to, which a Conv2D or Dense before it in a
    #: Sequential applies in its kernel instead (``Sequential.forward``).
    clamp = CLAMPS["relu"]

    def _forward(self, x, training):
        self._cache = x
        return elementwise_trusted("relu_forward", x)

    def adopt_clamped(self, y):
        """This layer's forward on ``y``, an output its producer's kernel already
        limited to :attr:`clamp`: no kernel runs. Backward reads ``y`` where it
        read the input, which gives the same bits (the kernels' masks agree on
        ``x`` and ``clamp(x)``, NaN and signed zeros included)."""
        return self._adopt(y)

    def _backward(self, dy):
        return elementwise_trusted("relu_backward", dy, self._cache)


class LeakyReLU(Layer):
    """``x`` where positive, ``negative_slope * x`` elsewhere.

    Parameters
    ----------
    negative_slope : float
    name : str, optional

    Shape: (N, *) -> (N, *).
    """

    def __init__(self, negative_slope: float = 0.01, name: str | None = None) -> None:
        super().__init__(name=name)
        self.negative_slope = v.real_number(self._op, "negative_slope", negative_slope)

    def _config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def _forward(self, x, training):
        self._cache = x
        slope = x.dtype.type(self.negative_slope)
        return elementwise_trusted("leaky_relu_forward", x, scalars=(slope,))

    def _backward(self, dy):
        slope = dy.dtype.type(self.negative_slope)
        return elementwise_trusted("leaky_relu_backward", dy, self._cache,
                                   scalars=(slope,))


class Sigmoid(Layer):
    """``1 / (1 + exp(-x))`` elementwise.

    Shape: (N, *) -> (N, *).
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)

    def _forward(self, x, training):
        y = elementwise_trusted("sigmoid_forward", x)
        self._cache = y
        return y

    def _backward(self, dy):
        return elementwise_trusted("sigmoid_backward", dy, self._cache)


class Tanh(Layer):
    """``tanh(x)`` elementwise.

    Shape: (N, *) -> (N, *).
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)

    def _forward(self, x, training):
        y = elementwise_trusted("tanh_forward", x)
        self._cache = y
        return y

    def _backward(self, dy):
        return elementwise_trusted("tanh_backward", dy, self._cache)


class Softmax(Layer):
    """Softmax along axis ``dim`` of the batched array (``torch.nn.Softmax(dim)``).

    For classification train on logits with cross-entropy (which applies
    log-softmax itself) and use this layer only to read probabilities.

    Parameters
    ----------
    dim : int
        Axis of the *batched* input, as in PyTorch: 1 (default) is the channel or
        feature axis; negative counts from the end. The batch axis 0 is refused:
        samples must not mix.
    name : str, optional

    Shape: (N, *) -> (N, *).
    """

    def __init__(self, dim: int = 1, name: str | None = None) -> None:
        super().__init__(name=name)
        if not is_int(dim):
            raise TypeError(f"{self._op}: dim must be an int, got {dim!r}.")
        if dim == 0:
            raise ValueError(
                f"{self._op}: dim=0 is the batch axis, which would mix samples; use "
                f"dim >= 1 or a negative dim, got {dim!r}."
            )
        self.dim = int(dim)
        self._axis: int | None = None  # dim resolved for the built input shape

    def _config(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def axis(self, input_shape: tuple[int, ...]) -> int:
        """``dim`` resolved to a non-negative axis of the batched input."""
        ndim = len(input_shape) + 1
        axis = self.dim + ndim if self.dim < 0 else self.dim
        if not 1 <= axis < ndim:
            raise ValueError(
                f"{self._op}: dim={self.dim} is out of range for a batched input of "
                f"{ndim} dimensions (per-sample shape {tuple(input_shape)}); the "
                f"batch axis 0 cannot be used."
            )
        return axis

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        input_shape = self._check_shape(input_shape)
        self.axis(input_shape)
        return input_shape

    def _build(self, input_shape, dtype, rng) -> None:
        self._axis = self.axis(input_shape)

    def _forward(self, x, training):
        y = softmax_trusted(x, self._axis)
        self._cache = y
        return y

    def _backward(self, dy):
        return softmax_backward_trusted(dy, self._cache, self._axis)


class _InputActivation(Layer):
    """An elementwise activation that keeps its input ``x`` for backward and runs
    the kernels ``<kernel>_forward(x, *scalars, y)`` and
    ``<kernel>_backward(dy, x, *scalars, dx)``."""

    _kernel = ""

    def _scalars(self, dtype) -> tuple:
        """The kernels' scalar hyper-parameters, cast to ``dtype``."""
        return ()

    def _forward(self, x, training):
        self._cache = x
        return elementwise_trusted(self._kernel + "_forward", x,
                                   scalars=self._scalars(x.dtype))

    def _backward(self, dy):
        return elementwise_trusted(self._kernel + "_backward", dy, self._cache,
                                   scalars=self._scalars(dy.dtype))


class GELU(_InputActivation):
    """``x * Phi(x)`` elementwise, ``Phi`` the standard normal CDF
    (``torch.nn.GELU``).

    Parameters
    ----------
    approximate : {"none", "tanh"}
        "none": exact (erf); "tanh": PyTorch's tanh approximation.
    name : str, optional

    Shape: (N, *) -> (N, *).
    """

    def __init__(self, approximate: str = "none", name: str | None = None) -> None:
        super().__init__(name=name)
        self._kernel = gelu_kernel(self._op, approximate)
        self.approximate = approximate

    def _config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}


class SiLU(_InputActivation):
    """``x * sigmoid(x)`` elementwise (Swish; ``torch.nn.SiLU``).

    Shape: (N, *) -> (N, *).
    """

    _kernel = "silu"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)


class ELU(_InputActivation):
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere (``torch.nn.ELU``).

    Parameters
    ----------
    alpha : float
    name : str, optional

    Shape: (N, *) -> (N, *).
    """

    _kernel = "elu"

    def __init__(self, alpha: float = 1.0, name: str | None = None) -> None:
        super().__init__(name=name)
        self.alpha = v.real_number(self._op, "alpha", alpha)

    def _config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def _scalars(self, dtype) -> tuple:
        return (dtype.type(self.alpha),)


class Softplus(_InputActivation):
    """``log(1 + exp(beta * x)) / beta`` elementwise, ``x`` where
    ``x * beta > threshold`` (``torch.nn.Softplus``).

    Parameters
    ----------
    beta : float
        Non-zero.
    threshold : float
    name : str, optional

    Shape: (N, *) -> (N, *).
    """

    _kernel = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0,
                 name: str | None = None) -> None:
        super().__init__(name=name)
        self.beta, self.threshold = softplus_args(self._op, beta, threshold)

    def _config(self) -> dict[str, Any]:
        return {"beta": self.beta, "threshold": self.threshold}

    def _scalars(self, dtype) -> tuple:
        return (dtype.type(self.beta), dtype.type(self.threshold))


class Hardswish(_InputActivation):
    """``x * relu6(x + 3) / 6`` elementwise (``torch.nn.Hardswish``).

    Shape: (N, *) -> (N, *).
    """

    _kernel = "hardswish"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)


class Hardsigmoid(_InputActivation):
    """``relu6(x + 3) / 6`` elementwise (``torch.nn.Hardsigmoid``).

    Shape: (N, *) -> (N, *).
    """

    _kernel = "hardsigmoid"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)


class ReLU6(_InputActivation):
    """``min(max(x, 0), 6)`` elementwise (``torch.nn.ReLU6``).

    Shape: (N, *) -> (N, *).
    """

    _kernel = "relu6"
    #: See :attr:`ReLU.clamp`.
    clamp = CLAMPS["relu6"]

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)

    def adopt_clamped(self, y):
        """See :meth:`ReLU.adopt_clamped`."""
        return self._adopt(y)


class Mish(_InputActivation):
    """``x * tanh(softplus(x))`` elementwise (``torch.nn.Mish``).

    Shape: (N, *) -> (N, *).
    """

    _kernel = "mish"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)


#: The ``activation=`` names of Conv2D and Dense (Keras's, plus PyTorch's spelling
#: where it differs), and the layer that applies each after the layer's own output.
#: Each takes its default arguments (Keras's defaults too: exact gelu, elu's
#: alpha=1).
ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "gelu": GELU,
    "silu": SiLU,
    "swish": SiLU,
    "elu": ELU,
    "softplus": Softplus,
    "hard_swish": Hardswish,
    "hardswish": Hardswish,
    "hard_silu": Hardswish,
    "hard_sigmoid": Hardsigmoid,
    "hardsigmoid": Hardsigmoid,
    "relu6": ReLU6,
    "mish": Mish,
}


def activation_layer(op: str, activation) -> Layer | None:
    """The layer that applies ``activation`` (a name of :data:`ACTIVATIONS`,
    "linear" or None: nothing), named "activation" (an explicit name leaves the
    automatic names of the user's layers as they were).

    Raises
    ------
    ValueError
        An unknown name, or "softmax": fastcnn's cross-entropy takes logits, so a
        softmax output would be normalised twice.
    """
    if activation is None or activation == "linear":
        return None
    if activation == "softmax":
        raise ValueError(
            f"{op}: activation='softmax' is not offered: the 'cross_entropy' loss "
            f"takes logits and applies log-softmax itself (a softmax output would "
            f"be normalised twice); leave the activation out, and use "
            f"fastcnn.functional.softmax on predict's output for probabilities.")
    cls = ACTIVATIONS.get(activation) if isinstance(activation, str) else None
    if cls is None:
        raise ValueError(f"{op}: activation must be one of {sorted(ACTIVATIONS)}, "
                         f"'linear' or None, got {activation!r:.100}.")
    return cls(name="activation")


class ClampingKernel:
    """Mixed into Conv2D and Dense: their kernel can limit its outputs to an
    interval as it stores them, their own ``activation=`` or, handed over by a
    Sequential for one forward call, that of the ReLU or ReLU6 layer that follows
    (:attr:`next_clamp`), which then adopts the output instead of running
    (:meth:`ReLU.adopt_clamped`)."""

    #: The following layer's interval, set by ``Sequential.forward`` around one
    #: call (None otherwise).
    next_clamp = None
    #: Whether the last forward applied :attr:`next_clamp` (False where the layer
    #: took the checked op path, e.g. parameters replaced by hand).
    applied_next_clamp = False

    def _clamp_for_kernel(self):
        own = self._epilogue.clamp
        if own is not None or self._epilogue.layer is not None:
            return own
        return self.next_clamp

    def _runner_clamp(self, next_clamp):
        """``(clamp, applied)`` of a prediction plan's runner: the interval its
        kernel applies (as :meth:`_clamp_for_kernel` with ``next_clamp``), and
        whether that is ``next_clamp``; None where an activation other than a
        clamp follows the kernel (the plan calls ``forward``)."""
        own = self._epilogue.clamp
        if self._epilogue.layer is not None:
            return None
        if own is not None:
            return own, False
        return next_clamp, next_clamp is not None


class Epilogue:
    """The ``activation=`` of a Conv2D or Dense layer.

    ReLU and ReLU6 run fused: the layer's kernel limits each output to the
    activation's interval as it stores it (``kernels._clamp``), so there is no
    pass of its own and no pre-activation to keep; the gradient reads the output
    (``relu_backward(dy, y)`` is bitwise ``relu_backward(dy, x)``). The others run
    as their layer after the kernel.
    """

    _KERNELS = {"relu": ("relu_forward", "relu_backward"),
                "relu6": ("relu6_forward", "relu6_backward")}

    def __init__(self, op: str, activation) -> None:
        self.layer = activation_layer(op, activation)
        name = activation if isinstance(activation, str) else None
        self.clamp = CLAMPS.get(name)
        self._name = name
        self._output = None

    def after_kernel(self, y, training: bool, fused: bool):
        """The layer's output from the kernel's ``y``: ``fused`` says the kernel
        was given :attr:`clamp` (else the clamp runs here as a pass)."""
        if self.clamp is not None:
            if not fused:
                y = elementwise_trusted(self._KERNELS[self._name][0], y)
            self._output = y
            return y
        return y if self.layer is None else self.layer.forward(y, training)

    def grad(self, dy):
        """The gradient before the activation from the one after it."""
        if self.clamp is not None:
            return elementwise_trusted(self._KERNELS[self._name][1], dy,
                                       self._output)
        return dy if self.layer is None else self.layer.backward(dy)
