"""Datasets: MNIST and Fashion-MNIST from their IDX files, CIFAR-10 from its binary
archive, scikit-learn's 8x8 digits, normalisation, seeded augmentation,
mini-batches and :class:`Loader` (batches streamed from arrays or memmaps into
``fit``, prefetched on a thread).

Everything here is NumPy and the standard library (no Numba, and no network unless a
loader is asked to download). The download mirrors are
``fastcnn.datasets.mnist.MNIST_MIRRORS``, ``FASHION_MNIST_MIRRORS`` and
``fastcnn.datasets.cifar.CIFAR10_MIRRORS``: patch them there, or pass ``mirrors=``
to the loaders.
"""

from .batching import batches, stratified_split
from .cifar import CIFAR10_CLASSES, load_cifar10
from .digits import load_digits
from .download import DownloadError, download_file, sha256_of
from .idx import read_idx, read_idx_images, read_idx_labels
from .loader import Loader
from .mnist import load_fashion_mnist, load_mnist
from .pipeline import Compose, RandomCrop, RandomFlip
from .transforms import channel_stats, normalize, random_crop, random_flip

__all__ = [
    "CIFAR10_CLASSES",
    "Compose",
    "DownloadError",
    "Loader",
    "RandomCrop",
    "RandomFlip",
    "batches",
    "channel_stats",
    "download_file",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "normalize",
    "random_crop",
    "random_flip",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "sha256_of",
    "stratified_split",
]
