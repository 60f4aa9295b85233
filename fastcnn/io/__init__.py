"""Weights in and out: PyTorch ``.pth``, ``.safetensors`` and ``.npz``, no torch needed.

- :func:`load_weights` reads a state dict from ``.pth``/``.pt`` (``torch.save``'s zip
  format, through a restricted reader that runs nothing from the file),
  ``.safetensors`` (the optional ``safetensors`` package) or ``.npz``;
- :func:`save_weights` writes ``.safetensors`` or ``.npz`` with
  ``torch.nn.Sequential``'s keys, which ``torch.nn.Sequential.load_state_dict``
  accepts as they are;
- :func:`export_onnx` writes a whole model (graph and weights) as ONNX, for
  deployment runtimes (the optional ``onnx`` package);
- :func:`strip_prefix` and :func:`renumber_like` map keys of torch models that wrap
  their Sequential or order parameter-free layers differently.

Load the result with ``model.load_state_dict(weights)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ._budget import AMPLIFICATION, DEFAULT_MAX_BYTES, SLACK
from ._restricted_pickle import UnsafePickleError, bounded_repr
from .keys import renumber_like, strip_prefix

__all__ = [
    "AMPLIFICATION",
    "DEFAULT_MAX_BYTES",
    "SLACK",
    "UnsafePickleError",
    "export_onnx",
    "load_weights",
    "renumber_like",
    "save_weights",
    "strip_prefix",
]

def export_onnx(model, path, *, opset: int | None = None) -> None:
    """Write a built model to ``path`` as ONNX, in evaluation mode: see
    :func:`fastcnn.io.onnx_export.export_onnx` (imported on call).

    Shape: the file maps ``(N, *model.input_shape)`` to ``(N, *model.output_shape)``.
    """
    from . import onnx_export

    opset = onnx_export.OPSET if opset is None else opset
    onnx_export.export_onnx(model, path, opset=opset)


_SUFFIXES = {".npz": "npz", ".safetensors": "safetensors", ".pth": "pth",
             ".pt": "pth", ".bin": "pth", ".ckpt": "pth"}
_ZIP_MAGIC = b"PK\x03\x04"


def _path(op: str, path) -> str:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{op}: path must be a str or os.PathLike, got "
                        f"{type(path).__name__}.")
    return os.fspath(path)


def _sniff(path: str) -> str | None:
    """The format of a file whose suffix says nothing, from its first bytes."""
    import zipfile

    from .._safezip import ZIP_ERRORS

    with open(path, "rb") as handle:
        head = handle.read(9)
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except ZIP_ERRORS:  # a corrupt zip can raise more than BadZipFile
            return None
        return "pth" if any(n.endswith("/data.pkl") for n in names) else "npz"
    if head.startswith(b"\x80\x02"):
        return "pth"  # torch's legacy format: read_pth explains what to do
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"  # 8-byte header length, then the JSON header
    return None


def load_weights(path: str | os.PathLike, format: str | None = None, *,
                 key: str | None = None,
                 max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Read a state dict: name -> NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pth``/``.pt``/``.bin`` file written by ``torch.save(state_dict)``, a
        ``.safetensors`` file or an ``.npz`` file.
    format : {"pth", "safetensors", "npz"}, optional
        Default: from the suffix, else from the file's first bytes.
    key : str, optional
        ``.pth`` only: the entry of a checkpoint dict that holds the state dict,
        e.g. ``"model_state_dict"``.
    max_bytes : int, optional
        The most the load may materialise, in bytes: the file's contents, the
        structure its pickle builds, every array and every copy made on the way
        (counted as allocated, so this bounds the peak). Default: 4 times the
        file's size plus 64 MiB, at most 4 GiB (``DEFAULT_MAX_BYTES``), so the
        output is never much larger than the file. Raise it for a trusted file
        whose tensors are views expanded from a small storage or a
        ``np.savez_compressed`` file that compresses well.

    Returns
    -------
    dict of str to numpy.ndarray
        C-contiguous arrays in native byte order; bfloat16 tensors of ``.pth`` files
        are widened (exactly) to float32; ``num_batches_tracked`` entries are kept
        (``load_state_dict`` ignores them).

    Raises
    ------
    fastcnn.io.UnsafePickleError
        A ``.pth`` pickle holds anything a tensor state dict does not need (any
        other global, opcode or persistent id); nothing of it was run.
    ValueError
        A corrupt, truncated, inconsistent or too large file; names the path and
        the member or tensor.

    Shape: each array has its tensor's shape.
    """
    op = "load_weights"
    path = _path(op, path)
    if max_bytes is not None and (type(max_bytes) is not int or max_bytes <= 0):
        raise TypeError(f"{op}: max_bytes must be a positive int or None, got "
                        f"{bounded_repr(max_bytes)}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{op}: there is no file {path}.")
    if format is None:
        format = _SUFFIXES.get(os.path.splitext(path)[1].lower()) or _sniff(path)
        if format is None:
            raise ValueError(f"{op}: cannot tell the format of {path}; pass "
                             f"format='pth', 'safetensors' or 'npz'.")
    if format not in ("pth", "safetensors", "npz"):
        raise ValueError(f"{op}: format must be 'pth', 'safetensors' or 'npz', got "
                         f"{format!r}.")
    if key is not None and format != "pth":
        raise ValueError(f"{op}: key= applies to .pth checkpoints only, not "
                         f"{format}.")
    try:
        return _read(op, path, format, key, max_bytes)
    except _UNEXPECTED as error:
        # Defence in depth: every reader raises ValueError for bad content, and the
        # tests check no hostile file gets here; if one does, the caller still
        # gets a ValueError that names the file.
        raise ValueError(
            f"{op}: {path} could not be read as {format} (unexpected "
            f"{type(error).__name__}: {str(error)[:200]})."
        ) from error


#: What a reader bug could let through on a hostile file; load_weights turns it
#: into a ValueError naming the file.
_UNEXPECTED = (AttributeError, IndexError, KeyError, OverflowError, RecursionError,
               ZeroDivisionError)


def _read(op, path, format, key, max_bytes) -> dict[str, np.ndarray]:
    if format == "pth":
        from .pth import read_pth

        return read_pth(path, max_bytes, key=key, op=op)
    if format == "npz":
        from .npz import read_npz

        return read_npz(path, max_bytes, op=op)
    from .safetensors_file import read_safetensors

    return read_safetensors(path, max_bytes, op=op)


def _arrays_of(op: str, weights) -> dict[str, np.ndarray]:
    if hasattr(weights, "state_dict") and hasattr(weights, "layers"):
        from ..layers import BatchNorm1D, BatchNorm2D

        state = weights.state_dict()
        for i, layer in enumerate(weights.layers):
            if isinstance(layer, BatchNorm1D | BatchNorm2D):
                # torch's BatchNorm has this counter and its strict load wants it.
                # fastcnn counts nothing (it matters only for momentum=None, which
                # fastcnn has not), so 0 it is.
                state[f"{i}.num_batches_tracked"] = np.zeros((), dtype=np.int64)
        return state
    if not isinstance(weights, Mapping):
        raise TypeError(f"{op}: weights must be a fastcnn.Sequential or a dict of "
                        f"arrays, got {type(weights).__name__}.")
    out = {}
    for name, value in weights.items():
        if not isinstance(name, str):
            raise TypeError(f"{op}: keys must be str, got {name!r}.")
        if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
            value = value.detach().cpu().numpy()
        value = np.asarray(value)
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{op}: {name} has non-numeric dtype {value.dtype}.")
        out[name] = value
    return out


def save_weights(path: str | os.PathLike, weights, format: str | None = None) -> None:
    """Write a model's (or a state dict's) arrays with torch.nn.Sequential's keys.

    The file loads into a matching ``torch.nn.Sequential`` with
    ``load_state_dict(safetensors.torch.load_file(path))`` or, for ``.npz``,
    ``{k: torch.from_numpy(v) for k, v in np.load(path).items()}``. BatchNorm
    layers also get torch's ``num_batches_tracked`` (0), so a strict load works.
    The file is written to a temporary name and renamed: a crash never leaves half
    a file.

    Parameters
    ----------
    path : str or os.PathLike
    weights : fastcnn.Sequential or dict of str to array
    format : {"safetensors", "npz"}, optional
        Default: from the suffix of ``path``.

    Shape: arrays in PyTorch's layouts.
    """
    op = "save_weights"
    path = _path(op, path)
    if format is None:
        format = _SUFFIXES.get(os.path.splitext(path)[1].lower())
        if format == "pth":
            raise ValueError(
                f"{op}: writing .pth needs torch's pickle; write .safetensors (torch "
                f"reads it with safetensors.torch.load_file) or .npz instead."
            )
    if format not in ("safetensors", "npz"):
        raise ValueError(f"{op}: format must be 'safetensors' or 'npz' (or a path "
                         f"ending in one), got {format!r} for {path}.")
    arrays = _arrays_of(op, weights)
    if format == "npz":
        from .npz import npz_bytes

        data = npz_bytes(arrays)
    else:
        from .safetensors_file import safetensors_bytes

        data = safetensors_bytes(arrays, op=op)
    from .._model_writer import _atomic_write

    _atomic_write(path, lambda handle: handle.write(data))
