"""Blocked matrix products of the convolution kernels: ``dst += coef @ src`` on
C-contiguous float rows, eight (:data:`TALL_ROWS`, with AVX-512) or four output
rows at a time.

Most columns go through :func:`_accumulate_block`, a register-blocked micro-kernel
written as LLVM IR: a block of four output rows by two vectors of columns
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

from llvmlite import binding, ir
from numba.core import cgutils, config, types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from .._jit import cpu_helper

#: Output rows of a block, and vectors of columns per row: eight accumulators,
#: enough independent fused multiply-add chains to hide their latency on two FMA
#: units. Measured on one thread of an AVX-512 Zen 4 (zmm, peak 117 GFLOP/s),
#: 48..96 rows x 144 source rows x 192 columns: 4 x 2 112 GFLOP/s, 4 x 3 108,
#: 4 x 4 110, 6 x 2 92-107; 8 x 2 only 55 and 8 x 3 47 there, but on a Zen 5
#: (two full-width FMA pipes) 8 x 2 is the faster block: :data:`TALL_ROWS`.
BLOCK_ROWS = 4
BLOCK_VECTORS = 2


def _target_has_avx512() -> bool:
    """Whether Numba compiles for a CPU with AVX-512F: the features it gives LLVM
    (``NUMBA_CPU_FEATURES`` when set, else the host's)."""
    if config.CPU_FEATURES:
        return "+avx512f" in config.CPU_FEATURES.split(",")
    return bool(binding.get_host_cpu_features().get("avx512f", False))


#: Bytes of one vector of the micro-kernel: 64 (zmm) where the CPU has AVX-512F,
#: else 32 (ymm). The block is written with explicit vector types, so LLVM emits
#: zmm fused multiply-adds even though its vectorisers prefer 256 bits on these
#: CPUs. Measured on one thread, 64x64x128: 70 GFLOP/s with ymm, 129 with zmm.
VECTOR_BYTES = 64 if _target_has_avx512() else 32

#: Bytes of a block's columns: ``BLOCK_BYTES // itemsize`` columns per block.
BLOCK_BYTES = BLOCK_VECTORS * VECTOR_BYTES

#: Output rows of the tall block (:func:`_accumulate_tall`), which the products
#: run first: 8 where vectors are zmm (32 vector registers hold its 16
#: accumulators), else the four-row block itself (16 ymm registers would not).
#: Measured on one thread of an AVX-512 Zen 5 (zmm, peak 206 GFLOP/s), float32,
#: 48..384 rows x 96..288 source rows x 192..256 columns: 4 x 2 142-179 GFLOP/s,
#: 6 x 2 185-236, 8 x 2 203-238, 8 x 3 212-232, 10 x 2 114-141 (spills).
#: Compiled for a Zen 4 or a Sapphire Rapids (``NUMBA_CPU_NAME``, run on the
#: Zen 5) the 8 x 2 block does not spill either: 209-229 and 176-219 GFLOP/s
#: against 138-174 and 141-177 for 4 x 2. Not measured on a Zen 4 itself since
#: the 55 GFLOP/s above.
TALL_ROWS = 8 if VECTOR_BYTES == 64 else BLOCK_ROWS


def _is_float_matrix(t) -> bool:
    return (isinstance(t, types.Array) and t.ndim == 2 and t.layout == "C"
            and isinstance(t.dtype, types.Float))


def _block_codegen(context, builder, signature, args, indirect: bool,
                   vectors: int = BLOCK_VECTORS, overwrite: bool = False,
                   block_rows: int = BLOCK_ROWS):
    """The body of :func:`_accumulate_block` (``indirect`` false) and
    :func:`_accumulate_block_rows` (true), and of their one-vector-wide and
    two-row forms: load the block's ``block_rows * vectors`` accumulators, add
    one fused multiply-add per source row to each, store them. With
    ``overwrite`` the accumulators start at +0.0 instead of the block's values
    (:func:`_store_block`): the same bits as adding into a block of zeros,
    without the zeroing pass and the load."""
    if indirect:
        names = ("dst", "d0", "dst_col", "coef", "c0", "k0", "src", "r0", "row_of",
                 "off_of", "n_rows", "src_col")
    else:
        names = ("dst", "d0", "coef", "c0", "src", "n_rows", "j0")
    arg = dict(zip(names, args, strict=True))
    typ = dict(zip(names, signature.args, strict=True))

    def index(name):
        return context.cast(builder, arg[name], typ[name], types.intp)

    array_type = typ["dst"]
    out, coefficients, rows = (make_array(typ[n])(context, builder, arg[n])
                               for n in ("dst", "coef", "src"))
    element = context.get_value_type(array_type.dtype)
    itemsize = context.get_abi_sizeof(element)
    lanes = VECTOR_BYTES // itemsize
    vector = ir.VectorType(element, lanes)
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector, [vector] * 3),
        f"llvm.fma.v{lanes}f{8 * itemsize}")

    def plus(value, constant):
        return builder.add(value, ir.Constant(cgutils.intp_t, constant))

    def pointer(array, row, col, layout="C"):
        return cgutils.get_item_pointer2(
            context, builder, data=array.data,
            shape=cgutils.unpack_tuple(builder, array.shape),
            strides=cgutils.unpack_tuple(builder, array.strides), layout=layout,
            inds=[row, col], wraparound=False, boundscheck=False)

    def vector_pointer(array, row, col):
        return builder.bitcast(pointer(array, row, col), vector.as_pointer())

    d0 = index("d0")
    c0 = index("c0")
    n_rows = index("n_rows")
    if indirect:
        dst_col = index("dst_col")
        k0 = index("k0")
        r0 = index("r0")
        src_col = index("src_col")
        row_of, off_of = (make_array(typ[n])(context, builder, arg[n])
                          for n in ("row_of", "off_of"))
    else:
        dst_col = src_col = index("j0")
        k0 = r0 = ir.Constant(cgutils.intp_t, 0)
    accumulators = []
    for i in range(block_rows):
        for h in range(vectors):
            # Entry-block allocas: LLVM promotes them to registers.
            slot = cgutils.alloca_once(builder, vector)
            if overwrite:
                start = ir.Constant(vector, [0.0] * lanes)
            else:
                start = builder.load(vector_pointer(out, plus(d0, i),
                                                    plus(dst_col, h * lanes)),
                                     align=itemsize)
            builder.store(start, slot)
            accumulators.append(slot)
    undefined = ir.Constant(vector, ir.Undefined)
    broadcast = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
    first = ir.Constant(ir.IntType(32), 0)
    with cgutils.for_range(builder, n_rows) as loop:
        k = loop.index
        if indirect:
            # Row k is src[r0 + row_of[k], off_of[k] + src_col:].
            row = builder.add(r0, builder.load(cgutils.get_item_pointer(
                context, builder, typ["row_of"], row_of, [k])))
            col = builder.add(src_col, builder.load(cgutils.get_item_pointer(
                context, builder, typ["off_of"], off_of, [k])))
        else:
            row, col = k, src_col
        xs = [builder.load(vector_pointer(rows, row, plus(col, h * lanes)),
                           align=itemsize) for h in range(vectors)]
        q = builder.add(k0, k)
        for i in range(block_rows):
            scalar = builder.load(pointer(coefficients, plus(c0, i), q,
                                          typ["coef"].layout))
            splat = builder.shuffle_vector(
                builder.insert_element(undefined, scalar, first), undefined,
                broadcast)
            for h in range(vectors):
                slot = accumulators[i * vectors + h]
                builder.store(builder.call(fma, [splat, xs[h], builder.load(slot)]),
                              slot)
    for i in range(block_rows):
        for h in range(vectors):
            builder.store(builder.load(accumulators[i * vectors + h]),
                          vector_pointer(out, plus(d0, i), plus(dst_col, h * lanes)),
                          align=itemsize)
    return context.get_dummy_value()


def _plain_signature(dst, d0, coef, c0, src, n_rows, j0):
    """The signature of :func:`_accumulate_block` and :func:`_accumulate_vector`,
    or None (does not type) unless dst, coef and src are one C-contiguous float
    matrix type."""
    if not (_is_float_matrix(dst) and coef == dst and src == dst):
        return None
    return types.void(dst, d0, coef, c0, src, n_rows, j0)


def _rows_signature(dst, d0, dst_col, coef, c0, k0, src, r0, row_of, off_of, n_rows,
                    src_col):
    """The signature of the ``_rows`` forms, or None unless dst and src are
    C-contiguous float matrices, coef a C- or F-contiguous one, of one dtype, and
    row_of, off_of 1-D int64."""
    ints = types.Array(types.int64, 1, "C")
    coef_ok = (isinstance(coef, types.Array) and coef.ndim == 2
               and coef.layout in "CF" and coef.dtype == dst.dtype)
    if not (_is_float_matrix(dst) and _is_float_matrix(src) and coef_ok
            and src.dtype == dst.dtype and row_of == ints and off_of == ints):
        return None
    return types.void(dst, d0, dst_col, coef, c0, k0, src, r0, row_of, off_of, n_rows,
                      src_col)


def _typed(sig, indirect: bool, vectors: int, overwrite: bool = False,
           block_rows: int = BLOCK_ROWS):
    """What an intrinsic returns: ``(sig, codegen)``, or None where it does not
    type."""
    if sig is None:
        return None

    def codegen(context, builder, signature, args):
        return _block_codegen(context, builder, signature, args, indirect=indirect,
                              vectors=vectors, overwrite=overwrite,
                              block_rows=block_rows)

    return sig, codegen


@intrinsic
def _accumulate_block(typingctx, dst, d0, coef, c0, src, n_rows, j0):
    """``dst[d0 + i, j0 : j0 + W] += coef[c0 + i, :n_rows] @ src[:n_rows, j0 : j0 + W]``
    for ``i < 4``, with ``W = BLOCK_BYTES // itemsize`` columns (two vectors).

    dst, coef and src: 2-D C-contiguous arrays of one float dtype (anything else
    does not type). No bounds are checked: the caller keeps every index inside.
    """
    return _typed(_plain_signature(dst, d0, coef, c0, src, n_rows, j0), False,
                  BLOCK_VECTORS)


@intrinsic
def _accumulate_block_rows(typingctx, dst, d0, dst_col, coef, c0, k0, src, r0,
                           row_of, off_of, n_rows, src_col):
    """:func:`_accumulate_block` with the source rows picked by index arrays:
    ``dst[d0 + i, dst_col + j] += sum_k coef[c0 + i, k0 + k] *
    src[r0 + row_of[k], off_of[k] + src_col + j]`` for ``i < 4``, ``j < W``,
    ``k < n_rows`` (the rows of a patch, or the shifted windows of an input plane
    that a stride-1 convolution reads; see ``conv.py``). row_of, off_of: 1-D int64.

    ``coef`` may be C- or F-contiguous (the transpose of a C-contiguous matrix).
    In F the block's coefficients of source row ``k`` lie side by side, at
    constant offsets from one pointer; in C they need a pointer per output row,
    and the tall block's eight, with ``row_of``, ``off_of`` and the rest, are more
    than x86-64's sixteen general registers hold, so the loop reloads them from
    the stack. Measured on one thread of a Zen 5, float32, 64..384 output rows x
    96..576 source rows x 192..768 columns: 8 x 2 with C coefficients 121-169
    GFLOP/s, with F 152-211 (4 x 2 either way 96-143).
    """
    return _typed(_rows_signature(dst, d0, dst_col, coef, c0, k0, src, r0, row_of,
                                  off_of, n_rows, src_col), True, BLOCK_VECTORS)


@intrinsic
def _accumulate_tall(typingctx, dst, d0, coef, c0, src, n_rows, j0):
    """:func:`_accumulate_block` for ``TALL_ROWS`` output rows."""
    return _typed(_plain_signature(dst, d0, coef, c0, src, n_rows, j0), False,
                  BLOCK_VECTORS, block_rows=TALL_ROWS)


@intrinsic
def _accumulate_tall_rows(typingctx, dst, d0, dst_col, coef, c0, k0, src, r0,
                          row_of, off_of, n_rows, src_col):
    """:func:`_accumulate_block_rows` for ``TALL_ROWS`` output rows."""
    return _typed(_rows_signature(dst, d0, dst_col, coef, c0, k0, src, r0, row_of,
                                  off_of, n_rows, src_col), True, BLOCK_VECTORS,
                  block_rows=TALL_ROWS)


@intrinsic
def _store_tall(typingctx, dst, d0, coef, c0, src, n_rows, j0):
    """:func:`_store_block` for ``TALL_ROWS`` output rows."""
    return _typed(_plain_signature(dst, d0, coef, c0, src, n_rows, j0), False,
                  BLOCK_VECTORS, overwrite=True, block_rows=TALL_ROWS)


@intrinsic
def _accumulate_tall_vector(typingctx, dst, d0, coef, c0, src, n_rows, j0):
    """:func:`_accumulate_tall` one vector wide: eight accumulators where the
    four-row :func:`_accumulate_vector` has four, too few to hide the fused
    multiply-add's latency."""
    return _typed(_plain_signature(dst, d0, coef, c0, src, n_rows, j0), False, 1,
                  block_rows=TALL_ROWS)


@intrinsic
def _accumulate_tall_vector_rows(typingctx, dst, d0, dst_col, coef, c0, k0, src,
                                 r0, row_of, off_of, n_rows, src_col):
    """:func:`_accumulate_tall_rows` one vector wide (see
    :func:`_accumulate_tall_vector`)."""
    return _typed(_rows_signature(dst, d0, dst_col, coef, c0, k0, src, r0, row_of,
                                  off_of, n_rows, src_col), True, 1,
                  block_rows=TALL_ROWS)


@intrinsic
def _store_tall_vector(typingctx, dst, d0, coef, c0, src, n_rows, j0):
    """:func:`_store_tall` one vector wide."""
    return _typed(_plain_signature(dst, d0, coef, c0, src, n_rows, j0), False, 1,
                  overwrite=True, block_rows=TALL_ROWS)


#: Vectors of columns per row of the two-row block (:func:`_accumulate_pair_rows`):
#: eight accumulators, as the four-row block has.
PAIR_VECTORS = 4


@intrinsic
def _accumulate_pair_rows(typingctx, dst, d0, dst_col, coef, c0, k0, src, r0, row_of,
                          off_of, n_rows, src_col):
    """:func:`_accumulate_block_rows` for two output rows, ``PAIR_VECTORS``
    vectors wide: the last ``M % 4`` rows of a product when two or three are
    left (LeNet-5's first convolution has 6). One fused multiply-add per source
    row, in order, as the four-row block adds them."""
    return _typed(_rows_signature(dst, d0, dst_col, coef, c0, k0, src, r0, row_of,
                                  off_of, n_rows, src_col), True, PAIR_VECTORS,
                  block_rows=2)


@intrinsic
def _accumulate_vector(typingctx, dst, d0, coef, c0, src, n_rows, j0):
    """:func:`_accumulate_block` one vector wide (``VECTOR_BYTES // itemsize``
    columns, four accumulators): for a remainder of columns narrower than a
    block."""
    return _typed(_plain_signature(dst, d0, coef, c0, src, n_rows, j0), False, 1)


@intrinsic
def _accumulate_vector_rows(typingctx, dst, d0, dst_col, coef, c0, k0, src, r0,
                            row_of, off_of, n_rows, src_col):
    """:func:`_accumulate_block_rows` one vector wide (see
    :func:`_accumulate_vector`)."""
    return _typed(_rows_signature(dst, d0, dst_col, coef, c0, k0, src, r0, row_of,
                                  off_of, n_rows, src_col), True, 1)


@intrinsic
def _store_block(typingctx, dst, d0, coef, c0, src, n_rows, j0):
    """``dst[d0 + i, j0 : j0 + W] = coef[c0 + i, :n_rows] @ src[:n_rows, j0 : j0 + W]``:
    :func:`_accumulate_block` into a block of zeros, without reading ``dst``
    (same bits)."""
    return _typed(_plain_signature(dst, d0, coef, c0, src, n_rows, j0), False,
                  BLOCK_VECTORS, overwrite=True)


@intrinsic
def _store_vector(typingctx, dst, d0, coef, c0, src, n_rows, j0):
    """:func:`_store_block` one vector wide."""
    return _typed(_plain_signature(dst, d0, coef, c0, src, n_rows, j0), False, 1,
                  overwrite=True)


@cpu_helper
def _gemm_4(dst, d0, coef, c0, src, n_rows, start, stop):
    """``dst[d0 + i, start:stop] += coef[c0 + i, :n_rows] @ src[:n_rows, start:stop]``
    for ``i < 4``: :func:`_accumulate_block` over whole blocks of columns, one
    :func:`_accumulate_vector` where a vector's width is left, then
    :func:`_gemm_4_columns` over the rest."""
    width = BLOCK_BYTES // dst.itemsize
    lanes = VECTOR_BYTES // dst.itemsize
    j0 = start
    while j0 + width <= stop:
        _accumulate_block(dst, d0, coef, c0, src, n_rows, j0)
        j0 += width
    if j0 + lanes <= stop:
        _accumulate_vector(dst, d0, coef, c0, src, n_rows, j0)
        j0 += lanes
    if j0 < stop:
        _gemm_4_columns(dst, d0, coef, c0, src, n_rows, j0, stop)


@cpu_helper
def _gemm_tall(dst, d0, coef, c0, src, n_rows, start, stop):
    """:func:`_gemm_4` for ``TALL_ROWS`` output rows: whole blocks of columns
    through :func:`_accumulate_tall`, the columns left four rows at a time as
    :func:`_gemm_4` does them (the same sums, in the same order)."""
    width = BLOCK_BYTES // dst.itemsize
    lanes = VECTOR_BYTES // dst.itemsize
    j0 = start
    while j0 + width <= stop:
        _accumulate_tall(dst, d0, coef, c0, src, n_rows, j0)
        j0 += width
    if j0 + lanes <= stop:
        _accumulate_tall_vector(dst, d0, coef, c0, src, n_rows, j0)
        j0 += lanes
    if j0 < stop:
        for i in range(0, TALL_ROWS, 4):
            _gemm_4(dst, d0 + i, coef, c0 + i, src, n_rows, j0, stop)


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
def _gemm_1(dst, d0, coef, c0, src, n_rows, start, stop):
    """:func:`_gemm_4` for one output row (the last ``C_out % 4``)."""
    o0 = dst[d0, start:stop]
    w0 = coef[c0]
    for k in range(n_rows):
        a0 = w0[k]
        r0 = src[k, start:stop]
        for j in range(stop - start):
            o0[j] += a0 * r0[j]


@cpu_helper
def _gemm_rows(dst, d0, d1, coef, c0, src, n_rows, start, stop):
    """``dst[d, start:stop] += coef[c0 + d - d0, :n_rows] @ src[:n_rows, start:stop]``
    for every output row ``d`` in ``[d0, d1)``: four at a time (:func:`_gemm_4`),
    then one at a time (:func:`_gemm_1`), after ``TALL_ROWS`` at a time
    (:func:`_gemm_tall`) where the tall block is taller than four."""
    d = d0
    if TALL_ROWS > 4:
        while d + TALL_ROWS <= d1:
            _gemm_tall(dst, d, coef, c0 + d - d0, src, n_rows, start, stop)
            d += TALL_ROWS
    while d + 4 <= d1:
        _gemm_4(dst, d, coef, c0 + d - d0, src, n_rows, start, stop)
        d += 4
    while d < d1:
        _gemm_1(dst, d, coef, c0 + d - d0, src, n_rows, start, stop)
        d += 1


@cpu_helper
def _store_4(dst, d0, coef, c0, src, n_rows, start, stop):
    """``dst[d0 + i, start:stop] = coef[c0 + i, :n_rows] @ src[:n_rows, start:stop]``
    for ``i < 4``: whole blocks through :func:`_store_block`, a vector's width
    through :func:`_store_vector`, the rest zeroed and added into."""
    width = BLOCK_BYTES // dst.itemsize
    lanes = VECTOR_BYTES // dst.itemsize
    j0 = start
    while j0 + width <= stop:
        _store_block(dst, d0, coef, c0, src, n_rows, j0)
        j0 += width
    if j0 + lanes <= stop:
        _store_vector(dst, d0, coef, c0, src, n_rows, j0)
        j0 += lanes
    if j0 < stop:
        for i in range(4):
            row = dst[d0 + i]
            for j in range(j0, stop):
                row[j] = 0
        _gemm_4_columns(dst, d0, coef, c0, src, n_rows, j0, stop)


@cpu_helper
def _gemm_rows_store(dst, d0, d1, coef, c0, src, n_rows, start, stop):
    """``dst[d, start:stop] = coef[c0 + d - d0, :n_rows] @ src[:n_rows, start:stop]``
    for ``d`` in ``[d0, d1)``: :func:`_gemm_rows` into zeroed rows, bit for bit,
    but whole blocks of rows start their accumulators at zero
    (:func:`_store_tall`, :func:`_store_4`) instead of reading a zeroed ``dst``;
    the last ``% 4`` rows are zeroed and added into as there."""
    width = BLOCK_BYTES // dst.itemsize
    lanes = VECTOR_BYTES // dst.itemsize
    d = d0
    if TALL_ROWS > 4:
        while d + TALL_ROWS <= d1:
            c = c0 + d - d0
            j0 = start
            while j0 + width <= stop:
                _store_tall(dst, d, coef, c, src, n_rows, j0)
                j0 += width
            if j0 + lanes <= stop:
                _store_tall_vector(dst, d, coef, c, src, n_rows, j0)
                j0 += lanes
            if j0 < stop:
                for i in range(0, TALL_ROWS, 4):
                    _store_4(dst, d + i, coef, c + i, src, n_rows, j0, stop)
            d += TALL_ROWS
    while d + 4 <= d1:
        _store_4(dst, d, coef, c0 + d - d0, src, n_rows, start, stop)
        d += 4
    while d < d1:
        row = dst[d]
        for j in range(start, stop):
            row[j] = 0
        _gemm_1(dst, d, coef, c0 + d - d0, src, n_rows, start, stop)
        d += 1
