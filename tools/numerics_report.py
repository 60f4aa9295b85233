"""float32 against float64 error of the long reductions, with PyTorch float32 beside.

    .venv/bin/python tools/numerics_report.py [--batch 512]

Prints a markdown table (the one in docs/NUMERICS.md). For each reduction the same
float32 data (x = |N(0, 1)|, as after a ReLU; dy = N(0, 1)) goes through fastcnn in
float32, fastcnn in float64 (the reference) and torch in float32. Two errors per
result ``a`` against the float64 reference ``r``:

- ``max rel``: ``max_i |a_i - r_i| / max_i |r_i|`` (normwise, over the whole array);
- ``/ (u S)``: ``max_i |a_i - r_i| / (u * S_i)`` with ``u = 2**-24`` the float32 unit
  roundoff and ``S_i = sum |terms|`` of element i: the error in units of the
  classical bound's scale. Summing n terms one after another can reach
  ``(n - 1) u S``; the column shows how much of that a result uses, and the
  "bound" column is the ``n - 1`` (or blocked equivalent) of our summation order.

Takes under a minute and ~2 GB on two cores (conv: 2 x 30 GFLOP in float64).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

U32 = 2.0**-24


def _errors(actual, reference, magnitude):
    actual = np.asarray(actual, np.float64)
    err = np.abs(actual - reference)
    max_rel = float(err.max() / np.abs(reference).max())
    in_units = float(np.max(err / (U32 * np.maximum(magnitude, 1e-300))))
    return max_rel, in_units


def conv_case(batch, rng):
    import torch

    from fastcnn import backend

    k = backend.kernels("conv", "cpu")
    shape, c_out = (batch, 64, 28, 28), 64
    x = np.abs(rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal((batch, c_out, 28, 28)).astype(np.float32)
    def ours(dtype, dy_, x_):
        dw = np.empty((c_out, 64, 3, 3), dtype)
        db = np.empty(c_out, dtype)
        k.conv2d_backward_weight(dy_.astype(dtype, copy=False),
                                 x_.astype(dtype, copy=False), dw, 1, 1, 1, 1, 1, 1,
                                 1)
        k.conv2d_backward_bias(dy_.astype(dtype, copy=False), db)
        return dw, db

    dw32, db32 = ours(np.float32, dy, x)
    dw64, db64 = ours(np.float64, dy, x)
    mag_w, _ = ours(np.float64, np.abs(dy), x)  # x >= 0 already
    mag_b = np.abs(dy).astype(np.float64).sum(axis=(0, 2, 3))
    _, tw, tb = torch.ops.aten.convolution_backward(
        torch.from_numpy(dy), torch.from_numpy(x), torch.zeros(c_out, 64, 3, 3),
        [c_out], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, True])
    n = batch * 28 * 28
    conv = f"conv 3x3 {shape} -> {c_out}"
    return [
        (f"{conv}: dweight (Winograd)", n, "see below", dw64, mag_w, dw32,
         tw.numpy()),
        (f"{conv}: dbias", n, n - 1, db64, mag_b, db32, tb.numpy()),
    ]


def wide_strided_case(batch, rng):
    """The weight gradient's matrix-product form (``kernels/cpu/_weight_gemm.py``)
    on a wide 3x3 stride-2 layer: each slot sums its run of images' positions in
    order, then the slots are added in order. Batch capped at 128 (float64 time)."""
    import torch

    from fastcnn import backend

    k = backend.kernels("conv", "cpu")
    batch = min(batch, 128)
    shape, c_out = (batch, 64, 28, 28), 128
    x = np.abs(rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal((batch, c_out, 14, 14)).astype(np.float32)

    def ours(dtype, dy_):
        dw = np.empty((c_out, 64, 3, 3), dtype)
        k.conv2d_backward_weight(dy_.astype(dtype, copy=False),
                                 x.astype(dtype, copy=False), dw, 1, 1, 2, 2, 1, 1,
                                 1)
        return dw

    _, tw, _ = torch.ops.aten.convolution_backward(
        torch.from_numpy(dy), torch.from_numpy(x), torch.zeros(c_out, 64, 3, 3),
        None, [2, 2], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False])
    n = batch * 14 * 14
    return [(f"conv 3x3 s2 {shape} -> {c_out}: dweight (matrix product)", n,
             n - 1, ours(np.float64, dy), ours(np.float64, np.abs(dy)),
             ours(np.float32, dy), tw.numpy())]


def winograd_case(batch, rng):
    """The Winograd F(4x4, 3x3) path (forward and dx) on a 64-channel 3x3 layer:
    not a long reduction (576 terms) but transforms that scale by up to ~100, so
    its error is stated against the same ``u S``. Batch capped at 64 (the error
    does not grow with the batch: no sum runs over it)."""
    import torch

    import fastcnn.functional as F

    batch = min(batch, 64)
    shape, c_out = (batch, 64, 28, 28), 64
    x = np.abs(rng.standard_normal(shape)).astype(np.float32)
    w = (rng.standard_normal((c_out, 64, 3, 3)) / 24).astype(np.float32)
    dy = rng.standard_normal((batch, c_out, 28, 28)).astype(np.float32)
    y32 = F.conv2d(x, w, padding=1)
    dx32 = F.conv2d_backward(dy, x, w, padding=1)[0]
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    y64 = F.conv2d(x64, w64, padding=1)
    dx64 = F.conv2d_backward(dy64, x64, w64, padding=1)[0]
    mag_y = F.conv2d(x64, np.abs(w64), padding=1)
    mag_dx = F.conv2d_backward(np.abs(dy64), x64, np.abs(w64), padding=1)[0]
    tx = torch.from_numpy(x).requires_grad_()
    ty = torch.nn.functional.conv2d(tx, torch.from_numpy(w), padding=1)
    ty.backward(torch.from_numpy(dy))
    name = f"conv 3x3 {shape} -> {c_out}, Winograd"
    return [
        (f"{name}: y", 576, "see below", y64, mag_y, y32, ty.detach().numpy()),
        (f"{name}: dx", 576, "see below", dx64, mag_dx, dx32, tx.grad.numpy()),
    ]


def dense_case(batch, rng):
    import torch

    import fastcnn.functional as F

    x = np.abs(rng.standard_normal((batch, 4096))).astype(np.float32)
    w = rng.standard_normal((1024, 4096)).astype(np.float32) / 64
    dy = rng.standard_normal((batch, 1024)).astype(np.float32)
    _, dw32, db32 = F.linear_backward(dy, x, w)
    _, dw64, db64 = F.linear_backward(dy.astype(np.float64), x.astype(np.float64),
                                      w.astype(np.float64))
    mag_w = np.abs(dy).astype(np.float64).T @ x.astype(np.float64)
    mag_b = np.abs(dy).astype(np.float64).sum(axis=0)
    tdy, tx = torch.from_numpy(dy), torch.from_numpy(x)
    return [
        ("dense 4096 -> 1024: dweight", batch, batch - 1, dw64, mag_w, dw32,
         (tdy.T @ tx).numpy()),
        ("dense 4096 -> 1024: dbias", batch, batch - 1, db64, mag_b, db32,
         tdy.sum(0).numpy()),
    ]


def batch_norm_case(batch, rng):
    import torch

    import fastcnn.functional as F

    shape = (batch, 64, 28, 28)
    # A mean large against the spread: the case that breaks one-pass variance.
    x = (3.0 + rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    n = batch * 28 * 28
    rows = []
    results = {}
    for dtype in (np.float32, np.float64):
        xd, dyd = x.astype(dtype), dy.astype(dtype)
        rm, rv = np.zeros(64, dtype), np.ones(64, dtype)
        F.batch_norm(xd, rm, rv, training=True, momentum=1.0)  # running = batch
        _, dw, db = F.batch_norm_backward(dyd, xd, None, None, training=True)
        results[dtype] = (rm, rv, dw, db)
    tx = torch.from_numpy(x)
    tvar, tmean = torch.var_mean(tx, dim=(0, 2, 3), unbiased=True)
    txr = tx.clone().requires_grad_()
    tw = torch.ones(64, requires_grad=True)
    tb = torch.zeros(64, requires_grad=True)
    torch.nn.functional.batch_norm(txr, None, None, tw, tb, training=True).backward(
        torch.from_numpy(dy))
    x64 = x.astype(np.float64)
    mean64 = results[np.float64][0]
    xhat = (x64 - mean64[None, :, None, None]) / np.sqrt(
        results[np.float64][1][None, :, None, None] * (n - 1) / n + 1e-5)
    mags = [np.abs(x64).sum(axis=(0, 2, 3)) / n,
            ((x64 - mean64[None, :, None, None]) ** 2).sum(axis=(0, 2, 3)) / (n - 1),
            np.abs(dy * xhat).sum(axis=(0, 2, 3)),
            np.abs(dy).astype(np.float64).sum(axis=(0, 2, 3))]
    names = ["mean", "var (unbiased)", "dweight", "dbias"]
    theirs = [tmean.numpy(), tvar.numpy(), tw.grad.numpy(), tb.grad.numpy()]
    for i, name in enumerate(names):
        rows.append((f"batch norm {shape}: {name}", n, "float64 acc",
                     results[np.float64][i], mags[i], results[np.float32][i],
                     theirs[i]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    batch = parser.parse_args().batch
    import numba
    import torch

    torch.set_num_threads(numba.get_num_threads())
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    rows = [*dense_case(batch, rng), *batch_norm_case(batch, rng),
            *conv_case(batch, rng), *wide_strided_case(batch, rng),
            *winograd_case(batch, rng)]
    print("| reduction | terms n | bound (x u S) | fastcnn f32 max rel | "
          "fastcnn f32 / (u S) | torch f32 max rel | torch f32 / (u S) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n, bound, ref, mag, ours, theirs in rows:
        ours_rel, ours_u = _errors(ours, ref, mag)
        torch_rel, torch_u = _errors(theirs, ref, mag)
        print(f"| {name} | {n:,} | {bound if isinstance(bound, str) else f'{bound:,}'}"
              f" | {ours_rel:.2e} | {ours_u:.2f} | {torch_rel:.2e} | {torch_u:.2f} |")
    print(f"\nbatch {batch}, u = 2**-24 = {U32:.3g}, {numba.get_num_threads()} "
          f"threads, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
