"""The Layer contract every layer implements (after Keras 3's ``Layer``).

A layer's life: ``__init__`` stores and validates hyper-parameters (no arrays);
``build(input_shape, dtype, rng)`` creates ``params`` with PyTorch's default
initialisation; ``forward(x, training)`` keeps in ``self`` what ``backward`` needs;
``backward(dy)`` fills ``grads`` (same keys as ``params``) and returns ``dx``;
``get_config()`` returns exactly the ``__init__`` arguments, so
``type(layer)(**layer.get_config())`` rebuilds an equivalent (unbuilt) layer.

Shapes held by a layer (``input_shape``, ``output_shape``) are per sample: without the
batch axis. Subclasses implement ``_config``, ``compute_output_shape``, ``_build``
(only if they own arrays), ``_forward`` and ``_backward``; the public methods here do
the checks once, so every layer's errors read the same.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .. import backend
from .._checks import is_int
from ..functional import _validate as v
from .symbolic import connect, is_symbolic

_counters: dict[str, itertools.count] = {}


def _auto_name(cls: type) -> str:
    """Default names, as in Keras: "conv2d", "conv2d_1", ... counted per class."""
    # An underscore where a capital starts a new lowercase word: LeakyReLU ->
    # leaky_relu, BatchNorm2D -> batch_norm2d.
    base = re.sub(r"(?<=[a-z])(?=[A-Z][a-z])", "_", cls.__name__).lower()
    n = next(_counters.setdefault(base, itertools.count()))
    return base if n == 0 else f"{base}_{n}"


def canonical_pair(value: tuple[int, int]) -> int | list[int]:
    """The JSON form of an (h, w) pair in a config: one int where both agree."""
    return value[0] if value[0] == value[1] else [value[0], value[1]]


class Window(NamedTuple):
    """How a sliding-window layer maps input rows/columns to output ones; every field
    is an (h, w) pair and ``padding`` is the padding *before* (top, left)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]


class Layer:
    """Base class of every layer.

    Attributes
    ----------
    name : str
        Given, or generated from the class name ("conv2d", "conv2d_1", ...).
    params, grads : dict[str, ndarray]
        Trainable arrays ("weight", "bias" where present) and their gradients, which
        :meth:`backward` overwrites in place.
    buffers : dict[str, ndarray]
        Non-trainable state (BatchNorm's "running_mean", "running_var").
    built : bool
    input_shape, output_shape : tuple[int, ...] or None
        Per-sample shapes (no batch axis), set by :meth:`build`.
    dtype : numpy.dtype or None
        float32 or float64, set by :meth:`build`.
    connectivity : str
        How output positions depend on input positions, for the receptive-field maths
        of :mod:`fastcnn.inspect`: "elementwise", "window" (see :meth:`window`),
        "global" (every output reads every input) or "reshape" (Flatten).
    """

    connectivity: ClassVar[str] = "elementwise"
    #: Whether the layer joins several inputs (``Add``, ``Concatenate``): it is
    #: called on a list, and its backward returns one gradient per input.
    takes_many: ClassVar[bool] = False

    def __init__(self, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(
                f"{type(self).__name__}: name must be a non-empty str or None, got "
                f"{name!r}."
            )
        self.name: str = name if name is not None else _auto_name(type(self))
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.built = False
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self.dtype: np.dtype | None = None
        self._cache: Any = None
        self._dy_shape: tuple[int, ...] | None = None
        self._dy_dtype: np.dtype | None = None
        self._param_shapes: dict[str, tuple[int, ...]] = {}
        self._trainable = True

    @property
    def trainable(self) -> bool:
        """Whether training updates this layer's ``params`` (default True).

        A frozen layer (``trainable = False``) keeps its parameters through ``fit``
        and ``train_step``: the model hands them to no optimizer, its backward
        computes only the input gradient (nothing at all in a model's first
        layer), and ``count_params``/``summary`` count them as non-trainable. As in
        PyTorch (``requires_grad=False``), it does not change the layer's mode: a
        frozen BatchNorm still normalises by the batch and updates its running
        statistics in training mode. Saved with the model.
        """
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"{self._op}: trainable must be a bool, got {value!r}.")
        self._trainable = value

    # -- configuration --------------------------------------------------------------

    @property
    def _op(self) -> str:
        """The prefix of every message: the class and, once named, the layer name."""
        return f"{type(self).__name__} {self.name!r}"

    def _config(self) -> dict[str, Any]:
        """The hyper-parameters (every ``__init__`` argument except ``name``)."""
        return {}

    def get_config(self) -> dict[str, Any]:
        """Exactly the ``__init__`` arguments, JSON-serialisable, ``name`` last.

        Shape: no arrays.
        """
        return {**self._config(), "name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={val!r}" for k, val in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # -- shapes and building --------------------------------------------------------

    def _check_shape(self, input_shape, ndim: int | None = None) -> tuple[int, ...]:
        """``input_shape`` as a tuple of non-negative ints, of ``ndim`` entries if
        given. Zero sizes pass here (a layer of zero width is valid, as in
        PyTorch); the ops refuse the ones they cannot take."""
        ok = isinstance(input_shape, tuple | list) and all(
            is_int(s) and 0 <= s <= v.MAX_SIZE for s in input_shape
        )
        if not ok or not input_shape:
            raise TypeError(
                f"{self._op}: input_shape must be a non-empty tuple of non-negative "
                f"ints (at most 2**31 - 1; the per-sample shape, without the batch "
                f"axis), got {input_shape!r}."
            )
        shape = tuple(int(s) for s in input_shape)
        if ndim is not None and len(shape) != ndim:
            want = {1: "(features,)", 3: "(channels, height, width)"}.get(ndim, "")
            raise ValueError(
                f"{self._op}: expects a {ndim}-D per-sample input {want}, got "
                f"input_shape {shape}."
            )
        return shape

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample output shape for ``input_shape``; builds nothing.

        Shape: input_shape (per sample) -> output shape (per sample).
        """
        return self._check_shape(input_shape)

    def state_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The shapes of the params and buffers that ``build(input_shape)`` would
        create, without creating them: a model described by untrusted JSON is sized
        with this before anything is allocated. Layers without arrays: ``{}``.

        Shape: input_shape (per sample) -> {name: shape}.
        """
        self.compute_output_shape(input_shape)
        return {}

    def _build(self, input_shape: tuple[int, ...], dtype: np.dtype,
               rng: np.random.Generator) -> None:
        """Create ``self.params`` and ``self.buffers`` (layers without arrays: none)."""

    def build(self, input_shape: tuple[int, ...], dtype=np.float32,
              rng: np.random.Generator | None = None) -> None:
        """Create the parameters for a per-sample ``input_shape``.

        Parameters
        ----------
        input_shape : tuple of int
            Per-sample shape, e.g. ``(C, H, W)`` or ``(F,)``.
        dtype : float32 or float64
        rng : numpy.random.Generator, optional
            Draws the initial weights; None seeds a new Generator from NumPy's global
            RNG, so ``np.random.seed`` / ``fastcnn.seed`` make builds reproducible.

        Calling ``build`` again re-initialises the layer.

        Shape: input_shape (per sample) -> no arrays returned.
        """
        input_shape = self._check_shape(input_shape)
        # Not via None: np.dtype(None) is float64, so ``None in FLOAT_DTYPES`` holds
        # and an uninterpretable dtype would build with dtype None.
        try:
            checked = np.dtype(dtype) if dtype is not None else None
        except TypeError:
            checked = None
        if checked is None or checked not in v.FLOAT_DTYPES:
            raise TypeError(
                f"{self._op}: dtype must be float32 or float64, got {dtype!r}."
            )
        dtype = checked
        if rng is None:
            rng = np.random.default_rng(np.random.randint(0, 2**32, dtype=np.int64))
        elif not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"{self._op}: rng must be a numpy.random.Generator or None, got "
                f"{type(rng).__name__}."
            )
        output_shape = self.compute_output_shape(input_shape)
        self.params, self.buffers = {}, {}
        self._build(input_shape, dtype, rng)
        self.grads = {k: np.zeros_like(p) for k, p in self.params.items()}
        self._param_shapes = {k: p.shape for k, p in self.params.items()}
        self.input_shape, self.output_shape = input_shape, output_shape
        self.dtype = dtype
        self.built = True
        self._cache = None

    def count_params(self) -> tuple[int, int]:
        """``(trainable, non_trainable)`` element counts: (params, buffers), or
        (0, params + buffers) for a frozen layer (see :attr:`trainable`).

        Shape: no arrays.
        """
        if not self.built:
            raise ValueError(
                f"{self._op}: the layer is not built, so it has no parameters yet; "
                f"call build(input_shape) first."
            )
        params = int(sum(p.size for p in self.params.values()))
        buffers = int(sum(b.size for b in self.buffers.values()))
        if not self._trainable:
            return 0, params + buffers
        return params, buffers

    def window(self, input_shape=None) -> Window | None:
        """The sliding-window geometry ("window" layers only; others: None) for
        inputs of per-sample shape ``input_shape`` (default: the built one; only
        a strided ``padding="same"`` convolution depends on it)."""
        return None

    # -- forward and backward -------------------------------------------------------

    def __call__(self, x, training: bool = False):
        """``layer(x)``: on a :func:`fastcnn.Input` or another layer's symbolic
        output, records the call for a graph model and returns the symbolic
        output; on an array, :meth:`forward`.

        Shape: x (N, *input_shape) -> (N, *output_shape).
        """
        if is_symbolic(x):
            return connect(self, x)
        return self.forward(x, training=training)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Apply the layer to a batch; builds it from ``x`` on first use.

        An empty batch (N = 0) gives an empty output, and its backward zero
        gradients, as in PyTorch.

        Shape: x (N, *input_shape) -> (N, *output_shape).
        """
        if (x.__class__ is np.ndarray and (training is True or training is False)
                and x.dtype is self.dtype and x.shape[1:] == self.input_shape
                and x.flags.c_contiguous):
            # What every check below lets through unchanged (a built layer's
            # dtype is a float one): a batch-1 prediction runs a dozen layers.
            y = self._forward(x, training)
            self._dy_shape = y.shape
            self._dy_dtype = y.dtype
            return y
        if not (isinstance(x, np.ndarray) or backend.is_device_array(x)):
            raise TypeError(
                f"{self._op}: x must be a numpy.ndarray or a CUDA device array, got "
                f"{type(x).__name__}."
            )
        if x.dtype not in v.FLOAT_DTYPES:
            raise TypeError(
                f"{self._op}: x must have dtype float32 or float64, got {x.dtype}."
            )
        if not isinstance(training, bool | np.bool_):
            raise TypeError(f"{self._op}: training must be a bool, got {training!r}.")
        if not self.built:
            if x.ndim < 2:
                raise ValueError(
                    f"{self._op}: x must have a batch axis and at least one more, got "
                    f"shape {x.shape}."
                )
            self.build(x.shape[1:], x.dtype)
        if x.shape[1:] != self.input_shape:
            raise ValueError(
                f"{self._op}: x has per-sample shape {x.shape[1:]} (x.shape "
                f"{x.shape}) but the layer was built for {self.input_shape}."
            )
        if (self.params or self.buffers) and x.dtype != self.dtype:
            raise TypeError(
                f"{self._op}: x has dtype {x.dtype} but the layer's parameters are "
                f"{self.dtype}; cast x with .astype or rebuild the layer."
            )
        y = self._forward(_c_contiguous_input(self._op, "x", x), bool(training))
        self._dy_shape = y.shape
        self._dy_dtype = y.dtype
        return y

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Fill ``self.grads`` and return the gradient of the input of the last
        :meth:`forward` call; with ``input_grad=False`` return None, and a layer that
        can (Conv2D) skips computing it (a model's first layer: nothing needs the
        gradient of the images).

        Shape: dy (N, *output_shape) -> dx (N, *input_shape).
        """
        if (dy.__class__ is np.ndarray and dy.dtype is self._dy_dtype
                and dy.shape == self._dy_shape and dy.flags.c_contiguous
                and self._cache is not None and input_grad is True
                and (self._trainable or not self.params)):
            # What every check below lets through unchanged (training's common
            # case; a step runs a dozen layers' backward).
            return self._backward(dy)
        if self._cache is None:
            raise RuntimeError(
                f"{self._op}: backward called before forward; run forward(x) first."
            )
        if not (isinstance(dy, np.ndarray) or backend.is_device_array(dy)):
            raise TypeError(
                f"{self._op}: dy must be a numpy.ndarray or a CUDA device array, got "
                f"{type(dy).__name__}."
            )
        if dy.shape != self._dy_shape:
            raise ValueError(
                f"{self._op}: dy must have the shape of the last forward output "
                f"{self._dy_shape}, got {dy.shape}."
            )
        if dy.dtype != self._dy_dtype:
            # Checked here for every layer: Flatten's backward is a bare reshape
            # and passed an int or str dy through.
            raise TypeError(
                f"{self._op}: dy must have the dtype of the last forward output "
                f"({self._dy_dtype}), got {dy.dtype}."
            )
        dy = _c_contiguous_input(self._op, "dy", dy)
        if not self._trainable and self.params:
            # Frozen: the parameter gradients would go unused.
            return self._backward_input(dy) if input_grad else None
        if not input_grad:
            self._backward_params(dy)
            return None
        return self._backward(dy)

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    def _inference_runner(self, x_shape: tuple, next_clamp=None):
        """For a model's prediction plan: ``(run, applied)``, where ``run(x)``
        gives what ``forward(x, training=False)`` gives (the same bits) for
        C-contiguous host inputs of shape ``x_shape`` with the per-call checks
        and decisions made here once, and ``applied`` says whether it applies
        ``next_clamp`` (the interval of the ReLU after it, as
        ``Sequential.forward`` hands it over). None: the plan calls
        :meth:`forward`. Parameters are read at each call; the plan is rebuilt
        when one is replaced."""
        return None

    def _adopt(self, y):
        """Record ``y`` as this layer's input and output without running it (its
        producer's kernel did its work): what :meth:`forward` keeps for
        backward."""
        self._cache = y
        self._dy_shape = y.shape
        self._dy_dtype = y.dtype
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _backward_params(self, dy: np.ndarray) -> None:
        """Fill ``self.grads`` only; layers whose input gradient costs real work
        override this to skip it."""
        self._backward(dy)

    def _backward_input(self, dy: np.ndarray) -> np.ndarray:
        """The input gradient of a frozen layer; layers whose parameter gradients
        cost real work override this to skip them (``self.grads`` may be left
        as they were)."""
        return self._backward(dy)

    def _params_as_built(self) -> bool:
        """True while every parameter still has the shape, dtype and C order that
        :meth:`build` gave it: then a layer may call the trusted op path with what
        it validated at build. Otherwise (parameters replaced by hand) it calls the
        public op, which checks everything and says what is wrong."""
        params = self.params
        for key, shape in self._param_shapes.items():
            p = params.get(key)
            if (p is None or p.shape != shape or p.dtype != self.dtype
                    or not _is_c_contiguous(p)):
                return False
        return True

    def _grad_targets(self, dy):
        """``(grads["weight"], grads["bias"])`` for a backward kernel to write into,
        where both exist beside ``dy`` with their parameters' shapes and dtype
        (a model's gradients, packed into one flat array on a GPU, are written in
        place with no copy); else None (the op makes new arrays)."""
        if not getattr(self, "use_bias", False):
            return None
        targets = (self.grads.get("weight"), self.grads.get("bias"))
        dev = backend.device_of(dy)
        for grad, key in zip(targets, ("weight", "bias"), strict=True):
            if (grad is None or tuple(grad.shape) != self._param_shapes[key]
                    or grad.dtype != self.dtype or not dev.holds(grad)
                    or not _is_c_contiguous(grad)):
                return None
        return targets

    def _set_grad(self, key: str, value: np.ndarray) -> None:
        # Written in place, so an optimizer may hold on to the grads arrays.
        grad = self.grads.get(key)
        if grad is value:
            return  # the kernel wrote it there
        if (grad is not None and grad.shape == value.shape
                and grad.dtype == value.dtype
                and backend.is_device_array(grad) == backend.is_device_array(value)):
            backend.device_of(grad).copy_into(grad, value)
        else:
            self.grads[key] = value



def _is_c_contiguous(array) -> bool:
    if isinstance(array, np.ndarray):
        return array.flags.c_contiguous
    # numba's device arrays; foreign ones (CuPy, PyTorch) go through the op checks.
    return bool(getattr(array, "__cuda_ndarray__", False)) and array.is_c_contiguous()


def _c_contiguous_input(op: str, name: str, array):
    """``array`` (already checked by :meth:`Layer.forward` / :meth:`Layer.backward`)
    C-contiguous, as the trusted op paths take it: a NumPy array is copied only where
    it is not; a device array goes through the op checks, which wrap a foreign one
    and refuse one that is not C-contiguous (there is no device-side copy)."""
    if isinstance(array, np.ndarray):
        return np.ascontiguousarray(array)
    if _is_c_contiguous(array):
        return array
    return v.float_array(op, name, array)


def keras_alias(op: str, name: str, value, alias: str, alias_value):
    """``value``, or ``alias_value`` given under Keras's name ``alias``; exactly
    one of the two must be given."""
    if value is not None and alias_value is not None:
        raise TypeError(f"{op}: give {name} or {alias} (its Keras name), not both.")
    if value is None and alias_value is None:
        raise TypeError(f"{op}: missing {name} (or {alias}, its Keras name).")
    return value if value is not None else alias_value
