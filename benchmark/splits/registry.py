"""Split names: ``synthetic`` and ``synthetic-train`` (rendered into the cache on first use), or any
folder holding a ``manifest.json``. Every command that takes ``--split`` resolves it here."""

from __future__ import annotations

from pathlib import Path

from ..errors import ManifestError
from .manifest import Split, load_split
from .synthetic.cache import ensure_split
from .synthetic.spec import SPLITS


def split_names() -> list[str]:
    """The named splits, sorted."""
    return sorted(SPLITS)


def resolve_split(name_or_path: str, verify: str = "auto") -> Split:
    """A named split or a split folder, loaded with :func:`~.manifest.load_split`'s ``verify``."""
    if name_or_path in SPLITS:
        return ensure_split(name_or_path, verify=verify)
    path = Path(name_or_path)
    if not path.exists():
        raise ManifestError(f"unknown split {name_or_path!r}: not one of {split_names()} and no such folder")
    return load_split(path, verify=verify)
