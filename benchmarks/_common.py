"""What the asv benchmarks and ``tools/compare_torch.py`` share: the standard shapes of
issue 5, seeded inputs, the models and the thread count.

Nothing here compiles or starts threads at import: asv imports every module of this
folder in a server process and forks each benchmark from it, and GNU OpenMP (Numba's
default threading layer here) kills forked children of a process that already ran a
parallel region.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: Every benchmark runs Numba's parallel kernels (and PyTorch) on this many threads.
THREADS = 2

#: The learning rate of the plain SGD that every training benchmark uses.
LR = 0.01


def use_threads(n: int = THREADS) -> int:
    """Set Numba's thread count to ``n`` (at most the pool size); returns it.

    Call it in ``setup``, never at import (see the module docstring). Numba's own
    call (which ``fastcnn.set_num_threads`` wraps) keeps ``asv continuous`` working
    on commits older than that wrapper.
    """
    import numba

    n = min(n, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    return n


# ------------------------------------------------------------------------- conv


class ConvCase(NamedTuple):
    """One convolution: input shape, output channels, square kernel, stride, pad,
    groups (``groups == C_in``: depthwise)."""

    label: str
    x_shape: tuple[int, int, int, int]
    c_out: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1

    @property
    def out_hw(self) -> tuple[int, int]:
        h, w = self.x_shape[2:]
        k, s, p = self.kernel, self.stride, self.padding
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.x_shape[0], self.c_out, *self.out_hw)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.c_out, self.x_shape[1] // self.groups, self.kernel, self.kernel)

    @property
    def forward_flops(self) -> int:
        """Multiply-adds of the forward pass, counted as 2 flops each."""
        n, c_in = self.x_shape[:2]
        oh, ow = self.out_hw
        return 2 * n * self.c_out * oh * ow * (c_in // self.groups) * self.kernel**2

    @property
    def backward_flops(self) -> int:
        """dx and dweight each cost one forward pass; dbias is negligible."""
        return 2 * self.forward_flops


def _conv_cases() -> dict[str, ConvCase]:
    specs = [  # the six standard shapes of issue 5, in its order
        ((64, 1, 28, 28), 6, 5, 1, 0),  # LeNet conv1
        ((64, 6, 12, 12), 16, 5, 1, 0),  # LeNet conv2
        ((64, 3, 32, 32), 32, 3, 1, 1),  # CIFAR first layer
        ((64, 32, 16, 16), 64, 3, 1, 1),
        ((32, 64, 56, 56), 64, 3, 1, 1),  # the large 3x3 (peak-fraction target)
        ((32, 64, 56, 56), 128, 3, 2, 1),
    ]
    depthwise = [  # the two depthwise shapes of issue 21 (MobileNet, ConvNeXt)
        ((32, 64, 56, 56), 64, 3, 1, 1),
        ((32, 96, 28, 28), 96, 7, 1, 3),
    ]
    cases = {}
    for i, (x_shape, c_out, k, s, p) in enumerate(specs + depthwise, start=1):
        groups = x_shape[1] if i > len(specs) else 1
        hyper = f"k{k}" + (f"s{s}" if s != 1 else "") + (f"p{p}" if p else "")
        hyper += " depthwise" if groups > 1 else ""
        shape = ",".join(map(str, x_shape))
        label = f"{i} ({shape})->{c_out} {hyper}"
        cases[label] = ConvCase(label, x_shape, c_out, k, s, p, groups)
    return cases


#: label -> case; labels read like "5 (32,64,56,56)->64 k3p1".
CONV_CASES = _conv_cases()
CONV_LABELS = list(CONV_CASES)
#: The small shape that the dtype benchmarks use (LeNet conv2).
SMALL_CONV = CONV_LABELS[1]
#: The large 3x3 convolution whose forward pass is compared with the FMA peak.
LARGE_CONV = CONV_LABELS[4]


def conv_inputs(case: ConvCase, dtype="float32", seed: int = 0):
    """Seeded ``x, weight, bias, dy`` (weights scaled by 1/sqrt(fan_in))."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    fan_in = case.x_shape[1] // case.groups * case.kernel**2
    x = rng.standard_normal(case.x_shape, dtype=dtype)
    w = rng.standard_normal(case.w_shape, dtype=dtype) / dtype.type(np.sqrt(fan_in))
    b = rng.standard_normal(case.c_out, dtype=dtype) / dtype.type(10)
    dy = rng.standard_normal(case.y_shape, dtype=dtype)
    return x, w, b, dy


# ------------------------------------------------------------------------- pool

#: The pooling benchmark's input: 2x2 windows, stride 2, on NCHW float32.
POOL_SHAPE = (64, 32, 32, 32)
POOL_KERNEL = 2


def pool_inputs(shape=POOL_SHAPE, kernel: int = POOL_KERNEL, dtype="float32",
                seed: int = 0):
    """Seeded ``x`` and an upstream gradient ``dy`` for a ``kernel`` x ``kernel``
    pool with stride ``kernel``."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    x = rng.standard_normal(shape, dtype=dtype)
    dy = rng.standard_normal((n, c, h // kernel, w // kernel), dtype=dtype)
    return x, dy


# ----------------------------------------------------------------------- models

#: model name -> per-sample input shape (MNIST-sized for LeNet-5, CIFAR-sized else)
MODEL_INPUTS = {"lenet5": (1, 28, 28), "simple_cnn": (3, 32, 32),
                "mobilenet_v2": (3, 32, 32), "efficientnet_lite0": (3, 32, 32),
                "convnext": (3, 32, 32)}
NUM_CLASSES = 10


def build_model(name: str, seed: int = 0, dtype="float32"):
    """A seeded fastcnn model from :mod:`fastcnn.models`, compiled with plain SGD
    (``lr=LR``) and cross-entropy."""
    import fastcnn
    from fastcnn import models, optimizers

    fastcnn.seed(seed)
    model = models.get(name)(input_shape=MODEL_INPUTS[name],
                             num_classes=NUM_CLASSES, dtype=dtype)
    model.compile(optimizers.SGD(lr=LR), "cross_entropy")
    return model


def model_batch(name: str, batch: int, seed: int = 1, dtype="float32"):
    """A seeded batch ``(x, labels)`` for model ``name``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *MODEL_INPUTS[name]), dtype=dtype)
    y = rng.integers(0, NUM_CLASSES, batch)
    return x, y
