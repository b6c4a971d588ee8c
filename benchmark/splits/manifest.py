"""The split manifest: records, field types, loading with verification, writing, content hash.

A split folder holds ``manifest.json`` and, per clip, five files named in the manifest:

- ``video``: the ground-truth RGB video (frame 0 is the reference frame);
- ``pose_video``: the pose-control video (DWPose/OpenPose colours on black), same size and length;
- ``face_video``: square face crops ``face_size x face_size``, one per frame, cut from the ground truth;
- ``keypoints``: an ``.npz`` with ``keypoints`` float32 ``(T, 133, 3)`` in the COCO-WholeBody layout
  (x, y in pixels, score in [0, 1]) and ``face_boxes`` float32 ``(T, 4)`` as ``x0, y0, x1, y1`` in
  pixels, NaN where the frame has no face;
- ``reference``: a PNG of the reference frame.

Every file's sha256 is in the manifest; the content hash covers the whole clip table, so any change
to any file or field gives a different split hash, and nothing else does.

A split may also carry exact per-frame person masks (the synthetic renderer writes them): one
``.npz`` per clip holding ``person_mask`` bool ``(T, H, W)``, listed with its sha256 in the manifest's
``person_masks`` record (:class:`PersonMasks`). The record sits beside the clip table, outside the
content hash, so adding masks to a split leaves its hash, and every result that cites it, unchanged;
the masks are still verified: each file's sha256 on every full verification and on every load
(:meth:`Split.load_person_masks`). Splits without the record load as before.

This module is the bottom of ``benchmark.splits``: every other module of the package (the registry,
the synthetic renderer, the builder, the Hugging Face export, the CLI) imports it, and it imports none
of them, so a split can be read and checked without the code that made it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..errors import ClipError, ManifestError
from ..files import atomic_write_text, cache_root, check_clip_id, resolve_inside, sha256_file
from ..protocol import Protocol

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "everanimate-bench/split"
MANIFEST_FORMAT_VERSION = 1

# COCO-WholeBody (DWPose) layout: index ranges of each part in the 133 keypoints.
KEYPOINT_LAYOUT = "coco-wholebody-133"
NUM_KEYPOINTS = 133
BODY = slice(0, 17)
FEET = slice(17, 23)
FACE = slice(23, 91)
LEFT_HAND = slice(91, 112)
RIGHT_HAND = slice(112, 133)

CLIP_FILE_FIELDS = ("video", "pose_video", "face_video", "keypoints", "reference")
PERSON_MASK_KEY = "person_mask"


@dataclass(frozen=True)
class ClipRecord:
    """One clip of a split, as recorded in the manifest. Paths are relative to the split folder."""

    id: str
    video: str
    video_sha256: str
    pose_video: str
    pose_video_sha256: str
    face_video: str
    face_video_sha256: str
    keypoints: str
    keypoints_sha256: str
    reference: str
    reference_sha256: str
    fps: float
    num_frames: int
    width: int
    height: int
    reference_frame: int = 0
    source: str = ""
    license: str = ""
    # How the clip was brought to the protocol's fps and size (source fps, size, method), if it was.
    resampling: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps


@dataclass(frozen=True)
class PersonMaskFile:
    """One clip's person-mask file, relative to the split folder, and its sha256."""

    file: str
    sha256: str


@dataclass(frozen=True)
class PersonMasks:
    """The manifest's ``person_masks`` record: how the masks were made and each clip's file."""

    rule: str
    clips: dict[str, PersonMaskFile]

    def to_json(self) -> dict:
        return {"rule": self.rule, "clips": {clip_id: asdict(entry) for clip_id, entry in sorted(self.clips.items())}}

    @property
    def hash(self) -> str:
        """Short hash of the record (rule, files, sha256s): which masks a result was scored with."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Split:
    name: str
    version: str
    root: Path
    fps: int
    width: int
    height: int
    face_size: int
    clips: tuple[ClipRecord, ...]
    content_hash: str
    keypoint_layout: str = KEYPOINT_LAYOUT
    description: str = ""
    person_masks: PersonMasks | None = None

    def path(self, clip: ClipRecord, field_name: str) -> Path:
        """The file a clip's field names, checked to lie inside the split folder."""
        return resolve_inside(self.root, getattr(clip, field_name), clip.id, field_name)

    def person_mask_path(self, clip: ClipRecord) -> Path:
        """The clip's person-mask file (the split must have masks), checked to lie inside the folder."""
        if self.person_masks is None:
            raise ClipError(clip.id, self.root / MANIFEST_NAME, "the split has no person masks")
        return resolve_inside(self.root, self.person_masks.clips[clip.id].file, clip.id, PERSON_MASK_KEY)

    def clip(self, clip_id: str) -> ClipRecord:
        for clip in self.clips:
            if clip.id == clip_id:
                return clip
        raise KeyError(f"split {self.name!r} has no clip {clip_id!r}")

    @property
    def shortest_seconds(self) -> float:
        return min(c.seconds for c in self.clips)

    def protocol(self, **overrides) -> Protocol:
        return Protocol(width=self.width, height=self.height, fps=self.fps, **overrides)

    def limited(self, limit: int | None) -> "Split":
        if limit is None:
            return self
        if limit < 1:
            raise ValueError("--limit must be at least 1")
        return Split(**{**{f.name: getattr(self, f.name) for f in fields(self)}, "clips": self.clips[:limit]})

    # ---- per-clip data ---------------------------------------------------------------------
    def load_keypoints(self, clip: ClipRecord) -> tuple[np.ndarray, np.ndarray]:
        """``keypoints (T, 133, 3)`` and ``face_boxes (T, 4)`` of a clip, validated."""
        path = self.path(clip, "keypoints")
        try:
            with np.load(path, allow_pickle=False) as data:
                keypoints = np.asarray(data["keypoints"], dtype=np.float32)
                face_boxes = np.asarray(data["face_boxes"], dtype=np.float32)
        except FileNotFoundError as exc:
            raise ClipError(clip.id, path, "file does not exist") from exc
        except (KeyError, ValueError, OSError) as exc:
            raise ClipError(clip.id, path, f"unreadable keypoints file: {exc}") from exc
        if keypoints.shape != (clip.num_frames, NUM_KEYPOINTS, 3):
            raise ClipError(clip.id, path, f"keypoints shape {keypoints.shape}, expected ({clip.num_frames}, {NUM_KEYPOINTS}, 3)")
        if face_boxes.shape != (clip.num_frames, 4):
            raise ClipError(clip.id, path, f"face_boxes shape {face_boxes.shape}, expected ({clip.num_frames}, 4)")
        return keypoints, face_boxes

    def load_person_masks(self, clip: ClipRecord) -> np.ndarray | None:
        """``bool (T, H, W)`` person masks of a clip, or None for a split without masks. The file's
        sha256 is checked against the manifest's ``person_masks`` record on every load."""
        if self.person_masks is None:
            return None
        path = self.person_mask_path(clip)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ClipError(clip.id, path, "person mask file does not exist") from exc
        except OSError as exc:
            raise ClipError(clip.id, path, f"unreadable person mask file: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != self.person_masks.clips[clip.id].sha256:
            raise ClipError(clip.id, path, "sha256 differs from the manifest's person_masks record (mask file changed or corrupt)")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                masks = np.asarray(archive[PERSON_MASK_KEY])
        except (KeyError, ValueError, OSError) as exc:
            raise ClipError(clip.id, path, f"unreadable person mask file: {exc}") from exc
        if masks.dtype != bool or masks.shape != (clip.num_frames, self.height, self.width):
            raise ClipError(clip.id, path, f"person masks are {masks.dtype} {masks.shape}, expected bool ({clip.num_frames}, {self.height}, {self.width})")
        return masks

    def load_reference(self, clip: ClipRecord) -> torch.Tensor:
        """The reference frame as ``uint8 (H, W, 3)``."""
        from PIL import Image

        path = self.path(clip, "reference")
        if not path.exists():
            raise ClipError(clip.id, path, "file does not exist")
        image = np.asarray(Image.open(path).convert("RGB"))
        if image.shape != (self.height, self.width, 3):
            raise ClipError(clip.id, path, f"reference is {image.shape[1]}x{image.shape[0]}, expected {self.width}x{self.height}")
        return torch.from_numpy(image.copy())


def content_hash(clips: Iterable[ClipRecord], meta: dict) -> str:
    payload = json.dumps({"meta": meta, "clips": [asdict(c) for c in clips]}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _meta(name: str, version: str, fps: int, width: int, height: int, face_size: int, layout: str) -> dict:
    return {
        "name": name,
        "version": version,
        "fps": fps,
        "width": width,
        "height": height,
        "face_size": face_size,
        "keypoint_layout": layout,
    }


def write_manifest(
    root: str | Path,
    name: str,
    version: str,
    fps: int,
    width: int,
    height: int,
    face_size: int,
    clips: list[ClipRecord],
    description: str = "",
    person_masks: PersonMasks | None = None,
) -> Path:
    """Write ``manifest.json`` atomically and return its path; ``person_masks`` (every clip's mask
    file) is written beside the clip table, outside the content hash."""
    meta = _meta(name, version, fps, width, height, face_size, KEYPOINT_LAYOUT)
    document = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_FORMAT_VERSION,
        **meta,
        "description": description,
        "content_hash": content_hash(clips, meta),
        "clips": [asdict(c) for c in clips],
    }
    if person_masks is not None:
        missing = sorted({c.id for c in clips} ^ set(person_masks.clips))
        if missing:
            raise ManifestError(f"person masks must list exactly the split's clips; they differ in {missing}")
        document["person_masks"] = person_masks.to_json()
    path = Path(root) / MANIFEST_NAME
    atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True))
    return path


def make_clip_record(root: str | Path, clip_id: str, files: dict[str, str], **fields_) -> ClipRecord:
    """Build a record, hashing each of ``files`` (field name -> path relative to ``root``)."""
    root = Path(root)
    check_clip_id(clip_id, root)
    hashes = {f"{key}_sha256": sha256_file(resolve_inside(root, rel, clip_id, key)) for key, rel in files.items()}
    return ClipRecord(id=clip_id, **files, **hashes, **fields_)


# ---- manifest field types -------------------------------------------------------------------

def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


_STRING = ("a string", lambda v: isinstance(v, str))
_SHA256 = ("a sha256 hex digest (64 lowercase hex characters)", lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None)
_POSITIVE_INT = ("a positive integer", lambda v: _is_int(v) and v > 0)
_NON_NEGATIVE_INT = ("a non-negative integer", lambda v: _is_int(v) and v >= 0)
_POSITIVE_NUMBER = ("a positive finite number", lambda v: _is_number(v) and v > 0)
_OBJECT = ("an object", lambda v: isinstance(v, dict))
_VERSION = ("a string or an integer", lambda v: isinstance(v, str) or _is_int(v))

CLIP_FIELD_TYPES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "id": _STRING,
    **{name: _STRING for name in CLIP_FILE_FIELDS},
    **{f"{name}_sha256": _SHA256 for name in CLIP_FILE_FIELDS},
    "fps": _POSITIVE_NUMBER,
    "num_frames": _POSITIVE_INT,
    "width": _POSITIVE_INT,
    "height": _POSITIVE_INT,
    "reference_frame": _NON_NEGATIVE_INT,
    "source": _STRING,
    "license": _STRING,
    "resampling": _OBJECT,
}
MANIFEST_FIELD_TYPES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "name": _STRING,
    "version": _VERSION,
    "fps": _POSITIVE_INT,
    "width": _POSITIVE_INT,
    "height": _POSITIVE_INT,
    "face_size": _POSITIVE_INT,
    "keypoint_layout": _STRING,
    "content_hash": _STRING,
    "description": _STRING,
    "clips": ("a non-empty list", lambda v: isinstance(v, list) and len(v) > 0),
}


def _check_type(value: object, spec: tuple[str, Callable[[object], bool]], field_name: str) -> str | None:
    """None if ``value`` has the type ``spec`` describes, else the problem."""
    expected, accepts = spec
    if accepts(value):
        return None
    return f"field {field_name!r} must be {expected}, got {value!r} ({type(value).__name__})"


def parse_clip_record(raw: object, index: int, path: str | Path) -> ClipRecord:
    """One manifest entry, type-checked field by field, with a safe clip id."""
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: clips[{index}] must be an object, got {raw!r} ({type(raw).__name__})")
    label = raw.get("id") if isinstance(raw.get("id"), str) else f"#{index}"
    known = {f.name for f in fields(ClipRecord)}
    unknown = set(raw) - known
    missing = {f.name for f in fields(ClipRecord) if f.name not in raw and f.default is MISSING and f.default_factory is MISSING}
    if unknown or missing:
        raise ClipError(label, path, f"manifest entry has unknown fields {sorted(unknown)} / missing fields {sorted(missing)}")
    for name, value in raw.items():
        problem = _check_type(value, CLIP_FIELD_TYPES[name], name)
        if problem:
            raise ClipError(label, path, problem)
    check_clip_id(raw["id"], path)
    return ClipRecord(**raw)


def _read_manifest(root: Path) -> tuple[dict, list[ClipRecord], Path]:
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise ManifestError(f"split folder {root} does not exist or is not a folder")
    if not path.exists():
        raise ManifestError(f"no {MANIFEST_NAME} in {root}")
    if not path.is_file():
        raise ManifestError(f"{path} is not a regular file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ManifestError(f"{path}: the manifest must be a JSON object, got {type(document).__name__}")
    if document.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: not a split manifest (format={document.get('format')!r})")
    if document.get("format_version") != MANIFEST_FORMAT_VERSION:
        raise ManifestError(f"{path}: manifest format_version {document.get('format_version')!r}, this code reads {MANIFEST_FORMAT_VERSION}")
    for name, spec in MANIFEST_FIELD_TYPES.items():
        if name not in document:
            if name == "description":
                continue
            raise ManifestError(f"{path}: missing field {name!r}")
        problem = _check_type(document[name], spec, name)
        if problem:
            raise ManifestError(f"{path}: {problem}")
    if document["keypoint_layout"] != KEYPOINT_LAYOUT:
        raise ManifestError(f"{path}: keypoint layout {document['keypoint_layout']!r}, expected {KEYPOINT_LAYOUT!r}")
    clips = [parse_clip_record(raw, index, path) for index, raw in enumerate(document["clips"])]
    seen: dict[str, str] = {}
    for clip in clips:
        # Case-insensitive: on macOS and Windows file systems two such ids would share one file.
        if clip.id.lower() in seen:
            raise ManifestError(f"{path}: clip ids {seen[clip.id.lower()]!r} and {clip.id!r} collide (ids must differ ignoring case)")
        seen[clip.id.lower()] = clip.id
    return document, clips, path


def parse_person_masks(raw: object, clips: list[ClipRecord], path: str | Path) -> PersonMasks | None:
    """The manifest's optional ``person_masks`` record, type-checked: a rule, and for every clip of
    the split (no other) a relative file path and a sha256."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"rule", "clips"} or not isinstance(raw["rule"], str) or not isinstance(raw["clips"], dict):
        raise ManifestError(f"{path}: 'person_masks' must be an object {{\"rule\": text, \"clips\": {{clip id: {{\"file\", \"sha256\"}}}}}}")
    ids = {clip.id for clip in clips}
    if set(raw["clips"]) != ids:
        raise ManifestError(f"{path}: 'person_masks' must list exactly the split's clips; they differ in {sorted(ids ^ set(raw['clips']))}")
    entries = {}
    for clip_id, entry in raw["clips"].items():
        if not isinstance(entry, dict) or set(entry) != {"file", "sha256"}:
            raise ClipError(clip_id, path, "person_masks entry must be an object with 'file' and 'sha256'")
        for name, spec in (("file", _STRING), ("sha256", _SHA256)):
            problem = _check_type(entry[name], spec, f"person_masks.{name}")
            if problem:
                raise ClipError(clip_id, path, problem)
        entries[clip_id] = PersonMaskFile(entry["file"], entry["sha256"])
    return PersonMasks(raw["rule"], entries)


# ---- loading and verification ----------------------------------------------------------------

VERIFY_MODES = ("auto", "full", "none")


def load_split(root: str | Path, verify: str = "auto") -> Split:
    """Load and validate a split folder.

    Every field's type, every clip id and every file path (relative, inside the folder, symlinks
    included) is checked on every load. ``verify`` decides how much of the content is read:

    - ``full``: every file's sha256, every video's frame count, size and fps, the keypoints, and
      the reference against frame 0 of the ground truth; the result is recorded in this machine's
      cache (``<cache>/verified/``) with each file's size and modification time;
    - ``auto`` (default): ``full``, unless a recorded full verification of this folder and content
      hash still matches every file's size and modification time;
    - ``none``: structure only (ranks other than 0, which rely on rank 0's verification).

    Raises :class:`ManifestError` for a bad manifest and :class:`ClipError` naming the clip and the
    file for a bad clip.
    """
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    root = Path(root)
    document, clips, path = _read_manifest(root)
    meta = _meta(*(document[k] for k in ("name", "version", "fps", "width", "height", "face_size", "keypoint_layout")))
    if content_hash(clips, meta) != document["content_hash"]:
        raise ManifestError(f"{path}: content hash mismatch: the manifest was edited without being rewritten")
    split = Split(
        name=meta["name"],
        version=str(meta["version"]),
        root=root,
        fps=meta["fps"],
        width=meta["width"],
        height=meta["height"],
        face_size=meta["face_size"],
        clips=tuple(clips),
        content_hash=document["content_hash"],
        description=document.get("description", ""),
        person_masks=parse_person_masks(document.get("person_masks"), clips, path),
    )
    for clip in clips:
        check_clip_structure(split, clip)
    if verify == "none":
        return split
    stats = _file_stats(split)
    if verify == "auto" and _verification_holds(split, stats):
        return split
    for clip in clips:
        verify_clip_content(split, clip)
    _record_verification(split, stats)
    return split


def check_clip_structure(split: Split, clip: ClipRecord) -> None:
    """What needs no reading of the clip's files: its fields against the split's, and every file
    path inside the split folder and a regular file."""
    manifest = split.root / MANIFEST_NAME
    if clip.fps != split.fps:
        raise ClipError(clip.id, manifest, f"fps {clip.fps} differs from the split's {split.fps}")
    if (clip.width, clip.height) != (split.width, split.height):
        raise ClipError(clip.id, manifest, f"resolution {clip.width}x{clip.height} differs from the split's {split.width}x{split.height}")
    if clip.reference_frame != 0:
        raise ClipError(clip.id, manifest, "the reference must be frame 0 of the ground truth")
    for file_path in _clip_files(split, clip):
        if not file_path.exists():
            raise ClipError(clip.id, file_path, "file does not exist")
        if not file_path.is_file():
            raise ClipError(clip.id, file_path, "not a regular file")


def _clip_files(split: Split, clip: ClipRecord) -> list[Path]:
    """Every file of a clip: its five clip files, then its person-mask file if the split has masks."""
    files = [split.path(clip, name) for name in CLIP_FILE_FIELDS]
    return files + ([split.person_mask_path(clip)] if split.person_masks is not None else [])


def verify_clip_content(split: Split, clip: ClipRecord) -> None:
    """Read everything: hashes, video streams, keypoints, and the reference against frame 0."""
    from ..video import probe, read_frames

    for name in CLIP_FILE_FIELDS:
        file_path = split.path(clip, name)
        if sha256_file(file_path) != getattr(clip, f"{name}_sha256"):
            raise ClipError(clip.id, file_path, "sha256 differs from the manifest (file changed or corrupt)")
    sizes = {"video": (split.width, split.height), "pose_video": (split.width, split.height), "face_video": (split.face_size, split.face_size)}
    for name, size in sizes.items():
        info = probe(split.path(clip, name), clip_id=clip.id)
        if info.num_frames != clip.num_frames:
            raise ClipError(clip.id, info.path, f"{info.num_frames} frames, manifest says {clip.num_frames}")
        if (info.width, info.height) != size:
            raise ClipError(clip.id, info.path, f"resolution {info.width}x{info.height}, expected {size[0]}x{size[1]}")
        if abs(info.fps - split.fps) > 1e-3:
            raise ClipError(clip.id, info.path, f"fps {info.fps:g}, expected {split.fps}")
    split.load_keypoints(clip)
    split.load_person_masks(clip)
    reference = split.load_reference(clip)
    first = read_frames(split.path(clip, "video"), 0, 1, clip_id=clip.id)[0]
    if not torch.equal(reference, first):
        worst = int((reference.int() - first.int()).abs().max())
        raise ClipError(clip.id, split.path(clip, "reference"), f"reference differs from frame 0 of {clip.video} (max difference {worst}); the reference must be frame 0")


def _file_stats(split: Split) -> dict[str, list[int]]:
    stats = {}
    for clip in split.clips:
        for name in CLIP_FILE_FIELDS:
            info = split.path(clip, name).stat()
            stats[f"{clip.id}/{name}"] = [info.st_size, info.st_mtime_ns]
        if split.person_masks is not None:
            info = split.person_mask_path(clip).stat()
            stats[f"{clip.id}/{PERSON_MASK_KEY}"] = [info.st_size, info.st_mtime_ns]
    return stats


def _verification_path(root: Path) -> Path:
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]
    return cache_root() / "verified" / f"{key}.json"


def _verification_holds(split: Split, stats: dict[str, list[int]]) -> bool:
    try:
        record = json.loads(_verification_path(split.root).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("root") == str(split.root.resolve())
        and record.get("content_hash") == split.content_hash
        and record.get("person_masks_hash") == _person_masks_hash(split)
        and record.get("files") == stats
    )


def _person_masks_hash(split: Split) -> str | None:
    return split.person_masks.hash if split.person_masks is not None else None


def _record_verification(split: Split, stats: dict[str, list[int]]) -> None:
    record = {
        "root": str(split.root.resolve()),
        "content_hash": split.content_hash,
        "person_masks_hash": _person_masks_hash(split),
        "files": stats,
        "verified_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        atomic_write_text(_verification_path(split.root), json.dumps(record))
    except OSError:
        pass  # a read-only cache only costs the next load a full verification
