"""Test splits: a versioned manifest with a content hash, and a loader that validates everything.

A split folder holds ``manifest.json`` and, per clip, four files named in the manifest:

- ``video``: the ground-truth RGB video (frame 0 is the reference frame);
- ``pose_video``: the pose-control video (DWPose/OpenPose colours on black), same size and length;
- ``face_video``: square face crops ``face_size x face_size``, one per frame, cut from the ground truth;
- ``keypoints``: an ``.npz`` with ``keypoints`` float32 ``(T, 133, 3)`` in the COCO-WholeBody layout
  (x, y in pixels, score in [0, 1]) and ``face_boxes`` float32 ``(T, 4)`` as ``x0, y0, x1, y1`` in
  pixels, NaN where the frame has no face;
- ``reference``: a PNG of the reference frame.

Every file's sha256 is in the manifest; the content hash covers the whole clip table, so any change
to any file or field gives a different split hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from .errors import ClipError, ManifestError
from .protocol import Protocol

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


def sha256_file(path: str | Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


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

    def path(self, clip: ClipRecord, field_name: str) -> Path:
        return self.root / getattr(clip, field_name)

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
            with np.load(path) as data:
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
) -> Path:
    """Write ``manifest.json`` atomically and return its path."""
    meta = _meta(name, version, fps, width, height, face_size, KEYPOINT_LAYOUT)
    document = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_FORMAT_VERSION,
        **meta,
        "description": description,
        "content_hash": content_hash(clips, meta),
        "clips": [asdict(c) for c in clips],
    }
    path = Path(root) / MANIFEST_NAME
    atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True))
    return path


def make_clip_record(root: str | Path, clip_id: str, files: dict[str, str], **fields_) -> ClipRecord:
    """Build a record, hashing each of ``files`` (field name -> path relative to ``root``)."""
    root = Path(root)
    hashes = {f"{key}_sha256": sha256_file(root / rel) for key, rel in files.items()}
    return ClipRecord(id=clip_id, **files, **hashes, **fields_)


def load_split(root: str | Path, verify_hashes: bool = True, probe_videos: bool = True) -> Split:
    """Load and validate a split folder. Raises :class:`ManifestError` for a bad manifest and
    :class:`ClipError` naming the clip and file for a bad clip."""
    from .video import probe

    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.exists():
        raise ManifestError(f"no {MANIFEST_NAME} in {root}")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc}") from exc
    if document.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: not a split manifest (format={document.get('format')!r})")
    if document.get("format_version") != MANIFEST_FORMAT_VERSION:
        raise ManifestError(f"{path}: manifest format_version {document.get('format_version')!r}, this code reads {MANIFEST_FORMAT_VERSION}")
    try:
        meta = _meta(*(document[k] for k in ("name", "version", "fps", "width", "height", "face_size", "keypoint_layout")))
        raw_clips = document["clips"]
        recorded_hash = document["content_hash"]
    except KeyError as exc:
        raise ManifestError(f"{path}: missing field {exc}") from exc
    if meta["keypoint_layout"] != KEYPOINT_LAYOUT:
        raise ManifestError(f"{path}: keypoint layout {meta['keypoint_layout']!r}, expected {KEYPOINT_LAYOUT!r}")
    known = {f.name for f in fields(ClipRecord)}
    clips = []
    for index, raw in enumerate(raw_clips):
        clip_id = raw.get("id", f"#{index}")
        unknown = set(raw) - known
        missing = {f.name for f in fields(ClipRecord) if f.name not in raw and f.default is MISSING and f.default_factory is MISSING}
        if unknown or missing:
            raise ClipError(clip_id, path, f"manifest entry has unknown fields {sorted(unknown)} / missing fields {sorted(missing)}")
        clips.append(ClipRecord(**raw))
    if not clips:
        raise ManifestError(f"{path}: split has no clips")
    ids = [c.id for c in clips]
    if len(set(ids)) != len(ids):
        raise ManifestError(f"{path}: duplicate clip ids")
    if content_hash(clips, meta) != recorded_hash:
        raise ManifestError(f"{path}: content hash mismatch: the manifest was edited without being rewritten")

    split = Split(
        name=meta["name"],
        version=str(meta["version"]),
        root=root,
        fps=int(meta["fps"]),
        width=int(meta["width"]),
        height=int(meta["height"]),
        face_size=int(meta["face_size"]),
        clips=tuple(clips),
        content_hash=recorded_hash,
        description=document.get("description", ""),
    )
    for clip in clips:
        validate_clip(split, clip, verify_hashes=verify_hashes, probe_videos=probe_videos, probe=probe)
    return split


def validate_clip(split: Split, clip: ClipRecord, verify_hashes: bool, probe_videos: bool, probe) -> None:
    if clip.fps != split.fps:
        raise ClipError(clip.id, split.root / MANIFEST_NAME, f"fps {clip.fps} differs from the split's {split.fps}")
    if (clip.width, clip.height) != (split.width, split.height):
        raise ClipError(clip.id, split.root / MANIFEST_NAME, f"resolution {clip.width}x{clip.height} differs from the split's {split.width}x{split.height}")
    if clip.reference_frame != 0:
        raise ClipError(clip.id, split.root / MANIFEST_NAME, "the reference must be frame 0 of the ground truth")
    for name in CLIP_FILE_FIELDS:
        file_path = split.path(clip, name)
        if not file_path.exists():
            raise ClipError(clip.id, file_path, "file does not exist")
        if verify_hashes and sha256_file(file_path) != getattr(clip, f"{name}_sha256"):
            raise ClipError(clip.id, file_path, "sha256 differs from the manifest (file changed or corrupt)")
    if probe_videos:
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


def resolve_split(name_or_path: str, **kwargs) -> Split:
    """``synthetic`` / ``synthetic-train`` (generated and cached on first use) or a split folder."""
    from . import synthetic

    if name_or_path in synthetic.SPLITS:
        return synthetic.ensure_split(name_or_path, **kwargs)
    path = Path(name_or_path)
    if not path.exists():
        raise ManifestError(f"unknown split {name_or_path!r}: not one of {sorted(synthetic.SPLITS)} and no such folder")
    return load_split(path, **kwargs)


# ---- command line: python -m benchmark.split {build,info,export-hf,import-hf} ---------------------


def _cli_parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m benchmark.split",
        description="Build, inspect and share benchmark splits.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser(
        "build",
        help="build a split from your own long videos",
        description=(
            "Turn every video in --videos (mp4, mkv, mov, avi, webm; the file name is the clip id) into a clip: "
            "resampled to 25 fps (nearest timestamp) and 832x480 or 480x832 (centre crop), with whole-body "
            "keypoints (rtmlib + onnxruntime, the 'pose' extra), a pose-control video, face crops and frame 0 "
            "as the reference. The manifest is written last."
        ),
    )
    build.add_argument("--videos", required=True, metavar="DIR", help="folder of source videos")
    build.add_argument("--out", required=True, metavar="DIR", help="split folder to create")
    build.add_argument("--name", help="split name (default: the --out folder's name)")
    build.add_argument("--version", default="1", help="split version recorded in the manifest (default: 1)")
    build.add_argument(
        "--orientation",
        choices=("auto", "landscape", "portrait"),
        default="auto",
        help="832x480 (landscape) or 480x832 (portrait); auto takes the orientation all videos share (default: auto)",
    )
    build.add_argument(
        "--pose-model",
        metavar="PATH_OR_URL",
        help="whole-body RTMPose/RTMW ONNX model (default: $EVERANIMATE_POSE_MODEL, else rtmlib's download for --pose-mode)",
    )
    build.add_argument(
        "--det-model",
        metavar="PATH_OR_URL",
        help="person detector (YOLOX) ONNX model (default: $EVERANIMATE_DET_MODEL, else rtmlib's download)",
    )
    build.add_argument(
        "--pose-mode",
        choices=("performance", "balanced", "lightweight"),
        default="performance",
        help="rtmlib's model preset, used for models not given explicitly (default: performance)",
    )
    build.add_argument("--device", default="cpu", help="onnxruntime device: cpu, cuda or cuda:N (default: cpu)")
    build.add_argument("--max-seconds", type=float, metavar="S", help="keep at most the first S seconds of each video")
    build.add_argument("--min-seconds", type=float, default=1.0, metavar="S", help="refuse videos shorter than S seconds (default: 1)")
    build.add_argument("--face-size", type=int, default=512, metavar="N", help="side of the square face crops (default: 512)")
    build.add_argument("--license", default="", metavar="TEXT", help="licence recorded for every clip")
    build.add_argument("--source", metavar="TEXT", help="source recorded for every clip (default: the video's file name)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing split in --out")
    build.add_argument("--no-progress", action="store_true", help="no progress bars")

    info = commands.add_parser("info", help="print a split's name, version, content hash and clips", description="Load and validate a split, then summarise it.")
    info.add_argument("split", metavar="SPLIT", help="a split folder, or synthetic / synthetic-train")

    export = commands.add_parser(
        "export-hf",
        help="save a split as a Hugging Face dataset folder",
        description="Save a split as a datasets.Dataset (one row per clip, files as binary columns) with save_to_disk; push it with Dataset.push_to_hub if you like.",
    )
    export.add_argument("split", metavar="SPLIT", help="a split folder, or synthetic / synthetic-train")
    export.add_argument("out", metavar="OUT", help="folder to write the dataset into")

    imported = commands.add_parser(
        "import-hf",
        help="turn a Hugging Face dataset back into a split folder",
        description="Load a dataset written by export-hf (a local folder or a Hub repo id), write the split files and manifest, and check the content hash.",
    )
    imported.add_argument("source", metavar="SOURCE", help="dataset folder or Hub repo id")
    imported.add_argument("out", metavar="OUT", help="split folder to create")
    imported.add_argument("--revision", help="Hub revision (branch, tag or commit) to load")
    imported.add_argument("--hf-split", default="train", help="dataset split holding the clips, for Hub sources (default: train)")
    return parser


def _cli_split(name_or_path: str) -> Split:
    """A folder holding a manifest loads directly (no need for the synthetic renderer); anything
    else goes through :func:`resolve_split`."""
    if (Path(name_or_path) / MANIFEST_NAME).is_file():
        return load_split(name_or_path)
    return resolve_split(name_or_path)


def _print_info(split: Split) -> None:
    print(f"name:         {split.name}")
    print(f"version:      {split.version}")
    print(f"content hash: {split.content_hash}")
    print(f"root:         {split.root}")
    print(f"protocol:     {split.width}x{split.height} @ {split.fps} fps, face crops {split.face_size}x{split.face_size}")
    if split.description:
        print(f"description:  {split.description}")
    print(f"clips:        {len(split.clips)} ({sum(c.seconds for c in split.clips):.2f} s in all)")
    for clip in split.clips:
        print(f"  {clip.id:<24} {clip.num_frames:>7} frames  {clip.seconds:9.2f} s")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmark.split``; returns the process exit code."""
    import sys

    from .errors import BenchmarkError

    args = _cli_parser().parse_args(argv)
    try:
        if args.command == "build":
            from .build import build_split

            split = build_split(
                args.videos,
                args.out,
                name=args.name,
                version=args.version,
                orientation=args.orientation,
                pose_model=args.pose_model,
                det_model=args.det_model,
                pose_mode=args.pose_mode,
                device=args.device,
                max_seconds=args.max_seconds,
                min_seconds=args.min_seconds,
                license=args.license,
                source=args.source,
                face_size=args.face_size,
                overwrite=args.overwrite,
                progress=not args.no_progress,
            )
            _print_info(split)
        elif args.command == "info":
            _print_info(_cli_split(args.split))
        elif args.command == "export-hf":
            from .hf import export_split

            print(export_split(_cli_split(args.split), args.out))
        elif args.command == "import-hf":
            from .hf import import_split

            _print_info(import_split(args.source, args.out, revision=args.revision, hf_split=args.hf_split))
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
