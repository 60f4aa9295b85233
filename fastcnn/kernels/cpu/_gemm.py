"""Blocked matrix products of the convolution kernels: ``dst += coef @ src`` on
C-contiguous float rows, four output rows at a time.

Most columns go through :func:`_accumulate_block`, a register-blocked micro-kernel
written as LLVM IR: a block of four output rows by two 32-byte vectors of columns
is loaded once into eight vector accumulators, every source row adds its fused
multiply-adds to them, and the block is stored once. LLVM does not find this form
in loops written in Python: from a loop over columns it vectorises one row pass at a
time, loading and storing the output on every pass, and its SLP vectoriser leaves
64 scalar accumulators scalar (measured: 7 GFLOP/s). Measured on one thread,
float32, 28..64 output rows x 32..64 source rows x 128 columns (the Winograd
products): 50-52 GFLOP/s against 32 for the row-pass loop; with 576 source rows
(rows no longer in L1) the two are equal.

Each output element is its old value plus the products in order of the source row,
one fused multiply-add each (contraction, as ``FASTMATH`` allows everywhere): the
order is fixed by the shapes alone.
"""

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from .._jit import cpu_helper

#: Output rows of a block, and 32-byte vectors of columns per row: eight
#: accumulators, enough independent fused multiply-add chains to hide their latency
#: on two FMA units.
BLOCK_ROWS = 4
BLOCK_VECTORS = 2


@intrinsic
def _accumulate_block(typingctx, dst, d0, coef, c0, src, n_rows, j0):
    """``dst[d0 + i, j0 : j0 + W] += coef[c0 + i, :n_rows] @ src[:n_rows, j0 : j0 + W]``
    for ``i < 4``, with ``W = 64 // itemsize`` columns (two 32-byte vectors).

    dst, coef and src: 2-D C-contiguous arrays of one float dtype (anything else
    does not type). No bounds are checked: the caller keeps every index inside.
    """
    if not (isinstance(dst, types.Array) and dst.ndim == 2 and dst.layout == "C"
            and isinstance(dst.dtype, types.Float) and coef == dst and src == dst):
        return None
    sig = types.void(dst, d0, coef, c0, src, n_rows, j0)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        arrays = [make_array(array_type)(context, builder, args[i]) for i in (0, 2, 4)]
        d0v, c0v, n_v, j0v = (context.cast(builder, args[i], signature.args[i],
                                           types.intp) for i in (1, 3, 5, 6))
        element = context.get_value_type(array_type.dtype)
        itemsize = context.get_abi_sizeof(element)
        lanes = 32 // itemsize
        vector = ir.VectorType(element, lanes)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [vector] * 3),
            f"llvm.fma.v{lanes}f{8 * itemsize}")

        def pointer(array, row, col):
            return cgutils.get_item_pointer2(
                context, builder, data=array.data,
                shape=cgutils.unpack_tuple(builder, array.shape),
                strides=cgutils.unpack_tuple(builder, array.strides), layout="C",
                inds=[row, col], wraparound=False, boundscheck=False)

        def vector_pointer(array, row, col):
            return builder.bitcast(pointer(array, row, col), vector.as_pointer())

        def plus(value, constant):
            return builder.add(value, ir.Constant(cgutils.intp_t, constant))

        out, coefficients, rows = arrays
        cols = [plus(j0v, h * lanes) for h in range(BLOCK_VECTORS)]
        accumulators = []
        for i in range(BLOCK_ROWS):
            for h in range(BLOCK_VECTORS):
                # Entry-block allocas: LLVM promotes them to registers.
                slot = cgutils.alloca_once(builder, vector)
                start = builder.load(vector_pointer(out, plus(d0v, i), cols[h]),
                                     align=itemsize)
                builder.store(start, slot)
                accumulators.append(slot)
        undefined = ir.Constant(vector, ir.Undefined)
        broadcast = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
        first = ir.Constant(ir.IntType(32), 0)
        with cgutils.for_range(builder, n_v) as loop:
            k = loop.index
            xs = [builder.load(vector_pointer(rows, k, col), align=itemsize)
                  for col in cols]
            for i in range(BLOCK_ROWS):
                scalar = builder.load(pointer(coefficients, plus(c0v, i), k))
                splat = builder.shuffle_vector(
                    builder.insert_element(undefined, scalar, first), undefined,
                    broadcast)
                for h in range(BLOCK_VECTORS):
                    slot = accumulators[i * BLOCK_VECTORS + h]
                    builder.store(builder.call(fma, [splat, xs[h], builder.load(slot)]),
                                  slot)
        for i in range(BLOCK_ROWS):
            for h in range(BLOCK_VECTORS):
                builder.store(builder.load(accumulators[i * BLOCK_VECTORS + h]),
                              vector_pointer(out, plus(d0v, i), cols[h]),
                              align=itemsize)
        return context.get_dummy_value()

    return sig, codegen


@cpu_helper
def _gemm_4(dst, d0, coef, c0, src, n_rows, count):
    """``dst[d0 + i, :count] += coef[c0 + i, :n_rows] @ src[:n_rows, :count]`` for
    ``i < 4``: :func:`_accumulate_block` over whole blocks of columns, then
    :func:`_gemm_4_columns` over the rest."""
    width = 64 // dst.itemsize
    j0 = 0
    while j0 + width <= count:
        _accumulate_block(dst, d0, coef, c0, src, n_rows, j0)
        j0 += width
    if j0 < count:
        _gemm_4_columns(dst, d0, coef, c0, src, n_rows, j0, count)


@cpu_helper
def _gemm_4_columns(dst, d0, coef, c0, src, n_rows, start, stop):
    """:func:`_gemm_4` on the columns ``start .. stop - 1``, one pass over the
    columns per source row, rows sliced one at a time so the loop vectorises
    (sums in the same order as the blocks')."""
    o0 = dst[d0, start:stop]
    o1 = dst[d0 + 1, start:stop]
    o2 = dst[d0 + 2, start:stop]
    o3 = dst[d0 + 3, start:stop]
    w0, w1, w2, w3 = coef[c0], coef[c0 + 1], coef[c0 + 2], coef[c0 + 3]
    for k in range(n_rows):
        a0, b0, c0_, e0 = w0[k], w1[k], w2[k], w3[k]
        r0 = src[k, start:stop]
        for j in range(stop - start):
            x0 = r0[j]
            o0[j] += a0 * x0
            o1[j] += b0 * x0
            o2[j] += c0_ * x0
            o3[j] += e0 * x0


@cpu_helper
def _gemm_1(dst, d0, coef, c0, src, n_rows, count):
    """:func:`_gemm_4` for one output row (the last ``C_out % 4``)."""
    o0 = dst[d0, :count]
    w0 = coef[c0]
    for k in range(n_rows):
        a0 = w0[k]
        r0 = src[k, :count]
        for j in range(count):
            o0[j] += a0 * r0[j]
