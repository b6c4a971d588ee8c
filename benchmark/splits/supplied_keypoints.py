"""Keypoints computed elsewhere: ``python -m benchmark.splits build --keypoints DIR``.

``DIR`` holds one file per video, named after the clip id (the video's file name without suffix):

- ``<clip_id>.npz`` with an array ``keypoints``, or
- ``<clip_id>.json`` with ``{"keypoints": [[[x, y, score], ... 133 points], ... one per frame]}``.

The array is float ``(T_source, 133, 3)`` in the COCO-WholeBody layout (body 0-16, feet 17-22, face
23-90, left hand 91-111, right hand 112-132), one row per *source* frame in display order (the order
a decoder returns them): row ``i`` belongs to the ``i``-th frame of the video, and ``T_source`` is the
video's frame count. ``x`` and
``y`` are in pixels of the source video as displayed (after the rotation its container asks for, the
``source_width x source_height`` the build records), with pixel centres at whole numbers, as pose
models give them. ``score`` is in [0, 1]; a point that was not found has score 0 and any finite x, y.

The builder maps them through exactly what it does to the frames (:mod:`.sources`):

- time: output frame ``j`` takes the row of the source frame it was made from (nearest timestamp);
- space: with the centre-crop box ``(x0, y0, x1, y1)`` (recorded as ``crop_box``) resized to
  ``width x height``, ``x' = (x + 0.5 - x0) * width / (x1 - x0) - 0.5`` and
  ``y' = (y + 0.5 - y0) * height / (y1 - y0) - 0.5``; scores are kept.

Points then outside the output frame stay as they are (the pose video clips them). Files are read
without pickle; every problem is an error naming the file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import BuildError, ClipError
from .manifest import NUM_KEYPOINTS
from .sources import SourceVideo

SUFFIXES = (".npz", ".json")
# A scored point further outside the frame than this fraction of its size means the coordinates are
# in another frame of reference (another resolution, the unrotated video, ...).
MAX_OUTSIDE = 0.5
KEYPOINTS_METHOD = (
    "supplied per source frame; output frame j takes the row of the source frame it was made from, "
    "x' = (x + 0.5 - crop_x0) * width / crop_width - 0.5 (y likewise), scores kept"
)


def find_keypoint_file(folder: Path, source: SourceVideo) -> Path:
    """The one keypoints file of ``source`` in ``folder``."""
    found = [folder / f"{source.clip_id}{suffix}" for suffix in SUFFIXES if (folder / f"{source.clip_id}{suffix}").is_file()]
    if not found:
        raise ClipError(source.clip_id, source.path, f"no keypoints file for this video in --keypoints {folder} (expected {source.clip_id}.npz or {source.clip_id}.json)")
    if len(found) > 1:
        raise ClipError(source.clip_id, found[0], f"both {found[0].name} and {found[1].name} exist; keep one")
    return found[0]


def _read(path: Path, fail: Callable[[str], ClipError]) -> np.ndarray:
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "keypoints" not in data.files:
                    raise fail(f"no array 'keypoints' in the .npz (it holds {sorted(data.files)})")
                return data["keypoints"]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise fail(f"unreadable .npz: {exc}") from exc
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fail(f"not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or "keypoints" not in document:
        raise fail('expected a JSON object {"keypoints": [[[x, y, score], ...], ...]}')
    try:
        return np.asarray(document["keypoints"], dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise fail(f"'keypoints' is not a (frames, {NUM_KEYPOINTS}, 3) array of numbers: {exc}") from exc


def load_keypoint_file(path: Path, source: SourceVideo) -> np.ndarray:
    """The keypoints of ``source`` from ``path``, validated: float32 ``(T_source, 133, 3)`` in
    source pixels. Errors name the file and the video."""

    def fail(problem: str) -> ClipError:
        return ClipError(source.clip_id, path, f"{problem} (keypoints for {source.path.name})")

    array = _read(path, fail)

    if not np.issubdtype(array.dtype, np.floating):
        raise fail(f"keypoints have dtype {array.dtype}, expected a float array")
    if array.ndim != 3 or array.shape[1:] != (NUM_KEYPOINTS, 3):
        raise fail(f"keypoints have shape {array.shape}, expected (frames, {NUM_KEYPOINTS}, 3)")
    if len(array) != source.num_frames:
        raise fail(f"{len(array)} rows, but the video has {source.num_frames} frames; give one row per source frame")
    bad = ~np.isfinite(array)
    if bad.any():
        frame, point, _ = np.argwhere(bad)[0]
        raise fail(f"{int(bad.sum())} values are NaN or infinite (first at frame {frame}, point {point}); give points not found score 0 and finite x, y")
    scores = array[..., 2]
    if scores.min() < 0 or scores.max() > 1:
        raise fail(f"scores range over [{scores.min():g}, {scores.max():g}], expected [0, 1]")
    scored = scores > 0
    if scored.any():
        x, y = array[..., 0][scored], array[..., 1][scored]
        if source.width > 2 and source.height > 2 and max(x.max(), y.max()) <= 1.0:
            raise fail("x and y all lie in [0, 1]: they look normalised; give pixels of the source video")
        low_x, high_x = -MAX_OUTSIDE * source.width, (1 + MAX_OUTSIDE) * source.width
        low_y, high_y = -MAX_OUTSIDE * source.height, (1 + MAX_OUTSIDE) * source.height
        if x.min() < low_x or x.max() > high_x or y.min() < low_y or y.max() > high_y:
            raise fail(
                f"scored points reach x in [{x.min():.1f}, {x.max():.1f}], y in [{y.min():.1f}, {y.max():.1f}], far outside the "
                f"{source.width}x{source.height} video (as displayed, after its {source.rotation} degree rotation)"
            )
    return array.astype(np.float32)


def to_output_pixels(keypoints: np.ndarray, crop: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """Source-pixel keypoints mapped through the centre crop ``crop`` and the resize to ``size``."""
    x0, y0, x1, y1 = crop
    width, height = size
    out = keypoints.astype(np.float64)
    out[..., 0] = (out[..., 0] + 0.5 - x0) * (width / (x1 - x0)) - 0.5
    out[..., 1] = (out[..., 1] + 0.5 - y0) * (height / (y1 - y0)) - 0.5
    return out.astype(np.float32)


def check_keypoint_folder(folder: str | Path, sources: list[SourceVideo]) -> dict[str, Path]:
    """Clip id -> keypoints file for every video, each file read and validated now, so a bad one
    stops the build before the first clip is written."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BuildError(f"--keypoints {folder} is not a folder")
    files = {source.clip_id: find_keypoint_file(folder, source) for source in sources}
    for source in sources:
        load_keypoint_file(files[source.clip_id], source)
    return files
