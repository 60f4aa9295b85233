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
directory, fsynced, renamed over the target with ``os.replace``, and the directory is
fsynced, so a crash never leaves a half-written model file.

Reading treats the file as untrusted (see :mod:`fastcnn._safezip`,
:mod:`fastcnn._safenpy` and SECURITY.md): nothing is unpickled (object arrays are
refused), nothing is extracted, layer types are looked up only in
:data:`fastcnn.layers.LAYERS`, memory is bounded before anything is decompressed or
allocated (zip bombs, ``.npy`` headers and layer configs that claim more than the file
holds are refused), and every problem is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import os
import warnings
import zipfile

from . import _registry, _safenpy, _safezip
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers as optimizers_mod
from ._model_writer import FORMAT, FORMAT_VERSION, MEMBERS, write_model
from ._version import __version__
from .graph import Model
from .model import Sequential
from .network import Network
from .random import layer_generators

# How many more elements than weights.npz holds a config may describe (64 MiB of
# float32) before it is refused unbuilt.
_PARAM_ALLOWANCE = 1 << 24


def save_model(model: Network, path: str | os.PathLike) -> None:
    """Save a built model (architecture, weights, optimizer and training state) to
    ``path`` as a zip archive, atomically.

    Parameters
    ----------
    model : Sequential or Model
        A built model; compiled, its optimizer state is saved too.
    path : str or PathLike
        The file to write (replaced if it exists). ``.zip`` or ``.fastcnn`` are
        customary; the name is not checked.

    Shape: no arrays.
    """
    if not isinstance(model, Network):
        raise TypeError(
            f"save_model: model must be a fastcnn.Sequential or Model, got "
            f"{type(model).__name__}."
        )
    write_model(model, path)


def _compile_from(model: Network, compile_config: dict) -> None:
    metrics = []
    for i, entry in enumerate(compile_config.get("metrics", [])):
        # Custom callables are saved by name only (class_name None): warned about,
        # like any type this fastcnn does not know.
        if metrics_mod.METRICS.get(entry.get("class_name")) is None:
            warnings.warn(
                f"load_model: metric {entry.get('name')!r} was a custom callable and "
                f"is not restored; pass it to compile() again.",
                stacklevel=3,
            )
            continue
        metrics.append(_registry.build(metrics_mod.METRICS, entry,
                                       f"config.json: metric {i}", "metric type"))
    model.compile(
        optimizer=optimizers_mod.from_config(compile_config["optimizer"],
                                             "config.json: the optimizer"),
        loss=losses_mod.from_config(compile_config["loss"], "config.json: the loss"),
        metrics=metrics)


def _check_weight_dtypes(model: Network, weights: dict) -> None:
    """save_model writes every array in the model's dtype: anything else was made
    by hand (load_state_dict casts; a model file must match exactly)."""
    for key, value in weights.items():
        if value.dtype != model.dtype:
            raise ValueError(
                f"weights.npz: {key!r:.100} has dtype {value.dtype} but the model is "
                f"{model.dtype}."
            )


#: The largest epoch count a training state may hold (a bound, not a limit anyone
#: reaches: it keeps counters exact and far from int64 overflow).
MAX_EPOCH = 2**53


def _check_training_state(training) -> None:
    """``training_state.json`` holds only what :func:`save_model` writes. The
    optimizer's scalars are checked by ``Optimizer.set_state`` (with the
    constructor's own checks), where they are used."""
    if not isinstance(training, dict):
        raise ValueError("training_state.json is not a JSON object.")
    unknown = set(training) - {"epoch", "fit_seed", "generators", "optimizer"}
    if unknown:
        raise ValueError(
            f"training_state.json: unknown entries {sorted(unknown)!r:.200}."
        )
    epoch, seed = training.get("epoch", 0), training.get("fit_seed")
    if (not isinstance(epoch, int) or isinstance(epoch, bool)
            or not 0 <= epoch <= MAX_EPOCH):
        raise ValueError(f"training_state.json: epoch {epoch!r:.100} is not an "
                         f"int in [0, 2**53].")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)
                             or not 0 <= seed < 2**64):
        raise ValueError(f"training_state.json: fit_seed {seed!r:.100} is not an "
                         f"int in [0, 2**64) or null.")
    generators = training.get("generators", {})
    if not isinstance(generators, dict) or not all(
            isinstance(state, dict) for state in generators.values()):
        raise ValueError("training_state.json: generators is not a JSON object of "
                         "objects.")
    scalars = training.get("optimizer")
    if scalars is not None and not isinstance(scalars, dict):
        raise ValueError(
            f"training_state.json: the optimizer state {scalars!r:.200} is not a "
            f"JSON object."
        )


def _restore_training_state(model: Network, training: dict) -> None:
    model.epoch = training.get("epoch", 0)
    model.fit_seed = training.get("fit_seed")
    generators = layer_generators(model.layers)
    for key, state in training.get("generators", {}).items():
        if key in generators:
            # The setter checks the state (its type name, key and sizes).
            generators[key].bit_generator.state = state


def _load(archive: zipfile.ZipFile, label: str, compile: bool) -> Network:
    names = set(archive.namelist())
    for member in ("config.json", "weights.npz", "training_state.json"):
        if member not in names:
            raise ValueError(f"lacks {member!r}; it is not a fastcnn model file.")
    unknown = names - set(MEMBERS)
    if unknown:
        raise ValueError(
            f"holds members a fastcnn model file does not: {sorted(unknown)!r:.200}."
        )
    config = _safezip.read_json(archive, "config.json", label)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else config
        raise ValueError(f"has format {found!r:.100}, expected {FORMAT!r}.")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"has an invalid format version {version!r:.100}.")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"has format version {version}, newer than this fastcnn ({__version__}) "
            f"reads ({FORMAT_VERSION}); upgrade fastcnn."
        )
    weights = _safenpy.read_npz(archive, "weights.npz", label)
    # The architecture may not claim (much) more parameters than the file carries: a
    # config asking for Dense(10**12) is refused before anything is allocated. The
    # allowance lets a small mismatch reach load_state_dict's clearer message.
    allowed = sum(a.size for a in weights.values()) + _PARAM_ALLOWANCE
    model_config = config.get("model")
    kind = (Model if isinstance(model_config, dict)
            and model_config.get("class_name") == "Model" else Sequential)
    model = kind.from_config(model_config, max_params=allowed)
    if not model.built:
        raise ValueError("holds no input shape.")
    _check_weight_dtypes(model, weights)
    model.load_state_dict(weights, strict=True)
    training = _safezip.read_json(archive, "training_state.json", label)
    _check_training_state(training)
    _restore_training_state(model, training)
    if compile and config.get("compile") is not None:
        _compile_from(model, config["compile"])
        arrays = (_safenpy.read_npz(archive, "optimizer.npz", label)
                  if "optimizer.npz" in names else {})
        # Every array must fit its parameter exactly and every scalar passes the
        # constructor's checks: the kernels trust both.
        model.optimizer.set_state(arrays, training.get("optimizer") or {},
                                  params=model._named_params())
    return model


def load_model(path: str | os.PathLike, compile: bool = True) -> Network:
    """Load a model written by :func:`save_model` / ``Sequential.save``.

    The file may be untrusted: nothing in it is unpickled or executed, memory stays
    bounded by the file's size plus :data:`fastcnn._safezip.MAX_INFLATION`, and
    whatever is wrong with it is a ``ValueError`` naming the file (see SECURITY.md).

    Parameters
    ----------
    path : str or PathLike
    compile : bool
        Restore the optimizer (with its state), loss and metrics too.

    Returns
    -------
    Sequential or Model
        Built, with ``epoch`` and ``fit_seed`` restored: continue training with
        ``fit(..., initial_epoch=model.epoch, seed=model.fit_seed)``.

    Raises
    ------
    ValueError
        The file is truncated, corrupt, not a fastcnn model file, of a newer format
        version, a zip bomb, holds object arrays or names unknown layer types, bad
        layer arguments, or arrays that do not fit the architecture.
    OSError
        The file cannot be opened (missing, a directory, no permission).

    Shape: no arrays.
    """
    path = os.fspath(path)
    label = f"load_model: {path!r}"
    with open(path, "rb") as file:
        if not zipfile.is_zipfile(file):
            raise ValueError(
                f"{label} is not a fastcnn model file (not a zip archive)."
            )
        file.seek(0)
        with _safezip.open_zip(file, label) as archive:
            try:
                return _load(archive, label, compile)
            except (ValueError, TypeError, KeyError, AttributeError, IndexError,
                    OverflowError, RecursionError) as error:
                # Whatever the content breaks is a fault of the file: one error type,
                # and the file named once.
                text = str(error)
                if not text.startswith(label):
                    text = f"{label}: {text}"
                raise ValueError(text) from None
