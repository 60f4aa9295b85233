"""Model files: one zip holding JSON and ``.npz`` members, never a pickle.

Members of the archive:

``config.json``
    Format version, the architecture (``Sequential.get_config()``: layer class names
    and their ``get_config()``), and the compile settings (optimizer, loss, metrics).
``weights.npz``
    The state dict (``"0.weight"``, ``"1.running_mean"``, ...).
``optimizer.npz``
    The optimizer's per-parameter arrays (``"0.weight/momentum_buffer"``, ...).
``training_state.json``
    Epochs completed, the ``fit`` seed, the optimizer's step count and current
    learning rate (and momentum/betas), and the state of every layer's random
    generator (Dropout), so that ``fit(..., initial_epoch=model.epoch, seed=...)``
    after loading continues bit for bit like an uninterrupted run.

Writes are atomic: the archive is written to a temporary file in the target's
directory, flushed to disk, then renamed over the target with ``os.replace``, so a
crash never leaves a half-written model file. Reading uses ``np.load(...,
allow_pickle=False)`` and looks layer types up only in :data:`fastcnn.layers.LAYERS`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
import zipfile

import numpy as np

from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers as optimizers_mod
from ._version import __version__
from .model import Sequential

FORMAT = "fastcnn.sequential"
FORMAT_VERSION = 1


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _read_npz(archive: zipfile.ZipFile, member: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(archive.read(member)), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _layer_generators(model: Sequential):
    """Every ``numpy.random.Generator`` a layer holds (Dropout's ``rng``), keyed
    ``"<index>.<attribute>"``."""
    for i, layer in enumerate(model.layers):
        for attr, value in vars(layer).items():
            if isinstance(value, np.random.Generator):
                yield f"{i}.{attr}", value


def _compile_config(model: Sequential) -> dict | None:
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
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it."""
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


def save_model(model: Sequential, path: str | os.PathLike) -> None:
    """Save a built model (architecture, weights, optimizer and training state) to
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
    if not isinstance(model, Sequential):
        raise TypeError(
            f"save_model: model must be a fastcnn.Sequential, got "
            f"{type(model).__name__}."
        )
    if not model.built:
        raise ValueError(
            "save_model: the model is not built, so it has no weights to save; give "
            "Sequential(input_shape=...) or call build(input_shape) first."
        )
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
                       for key, gen in _layer_generators(model)},
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


def _compile_from(model: Sequential, compile_config: dict) -> None:
    metrics = []
    for entry in compile_config.get("metrics", []):
        cls = metrics_mod.METRICS.get(entry.get("class_name"))
        if cls is None:
            warnings.warn(
                f"load_model: metric {entry.get('name')!r} was a custom callable and "
                f"is not restored; pass it to compile() again.",
                stacklevel=3,
            )
            continue
        metrics.append(cls(**entry.get("config", {})))
    model.compile(optimizer=optimizers_mod.from_config(compile_config["optimizer"]),
                  loss=losses_mod.from_config(compile_config["loss"]),
                  metrics=metrics)


def _check_optimizer_arrays(path, model: Sequential, arrays: dict) -> None:
    """Every optimizer slot must belong to a parameter and, unless a scalar (Adam's
    step), have its shape: a mismatch would otherwise surface mid-training."""
    params = {f"{i}.{key}": p for i, layer in enumerate(model.layers)
              for key, p in layer.params.items()}
    for key, value in arrays.items():
        name = key.rpartition("/")[0]
        if name not in params:
            raise ValueError(
                f"load_model: {path!r}: optimizer state {key!r} belongs to no "
                f"parameter of the model."
            )
        if value.ndim and value.shape != params[name].shape:
            raise ValueError(
                f"load_model: {path!r}: optimizer state {key!r} has shape "
                f"{value.shape} but {name} has shape {params[name].shape}."
            )


def load_model(path: str | os.PathLike, compile: bool = True) -> Sequential:
    """Load a model written by :func:`save_model` / ``Sequential.save``.

    Parameters
    ----------
    path : str or PathLike
    compile : bool
        Restore the optimizer (with its state), loss and metrics too.

    Returns
    -------
    Sequential
        Built, with ``epoch`` and ``fit_seed`` restored: continue training with
        ``fit(..., initial_epoch=model.epoch, seed=model.fit_seed)``.

    Shape: no arrays.
    """
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"load_model: {path!r} is not a fastcnn model file (not a zip archive)."
        )
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for member in ("config.json", "weights.npz", "training_state.json"):
            if member not in names:
                raise ValueError(
                    f"load_model: {path!r} lacks {member!r}; it is not a fastcnn "
                    f"model file."
                )
        config = json.loads(archive.read("config.json"))
        if config.get("format") != FORMAT:
            raise ValueError(
                f"load_model: {path!r} has format {config.get('format')!r}, "
                f"expected {FORMAT!r}."
            )
        if config.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"load_model: {path!r} has format version "
                f"{config.get('format_version')}, newer than this fastcnn "
                f"({__version__}) reads ({FORMAT_VERSION}); upgrade fastcnn."
            )
        try:
            model = Sequential.from_config(config["model"])
        except ValueError as error:
            raise ValueError(f"load_model: {path!r}: {error}") from None
        if not model.built:
            raise ValueError(f"load_model: {path!r} holds no input shape.")
        try:
            model.load_state_dict(_read_npz(archive, "weights.npz"), strict=True)
        except ValueError as error:
            raise ValueError(f"load_model: {path!r}: {error}") from None
        training = json.loads(archive.read("training_state.json"))
        model.epoch = int(training.get("epoch", 0))
        model.fit_seed = training.get("fit_seed")
        generators = dict(_layer_generators(model))
        for key, state in training.get("generators", {}).items():
            if key in generators:
                generators[key].bit_generator.state = state
        if compile and config.get("compile") is not None:
            _compile_from(model, config["compile"])
            arrays = (_read_npz(archive, "optimizer.npz")
                      if "optimizer.npz" in names else {})
            _check_optimizer_arrays(path, model, arrays)
            model.optimizer.set_state(arrays, training.get("optimizer") or {})
    return model
