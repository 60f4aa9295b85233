"""Writing a model file: the zip archive :mod:`fastcnn.saving` describes and reads.

Apart from :mod:`fastcnn.saving` so that ``Sequential.save`` can write a file without
importing the module that builds models from files (which imports the model).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile

import numpy as np

from . import layers as layers_mod
from . import metrics as metrics_mod
from ._version import __version__
from .random import layer_generators

FORMAT = "fastcnn.sequential"
FORMAT_VERSION = 1
#: The members a model file may hold.
MEMBERS = ("config.json", "weights.npz", "optimizer.npz", "training_state.json")


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _compile_config(model) -> dict | None:
    if model.optimizer is None or model.loss is None:
        return None
    metrics = []
    for metric in model.metrics:
        cls_name = type(metric).__name__
        if metrics_mod.METRICS.get(cls_name) is type(metric):
            metrics.append({"class_name": cls_name, "config": metric.get_config()})
        else:
            metrics.append({"class_name": None,
                            "name": metrics_mod.metric_name(metric)})
    return {
        "optimizer": {"class_name": type(model.optimizer).__name__,
                      "config": model.optimizer.get_config()},
        "loss": {"class_name": type(model.loss).__name__,
                 "config": model.loss.get_config()},
        "metrics": metrics,
    }


def _atomic_write(path: str, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, fsync it, rename it
    over ``path`` and fsync the directory: a reader, or the file system after a crash
    or power cut, sees the old file or the new one, never a mix. A process killed
    mid-write leaves only a ``.<name>.*.tmp`` file beside the target."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file private (0600); give it an ordinary file's mode.
        mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable: until the directory entry reaches the disk, a
    power cut can bring back the old file (or, for a new file, none)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows, where directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def write_model(model, path: str | os.PathLike) -> None:
    """Write a built model (architecture, weights, optimizer and training state) to
    ``path`` as a zip archive, atomically.

    Parameters
    ----------
    model : Sequential
        A built model; compiled, its optimizer state is saved too.
    path : str or PathLike
        The file to write (replaced if it exists). ``.zip`` or ``.fastcnn`` are
        customary; the name is not checked.

    Shape: no arrays.
    """
    if not model.built:
        raise ValueError(
            "save_model: the model is not built, so it has no weights to save; give "
            "Sequential(input_shape=...) or call build(input_shape) first."
        )
    for layer in model.layers:
        if layers_mod.LAYERS.get(type(layer).__name__) is not type(layer):
            raise ValueError(
                f"save_model: layer {layer.name!r} is a {type(layer).__name__}, a "
                f"custom layer type load_model would not know; decorate its class "
                f"with @fastcnn.layers.register (or save the weights alone with "
                f"fastcnn.io.save_weights).")
    path = os.fspath(path)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastcnn_version": __version__,
        "model": model.get_config(),
        "compile": _compile_config(model),
    }
    training = {
        "epoch": model.epoch,
        "fit_seed": model.fit_seed,
        "generators": {key: gen.bit_generator.state
                       for key, gen in layer_generators(model.layers).items()},
        "optimizer": None,
    }
    optimizer_arrays = {}
    if config["compile"] is not None:
        optimizer_arrays, training["optimizer"] = model.optimizer.get_state()

    def write(handle):
        with zipfile.ZipFile(handle, "w") as archive:
            archive.writestr("config.json", json.dumps(config, indent=2),
                             compress_type=zipfile.ZIP_DEFLATED)
            archive.writestr("weights.npz", _npz_bytes(model.state_dict()))
            if config["compile"] is not None:
                archive.writestr("optimizer.npz", _npz_bytes(optimizer_arrays))
            archive.writestr("training_state.json", json.dumps(training),
                             compress_type=zipfile.ZIP_DEFLATED)

    _atomic_write(path, write)
