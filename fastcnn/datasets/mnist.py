"""MNIST and Fashion-MNIST: find the IDX files, or download them, and load them.

Lookup order: the ``path`` argument, then ``FASTCNN_DATA`` (``settings.data_dir``),
then the download cache (``cache_dir`` or ``settings.cache_dir``, default
``~/.cache/fastcnn``), then a download into that cache when ``download=True``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from . import download as _download
from ._lookup import cache_folder, cached_file, search_roots
from .idx import read_idx_images, read_idx_labels

#: Base URLs tried in order for MNIST (LeCun's own site does not serve the files).
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
#: Base URLs tried in order for Fashion-MNIST (Zalando's bucket).
FASHION_MNIST_MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)

#: The four files of each dataset, in the order train images, train labels, test
#: images, test labels.
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass(frozen=True)
class _Spec:
    name: str  # for messages
    subdir: str  # folder name under FASTCNN_DATA and the cache
    mirrors_attr: str  # module attribute read at call time, so tests can patch it
    sha256: tuple[str, ...]  # of the published .gz files, in FILES order
    sizes: tuple[int, ...]  # bytes of the .gz files, in FILES order


# Checksums and sizes of the files the datasets' authors publish (they match the
# md5s torchvision and the Fashion-MNIST README list).
MNIST = _Spec(
    "MNIST",
    "mnist",
    "MNIST_MIRRORS",
    (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
    (9912422, 28881, 1648877, 4542),
)
FASHION_MNIST = _Spec(
    "Fashion-MNIST",
    "fashion-mnist",
    "FASHION_MNIST_MIRRORS",
    (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ),
    (26421880, 29515, 4422102, 5148),
)

_SIDE = 28
_CLASSES = 10


def _candidates(gz_name: str) -> list[str]:
    # Accept the published names, their uncompressed forms, and LeCun's original
    # uncompressed spelling ("train-images.idx3-ubyte"); gzip is detected by content.
    stem = gz_name.removesuffix(".gz")
    dotted = stem.replace("-idx", ".idx")
    return [gz_name, stem, dotted + ".gz", dotted]


def _find_in(folder: str) -> list[str] | None:
    """The four files in ``folder`` (FILES order), or None unless all are there."""
    found = []
    for gz_name in FILES:
        for candidate in _candidates(gz_name):
            full = os.path.join(folder, candidate)
            if os.path.isfile(full):
                found.append(full)
                break
        else:
            return None
    return found


def _other(spec: _Spec) -> _Spec:
    return FASHION_MNIST if spec is MNIST else MNIST


def _holds_other_dataset(spec: _Spec, files: list[str]) -> bool:
    # MNIST and Fashion-MNIST use the same file names, so a flat folder of one looks
    # like the other. The label file is tiny: hashing it tells them apart for free.
    return _download.sha256_of(files[1]) == _other(spec).sha256[1]


def _search_folder(spec: _Spec, root: str, looked: list[str], label: str):
    """Look in ``root/<subdir>`` and then ``root`` itself; note where it looked."""
    for folder in (os.path.join(root, spec.subdir), root):
        files = _find_in(folder)
        if files is None:
            looked.append(f"{folder} ({label})")
        elif _holds_other_dataset(spec, files):
            looked.append(f"{folder} ({label}; holds {_other(spec).name} instead)")
        else:
            return files
    return None


def _from_cache(spec: _Spec, folder: str, download: bool, mirrors,
                verbose: bool) -> list[str] | None:
    """The verified cached files, downloading missing ones when allowed."""
    paths = []
    for gz_name, sha, size in zip(FILES, spec.sha256, spec.sizes, strict=True):
        found = cached_file(gz_name, sha, size, folder, download, mirrors, verbose,
                            f"{spec.name} file")
        if found is None:
            return None
        paths.append(found)
    return paths


def _locate(spec: _Spec, path, download: bool, cache_dir, mirrors,
            verbose: bool) -> list[str]:
    looked: list[str] = []
    for label, root in search_roots(path):
        files = _search_folder(spec, root, looked, label)
        if files is not None:
            return files
    folder = cache_folder(cache_dir, spec.subdir)
    if mirrors is None:
        mirrors = getattr(sys.modules[__name__], spec.mirrors_attr)
    files = _from_cache(spec, folder, download, mirrors, verbose)
    if files is not None:
        return files
    looked.append(f"{folder} (cache)")
    raise FileNotFoundError(
        f"{spec.name} not found. Looked for {', '.join(FILES)} (gzipped or raw) in: "
        + "; ".join(looked)
        + ". Set FASTCNN_DATA to a folder holding them (directly or in a "
        f"'{spec.subdir}/' subfolder), pass path=, or call with download=True."
    )


def _to_float(images: np.ndarray, dtype) -> np.ndarray:
    out = np.empty((images.shape[0], 1, *images.shape[1:]), dtype=dtype)
    # One pass from uint8 straight into the output dtype, no float64 temporary.
    np.divide(images[:, None], out.dtype.type(255), out=out)
    return out


def _load_pair(spec: _Spec, images_path: str, labels_path: str, dtype):
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path}: holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels."
        )
    if images.shape[1:] != (_SIDE, _SIDE):
        raise ValueError(
            f"{images_path}: {spec.name} images must be {_SIDE}x{_SIDE}, got "
            f"{images.shape[1]}x{images.shape[2]}."
        )
    if labels.size and labels.max() >= _CLASSES:
        raise ValueError(
            f"{labels_path}: {spec.name} labels must lie in 0..{_CLASSES - 1}, got "
            f"{int(labels.max())}."
        )
    return _to_float(images, dtype), labels.astype(np.int64)


def _load(spec: _Spec, path, download, cache_dir, dtype, mirrors, verbose):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(
            f"load_{spec.subdir.replace('-', '_')}: dtype must be a floating type, "
            f"got {dtype}."
        )
    files = _locate(spec, path, download, cache_dir, mirrors, verbose)
    train = _load_pair(spec, files[0], files[1], dtype)
    test = _load_pair(spec, files[2], files[3], dtype)
    return train, test


_DOC = """Load {name} as float images in [0, 1] and int64 labels.

    The original IDX files are parsed, gzipped or raw, with every header checked.
    Files are looked for in ``path``, then ``FASTCNN_DATA``, then the cache; when
    none holds them and ``download`` is true, they are downloaded from
    :data:`{mirrors}` (sha256-verified) into the cache.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A folder holding the four files, directly or in a ``{subdir}/`` subfolder.
    download : bool
        Download missing files into the cache. With False, missing files raise
        ``FileNotFoundError``.
    cache_dir : str or os.PathLike, optional
        The cache root (default ``FASTCNN_CACHE_DIR`` or ``~/.cache/fastcnn``);
        files go in its ``{subdir}/`` subfolder.
    dtype : numpy dtype
        Floating dtype of the images (default float32).
    mirrors : sequence of str, optional
        Base URLs to download from instead of :data:`{mirrors}`.
    verbose : bool
        Show download progress on stderr.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        60,000 training and 10,000 test items.

    Raises
    ------
    FileNotFoundError
        The files are nowhere and ``download`` is false; says where it looked.
    ValueError
        A file is corrupt, truncated or of the wrong kind; names the file.
    fastcnn.datasets.DownloadError
        No mirror delivered a file with the right sha256.

    Shape: x ``(N, 1, 28, 28)``, y ``(N,)``.
    """


def load_mnist(
    path: str | os.PathLike | None = None,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
    dtype=np.float32,
    *,
    mirrors: tuple[str, ...] | list[str] | None = None,
    verbose: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    return _load(MNIST, path, download, cache_dir, dtype, mirrors, verbose)


def load_fashion_mnist(
    path: str | os.PathLike | None = None,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
    dtype=np.float32,
    *,
    mirrors: tuple[str, ...] | list[str] | None = None,
    verbose: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    return _load(FASHION_MNIST, path, download, cache_dir, dtype, mirrors, verbose)


load_mnist.__doc__ = _DOC.format(
    name="MNIST (handwritten digits)", mirrors="MNIST_MIRRORS", subdir="mnist"
)
load_fashion_mnist.__doc__ = _DOC.format(
    name="Fashion-MNIST (Zalando clothing images)",
    mirrors="FASHION_MNIST_MIRRORS",
    subdir="fashion-mnist",
)
