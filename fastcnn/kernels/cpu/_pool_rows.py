"""One row of the 2x2, stride-2 max pool, forward and backward, as explicit vector
code (:mod:`._vector_rows`).

The scalar loops over a row's blocks did not vectorise in a way that pays:
LeNet's rows are 14 and 5 blocks long, shorter than one vectorised iteration, so
every block ran in the scalar remainder, and the interleaved stores into ``dx``
became scatters. Measured (2 threads, float32): the backward took 4-6x the
forward (150 us on (64,6,28,28), 100 us on (64,16,10,10)), 45 and 43 us in this
form. Each step takes one vector's lanes of blocks: each input row's two
vectors split into its even and odd columns, the scalar rule's comparisons and
selects lane by lane, the backward's results interleaved back.
"""

from numba.extending import intrinsic

from ._vector_rows import VectorRows, row_signature


@intrinsic
def max_2x2_forward_row(typingctx, top, bottom, out, count):
    """``out[j]`` = the first maximum of ``top[2j : 2j+2]``, ``bottom[2j : 2j+2]``
    scanned row-major (a later element wins if greater or NaN), for
    ``j < count``. top, bottom: at least ``2 * count`` long. No bounds are
    checked."""
    sig = row_signature((top, bottom, out, count), (top, bottom, out), (count,))
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
    sig = row_signature((top, bottom, grad, upper, lower, count, lo, hi),
                        (top, bottom, grad, upper, lower), (count,), (lo, hi))
    return None if sig is None else (sig, _backward_codegen)


def _wins(builder, candidate, best):
    """The forward's scan: a later element wins if greater or NaN."""
    return builder.or_(builder.fcmp_ordered(">", candidate, best),
                       builder.fcmp_unordered("uno", candidate, candidate))


def _block(rows, i0, first_mask, i1, second_mask):
    """``(a, b, d, e)``: the blocks' top-left, top-right, bottom-left and
    bottom-right elements, one vector each."""
    top0, top1 = rows.load("top", i0, first_mask), rows.load("top", i1, second_mask)
    bottom0 = rows.load("bottom", i0, first_mask)
    bottom1 = rows.load("bottom", i1, second_mask)
    return (rows.shuffle(top0, top1, rows.evens), rows.shuffle(top0, top1, rows.odds),
            rows.shuffle(bottom0, bottom1, rows.evens),
            rows.shuffle(bottom0, bottom1, rows.odds))


def _forward_codegen(context, builder, signature, args):
    rows = VectorRows(context, builder, signature, args,
                         ("top", "bottom", "out", "count"))

    def body(j0, out_mask, i0, first_mask, i1, second_mask):
        a, b, d, e = _block(rows, i0, first_mask, i1, second_mask)
        best = builder.select(_wins(builder, b, a), b, a)
        best = builder.select(_wins(builder, d, best), d, best)
        best = builder.select(_wins(builder, e, best), e, best)
        rows.store(best, "out", j0, out_mask)

    rows.stride_two_loop(rows.ints["count"], body, spare=0)
    return context.get_dummy_value()


def _backward_codegen(context, builder, signature, args):
    rows = VectorRows(context, builder, signature, args,
                         ("top", "bottom", "grad", "upper", "lower", "count", "lo",
                          "hi"))
    zero = rows.zero
    lo, hi = rows.splat(rows.arg["lo"]), rows.splat(rows.arg["hi"])

    def body(j0, out_mask, i0, first_mask, i1, second_mask):
        a, b, d, e = _block(rows, i0, first_mask, i1, second_mask)
        g = rows.load("grad", j0, out_mask)
        won_b = _wins(builder, b, a)
        best = builder.select(won_b, b, a)
        won_d = _wins(builder, d, best)
        best = builder.select(won_d, d, best)
        won_e = _wins(builder, e, best)
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
            first, second = rows.interleave(left, right)
            rows.store(first, name, i0, first_mask)
            rows.store(second, name, i1, second_mask)

    rows.stride_two_loop(rows.ints["count"], body, spare=0)
    return context.get_dummy_value()
