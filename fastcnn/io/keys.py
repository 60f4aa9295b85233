"""Map state-dict keys from PyTorch models onto a fastcnn Sequential's keys.

fastcnn keys are ``torch.nn.Sequential``'s: ``"<layer index>.<name>"``, where the
index counts parameter-free layers too. Two things get in the way in practice: the
Sequential sits inside a wrapper module (``features.0.weight``), or the torch model
places its parameter-free layers differently (``Conv, ReLU, Pool`` against
``Conv, Pool, ReLU``), which shifts the indices of every later layer.
"""

from __future__ import annotations

from collections.abc import Mapping

_IGNORED = "num_batches_tracked"  # torch's BatchNorm counter; fastcnn keeps none


def strip_prefix(state: Mapping, prefix: str) -> dict:
    """The entries of ``state`` under ``prefix``, with the prefix removed.

    ``strip_prefix(sd, "features")`` turns ``features.0.weight`` into ``0.weight``
    and drops every key outside ``features.`` (e.g. ``classifier.1.bias``).

    Parameters
    ----------
    state : mapping of str to array
    prefix : str
        A module path, with or without the trailing dot.

    Raises
    ------
    ValueError
        No key starts with the prefix; the message lists the prefixes there are.

    Shape: arrays unchanged.
    """
    if not isinstance(prefix, str) or not prefix.strip("."):
        raise TypeError(f"strip_prefix: prefix must be a non-empty str, got "
                        f"{prefix!r}.")
    if not isinstance(state, Mapping):
        raise TypeError(f"strip_prefix: state must be a mapping, got "
                        f"{type(state).__name__}.")
    prefix = prefix if prefix.endswith(".") else prefix + "."
    out = {key[len(prefix):]: value for key, value in state.items()
           if isinstance(key, str) and key.startswith(prefix)}
    if not out:
        roots = sorted({str(key).split(".")[0] + "." for key in state})
        raise ValueError(f"strip_prefix: no key starts with {prefix!r}; the keys "
                         f"start with {roots}.")
    return out


def _groups(op: str, what: str, state: Mapping) -> list[tuple[str, dict]]:
    """``state`` grouped by module path (the key up to its last dot):
    ``[(path, {name: value})]``, by index where every path is a number, otherwise
    in the order the state dict lists them (torch lists modules in order)."""
    groups: dict[str, dict] = {}
    for key, value in state.items():
        path, _, name = str(key).rpartition(".")
        if not path or not name:
            raise ValueError(f"{op}: {what} key {key!r} is not '<module>.<name>'.")
        groups.setdefault(path, {})[name] = value
    items = list(groups.items())
    if all(path.isdigit() for path, _ in items):
        items.sort(key=lambda item: int(item[0]))
    return items


def renumber_like(state: Mapping, model) -> dict:
    """Re-key ``state`` so its modules line up with ``model``'s layers that hold
    parameters or buffers, in order.

    The n-th torch module with weights maps to the n-th fastcnn layer with weights;
    their names and shapes must agree, so a wrong pairing is an error, never a
    silent mix-up. Use it when the torch model places parameter-free layers (ReLU,
    pooling, Flatten, Dropout) at other indices than the fastcnn model does, or
    splits them over submodules (``features.3.weight``, ``classifier.1.weight``).

    Parameters
    ----------
    state : mapping of str to array
        Keys ``"<module path>.<name>"``. Numeric paths (``"3"``) are paired by
        index; any other paths in the order the mapping lists them, which is
        torch's module order for ``state_dict()``, ``torch.load`` and
        :func:`load_weights` of ``.pth`` and ``.npz`` files (not ``.safetensors``,
        which does not keep the order).
    model : fastcnn.Sequential
        Built.

    Raises
    ------
    ValueError
        Different numbers of layers with weights, or a pair whose parameter names
        or shapes differ (the message names both keys and both shapes).

    Shape: arrays unchanged.
    """
    op = "renumber_like"
    if not isinstance(state, Mapping):
        raise TypeError(f"{op}: state must be a mapping, got {type(state).__name__}.")
    theirs = _groups(op, "state", state)
    ours = _groups(op, "model", model.state_dict())
    if len(theirs) != len(ours):
        raise ValueError(
            f"{op}: state has {len(theirs)} modules with weights "
            f"{[i for i, _ in theirs]} but the model has {len(ours)} layers with "
            f"weights {[i for i, _ in ours]}."
        )
    out = {}
    for (i, their), (j, our) in zip(theirs, ours, strict=True):
        names = sorted(n for n in their if n != _IGNORED)
        if names != sorted(our):
            raise ValueError(f"{op}: state module {i!r} has {names} but model layer "
                             f"{j} has {sorted(our)}.")
        for name, value in their.items():
            shape = tuple(getattr(value, "shape", ()))
            if name != _IGNORED and shape != our[name].shape:
                raise ValueError(
                    f"{op}: {i}.{name} has shape {shape} but the model's "
                    f"{j}.{name} has shape {our[name].shape}."
                )
            out[f"{j}.{name}"] = value
    return out
