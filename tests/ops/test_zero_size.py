"""Zero-sized shapes: empty batches and zero-width layers, against PyTorch.

Every op gives PyTorch's empty (or bias-only, or NaN) result and zero gradients of
PyTorch's shapes, without running a kernel on an empty array. Where PyTorch itself
refuses a shape (pooling without channels or pixels, a convolution over an empty
image) the op refuses it too, with its own message. Two convolution cases depart
from PyTorch on purpose (see ``test_conv2d_without_input_or_output_channels``).
"""

import numpy as np
import pytest

import fastcnn
import fastcnn.functional as F
from fastcnn import layers as L
from fastcnn import losses

torch = pytest.importorskip("torch")
tf = torch.nn.functional

pytestmark = pytest.mark.torch

DTYPES = [np.float64, np.float32]


def _rand(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def torch_op(fn, arrays, dy):
    """``fn`` on tensors made from ``arrays`` (None passes through), backward with
    ``dy``; returns the output and each array's gradient (zeros where torch has
    none), as NumPy."""
    tensors = [None if a is None else torch.tensor(a, requires_grad=True)
               for a in arrays]
    y = fn(*tensors)
    y.backward(torch.tensor(dy))
    grads = [None if t is None else
             (t.grad if t.grad is not None else torch.zeros_like(t)).numpy()
             for t in tensors]
    return y.detach().numpy(), grads


def assert_same(ours, theirs, what, dtype=np.float64):
    """Same shape and dtype; values equal to rounding (NaN where torch has NaN)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    assert ours.dtype == np.dtype(dtype), f"{what}: dtype {ours.dtype}"
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol, err_msg=what)


# ----------------------------------------------------------------------- linear

LINEAR_SHAPES = [  # (N, IN, OUT)
    (0, 4, 3), (2, 0, 3), (2, 4, 0), (0, 0, 3), (0, 4, 0), (2, 0, 0), (0, 0, 0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("n, n_in, n_out", LINEAR_SHAPES)
def test_linear(n, n_in, n_out, with_bias, dtype):
    x = _rand((n, n_in), dtype, 1)
    w = _rand((n_out, n_in), dtype, 2)
    b = _rand((n_out,), dtype, 3) if with_bias else None
    dy = _rand((n, n_out), dtype, 4)
    ty, (tdx, tdw, tdb) = torch_op(tf.linear, (x, w, b), dy)
    assert_same(F.linear(x, w, b), ty, "y", dtype)
    dx, dw, db = F.linear_backward(dy, x, w)
    assert_same(dx, tdx, "dx", dtype)
    assert_same(dw, tdw, "dweight", dtype)
    if with_bias:
        assert_same(db, tdb, "dbias", dtype)
    else:
        assert_same(db, dy.sum(axis=0), "dbias", dtype)


# ------------------------------------------------------------------------- conv

CONV_CONFIGS = [
    dict(),
    dict(stride=2, padding=1),
    dict(padding="same", dilation=2),
    dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2), groups=2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_conv2d_empty_batch(cfg, dtype):
    groups = cfg.get("groups", 1)
    x = _rand((0, 4, 7, 6), dtype, 1)
    w = _rand((6, 4 // groups, 3, 3), dtype, 2)
    b = _rand((6,), dtype, 3)
    ty = tf.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), **cfg)
    dy = np.zeros(ty.shape, dtype)
    ty, (tdx, tdw, tdb) = torch_op(lambda *t: tf.conv2d(*t, **cfg), (x, w, b), dy)
    assert_same(F.conv2d(x, w, b, **cfg), ty, "y", dtype)
    dx, dw, db = F.conv2d_backward(dy, x, w, **cfg)
    assert_same(dx, tdx, "dx", dtype)
    assert_same(dw, tdw, "dweight", dtype)
    assert_same(db, tdb, "dbias", dtype)
    assert F.conv2d_backward(dy, x, w, **cfg, input_grad=False)[0] is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONV_CONFIGS)
@pytest.mark.parametrize("n", [0, 3])
@pytest.mark.parametrize("empty", ["in", "out", "both"])
def test_conv2d_without_input_or_output_channels(empty, n, cfg, dtype):
    # PyTorch raises for 0 output channels and returns an (N, 0, OH, OW) tensor for
    # 0 input channels (ignoring C_out and the bias); here both follow the
    # arithmetic: y[n, o] is an empty sum plus bias[o], the gradients are sums over
    # nothing (dbias still sums dy). The oracle is torch on the same problem with
    # one zero input channel per group (no contribution) or one output channel
    # per group (then dropped).
    groups = cfg.get("groups", 1)
    c_in = 0 if empty in ("in", "both") else 2 * groups
    c_out = 0 if empty in ("out", "both") else 3 * groups
    x = _rand((n, c_in, 7, 6), dtype, 1)
    w = _rand((c_out, c_in // groups, 3, 3), dtype, 2)
    b = _rand((c_out,), dtype, 3)
    # The oracle: pad the empty axis with zeros (inputs) or extra filters (outputs).
    xo = np.concatenate([x, np.zeros((n, groups, 7, 6), dtype)], axis=1) if (
        c_in == 0) else x
    cin_g = xo.shape[1] // groups
    wo = np.zeros((max(c_out, groups), cin_g, 3, 3), dtype)
    wo[:c_out, : w.shape[1]] = w
    bo = np.zeros(wo.shape[0], dtype)
    bo[:c_out] = b
    ty_full = tf.conv2d(torch.tensor(xo), torch.tensor(wo), torch.tensor(bo), **cfg)
    dy = _rand((n, c_out, *ty_full.shape[2:]), dtype, 4)
    dy_full = np.zeros(ty_full.shape, dtype)
    dy_full[:, :c_out] = dy
    ty, (tdx, _, tdb) = torch_op(lambda *t: tf.conv2d(*t, **cfg), (xo, wo, bo),
                                 dy_full)

    assert_same(F.conv2d(x, w, b, **cfg), ty[:, :c_out], "y", dtype)
    assert_same(F.conv2d(x, w, None, **cfg), np.zeros_like(ty[:, :c_out]),
                "y without bias", dtype)
    dx, dw, db = F.conv2d_backward(dy, x, w, **cfg)
    assert_same(dx, tdx[:, :c_in], "dx", dtype)
    assert_same(dw, np.zeros(w.shape, dtype), "dweight", dtype)
    assert_same(db, tdb[:c_out], "dbias", dtype)


def test_conv2d_still_refuses_empty_images_and_kernels():
    # PyTorch refuses these too.
    with pytest.raises(ValueError, match=r"conv2d: x has a zero-sized height or "
                       r"width \(only the batch and channel axes may be empty\)"):
        F.conv2d(np.zeros((2, 1, 0, 5)), np.zeros((3, 1, 1, 1)), padding=1)
    with pytest.raises(ValueError, match=r"conv2d: weight has a zero-sized kernel"):
        F.conv2d(np.zeros((2, 1, 4, 4)), np.zeros((3, 1, 0, 3)))
    with pytest.raises(ValueError, match=r"kernel's height with dilation \(3\) is "
                       r"larger"):
        F.conv2d(np.zeros((0, 1, 2, 4)), np.zeros((3, 1, 3, 3)))


# ---------------------------------------------------------------------- pooling

POOLS = {
    "max_pool2d": (F.max_pool2d, F.max_pool2d_backward, tf.max_pool2d,
                   dict(kernel_size=3, stride=2, padding=1, dilation=2,
                        ceil_mode=True)),
    "max_pool2d_2x2": (F.max_pool2d, F.max_pool2d_backward, tf.max_pool2d,
                       dict(kernel_size=2)),
    "avg_pool2d": (F.avg_pool2d, F.avg_pool2d_backward, tf.avg_pool2d,
                   dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                        count_include_pad=False)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(POOLS))
def test_pooling_empty_batch(name, dtype):
    ours, ours_backward, theirs, cfg = POOLS[name]
    x = _rand((0, 3, 7, 6), dtype)
    dy = np.zeros(theirs(torch.tensor(x), **cfg).shape, dtype)
    ty, (tdx,) = torch_op(lambda t: theirs(t, **cfg), (x,), dy)
    assert_same(ours(x, **cfg), ty, "y", dtype)
    assert_same(ours_backward(dy, x, **cfg), tdx, "dx", dtype)


@pytest.mark.parametrize("name", sorted(POOLS))
@pytest.mark.parametrize("shape", [(2, 0, 4, 4), (2, 1, 0, 4), (0, 1, 4, 0)])
def test_pooling_refuses_empty_channels_or_images_like_torch(name, shape):
    ours, _, theirs, cfg = POOLS[name]
    with pytest.raises(RuntimeError):
        theirs(torch.zeros(shape, dtype=torch.float64), **cfg)
    op = name.removesuffix("_2x2")
    with pytest.raises(ValueError, match=rf"^{op}: x has a zero-sized channel, "
                       rf"height or width"):
        ours(np.zeros(shape), **cfg)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4),
                                   (2, 3, 4, 0), (0, 0, 0, 0)])
def test_global_avg_pool(shape, dtype):
    # An empty map's mean is NaN in PyTorch (0 / 0); its gradient is empty.
    x = _rand(shape, dtype)
    dy = _rand(shape[:2], dtype, 1)
    ty, (tdx,) = torch_op(lambda t: tf.adaptive_avg_pool2d(t, 1).flatten(1), (x,),
                          dy)
    assert_same(F.global_avg_pool2d(x), ty, "y", dtype)
    assert_same(F.global_avg_pool2d_backward(dy, x), tdx, "dx", dtype)


# ------------------------------------------------------------------ activations

ACTIVATIONS = {
    "relu": (F.relu, lambda dy, x, y: F.relu_backward(dy, x), tf.relu),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2),
                   lambda dy, x, y: F.leaky_relu_backward(dy, x, 0.2),
                   lambda t: tf.leaky_relu(t, 0.2)),
    "sigmoid": (F.sigmoid, lambda dy, x, y: F.sigmoid_backward(dy, y),
                torch.sigmoid),
    "tanh": (F.tanh, lambda dy, x, y: F.tanh_backward(dy, y), torch.tanh),
    "softmax": (lambda x: F.softmax(x, 1),
                lambda dy, x, y: F.softmax_backward(dy, y, 1),
                lambda t: tf.softmax(t, 1)),
    "softmax_last": (lambda x: F.softmax(x, -1),
                     lambda dy, x, y: F.softmax_backward(dy, y, -1),
                     lambda t: tf.softmax(t, -1)),
    "log_softmax": (lambda x: F.log_softmax(x, 1),
                    lambda dy, x, y: F.log_softmax_backward(dy, y, 1),
                    lambda t: tf.log_softmax(t, 1)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0), (2, 0, 4), (0, 2, 3, 3)])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations(name, shape, dtype):
    forward, backward, theirs = ACTIVATIONS[name]
    x = _rand(shape, dtype)
    dy = _rand(shape, dtype, 1)
    ty, (tdx,) = torch_op(theirs, (x,), dy)
    y = forward(x)
    assert_same(y, ty, "y", dtype)
    assert_same(backward(dy, x, y), tdx, "dx", dtype)


def test_activations_of_an_empty_1d_array_and_refusal_of_0d():
    assert F.relu(np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="relu: x must have at least 1 dimension"):
        F.relu(np.array(1.0))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 2, 0, 5)])
def test_dropout(shape, training):
    x = np.zeros(shape)
    y = F.dropout(x, 0.5, training=training, seed=1)
    assert y.shape == shape and y is not x
    assert tf.dropout(torch.tensor(x), 0.5, training=training).shape == shape
    assert F.dropout_backward(x, 0.5, training=training, seed=1).shape == shape


# --------------------------------------------------------------------- BatchNorm

BN_SHAPES = [(0, 3), (4, 0), (0, 0), (0, 3, 2, 2), (2, 3, 0, 2), (2, 0, 3, 3),
             (0, 3, 4), (2, 3, 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm(shape, training, dtype):
    c = shape[1]
    x = _rand(shape, dtype)
    dy = _rand(shape, dtype, 1)
    weight = _rand((c,), dtype, 2)
    bias = _rand((c,), dtype, 3)
    rm, rv = _rand((c,), dtype, 4), np.abs(_rand((c,), dtype, 5)) + 0.5
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    if c == 0:
        # torch's CPU kernel indexes an empty weight (IndexError); without weight
        # and bias it gives the empty result, and the empty gradients are known.
        ty, (tdx,) = torch_op(
            lambda t: tf.batch_norm(t, trm, trv, training=training), (x,), dy)
        tdw = tdb = np.zeros(0, dtype)
    else:
        ty, (tdx, tdw, tdb) = torch_op(
            lambda t, w, b: tf.batch_norm(t, trm, trv, w, b, training=training),
            (x, weight, bias), dy)
    ours_rm, ours_rv = rm.copy(), rv.copy()
    y = F.batch_norm(x, ours_rm, ours_rv, weight, bias, training=training)
    assert_same(y, ty, "y", dtype)
    # Nothing to learn from: the running statistics stay (torch's too).
    np.testing.assert_array_equal(ours_rm, rm)
    np.testing.assert_array_equal(ours_rv, rv)
    np.testing.assert_array_equal(trm.numpy(), rm)
    dx, dw, db = F.batch_norm_backward(dy, x, rm, rv, weight, training=training)
    assert_same(dx, tdx, "dx", dtype)
    assert_same(dw, tdw, "dweight", dtype)
    assert_same(db, tdb, "dbias", dtype)


def test_batch_norm_still_refuses_one_value_per_channel_in_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        tf.batch_norm(torch.zeros(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        F.batch_norm(np.zeros((1, 3)), None, None, training=True)


# ------------------------------------------------------------------------ losses

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted, smoothing", [(False, 0.0), (True, 0.0),
                                                 (False, 0.2), (True, 0.2)])
@pytest.mark.parametrize("n_classes", [3, 0])
def test_cross_entropy_of_an_empty_batch(n_classes, weighted, smoothing, reduction,
                                         dtype):
    # torch: mean over no samples is NaN (0 / 0), sum 0, none an empty (0,).
    logits = np.zeros((0, n_classes), dtype)
    labels = np.zeros(0, np.int64)
    weight = (np.arange(n_classes) + 1.0).astype(dtype) if weighted else None
    def t_loss_fn(t):
        return tf.cross_entropy(
            t, torch.tensor(labels), None if weight is None else torch.tensor(weight),
            reduction=reduction, label_smoothing=smoothing)

    t_loss = t_loss_fn(torch.tensor(logits))
    dy = np.ones(t_loss.shape, dtype)
    ty, (tdx,) = torch_op(t_loss_fn, (logits,), dy)
    args = (labels, weight, reduction, smoothing)
    loss = F.cross_entropy(logits, *args)
    if reduction == "none":
        assert_same(loss, ty, "losses", dtype)
    else:
        assert isinstance(loss, float)
        assert np.isnan(loss) == (reduction == "mean")
        if n_classes == 0 and smoothing and reduction == "sum":
            # torch multiplies its (empty) smoothing sum by e / C = inf: NaN. A
            # sum over no samples is 0 here, whatever the smoothing.
            assert np.isnan(ty) and loss == 0.0
        else:
            np.testing.assert_array_equal(loss, ty)
    assert_same(F.cross_entropy_backward(logits, *args), tdx, "dlogits", dtype)


def test_cross_entropy_with_no_classes_but_samples_refuses_like_torch():
    with pytest.raises(IndexError):
        tf.cross_entropy(torch.zeros(2, 0), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 0\)"):
        F.cross_entropy(np.zeros((2, 0)), np.zeros(2, np.int64))


ELEMENTWISE_LOSSES = {
    "mse_loss": (F.mse_loss, F.mse_loss_backward, tf.mse_loss),
    "bce": (F.binary_cross_entropy_with_logits,
            F.binary_cross_entropy_with_logits_backward,
            tf.binary_cross_entropy_with_logits),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0, 2)])
@pytest.mark.parametrize("name", sorted(ELEMENTWISE_LOSSES))
def test_elementwise_losses_of_empty_input(name, shape, reduction, dtype):
    ours, ours_backward, theirs = ELEMENTWISE_LOSSES[name]
    x = _rand(shape, dtype)
    t = np.abs(_rand(shape, dtype, 1)) % 1
    def t_fn(tx):
        return theirs(tx, torch.tensor(t), reduction=reduction)

    dy = np.ones(t_fn(torch.tensor(x)).shape, dtype)
    ty, (tdx,) = torch_op(t_fn, (x,), dy)
    loss = ours(x, t, reduction=reduction)
    if reduction == "none":
        assert_same(loss, ty, "losses", dtype)
    else:
        np.testing.assert_array_equal(loss, ty)
    assert_same(ours_backward(x, t, reduction=reduction), tdx, "dinput", dtype)


def test_bce_weights_broadcast_to_an_empty_input():
    x = np.zeros((0, 3))
    pos_weight = np.array([1.0, 2.0, 3.0])
    assert np.isnan(F.binary_cross_entropy_with_logits(x, x, pos_weight=pos_weight))
    assert F.binary_cross_entropy_with_logits_backward(
        x, x, weight=pos_weight, pos_weight=pos_weight).shape == (0, 3)


def test_loss_objects_on_an_empty_batch():
    assert np.isnan(losses.CrossEntropy(label_smoothing=0.1)(
        np.zeros((0, 4), np.float32), np.zeros(0, np.int64)))
    assert losses.CrossEntropy().backward(
        np.zeros((0, 4), np.float32), np.zeros(0, np.int64)).shape == (0, 4)


# ------------------------------------------------------------------------ layers


def _torch_layer_step(layer, tlayer, x, dy):
    """Forward and backward through our layer and torch's; compares y, dx and the
    gradient of every parameter."""
    dtype = x.dtype.type
    y = layer.forward(x, training=True)
    tx = torch.tensor(x, requires_grad=True)
    ty = tlayer(tx)
    ty.backward(torch.tensor(dy))
    assert_same(y, ty.detach().numpy(), f"{layer.name} y", dtype)
    dx = layer.backward(dy)
    assert_same(dx, tx.grad.numpy(), f"{layer.name} dx", dtype)
    tparams = dict(tlayer.named_parameters())
    for key, grad in layer.grads.items():
        tgrad = tparams[key].grad
        expected = (torch.zeros_like(tparams[key]) if tgrad is None
                    else tgrad).numpy()
        assert_same(grad, expected, f"{layer.name} d{key}", dtype)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
@pytest.mark.parametrize("n, n_in, n_out", LINEAR_SHAPES)
def test_dense_layer_of_zero_width_or_an_empty_batch(n, n_in, n_out):
    layer = L.Dense(n_out)
    layer.build((n_in,), np.float64, np.random.default_rng(0))
    assert layer.params["weight"].shape == (n_out, n_in)
    if n_in == 0:  # PyTorch's bias bound 1/sqrt(fan_in) is 0 for fan_in 0
        np.testing.assert_array_equal(layer.params["bias"], np.zeros(n_out))
    tlayer = torch.nn.Linear(n_in, n_out, dtype=torch.float64)
    tlayer.load_state_dict({k: torch.tensor(v) for k, v in layer.params.items()})
    _torch_layer_step(layer, tlayer, _rand((n, n_in)), _rand((n, n_out), seed=1))


@pytest.mark.parametrize("n, c_in, c_out", [(0, 2, 3), (2, 2, 0), (0, 2, 0),
                                            (2, 0, 3), (0, 0, 3)])
def test_conv_layer_of_zero_width_or_an_empty_batch(n, c_in, c_out):
    layer = L.Conv2D(c_out, 3, padding=1)
    layer.build((c_in, 5, 4), np.float64, np.random.default_rng(0))
    assert layer.params["weight"].shape == (c_out, c_in, 3, 3)
    x = _rand((n, c_in, 5, 4))
    dy = _rand((n, c_out, 5, 4), seed=1)
    y = layer.forward(x, training=True)
    # The same arithmetic as F.conv2d (see the functional test for torch's view).
    expected = np.zeros((n, c_out, 5, 4)) + layer.params["bias"][:, None, None]
    assert_same(y, expected, "y")
    assert_same(layer.backward(dy), np.zeros_like(x), "dx")
    assert_same(layer.grads["weight"], np.zeros((c_out, c_in, 3, 3)), "dweight")
    assert_same(layer.grads["bias"], dy.sum(axis=(0, 2, 3)), "dbias")
    if n == 0 and c_in and c_out:  # torch takes this one: compare directly
        tlayer = torch.nn.Conv2d(c_in, c_out, 3, padding=1, dtype=torch.float64)
        tlayer.load_state_dict({k: torch.tensor(v) for k, v in layer.params.items()})
        _torch_layer_step(layer, tlayer, x, dy)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
def test_every_layer_takes_an_empty_batch_like_torch():
    """A network of every layer type, an empty batch through ours and torch's."""
    from ..model.test_training_torch import copy_into_torch, to_torch

    fastcnn.seed(0)
    model = fastcnn.Sequential([
        L.Conv2D(4, 3, padding=1), L.BatchNorm2D(), L.LeakyReLU(0.1),
        L.MaxPool2D(2), L.Conv2D(4, 3, padding=1, groups=2), L.GroupNorm(2),
        L.LayerNorm2D(), L.Tanh(), L.AvgPool2D(2), L.Conv2D(3, 1),
        L.LayerNorm((2, 2)), L.Sigmoid(), L.GlobalAvgPool2D(),
        L.Dropout(0.5), L.Dense(5), L.BatchNorm1D(), L.ReLU(), L.Dense(0),
    ], input_shape=(2, 8, 8), dtype="float64")
    tmodel = to_torch(model, np.float64)
    copy_into_torch(model, tmodel)
    tmodel.train()
    x = np.zeros((0, 2, 8, 8))
    out = model.forward(x, training=True)
    tx = torch.tensor(x, requires_grad=True)
    ty = tmodel(tx)
    assert out.shape == tuple(ty.shape) == (0, 0)
    ty.backward(torch.zeros_like(ty))
    dx = model.backward(np.zeros((0, 0)))
    assert_same(dx, tx.grad.numpy(), "dx")
    tparams = dict(tmodel.named_parameters())
    for i, layer in enumerate(model.layers):
        for key, grad in layer.grads.items():
            assert_same(grad, tparams[f"{i}.{key}"].grad.numpy(), f"{i}.{key}")
    flatten = L.Flatten()
    assert flatten.forward(np.zeros((0, 3, 2, 2))).shape == (0, 12)
    assert flatten.backward(np.zeros((0, 12))).shape == (0, 3, 2, 2)
    softmax = L.Softmax()
    assert softmax.forward(np.zeros((0, 3))).shape == (0, 3)


def test_zero_widths_are_still_checked():
    with pytest.raises(ValueError, match=r"out_features must be >= 0, got -1"):
        L.Dense(-1)
    with pytest.raises(ValueError, match=r"out_channels must be >= 0, got -2"):
        L.Conv2D(-2, 3)
    with pytest.raises(TypeError, match=r"input_shape must be a non-empty tuple of "
                       r"non-negative ints"):
        L.ReLU().build((3, -1))


# -------------------------------------------------------- CUDA (the simulator)


@pytest.fixture
def no_empty_launch(monkeypatch):
    """Run on the "cuda" device with every kernel launch checked: none may get an
    empty array (a zero-sized grid, or a kernel indexing nothing)."""
    from fastcnn.kernels.cuda import _launch

    original = _launch.launch
    launched = []

    def launch(kernel, grid, block, args, shared_bytes=0):
        sizes = [a.size for a in args if hasattr(a, "shape")]
        assert all(sizes), f"a CUDA kernel was launched on an empty array: {sizes}"
        launched.append(kernel)
        original(kernel, grid, block, args, shared_bytes)

    monkeypatch.setattr(_launch, "launch", launch)
    previous = fastcnn.get_device()
    fastcnn.set_device("cuda")
    yield launched
    fastcnn.set_device(previous)


def test_cuda_ops_on_zero_sizes_launch_nothing_empty(no_empty_launch):
    from numba import cuda

    def dev(shape):
        return cuda.to_device(np.zeros(shape))

    got = {
        "linear N=0": F.linear(dev((0, 4)), dev((3, 4)), dev(3)),
        "linear IN=0": F.linear(dev((2, 0)), dev((3, 0)), cuda.to_device(
            np.arange(3.0))),
        "linear_backward IN=0": F.linear_backward(dev((2, 3)), dev((2, 0)),
                                                  dev((3, 0))),
        "linear_backward N=0": F.linear_backward(dev((0, 3)), dev((0, 4)),
                                                 dev((3, 4))),
        "conv2d N=0": F.conv2d(dev((0, 2, 5, 5)), dev((3, 2, 3, 3))),
        "conv2d C_in=0": F.conv2d(dev((2, 0, 5, 5)), dev((3, 0, 3, 3)), dev(3),
                                  padding=1),
        "conv2d_backward C_in=0": F.conv2d_backward(
            dev((2, 3, 5, 5)), dev((2, 0, 5, 5)), dev((3, 0, 3, 3)), padding=1),
        "max_pool2d": F.max_pool2d(dev((0, 2, 4, 4)), 2),
        "max_pool2d_backward": F.max_pool2d_backward(dev((0, 2, 2, 2)),
                                                     dev((0, 2, 4, 4)), 2),
        "avg_pool2d": F.avg_pool2d(dev((0, 2, 4, 4)), 3, 1, 1),
        "global_avg_pool2d H=0": F.global_avg_pool2d(dev((2, 3, 0, 4))),
        "global_avg_pool2d_backward": F.global_avg_pool2d_backward(
            dev((0, 3)), dev((0, 3, 2, 2))),
        "relu": F.relu(dev((0, 3))),
        "softmax": F.softmax(dev((3, 0)), 1),
        "log_softmax_backward": F.log_softmax_backward(dev((0, 3)), dev((0, 3)), 1),
        "dropout": F.dropout(dev((0, 3)), 0.5, seed=3),
        "batch_norm": F.batch_norm(dev((0, 3)), dev(3), dev(3), training=True),
        "batch_norm_backward": F.batch_norm_backward(
            dev((0, 3, 2, 2)), dev((0, 3, 2, 2)), None, None, training=True),
        "cross_entropy_backward": F.cross_entropy_backward(dev((0, 4)),
                                                           np.zeros(0, np.int64)),
        "mse_loss_backward": F.mse_loss_backward(dev((0, 3)), dev((0, 3))),
    }
    assert np.isnan(F.cross_entropy(dev((0, 4)), np.zeros(0, np.int64)))
    assert F.mse_loss(dev((0, 3)), dev((0, 3)), reduction="sum") == 0.0

    def host(a):
        return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)

    # Bias-only results where there are no inputs; NaN means of empty maps.
    np.testing.assert_array_equal(host(got["linear IN=0"]),
                                  np.broadcast_to(np.arange(3.0), (2, 3)))
    assert host(got["global_avg_pool2d H=0"]).shape == (2, 3)
    assert np.isnan(host(got["global_avg_pool2d H=0"])).all()
    dx, dw, db = got["conv2d_backward C_in=0"]
    assert host(dx).shape == (2, 0, 5, 5) and host(dw).shape == (3, 0, 3, 3)
    np.testing.assert_array_equal(host(db), np.zeros(3))
    assert host(got["conv2d N=0"]).shape == (0, 3, 3, 3)
    assert host(got["softmax"]).shape == (3, 0)
    # The only launches: the bias sums over a non-empty dy.
    assert len(no_empty_launch) == 2


def test_cuda_network_on_an_empty_batch(no_empty_launch):
    from numba import cuda

    fastcnn.seed(0)
    model = fastcnn.Sequential([
        L.Conv2D(3, 3, padding=1), L.BatchNorm2D(), L.ReLU(), L.MaxPool2D(2),
        L.Flatten(), L.Dropout(0.5), L.Dense(4), L.Softmax(), L.Dense(0),
    ], input_shape=(2, 4, 4), dtype="float64")
    y = model.forward(np.zeros((0, 2, 4, 4)), training=True)
    assert tuple(y.shape) == (0, 0)
    dx = model.backward(cuda.to_device(np.zeros((0, 0))))
    assert tuple(dx.shape) == (0, 2, 4, 4)
    for layer in model.layers:
        for key, grad in layer.grads.items():
            host = grad.copy_to_host() if hasattr(grad, "copy_to_host") else grad
            assert host.shape == layer.params[key].shape and not host.any(), key
    flatten = L.Flatten()
    assert tuple(flatten.forward(cuda.to_device(np.zeros((0, 3, 2, 2)))).shape) == (
        0, 12)
    assert not no_empty_launch
