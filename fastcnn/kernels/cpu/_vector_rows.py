"""Explicit vector code for loops over a row that LLVM's vectoriser handles badly:
short rows (a vectorised loop needs more iterations than LeNet's rows have, so
they run in its scalar remainder) and stride-2 access (interleaved loads and
stores, which it turns into gathers and scatters or leaves scalar).

:class:`VectorRows` emits a loop over ``count`` outputs, one vector of lanes per
step: :meth:`~VectorRows.contiguous_loop` where output ``j`` reads input ``j``,
:meth:`~VectorRows.stride_two_loop` where it reads input elements ``2j`` (and
``2j + 1``): two vector loads per input row per step, split into even and odd
elements with shuffles. Whole steps use plain loads and stores; the last,
partial step masked ones, which touch nothing past the elements the row's
outputs need. On Zen 4 the masked forms for whole steps too made a 16-block pool
row 1.8x slower.

The intrinsics type only for 1-D C-contiguous rows of one float dtype and
scalars of that dtype (the kernels' callers pass those); anything else is a
typing error, never a wrong result. The masked intrinsics are declared with
opaque pointers: numba 0.62 or newer (pyproject.toml).
"""

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from ._gemm import VECTOR_BYTES


def row_signature(args, rows, ints, scalars=()):
    """``void(*args)``, or None unless ``rows`` (some of ``args``) are 1-D
    C-contiguous arrays of one float dtype, ``ints`` integers and ``scalars`` of
    that dtype."""
    if not all(isinstance(r, types.Array) and r.ndim == 1 and r.layout == "C"
               and isinstance(r.dtype, types.Float) for r in rows):
        return None
    dtype = rows[0].dtype
    if not all(r.dtype == dtype for r in rows) or any(s != dtype for s in scalars):
        return None
    if not all(isinstance(i, types.Integer) for i in ints):
        return None
    return types.void(*args)


class VectorRows:
    """Vector code over the outputs of a row, for an intrinsic's codegen:
    ``args`` named by ``names``; arrays by name in :meth:`load` / :meth:`store`,
    other arguments in ``self.arg``."""

    def __init__(self, context, builder, signature, args, names):
        self.builder = builder
        self.arg = dict(zip(names, args, strict=True))
        typ = dict(zip(names, signature.args, strict=True))
        self.ints = {n: context.cast(builder, self.arg[n], t, types.intp)
                     for n, t in typ.items() if isinstance(t, types.Integer)}
        element = context.get_value_type(signature.args[0].dtype)
        self.itemsize = context.get_abi_sizeof(element)
        self.lanes = lanes = VECTOR_BYTES // self.itemsize
        self.vector = ir.VectorType(element, lanes)
        self.index_vector = ir.VectorType(cgutils.intp_t, lanes)
        mask = ir.VectorType(ir.IntType(1), lanes)
        pointer = ir.PointerType()
        self.align = ir.Constant(ir.IntType(32), self.itemsize)
        suffix = f"v{lanes}f{8 * self.itemsize}"
        self.masked_load = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(self.vector, [pointer, ir.IntType(32), mask, self.vector]),
            f"llvm.masked.load.{suffix}.p0")
        self.masked_store = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(),
                            [self.vector, pointer, ir.IntType(32), mask]),
            f"llvm.masked.store.{suffix}.p0")
        self.data = {n: make_array(t)(context, builder, self.arg[n]).data
                     for n, t in typ.items() if isinstance(t, types.Array)}
        self.zero = ir.Constant(self.vector, [0.0] * lanes)
        self.evens = list(range(0, 2 * lanes, 2))
        self.odds = list(range(1, 2 * lanes, 2))

    def constant(self, value):
        return ir.Constant(cgutils.intp_t, value)

    def splat(self, value, vtype=None):
        vtype = vtype or self.vector
        b = self.builder
        undefined = ir.Constant(vtype, ir.Undefined)
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), vtype.count),
                            [0] * vtype.count)
        return b.shuffle_vector(
            b.insert_element(undefined, value, ir.Constant(ir.IntType(32), 0)),
            undefined, zeros)

    def load(self, name, offset, mask):
        """The vector at ``name[offset:]``; lanes off in ``mask`` (None: all on)
        are not read and hold 0."""
        pointer = self.builder.gep(self.data[name], [offset])
        if mask is None:
            return self.builder.load(
                self.builder.bitcast(pointer, self.vector.as_pointer()),
                align=self.itemsize)
        return self.builder.call(self.masked_load,
                                 [pointer, self.align, mask, self.zero])

    def store(self, value, name, offset, mask):
        """``name[offset:]`` = the vector, where ``mask`` (None: all) is on."""
        pointer = self.builder.gep(self.data[name], [offset])
        if mask is None:
            self.builder.store(
                value, self.builder.bitcast(pointer, self.vector.as_pointer()),
                align=self.itemsize)
        else:
            self.builder.call(self.masked_store, [value, pointer, self.align, mask])

    def shuffle(self, a, b, picks):
        return self.builder.shuffle_vector(
            a, b, ir.Constant(ir.VectorType(ir.IntType(32), self.lanes), picks))

    def interleave(self, even, odd):
        """The two vectors whose elements alternate ``even[0], odd[0], ...``."""
        lanes = self.lanes
        low = [k // 2 + (lanes if k % 2 else 0) for k in range(lanes)]
        high = [lanes // 2 + k // 2 + (lanes if k % 2 else 0) for k in range(lanes)]
        return self.shuffle(even, odd, low), self.shuffle(even, odd, high)

    def stride_two_loop(self, count, body, spare):
        """Emit the steps over ``count`` outputs, each by ``body(j0, out_mask,
        i0, first_mask, i1, second_mask)``: the step's first output, the mask of
        its outputs, and the first input element of each of its two input
        vectors with their masks (masks None in whole steps). Output ``j`` reads
        inputs ``2j`` and ``2j + 1``, or with ``spare`` 1 only ``2j``: then the
        last output's ``2j + 1`` is never read (it may lie past the row)."""
        b, lanes = self.builder, self.lanes
        whole = b.sdiv(b.sub(count, self.constant(spare)), self.constant(lanes))
        with cgutils.for_range(b, whole) as loop:
            j0 = b.mul(loop.index, self.constant(lanes))
            i0 = b.add(j0, j0)
            body(j0, None, i0, None, b.add(i0, self.constant(lanes)), None)
        j0 = b.mul(whole, self.constant(lanes))
        active = b.sub(count, j0)
        with b.if_then(b.icmp_signed(">", active, self.constant(0))):
            reach = b.sub(b.add(active, active), self.constant(spare))
            i0 = b.add(j0, j0)
            body(j0, self.lanes_below(active, 0), i0, self.lanes_below(reach, 0),
                 b.add(i0, self.constant(lanes)), self.lanes_below(reach, lanes))

    def contiguous_loop(self, count, body):
        """Emit the steps over ``count`` outputs, each by ``body(j0, mask)``: the
        step's first output and the mask of its outputs (None in whole
        steps)."""
        b, lanes = self.builder, self.lanes
        whole = b.sdiv(count, self.constant(lanes))
        with cgutils.for_range(b, whole) as loop:
            body(b.mul(loop.index, self.constant(lanes)), None)
        j0 = b.mul(whole, self.constant(lanes))
        active = b.sub(count, j0)
        with b.if_then(b.icmp_signed(">", active, self.constant(0))):
            body(j0, self.lanes_below(active, 0))

    def lanes_below(self, limit, first):
        """The mask of the lanes ``first + k < limit``."""
        indices = list(range(first, first + self.lanes))
        return self.builder.icmp_signed("<", ir.Constant(self.index_vector, indices),
                                        self.splat(limit, self.index_vector))


def row_copy_signature(src, s0, dst, d0, count):
    """The signature of a row-to-row intrinsic ``(src, s0, dst, d0, count)``:
    rows ``src`` and ``dst`` read and written from elements ``s0`` and ``d0``
    (see :func:`row_signature`)."""
    return row_signature((src, s0, dst, d0, count), (src, dst), (s0, d0, count))


def row_copy_code(context, builder, signature, args):
    """``(rows, s0, d0)`` for the codegen of an intrinsic typed by
    :func:`row_copy_signature`."""
    rows = VectorRows(context, builder, signature, args,
                      ("src", "s0", "dst", "d0", "count"))
    return rows, rows.ints["s0"], rows.ints["d0"]


@intrinsic
def copy_row(typingctx, src, s0, dst, d0, count):
    """``dst[d0 + t] = src[s0 + t]`` for ``t < count``, a vector at a time with a
    masked last step: for rows shorter than one vectorised iteration of a loop
    (LeNet-5's are 10 wide). No bounds are checked."""
    sig = row_copy_signature(src, s0, dst, d0, count)
    return None if sig is None else (sig, _copy_row_codegen)


def _copy_row_codegen(context, builder, signature, args):
    rows, s0, d0 = row_copy_code(context, builder, signature, args)

    def body(j0, mask):
        rows.store(rows.load("src", builder.add(s0, j0), mask), "dst",
                   builder.add(d0, j0), mask)

    rows.contiguous_loop(rows.ints["count"], body)
    return context.get_dummy_value()
