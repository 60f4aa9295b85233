"""One row of the 2x2, stride-2 max pool, forward and backward, as explicit vector
code.

The scalar loop over a row's blocks did not vectorise in a way that pays: LeNet's
rows are 14 and 5 blocks long, shorter than one vectorised iteration (16 lanes,
unrolled), so every block ran in the scalar remainder, and the interleaved
stores into ``dx`` became scatters. Measured (2 threads, float32): the
backward took 4-6x the forward (150 us on (64,6,28,28), 100 us on (64,16,10,10)),
45 and 43 us in this form.
Here a row is cut into blocks of one vector's lanes: two vector loads per input
row, split into its even and odd columns, the comparisons and selects of the
scalar rule lane by lane, the four results interleaved back into two vectors
per output row. The last, partial block uses masked loads and stores, which
touch no element past the row's last block.
"""

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from ._gemm import VECTOR_BYTES


def _row_signature(rows, count, bounds=()):
    """The signature, or None unless ``rows`` are 1-D C-contiguous arrays of one
    float dtype, ``count`` an integer and ``bounds`` scalars of that dtype."""
    if not all(isinstance(r, types.Array) and r.ndim == 1 and r.layout == "C"
               and isinstance(r.dtype, types.Float) for r in rows):
        return None
    dtype = rows[0].dtype
    if not all(r.dtype == dtype for r in rows) or any(b != dtype for b in bounds):
        return None
    if not isinstance(count, types.Integer):
        return None
    return types.void(*rows, count, *bounds)


@intrinsic
def max_2x2_forward_row(typingctx, top, bottom, out, count):
    """``out[j]`` = the first maximum of ``top[2j : 2j+2]``, ``bottom[2j : 2j+2]``
    scanned row-major (a later element wins if greater or NaN), for
    ``j < count``. top, bottom: at least ``2 * count`` long. No bounds are
    checked."""
    sig = _row_signature((top, bottom, out), count)
    return None if sig is None else (sig, _forward_codegen)


@intrinsic
def max_2x2_backward_row(typingctx, top, bottom, grad, upper, lower, count, lo, hi):
    """For ``j < count``: the gradient ``grad[j]`` of the block ``top[2j : 2j+2]``,
    ``bottom[2j : 2j+2]`` goes to the block's first maximum (the forward's
    rule), zeroed where that maximum is ``<= lo`` or ``>= hi`` (a NaN bound
    stops nothing); the block's other three elements of ``upper`` / ``lower``
    get +0.0. Bitwise what adding into a zeroed ``dx`` gives (a -0.0 gradient
    lands as +0.0).

    top, bottom: two input rows; upper, lower: the same rows of ``dx``; all at
    least ``2 * count`` long; grad at least ``count``. No bounds are checked.
    """
    sig = _row_signature((top, bottom, grad, upper, lower), count, (lo, hi))
    return None if sig is None else (sig, _backward_codegen)


class _Rows:
    """Vector code over the blocks of a row: ``lanes`` blocks per step, the last
    step masked."""

    def __init__(self, context, builder, signature, args, names):
        self.builder = builder
        self.arg = dict(zip(names, args, strict=True))
        typ = dict(zip(names, signature.args, strict=True))
        element = context.get_value_type(signature.args[0].dtype)
        itemsize = context.get_abi_sizeof(element)
        self.lanes = lanes = VECTOR_BYTES // itemsize
        self.vector = ir.VectorType(element, lanes)
        self.index_vector = ir.VectorType(cgutils.intp_t, lanes)
        mask = ir.VectorType(ir.IntType(1), lanes)
        pointer = ir.PointerType()
        self.itemsize = itemsize
        self.align = ir.Constant(ir.IntType(32), itemsize)
        suffix = f"v{lanes}f{8 * itemsize}"
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
        self.count = context.cast(builder, self.arg["count"], typ["count"],
                                  types.intp)
        self.zero = ir.Constant(self.vector, [0.0] * lanes)

    def constant(self, value):
        return ir.Constant(cgutils.intp_t, value)

    def splat(self, value, vtype):
        b = self.builder
        undefined = ir.Constant(vtype, ir.Undefined)
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), vtype.count),
                            [0] * vtype.count)
        return b.shuffle_vector(
            b.insert_element(undefined, value, ir.Constant(ir.IntType(32), 0)),
            undefined, zeros)

    def load(self, name, offset, mask):
        pointer = self.builder.gep(self.data[name], [offset])
        if mask is None:
            return self.builder.load(
                self.builder.bitcast(pointer, self.vector.as_pointer()),
                align=self.itemsize)
        return self.builder.call(self.masked_load,
                                 [pointer, self.align, mask, self.zero])

    def store(self, value, name, offset, mask):
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

    def wins(self, candidate, best):
        """The forward's scan: a later element wins if greater or NaN."""
        b = self.builder
        return b.or_(b.fcmp_ordered(">", candidate, best),
                     b.fcmp_unordered("uno", candidate, candidate))

    def loop(self, body):
        """Emit the steps, each by ``body(j0, out_mask, c0, first_mask, c1,
        second_mask)``: the step's first block, the mask of its blocks, and its
        two vectors of row elements (first column, mask) each. Whole steps run
        unmasked (masks None: on Zen 4 the masked forms made a 16-block row
        1.8x slower), the last partial one masked."""
        b, lanes = self.builder, self.lanes
        whole = b.sdiv(self.count, self.constant(lanes))
        with cgutils.for_range(b, whole) as loop:
            j0 = b.mul(loop.index, self.constant(lanes))
            c0 = b.add(j0, j0)
            body(j0, None, c0, None, b.add(c0, self.constant(lanes)), None)
        j0 = b.mul(whole, self.constant(lanes))
        active = b.sub(self.count, j0)
        with b.if_then(b.icmp_signed(">", active, self.constant(0))):

            def lanes_from(first):
                return ir.Constant(self.index_vector, list(range(first, first + lanes)))

            out_mask = b.icmp_signed("<", lanes_from(0),
                                     self.splat(active, self.index_vector))
            pairs = self.splat(b.add(active, active), self.index_vector)
            c0 = b.add(j0, j0)
            body(j0, out_mask, c0, b.icmp_signed("<", lanes_from(0), pairs),
                 b.add(c0, self.constant(lanes)),
                 b.icmp_signed("<", lanes_from(lanes), pairs))

    def block(self, c0, first_mask, c1, second_mask):
        """``(a, b, d, e)``: the blocks' top-left, top-right, bottom-left and
        bottom-right elements, one vector each."""
        evens = list(range(0, 2 * self.lanes, 2))
        odds = list(range(1, 2 * self.lanes, 2))
        top0, top1 = self.load("top", c0, first_mask), self.load("top", c1, second_mask)
        bottom0 = self.load("bottom", c0, first_mask)
        bottom1 = self.load("bottom", c1, second_mask)
        return (self.shuffle(top0, top1, evens), self.shuffle(top0, top1, odds),
                self.shuffle(bottom0, bottom1, evens),
                self.shuffle(bottom0, bottom1, odds))


def _forward_codegen(context, builder, signature, args):
    rows = _Rows(context, builder, signature, args, ("top", "bottom", "out", "count"))

    def body(j0, out_mask, c0, first_mask, c1, second_mask):
        a, b, d, e = rows.block(c0, first_mask, c1, second_mask)
        best = builder.select(rows.wins(b, a), b, a)
        best = builder.select(rows.wins(d, best), d, best)
        best = builder.select(rows.wins(e, best), e, best)
        rows.store(best, "out", j0, out_mask)

    rows.loop(body)
    return context.get_dummy_value()


def _backward_codegen(context, builder, signature, args):
    rows = _Rows(context, builder, signature, args,
                 ("top", "bottom", "grad", "upper", "lower", "count", "lo", "hi"))
    zero, lanes = rows.zero, rows.lanes
    lo, hi = rows.splat(rows.arg["lo"], rows.vector), rows.splat(rows.arg["hi"],
                                                                  rows.vector)
    low_half = [k // 2 + (lanes if k % 2 else 0) for k in range(lanes)]
    high_half = [lanes // 2 + k // 2 + (lanes if k % 2 else 0) for k in range(lanes)]

    def body(j0, out_mask, c0, first_mask, c1, second_mask):
        a, b, d, e = rows.block(c0, first_mask, c1, second_mask)
        g = rows.load("grad", j0, out_mask)
        won_b = rows.wins(b, a)
        best = builder.select(won_b, b, a)
        won_d = rows.wins(d, best)
        best = builder.select(won_d, d, best)
        won_e = rows.wins(e, best)
        best = builder.select(won_e, e, best)
        # Only the maximum gets a gradient: gate that one. + 0.0: a -0.0
        # gradient arrives as +0.0, as PyTorch's sum into a zeroed dx gives it.
        gated = builder.or_(builder.fcmp_ordered("<=", best, lo),
                            builder.fcmp_ordered(">=", best, hi))
        g = builder.select(gated, zero, builder.fadd(g, zero))
        later = builder.or_(won_d, won_e)
        top_left = builder.select(builder.or_(won_b, later), zero, g)
        top_right = builder.select(builder.and_(won_b, builder.not_(later)), g, zero)
        bottom_left = builder.select(builder.and_(won_d, builder.not_(won_e)), g, zero)
        bottom_right = builder.select(won_e, g, zero)
        for name, left, right in (("upper", top_left, top_right),
                                  ("lower", bottom_left, bottom_right)):
            rows.store(rows.shuffle(left, right, low_half), name, c0, first_mask)
            rows.store(rows.shuffle(left, right, high_half), name, c1, second_mask)

    rows.loop(body)
    return context.get_dummy_value()
