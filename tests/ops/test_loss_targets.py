"""cross_entropy beyond (N, C) logits with class indices: probability targets,
ignore_index and per-position (N, C, d1, ...) logits, in every combination with
class weights, reductions and label smoothing, against the naive reference, finite
differences and PyTorch; ignored positions, thread-count invariance and bad input."""

import itertools

import numpy as np
import pytest

import fastcnn.functional as F

from .. import naive
from ..gradcheck import assert_close, check_finite_differences, max_rel_error
from ..threads import assert_thread_count_invariant

REDUCTIONS = ("mean", "sum", "none")
SMOOTHING = (0.0, 0.2, 1.0)
#: Logits shapes: (N, C), per position (N, C, d1) and (N, C, d1, d2), unbatched (C,).
SHAPES = [(3, 4), (2, 3, 4), (2, 3, 2, 3), (5,)]
#: ignore_index values with class indices: the default (never a class), a class
#: index (its positions are ignored), and 255 (outside [0, C), a segmentation mask's).
IGNORES = (-100, 1, 255)


def _label_shape(shape):
    return () if len(shape) == 1 else (shape[0], *shape[2:])


def _case(rng, shape, kind, ignore_index, weighted, dtype=np.float64):
    """Logits, labels (class indices with about a third of the positions ignored, or
    probabilities) and class weights."""
    logits = (2 * rng.standard_normal(shape)).astype(dtype)
    n_classes = shape[1] if len(shape) > 1 else shape[0]
    if kind == "probabilities":
        raw = rng.random(shape)
        labels = (raw / raw.sum(axis=0 if len(shape) == 1 else 1, keepdims=True))
        labels = labels.astype(dtype)
    else:
        labels = rng.integers(0, n_classes, _label_shape(shape))
        labels = np.where(rng.random(labels.shape) < 0.35, ignore_index, labels)
        labels = np.asarray(labels, dtype=np.int64)
        # At least one position kept: an all-ignored mean is NaN (tested apart).
        if np.all(labels == ignore_index):
            labels.reshape(-1)[0] = (ignore_index + 1) % n_classes
    weight = (rng.random(n_classes) + 0.1).astype(dtype) if weighted else None
    return logits, labels, weight


def _chain(dy, grad, logits):
    """The gradient of sum(loss * dy) from the gradient of the reduced loss: a scalar
    dy for mean/sum; per position (broadcast over the class axis) for "none"."""
    dy = np.asarray(dy)
    if dy.ndim == 0:
        return dy * grad
    return np.expand_dims(dy, 1) * grad


# (kind, ignore_index): probabilities take a negative ignore_index only (unused).
KINDS = [("indices", i) for i in IGNORES] + [("probabilities", -100),
                                               ("probabilities", -1)]
GRID = list(itertools.product(SHAPES, KINDS, [False, True], REDUCTIONS, SMOOTHING))


@pytest.mark.parametrize("shape, kind_ignore, weighted, reduction, smoothing", GRID)
def test_matches_naive(shape, kind_ignore, weighted, reduction, smoothing, rng):
    kind, ignore = kind_ignore
    kwargs = {"reduction": reduction, "label_smoothing": smoothing,
              "ignore_index": ignore}
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-6)):
        logits, labels, weight = _case(rng, shape, kind, ignore, weighted, dtype)
        loss = F.cross_entropy(logits, labels, weight, **kwargs)
        want = naive.cross_entropy_targets(logits, labels, weight, reduction,
                                           smoothing, ignore)
        if reduction == "none":
            assert loss.dtype == dtype and loss.shape == _label_shape(shape)
        else:
            assert type(loss) is float
        assert_close(loss, want, tol, tol, f"{shape} {kind} loss")
        grad = F.cross_entropy_backward(logits, labels, weight, **kwargs)
        assert grad.dtype == dtype and grad.shape == shape
        want = naive.cross_entropy_targets_backward(logits, labels, weight,
                                                    reduction, smoothing, ignore)
        assert_close(grad, want, tol, tol, f"{shape} {kind} dlogits")


FD_GRID = list(itertools.product(SHAPES[1:], KINDS[1:4], [False, True], REDUCTIONS,
                                 [0.0, 0.3]))


@pytest.mark.parametrize("shape, kind_ignore, weighted, reduction, smoothing",
                         FD_GRID)
def test_finite_differences(shape, kind_ignore, weighted, reduction, smoothing, rng):
    kind, ignore = kind_ignore
    logits, labels, weight = _case(rng, shape, kind, ignore, weighted)
    kwargs = {"weight": weight, "reduction": reduction, "label_smoothing": smoothing,
              "ignore_index": ignore}
    check_finite_differences(
        lambda logits: F.cross_entropy(logits, labels, **kwargs),
        lambda dy, logits: _chain(dy, F.cross_entropy_backward(logits, labels,
                                                               **kwargs), logits),
        {"logits": logits}, ("logits",), rng,
    )


# ------------------------------------------------------------------- PyTorch parity


def _torch_loss_and_grad(torch, logits, labels, weight, kwargs):
    tx = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(
        tx, torch.tensor(labels), None if weight is None else torch.tensor(weight),
        **kwargs)
    t_loss.sum().backward()
    return t_loss.detach().numpy(), tx.grad.numpy()


@pytest.mark.torch
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_every_combination_matches_pytorch(dtype, tol):
    """Every shape x target kind x ignore_index x weight x reduction x smoothing:
    loss and gradient within ``tol`` relative to the largest magnitude."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    worst = {"loss": 0.0, "grad": 0.0}
    for shape, (kind, ignore), weighted, reduction, smoothing in GRID:
        logits, labels, weight = _case(rng, shape, kind, ignore, weighted, dtype)
        kwargs = {"reduction": reduction, "label_smoothing": smoothing,
                  "ignore_index": ignore}
        loss = F.cross_entropy(logits, labels, weight, **kwargs)
        grad = F.cross_entropy_backward(logits, labels, weight, **kwargs)
        t_loss, t_grad = _torch_loss_and_grad(torch, logits, labels, weight, kwargs)
        what = f"{shape} {kind} ignore={ignore} w={weighted} {reduction} {smoothing}"
        for key, got, want in (("loss", loss, t_loss), ("grad", grad, t_grad)):
            got = np.asarray(got, dtype=np.float64)
            assert got.shape == want.shape, what
            err = max_rel_error(got, want)
            assert err <= tol, f"{what} {key}: relative error {err:.3g}"
            worst[key] = max(worst[key], err)
    print(f"cross_entropy targets {np.dtype(dtype)}: {len(GRID)} configurations, "
          f"worst relative error vs torch {worst}")
    assert len(GRID) == 4 * 5 * 2 * 3 * 3


@pytest.mark.torch
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.4])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_every_label_ignored_matches_pytorch(weighted, smoothing, reduction):
    # A mean over no kept position is NaN (0 / 0); the gradient is 0 everywhere.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2, 3, 2))
    labels = np.full((2, 2), 7)
    weight = rng.random(3) + 0.1 if weighted else None
    kwargs = {"reduction": reduction, "label_smoothing": smoothing, "ignore_index": 7}
    loss = F.cross_entropy(logits, labels, weight, **kwargs)
    grad = F.cross_entropy_backward(logits, labels, weight, **kwargs)
    t_loss, t_grad = _torch_loss_and_grad(torch, logits, labels, weight, kwargs)
    np.testing.assert_array_equal(np.asarray(loss), t_loss)
    np.testing.assert_array_equal(grad, t_grad)
    assert not grad.any()


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_no_classes_with_every_label_ignored_matches_pytorch(reduction):
    torch = pytest.importorskip("torch")
    logits = np.zeros((2, 0))
    labels = np.array([-100, -100])
    loss = F.cross_entropy(logits, labels, reduction=reduction)
    t_loss, t_grad = _torch_loss_and_grad(torch, logits, labels, None,
                                          {"reduction": reduction})
    np.testing.assert_array_equal(np.asarray(loss), t_loss)
    assert F.cross_entropy_backward(logits, labels, reduction=reduction).shape == (
        2, 0)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 2), (2, 3, 0), (2, 0), (2, 0, 3)])
def test_empty_probability_targets_match_pytorch(shape, reduction):
    torch = pytest.importorskip("torch")
    logits = np.zeros(shape)
    target = np.zeros(shape)
    loss = F.cross_entropy(logits, target, reduction=reduction)
    t_loss, t_grad = _torch_loss_and_grad(torch, logits, target, None,
                                          {"reduction": reduction})
    np.testing.assert_array_equal(np.asarray(loss), t_loss)
    np.testing.assert_array_equal(
        F.cross_entropy_backward(logits, target, reduction=reduction), t_grad)


# --------------------------------------------------------------------- semantics


def test_ignored_positions_contribute_nothing(rng):
    logits = rng.standard_normal((2, 4, 3))
    labels = np.array([[0, 255, 3], [255, 2, 1]], dtype=np.uint8)
    weight = rng.random(4) + 0.5
    losses = F.cross_entropy(logits, labels, weight, reduction="none",
                             label_smoothing=0.3, ignore_index=255)
    assert losses[0, 1] == 0 and losses[1, 0] == 0 and np.all(losses[labels != 255])
    # A NaN logit at an ignored position changes nothing, in the loss or gradient.
    poisoned = logits.copy()
    poisoned[0, :, 1] = np.nan
    for reduction in REDUCTIONS:
        kwargs = {"reduction": reduction, "label_smoothing": 0.3,
                  "ignore_index": 255}
        np.testing.assert_array_equal(
            F.cross_entropy(poisoned, labels, weight, **kwargs),
            F.cross_entropy(logits, labels, weight, **kwargs))
        grad = F.cross_entropy_backward(poisoned, labels, weight, **kwargs)
        np.testing.assert_array_equal(
            grad, F.cross_entropy_backward(logits, labels, weight, **kwargs))
        assert not grad[0, :, 1].any() and not grad[1, :, 0].any()
    # The mean leaves them out of the denominator, class weights included.
    kept = labels != 255
    total = F.cross_entropy(logits, labels, weight, reduction="sum",
                            ignore_index=255)
    assert F.cross_entropy(logits, labels, weight, ignore_index=255) == pytest.approx(
        total / weight[labels[kept]].sum(), rel=1e-13)


def test_ignore_index_inside_the_classes(rng):
    # Positions labelled with the ignored class are dropped; the rest equal the
    # loss of the kept positions alone.
    logits = rng.standard_normal((5, 3))
    labels = np.array([0, 1, 2, 1, 0])
    kept = labels != 1
    np.testing.assert_allclose(
        F.cross_entropy(logits, labels, ignore_index=1),
        F.cross_entropy(logits[kept], labels[kept]), rtol=1e-14)
    grad = F.cross_entropy_backward(logits, labels, ignore_index=1)
    np.testing.assert_allclose(grad[kept],
                               F.cross_entropy_backward(logits[kept], labels[kept]),
                               rtol=1e-14)
    assert not grad[~kept].any()


def test_per_position_equals_moving_positions_into_the_batch(rng):
    # (N, C, H, W) with labels (N, H, W) is (N*H*W, C) with labels (N*H*W,).
    logits = rng.standard_normal((2, 3, 4, 5))
    labels = rng.integers(0, 3, (2, 4, 5))
    flat = np.moveaxis(logits, 1, -1).reshape(-1, 3)
    weight = rng.random(3) + 0.1
    for reduction in REDUCTIONS:
        kwargs = {"reduction": reduction, "label_smoothing": 0.1}
        got = F.cross_entropy(logits, labels, weight, **kwargs)
        want = F.cross_entropy(flat, labels.reshape(-1), weight, **kwargs)
        np.testing.assert_allclose(np.asarray(got).reshape(-1), want, rtol=1e-13)
        grad = F.cross_entropy_backward(logits, labels, weight, **kwargs)
        want = F.cross_entropy_backward(flat, labels.reshape(-1), weight, **kwargs)
        np.testing.assert_allclose(np.moveaxis(grad, 1, -1).reshape(-1, 3), want,
                                   rtol=1e-13)


def test_one_hot_probabilities_equal_class_indices(rng):
    logits = rng.standard_normal((4, 5, 3))
    labels = rng.integers(0, 5, (4, 3))
    one_hot = np.moveaxis(np.eye(5)[labels], -1, 1)
    for smoothing in (0.0, 0.25):
        for reduction in REDUCTIONS:
            kwargs = {"reduction": reduction, "label_smoothing": smoothing}
            np.testing.assert_allclose(F.cross_entropy(logits, one_hot, **kwargs),
                                       F.cross_entropy(logits, labels, **kwargs),
                                       rtol=1e-13)
            np.testing.assert_allclose(
                F.cross_entropy_backward(logits, one_hot, **kwargs),
                F.cross_entropy_backward(logits, labels, **kwargs), rtol=1e-12,
                atol=1e-16)


def test_negative_ignore_index_is_unused_with_probabilities(rng):
    # As in torch: any negative ignore_index is accepted and changes nothing.
    logits = rng.standard_normal((3, 4))
    target = rng.random((3, 4))
    expected = F.cross_entropy(logits, target)
    assert F.cross_entropy(logits, target, ignore_index=-1) == expected


def test_uint8_labels_with_ignore_index_255(rng):
    logits = rng.standard_normal((1, 3, 2, 2))
    labels = np.array([[[0, 255], [2, 1]]], dtype=np.uint8)
    np.testing.assert_array_equal(
        F.cross_entropy(logits, labels, ignore_index=255, reduction="none"),
        F.cross_entropy(logits, labels.astype(np.int64), ignore_index=255,
                        reduction="none"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_invariance(dtype, rng):
    # 150 positions: three position blocks per sample (and three samples).
    shape = (3, 5, 10, 15)
    logits, labels, weight = _case(rng, shape, "indices", 255, True, dtype)
    target, _, _ = _case(rng, shape, "probabilities", -100, False, dtype)
    for reduction in REDUCTIONS:
        for smoothing in (0.0, 0.3):
            kwargs = {"reduction": reduction, "label_smoothing": smoothing}
            for y, ignore in ((labels, 255), (target, -100)):
                assert_thread_count_invariant(
                    lambda y=y, i=ignore, k=kwargs: F.cross_entropy(
                        logits, y, weight, ignore_index=i, **k), "cross_entropy")
                assert_thread_count_invariant(
                    lambda y=y, i=ignore, k=kwargs: F.cross_entropy_backward(
                        logits, y, weight, ignore_index=i, **k),
                    "cross_entropy_backward")


def test_non_contiguous_inputs(rng):
    logits, labels, weight = _case(rng, (2, 3, 4, 5), "indices", 255, True)
    target = rng.random(logits.shape)
    strided = np.repeat(logits, 2, axis=-1)[..., ::2]
    assert not strided.flags.c_contiguous
    for y in (labels, target, np.asfortranarray(target)):
        ignore = 255 if y is labels else -100
        args = (weight, "none", 0.1, ignore)
        np.testing.assert_array_equal(F.cross_entropy(strided, y, *args),
                                      F.cross_entropy(logits, y, *args))
        np.testing.assert_array_equal(
            F.cross_entropy_backward(np.asfortranarray(logits), y, *args),
            F.cross_entropy_backward(logits, y, *args))


# ----------------------------------------------------------------------- bad input

CE_OPS = {"cross_entropy": F.cross_entropy,
          "cross_entropy_backward": F.cross_entropy_backward}


@pytest.mark.parametrize("op", CE_OPS)
def test_rejects_labels_of_the_wrong_shape(op):
    logits = np.zeros((2, 3, 4, 5))
    with pytest.raises(ValueError, match=rf"{op}: labels must have shape "
                       r"\(2, 4, 5\), got \(2, 5\)"):
        CE_OPS[op](logits, np.zeros((2, 5), np.int64))
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 4, 5\), got "
                       r"\(2, 3, 4\)"):
        CE_OPS[op](logits, np.zeros((2, 3, 4), np.int64))


@pytest.mark.parametrize("op", CE_OPS)
def test_rejects_integer_labels_of_the_logits_shape(op):
    # torch: "Expected floating point type for target with class probabilities".
    with pytest.raises(TypeError, match=rf"{op}: labels has the logits' shape "
                       r"\(3, 4\), which means class probabilities, but dtype int64"):
        CE_OPS[op](np.zeros((3, 4)), np.zeros((3, 4), np.int64))
    with pytest.raises(TypeError, match=r"but dtype bool"):
        CE_OPS[op](np.zeros((3, 4)), np.zeros((3, 4), bool))


@pytest.mark.parametrize("op", CE_OPS)
def test_rejects_float_labels_of_another_shape(op):
    with pytest.raises(TypeError, match=rf"{op}: labels must have an integer dtype "
                       r"\(class indices\), got float64 with shape \(3, 4\); class "
                       r"probabilities must have the logits' shape \(3, 4, 2\)"):
        CE_OPS[op](np.zeros((3, 4, 2)), np.zeros((3, 4)))


@pytest.mark.parametrize("op", CE_OPS)
def test_rejects_probabilities_of_another_dtype(op):
    with pytest.raises(TypeError, match=rf"{op}: labels has dtype float32 but logits "
                       r"has dtype float64"):
        CE_OPS[op](np.zeros((3, 4)), np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match=r"labels must have dtype float32 or float64, "
                       r"got float16"):
        CE_OPS[op](np.zeros((3, 4)), np.zeros((3, 4), np.float16))


@pytest.mark.parametrize("op", CE_OPS)
@pytest.mark.parametrize("ignore", [0, 3, 255])
def test_rejects_ignore_index_with_probabilities(op, ignore):
    # torch: "ignore_index is not supported for floating point target".
    with pytest.raises(ValueError, match=rf"{op}: ignore_index={ignore} applies to "
                       r"class indices, not to class probabilities"):
        CE_OPS[op](np.zeros((2, 4)), np.zeros((2, 4)), ignore_index=ignore)


@pytest.mark.parametrize("op", CE_OPS)
def test_rejects_out_of_range_labels_that_are_not_ignored(op):
    logits = np.zeros((2, 3, 2))
    with pytest.raises(ValueError, match=rf"{op}: labels must lie in \[0, 3\) for 3 "
                       r"classes, got 255\. Only ignore_index \(-100\) may lie "
                       r"outside"):
        CE_OPS[op](logits, np.array([[0, 255], [1, 2]]))
    with pytest.raises(ValueError, match=r"got -100\. Only ignore_index \(255\)"):
        CE_OPS[op](logits, np.array([[0, 255], [-100, 2]]), ignore_index=255)


@pytest.mark.parametrize("op", CE_OPS)
@pytest.mark.parametrize("value", [1.0, "255", None, True, np.float64(3)])
def test_rejects_non_int_ignore_index(op, value):
    with pytest.raises(TypeError, match=rf"{op}: ignore_index must be an int, got "):
        CE_OPS[op](np.zeros((2, 3)), np.array([0, 1]), ignore_index=value)


@pytest.mark.parametrize("op", CE_OPS)
@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_rejects_ignore_index_beyond_int64(op, value):
    with pytest.raises(ValueError, match=rf"{op}: ignore_index must fit in int64"):
        CE_OPS[op](np.zeros((2, 3)), np.array([0, 1]), ignore_index=value)


def test_accepts_numpy_integer_ignore_index(rng):
    logits = rng.standard_normal((3, 4))
    labels = np.array([0, 9, 2])
    assert F.cross_entropy(logits, labels, ignore_index=np.uint8(9)) == (
        F.cross_entropy(logits, labels, ignore_index=9))
