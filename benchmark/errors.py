"""Errors that name the clip, the file and the problem."""

from __future__ import annotations

from pathlib import Path


class BenchmarkError(Exception):
    """Base class for every error the benchmark raises on purpose."""


class ClipError(BenchmarkError):
    """A problem with one clip: its input files, or what a method produced for it."""

    def __init__(self, clip_id: str | None, path: str | Path | None, problem: str):
        self.clip_id = clip_id
        self.path = str(path) if path is not None else None
        self.problem = problem
        where = []
        if clip_id is not None:
            where.append(f"clip {clip_id!r}")
        if path is not None:
            where.append(f"file {self.path}")
        super().__init__(f"{', '.join(where)}: {problem}" if where else problem)


class ManifestError(BenchmarkError):
    """The split manifest itself is missing, malformed or inconsistent."""


class MethodOutputError(ClipError):
    """A method returned frames of the wrong shape, dtype or range, or NaN."""


class BuildError(BenchmarkError):
    """A split build as a whole cannot proceed: no videos, bad options, pose models or keypoint files missing."""
