"""Building objects from ``{"class_name": ..., "config": {...}}`` entries: the one
helper behind ``from_config`` of layers, losses, optimizers, schedules and
callbacks.

Entries may come from untrusted files: the class is looked up in the registry
only (never imported by name), and whatever is wrong with an entry (its shape, an
unknown type, unknown or invalid arguments) is one ``ValueError`` whose message
starts with the caller's label, so it names the entry.
"""

from __future__ import annotations


def build(registry: dict[str, type], entry, label: str, noun: str = "type"):
    """A new instance of ``registry[entry["class_name"]]`` made with
    ``entry["config"]`` (default ``{}``) as keyword arguments.

    Parameters
    ----------
    registry : dict
        Class name -> class: the only classes an entry may name.
    entry : object
        Should be ``{"class_name": str, "config": dict}``.
    label : str
        Starts every error message: what the entry is, e.g.
        ``"Sequential.from_config: layer 2"``.
    noun : str
        What an unknown class name is called in the message ("type", "loss
        type", ...).

    Raises
    ------
    ValueError
        ``entry`` is not such a dict, names a class not in ``registry``, or its
        arguments are unknown or invalid for that class.

    Shape: no arrays.
    """
    if not isinstance(entry, dict):
        raise ValueError(
            f"{label} is not a dict {{'class_name': ..., 'config': {{...}}}} but a "
            f"{type(entry).__name__}."
        )
    name = entry.get("class_name")
    cls = registry.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(
            f"{label} has unknown {noun} {name!r:.200}; known types: "
            f"{', '.join(registry)}."
        )
    config = entry.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(
            f"{label} ({name}) has a 'config' that is not a dict of arguments: "
            f"{config!r:.200}."
        )
    try:
        return cls(**config)
    except (TypeError, ValueError) as error:
        # TypeError too (an unknown keyword, a str where an int belongs): here the
        # arguments come from a file, so they are bad data, not a bad call.
        raise ValueError(
            f"{label} ({name}) has bad arguments {config!r:.200}: {error}"
        ) from None
