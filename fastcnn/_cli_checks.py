"""What the command line (:mod:`fastcnn.__main__`) checks before it trains, loads a
data set or writes a file: every failure is a :class:`CLIError` that names the
option, printed as one line with exit status 2 (argparse's status for usage
errors), never a traceback after a run's worth of training.
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np

from ._safenpy import _npy_header

#: Per-image shape of each dataset the CLI knows, so that a model and a dataset
#: can be matched before the dataset is read (or downloaded).
DATASET_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28),
                  "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
NUM_CLASSES = 10
#: An accuracy below this many times chance (1 / classes) gets a warning.
NEAR_CHANCE = 1.5


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def writable_file(option: str, path: str) -> None:
    """Refuse ``path`` unless a file can be written there now: its folder exists
    and takes a new file (tried, as :func:`fastcnn.save_model` does, with a
    temporary file that is removed at once), and it is not itself a folder."""
    if os.path.isdir(path):
        raise CLIError(f"{option} {path}: is a folder; give a file name inside it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise CLIError(f"{option} {path}: {folder} {what}; create it first or give "
                       f"another path")
    prefix = f".{os.path.basename(path)}."
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=prefix, suffix=".tmp"):
            pass
    except OSError as error:
        raise CLIError(f"{option} {path}: cannot write in {folder} "
                       f"({error.strerror or error})") from None


def plot_target(path: str) -> None:
    """``--plot``: matplotlib is importable, the extension names a format it
    writes, and the file can be written."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise CLIError(
            "--plot needs matplotlib, which is not installed: pip install "
            "'fastcnn[plot]' (or leave --plot out)"
        ) from None
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in formats:
        raise CLIError(
            f"--plot {path}: the file name must end in a format matplotlib writes ("
            + ", ".join(f".{name}" for name in formats) + ")"
        )
    writable_file("--plot", path)


def fraction(text: str) -> float:
    """argparse type of ``--validation-split``: a float in [0, 1)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f"must be a fraction at least 0 and below 1, got {text!r}")
    return value


def split_sizes(n: int, fraction_: float) -> tuple[int, int]:
    """``(training, validation)`` image counts ``fit(validation_split=...)`` makes
    of ``n`` images (the same arithmetic), refused unless both are positive."""
    n_train = int(n * (1.0 - fraction_)) if fraction_ > 0 else n
    n_val = n - n_train
    if fraction_ > 0 and (n_train == 0 or n_val == 0):
        raise CLIError(
            f"--validation-split {fraction_} leaves {n_train} training and {n_val} "
            f"validation images out of {n}; both must be at least one"
        )
    return n_train, n_val


def model_matches_dataset(model, path: str, dataset: str,
                          check_classes: bool = True) -> None:
    """Refuse a model whose input shape (or, with ``check_classes``, output size)
    does not fit ``dataset``, before the dataset is read."""
    shape = DATASET_SHAPES[dataset]
    takes = None if model.input_shape is None else tuple(model.input_shape)
    if takes != shape:
        raise CLIError(
            f"--load {path}: the model takes images of shape {takes} but --dataset "
            f"{dataset} has images of shape {shape}; use it on the dataset it was "
            f"trained on"
        )
    outputs = None if model.output_shape is None else tuple(model.output_shape)
    if check_classes and outputs != (NUM_CLASSES,):
        raise CLIError(
            f"--load {path}: the model has outputs of shape {outputs} but --dataset "
            f"{dataset} has {NUM_CLASSES} classes, which needs ({NUM_CLASSES},); use "
            f"it on the dataset it was trained on"
        )


def chance_warning(accuracy: float, dataset: str, classes: int = NUM_CLASSES) -> str:
    """A warning line when ``accuracy`` is near chance, else ''. A model file does
    not record the dataset it was trained on (no field for it), and MNIST and
    Fashion-MNIST share shape and class count, so this is the one sign left."""
    chance = 1.0 / classes
    if accuracy >= NEAR_CHANCE * chance:
        return ""
    others = [name for name, shape in DATASET_SHAPES.items()
              if shape == DATASET_SHAPES[dataset] and name != dataset]
    hint = (f" (it may have been trained on {' or '.join(others)}, which has the "
            f"same image shape and classes)" if others else "")
    return (f"fastcnn: warning: accuracy {accuracy:.4f} is near chance "
            f"({chance:.2f} for {classes} classes): is this model trained on "
            f"{dataset}?{hint} A model file does not record its training dataset.")


def load_npy(option: str, path: str) -> np.ndarray:
    """One numeric array from a ``.npy`` file, never unpickled: the header is read
    first, object and non-numeric dtypes are refused, and the shape must account
    for exactly the bytes in the file before anything is allocated."""
    try:
        with open(path, "rb") as stream:
            try:
                shape, _, dtype = _npy_header(stream)
            except (ValueError, SyntaxError, TypeError, RecursionError) as error:
                raise CLIError(
                    f"{option} {path}: not a .npy file holding one array ({error}); "
                    f"write it with numpy.save"
                ) from None
            if dtype.hasobject or dtype.kind not in "biuf" or dtype.fields:
                raise CLIError(
                    f"{option} {path}: holds dtype {dtype}; only plain bool, integer "
                    f"and float arrays are read (never pickled objects)"
                )
            expected = math.prod(shape) * dtype.itemsize
            present = os.fstat(stream.fileno()).st_size - stream.tell()
            if present != expected:
                raise CLIError(
                    f"{option} {path}: its header promises shape {shape} of {dtype} "
                    f"({expected} bytes) but {present} bytes follow: truncated or "
                    f"damaged"
                )
            stream.seek(0)
            return np.load(stream, allow_pickle=False)
    except OSError as error:
        raise CLIError(f"{option} {path}: cannot read it "
                       f"({error.strerror or error})") from None
    except ValueError as error:
        raise CLIError(f"{option} {path}: {error}") from None


#: File name endings read as images (through Pillow) rather than as ``.npy``.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def is_image_file(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


def needs_pillow(option: str, path: str) -> None:
    """Refuse an image file up front when Pillow is not installed."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        raise CLIError(f"{option} {path}: reading PNG or JPEG images needs Pillow "
                       f"(pip install pillow); or pass a .npy array") from None


def load_image(option: str, path: str, input_shape) -> np.ndarray:
    """One PNG or JPEG image as a float32 array of ``input_shape`` (C, H, W) in
    [0, 1]: grey for one channel, RGB for three (alpha dropped). An image of
    another size is refused, not resized: a silent resize would change what the
    model sees."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = (tuple(input_shape) + (None, None, None))[:3]
    if channels not in (1, 3) or len(tuple(input_shape)) != 3:
        raise CLIError(f"{option} {path}: the model takes inputs of shape "
                       f"{tuple(input_shape)}; images are read only for (1, H, W) "
                       f"or (3, H, W) models")
    try:
        with Image.open(path) as image:
            if image.size != (width, height):
                raise CLIError(
                    f"{option} {path}: the image is {image.size[0]}x{image.size[1]} "
                    f"(width x height) but the model takes {width}x{height}; resize "
                    f"it first")
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except OSError as error:
        if isinstance(error, FileNotFoundError | PermissionError):
            raise CLIError(f"{option} {path}: cannot read it "
                           f"({error.strerror or error})") from None
        raise CLIError(f"{option} {path}: not a readable image ({error})") from None
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise CLIError(f"{option} {path}: not a readable image ({error})") from None
    pixels = pixels.reshape(height, width, -1).transpose(2, 0, 1)
    return (pixels.astype(np.float32) / 255)[None]


def as_batch(option: str, path: str, x: np.ndarray, input_shape) -> np.ndarray:
    """``x`` as a batch for a model taking ``input_shape``: a batch
    ``(N, *input_shape)`` as it is, one image ``input_shape`` with a batch axis
    added; any other shape refused with both shapes named."""
    shape = tuple(input_shape)
    if x.shape == shape:
        return x[None]
    if x.shape[1:] != shape:
        batch = ", ".join(["N", *map(str, shape)])
        raise CLIError(
            f"{option} {path}: holds an array of shape {x.shape}, but the model takes "
            f"a batch of shape ({batch}) or one image of shape {shape}"
        )
    if x.shape[0] == 0:
        raise CLIError(f"{option} {path}: holds no images (shape {x.shape})")
    return x


def ends_in_softmax(model) -> bool:
    """Whether the model's last layer is a Softmax (its output is probabilities
    already)."""
    layers = getattr(model, "layers", None) or []
    return bool(layers) and type(layers[-1]).__name__ == "Softmax"
