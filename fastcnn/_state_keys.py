"""What ``Sequential.load_state_dict`` reports, as torch's ``_IncompatibleKeys``."""

from __future__ import annotations

from typing import NamedTuple


class IncompatibleKeys(NamedTuple):
    """Keys the model has but the state dict lacks, and keys it has in excess.

    Both empty means every key matched (``strict=True`` guarantees it).
    """

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return (f"IncompatibleKeys(missing_keys={self.missing_keys}, "
                f"unexpected_keys={self.unexpected_keys})")
