"""Fuzzing cross_entropy with per-position logits (N, C, d1, ...), probability targets
and ignore_index: random shapes, layouts and label dtypes against the naive
reference, extreme values against PyTorch, and invalid arguments."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcnn.functional as F

from .. import naive
from ..fuzz_support import (
    COUNTS,
    FLOATS,
    NOT_INTS,
    assert_ieee_close,
    bad_arrays,
    data,
    examples,
    expect_rejected,
    extreme_data,
    laid_out,
    other_float,
)

REDUCTIONS = ["mean", "sum", "none"]
#: ignore_index values and the label dtypes that can hold them.
IGNORES = {-100: [np.int64, np.int32, np.int16], -1: [np.int64, np.int8],
           0: [np.int64, np.uint8], 255: [np.int64, np.uint8, np.int32]}


@st.composite
def shapes(draw):
    """Logits shapes: (C,), (N, C) and (N, C, d1[, d2[, d3]])."""
    if draw(st.integers(0, 5)) == 0:
        return (draw(st.integers(1, 5)),)
    spatial = draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 4)), *spatial)


@st.composite
def target_case(draw, fill=data):
    dtype = draw(st.sampled_from(FLOATS))
    shape = draw(shapes())
    n_classes = shape[1] if len(shape) > 1 else shape[0]
    logits = draw(fill(shape, dtype))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["indices", "probabilities"]))
    if kind == "indices":
        ignore = draw(st.sampled_from(sorted(IGNORES)))
        label_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
        labels = rng.integers(0, n_classes, label_shape)
        share = draw(st.sampled_from([0.0, 0.3, 1.0]))
        labels = np.where(rng.random(label_shape) < share, ignore, labels)
        labels = draw(laid_out(labels.astype(draw(st.sampled_from(IGNORES[ignore])))))
    else:
        ignore = draw(st.sampled_from([-100, -1]))
        labels = draw(laid_out(rng.random(shape).astype(dtype)))
    weight = draw(st.one_of(st.none(), st.just(
        rng.uniform(0.1, 2, n_classes).astype(dtype))))
    kwargs = {"weight": weight, "reduction": draw(st.sampled_from(REDUCTIONS)),
              "label_smoothing": draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
              "ignore_index": ignore}
    return logits, labels, kwargs


def _reference_args(kw):
    return (kw["weight"], kw["reduction"], kw["label_smoothing"], kw["ignore_index"])


def _torch(logits, labels, kw):
    """torch's loss and gradient, the gradient zeroed at ignored positions: torch's
    log_softmax backward gives NaN there for non-finite logits (0 * NaN), where
    ignored positions have no gradient here by definition."""
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(np.ascontiguousarray(logits)).requires_grad_()
    labels = np.array(labels)  # not ascontiguousarray: it makes 0-D labels 1-D
    target = torch.from_numpy(labels if labels.dtype.kind == "f"
                              else labels.astype(np.int64))
    weight = kw["weight"]
    loss = torch.nn.functional.cross_entropy(
        t, target, None if weight is None else torch.from_numpy(weight),
        reduction=kw["reduction"], label_smoothing=kw["label_smoothing"],
        ignore_index=kw["ignore_index"])
    loss.sum().backward()
    grad = t.grad.numpy().copy()
    if labels.dtype.kind != "f":
        ignored = labels == kw["ignore_index"]
        if logits.ndim == 1:
            grad[...] = np.where(ignored, 0.0, grad)
        else:
            np.moveaxis(grad, 1, -1)[ignored] = 0.0
    return loss.detach().numpy(), grad


def _check(logits, labels, kw, what, extreme=False):
    loss = F.cross_entropy(logits, labels, **kw)
    grad = F.cross_entropy_backward(logits, labels, **kw)
    if extreme:
        ref, rgrad = _torch(logits, labels, kw)
    else:
        with np.errstate(all="ignore"):
            ref = naive.cross_entropy_targets(logits, labels, *_reference_args(kw))
            rgrad = naive.cross_entropy_targets_backward(logits, labels,
                                                         *_reference_args(kw))
    if kw["reduction"] != "none":
        assert isinstance(loss, float)
        loss = np.asarray(loss, logits.dtype)
    assert_ieee_close(loss, ref, logits.dtype, f"{what} loss")
    assert_ieee_close(grad, rgrad, logits.dtype, f"{what} grad")


@examples()
@given(target_case())
def test_matches_naive(case):
    COUNTS["valid"] += 1
    logits, labels, kw = case
    _check(*case, f"{logits.shape} labels {labels.dtype}{labels.shape} {kw}")


@examples()
@given(target_case(fill=extreme_data))
def test_extreme_values_propagate_like_pytorch(case):
    COUNTS["extreme"] += 1
    logits, labels, kw = case
    _check(*case, f"extreme {logits.shape} labels {labels.dtype} {kw}", extreme=True)


# ------------------------------------------------------------------------- invalid

BAD_IGNORES = [x for x in NOT_INTS if not isinstance(x, int) or isinstance(x, bool)]
BAD_IGNORES += [2**63, 2**64, -(2**63) - 1]


def _bad_labels(logits, labels, kw):
    """Labels never valid for these logits (and ignore_index)."""
    shape = logits.shape
    n_classes = shape[1] if len(shape) > 1 else shape[0]
    label_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    ignore = kw["ignore_index"]
    out_of_range = [v for v in (n_classes, -1, 2**40, -(2**40)) if v != ignore]
    bad = [
        # bad_arrays' integer arrays are valid labels here.
        *(a for a in bad_arrays(np.zeros(label_shape, np.int64))
          if not (isinstance(a, np.ndarray) and a.dtype.kind in "iu")),
        *(np.full(label_shape, v, np.int64) for v in out_of_range),
        np.zeros((*label_shape, 2), np.int64), np.zeros((2, *label_shape), np.int64),
        np.zeros(shape, np.int64), np.zeros(shape, bool),
        np.zeros(label_shape, np.float64), other_float(logits),
        np.zeros((*shape, 1), logits.dtype),
    ]
    if label_shape:
        bad.append(np.zeros(label_shape[:-1], np.int64))
    if label_shape and label_shape[-1] > 1:
        bad.append(np.zeros((*label_shape[:-1], label_shape[-1] - 1), np.int64))
    if ignore >= 0:  # ignore_index with probability targets, as torch refuses
        bad.append(np.full(shape, 1.0 / n_classes, logits.dtype))
    return bad


@examples(3.0)
@given(target_case(), st.data())
def test_invalid_arguments(case, draw):
    logits, labels, kw = case
    kw = dict(kw)
    n_classes = logits.shape[1] if logits.ndim > 1 else logits.shape[0]
    which = draw.draw(st.sampled_from(["logits", "labels", "weight", "ignore_index"]))
    if which == "logits":
        logits = draw.draw(st.sampled_from(
            [*bad_arrays(logits), np.zeros((), logits.dtype),
             np.zeros((*logits.shape, 2), logits.dtype)]))
    elif which == "labels":
        labels = draw.draw(st.sampled_from(_bad_labels(logits, labels, kw)))
    elif which == "weight":
        w = np.ones(n_classes, logits.dtype)
        kw["weight"] = draw.draw(st.sampled_from(
            [*bad_arrays(w, optional=True), other_float(w), w[None],
             np.ones(n_classes + 1, logits.dtype)]))
    else:
        bads = list(BAD_IGNORES)
        if labels.dtype.kind == "f":
            bads += [0, 1, 255]
        kw["ignore_index"] = draw.draw(st.sampled_from(bads))
    what = f"cross_entropy {which} shape {np.shape(logits)} {kw}"
    expect_rejected(lambda: F.cross_entropy(logits, labels, **kw), what)
    expect_rejected(lambda: F.cross_entropy_backward(logits, labels, **kw), what)
