"""The CPU side of :mod:`fastcnn.kernels._clamp`: the store a kernel's epilogue
makes."""

from numba.extending import intrinsic

from .._jit import cpu_helper
from ._vector_rows import VectorRows, row_signature


@cpu_helper
def _clamp(v, lo, hi):
    """``v`` limited to ``[lo, hi]``: ``lo`` below it, ``hi`` above it, ``v`` itself
    in between and when NaN (both comparisons false), as ``relu`` and ``relu6``
    give it. With ``(-inf, inf)`` every value, -0.0 and NaN included, is kept."""
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


@intrinsic
def clamp_row(typingctx, src, s0, dst, d0, count, lo, hi):
    """``dst[d0 + t] = _clamp(src[s0 + t], lo, hi)`` for ``t < count``, as
    explicit vector code with a masked last step (:mod:`._vector_rows`): an
    epilogue's rows are often shorter than one vectorised iteration of the loop
    (LeNet-5's are 10 and 28 wide). No bounds are checked."""
    sig = row_signature((src, s0, dst, d0, count, lo, hi), (src, dst),
                        (s0, d0, count), (lo, hi))
    return None if sig is None else (sig, _clamp_row_codegen)


def _clamp_row_codegen(context, builder, signature, args):
    rows = VectorRows(context, builder, signature, args,
                      ("src", "s0", "dst", "d0", "count", "lo", "hi"))
    lo, hi = rows.splat(rows.arg["lo"]), rows.splat(rows.arg["hi"])
    s0, d0 = rows.ints["s0"], rows.ints["d0"]

    def body(j0, mask):
        v = rows.load("src", builder.add(s0, j0), mask)
        # _clamp's order: below lo gives lo, else above hi gives hi (NaN kept).
        above = builder.select(builder.fcmp_ordered(">", v, hi), hi, v)
        out = builder.select(builder.fcmp_ordered("<", v, lo), lo, above)
        rows.store(out, "dst", builder.add(d0, j0), mask)

    rows.contiguous_loop(rows.ints["count"], body)
    return context.get_dummy_value()
