"""Serial task functions that a parallel kernel calls through their address.

Why: Numba links the LLVM IR of every function a kernel calls into the kernel's
own module and optimises and compiles that module whole, and a ``prange`` loop is
built as four such modules, each linking the one before (the loop body, its gufunc
wrapper, the thread-pool launcher, the kernel). A kernel's helpers were therefore
optimised and turned into machine code five times: LeNet-5's three band-row conv
kernels spent 5.4-7.2 s each compiling, 80% of it in LLVM, and a cold start is
mostly that (docs/PERFORMANCE.md). A task is compiled once, on its own, as a serial
helper; the kernel gets its address as an ``int64`` argument and calls it with
Numba's own calling convention, so none of the four modules holds its code.

A task declares the argument types it is compiled for, as a function of the
kernel's floating-point dtype (:func:`cpu_task`); the call checks, when the kernel
compiles, that it passes exactly those types, so the address the caller looks up
for a dtype always belongs to code compiled for what the kernel passes.

The price, measured in one process against the loops in the kernels (same bits):
the same loop in a task runs 0-4% slower on most shapes (LeNet-5's first
convolution forward 3-4%, the dense forward 4%; the rows weight and input
gradients and Winograd's forward no different), up to 10% on a few (the 2x2 max
pool backward, Winograd's weight gradient of (64,32,16,16)->64), and the cause
was not found: not the call, not the arrays' reference counts, not aliasing
(Numba's ``noalias`` flag on the task changed nothing). Those few keep their
loops in the kernel.

Usage::

    @cpu_task(lambda f: (int64, f[:, ::1], f[::1]))
    def _row_task(i, src, dst): ...

    @cpu_kernel
    def _kernel(task, src, dst):       # task = _row_task.address(src.dtype)
        for i in prange(src.shape[0]):
            _row_task(task, (np.int64(i), src, dst))
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import cgutils, types
from numba.core.errors import TypingError
from numba.extending import intrinsic

from .._jit import cpu_helper


def cpu_task(arg_types):
    """Decorate a serial task (compiled with :func:`cpu_helper`'s options).

    ``arg_types(f)`` gives the Numba types of its arguments for the float type
    ``f`` (``numba.float32`` or ``numba.float64``). Returns a callable for kernels,
    ``task(address, args_tuple)``, with ``task.address(dtype)`` for Python (the
    address of the task compiled for ``dtype``, compiled or loaded from the cache
    on first use) and ``task.dispatcher`` (the Numba dispatcher).
    """
    def decorate(function):
        return _Task(function, arg_types).call
    return decorate


class _Task:
    """A task's dispatcher, declared types and addresses (see :func:`cpu_task`)."""

    def __init__(self, function, arg_types):
        self.dispatcher = cpu_helper(function)
        self.name = function.__name__
        self._arg_types = arg_types
        self._addresses: dict[np.dtype, int] = {}
        self.call = _caller(self)
        self.call.address = self.address
        self.call.dispatcher = self.dispatcher

    def types_for(self, float_type) -> tuple:
        """The declared argument types for a Numba float type."""
        return tuple(self._arg_types(float_type))

    def address(self, dtype) -> int:
        """The address of the task compiled for the float ``dtype``."""
        try:
            return self._addresses[dtype]
        except KeyError:
            pass
        signature = self.types_for(numba.from_dtype(np.dtype(dtype)))
        self.dispatcher.compile(signature)
        overload = self.dispatcher.overloads[signature]
        address = overload.library.get_pointer_to_function(
            overload.fndesc.mangled_name)
        if not address:
            raise RuntimeError(f"{self.name}: no machine code for {signature}")
        self._addresses[np.dtype(dtype)] = address
        return address


def _float_type(arg_types) -> types.Float | None:
    """The dtype of the first floating-point array among ``arg_types``."""
    for arg in arg_types:
        if isinstance(arg, types.Array) and isinstance(arg.dtype, types.Float):
            return arg.dtype
    return None


def _borrowed(context, builder, arg_type, value):
    """``value`` as the task receives it: an array without its memory's owner
    (a null meminfo), as the arrays a ``prange`` body gets from Numba's gufunc
    wrapper. The kernel holds the arrays for the whole call and a task returns
    nothing, so nothing the task makes of them outlives them; with the owner
    passed, every view the task takes counts a reference up and down with an
    atomic add on one counter that all the threads share."""
    if not isinstance(arg_type, types.Array):
        return value
    array = context.make_array(arg_type)(context, builder, value=value)
    array.meminfo = cgutils.get_null_value(array.meminfo.type)
    return array._getvalue()


def _caller(task: _Task):
    """The intrinsic ``call(address, args)`` that kernels use for ``task``."""

    @intrinsic
    def call(typingctx, address, args):
        if not isinstance(address, types.Integer):
            raise TypingError(f"{task.name}: the address must be an integer, got "
                              f"{address}")
        if not isinstance(args, types.BaseTuple):
            raise TypingError(f"{task.name}: the arguments must be a tuple, got "
                              f"{args}")
        passed = tuple(args.types)
        float_type = _float_type(passed)
        expected = task.types_for(float_type) if float_type is not None else None
        if passed != expected:
            raise TypingError(f"{task.name}: called with {passed}, declared "
                              f"{expected}")

        def codegen(context, builder, signature, llargs):
            address_value, packed = llargs
            values = [_borrowed(context, builder, arg, builder.extract_value(packed, i))
                      for i, arg in enumerate(passed)]
            convention = context.call_conv
            pointer_type = convention.get_function_type(types.none,
                                                        passed).as_pointer()
            function = builder.inttoptr(address_value, pointer_type)
            status, _ = convention.call_function(builder, function, types.none,
                                                 passed, values)
            with builder.if_then(status.is_error, likely=False):
                convention.return_status_propagate(builder, status)
            return context.get_dummy_value()

        return types.none(address, args), codegen

    call.__doc__ = f"Call the task ``{task.name}`` at an address (see cpu_task)."
    return call
