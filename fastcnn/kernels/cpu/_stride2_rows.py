"""The stride-2 copies of a strided convolution's patch, as explicit vector code
(:mod:`._vector_rows`): the forward copies every other input element of a row
into the patch, the input gradient adds the patch gradient back into every other
element. Written as loops over ``(ow + t) * sw``, LLVM left them scalar or
made them gathers and scatters over rows of 28 outputs; measured on
(32,64,56,56)->128 3x3 stride 2 (2 threads, float32): the patch copy alone 6.3
ms of a 27-45 ms forward, the adding back 7.6 ms of the input gradient.
"""

from llvmlite import ir
from numba.extending import intrinsic

from ._vector_rows import row_copy_code, row_copy_signature


@intrinsic
def copy_evens(typingctx, src, s0, dst, d0, count):
    """``dst[d0 + t] = src[s0 + 2t]`` for ``t < count``; reads no element of
    ``src`` past ``s0 + 2 * (count - 1)``. No bounds are checked."""
    sig = row_copy_signature(src, s0, dst, d0, count)
    return None if sig is None else (sig, _copy_codegen)


@intrinsic
def add_to_evens(typingctx, src, s0, dst, d0, count):
    """``dst[d0 + 2t] += src[s0 + t]`` for ``t < count`` (the odd elements
    between keep their bits); touches no element of ``dst`` past
    ``d0 + 2 * (count - 1)``. No bounds are checked."""
    sig = row_copy_signature(src, s0, dst, d0, count)
    return None if sig is None else (sig, _add_codegen)


def _copy_codegen(context, builder, signature, args):
    rows, s0, d0 = row_copy_code(context, builder, signature, args)

    def body(j0, out_mask, i0, first_mask, i1, second_mask):
        first = rows.load("src", builder.add(s0, i0), first_mask)
        second = rows.load("src", builder.add(s0, i1), second_mask)
        rows.store(rows.shuffle(first, second, rows.evens), "dst",
                   builder.add(d0, j0), out_mask)

    rows.stride_two_loop(rows.ints["count"], body, spare=1)
    return context.get_dummy_value()


def _add_codegen(context, builder, signature, args):
    rows, s0, d0 = row_copy_code(context, builder, signature, args)
    evens = ir.Constant(ir.VectorType(ir.IntType(1), rows.lanes),
                        [k % 2 == 0 for k in range(rows.lanes)])

    def body(j0, out_mask, i0, first_mask, i1, second_mask):
        value = rows.load("src", builder.add(s0, j0), out_mask)
        low, high = rows.interleave(value, value)
        for offset, mask, part in ((i0, first_mask, low), (i1, second_mask, high)):
            at = builder.add(d0, offset)
            old = rows.load("dst", at, mask)
            new = builder.select(evens, builder.fadd(old, part), old)
            rows.store(new, "dst", at, mask)

    rows.stride_two_loop(rows.ints["count"], body, spare=1)
    return context.get_dummy_value()
