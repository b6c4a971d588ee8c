"""File-system helpers for input that comes from strangers: safe clip ids, paths confined to their
folder, atomic writes under unique temporary names, and hashing.

Splits, submissions and datasets from the Hub name files and clips. A name is never joined into a
path until it has passed :func:`check_clip_id` or :func:`resolve_inside`; nothing is removed unless
:func:`remove_inside` has checked that it lies inside the folder the run owns.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator

from .errors import BenchmarkError, ClipError

#: A clip id: letters, digits, ``-``, ``_`` and ``.``, starting with a letter or digit, at most 128
#: characters. Ids become file names (``videos/<id>.mkv``), so anything that could name another
#: folder (``..``, ``/``, ``\``, a leading dot, an absolute path) is refused.
CLIP_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CLIP_ID_RULE = "1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"


CACHE_ENV = "EVERANIMATE_BENCH_CACHE"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$EVERANIMATE_BENCH_CACHE``, else ``~/.cache/everanimate-bench``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "everanimate-bench")


class UnsafePathError(BenchmarkError):
    """A path would leave the folder it must stay in."""


def is_safe_clip_id(clip_id: object) -> bool:
    return isinstance(clip_id, str) and CLIP_ID_PATTERN.fullmatch(clip_id) is not None


def check_clip_id(clip_id: object, where: str | Path | None = None) -> str:
    """``clip_id`` if it is a safe name (:data:`CLIP_ID_PATTERN`), else a :class:`ClipError`."""
    if not is_safe_clip_id(clip_id):
        raise ClipError(None, where, f"clip id {clip_id!r} is not a safe name ({CLIP_ID_RULE})")
    return clip_id  # type: ignore[return-value]


def resolve_inside(root: str | Path, relative: object, clip_id: str | None = None, field: str = "path") -> Path:
    """``root / relative`` after checking that ``relative`` is a relative POSIX path that resolves,
    symlinks included, to a location inside ``root``."""
    if not isinstance(relative, str) or not relative:
        raise ClipError(clip_id, None, f"field {field!r} must be a non-empty relative path, got {relative!r}")
    posix = PurePosixPath(relative)
    if posix.is_absolute() or "\\" in relative or relative.startswith("~") or ".." in posix.parts:
        raise ClipError(clip_id, None, f"field {field!r} = {relative!r} points outside the split folder")
    base = Path(root).resolve()
    target = (base / posix).resolve()
    if not target.is_relative_to(base) or target == base:
        raise ClipError(clip_id, None, f"field {field!r} = {relative!r} resolves to {target}, outside {base}")
    return base / posix


def check_inside(root: str | Path, path: str | Path) -> Path:
    """``path`` if it lies strictly inside ``root`` (symlinks resolved), else :class:`UnsafePathError`."""
    base = Path(root).resolve()
    target = Path(path).resolve()
    if target == base or not target.is_relative_to(base):
        raise UnsafePathError(f"refusing to touch {path}: it is not inside {root}")
    return Path(path)


def remove_inside(root: str | Path, path: str | Path) -> None:
    """Remove a file or folder after checking that it lies inside ``root``; a missing path is fine.
    A symlink is removed itself, never followed."""
    path = Path(path)
    if path.is_symlink():
        if not path.parent.resolve().is_relative_to(Path(root).resolve()):
            raise UnsafePathError(f"refusing to touch {path}: it is not inside {root}")
        path.unlink()
        return
    if not path.exists():
        return
    check_inside(root, path)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def unique_sibling(path: str | Path) -> Path:
    """Create an empty, uniquely named hidden file next to ``path`` and return it, so concurrent writers
    of one path never share a temporary file. Unlike ``tempfile.mkstemp`` it gets the umask's
    permissions, which the final file keeps after the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        candidate = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate


@contextmanager
def temporary_sibling(path: str | Path) -> Iterator[Path]:
    """A unique temporary file next to ``path`` (:func:`unique_sibling`), renamed onto ``path`` when
    the block succeeds and deleted when it fails, so ``path`` is never half-written."""
    tmp = unique_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with temporary_sibling(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def sha256_file(path: str | Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()
