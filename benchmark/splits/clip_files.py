"""One clip's folder of files, written the same way by everything that makes splits.

The synthetic renderer, the builder from videos and the test fixtures all write a clip as the same
five files (:data:`CLIP_FILE_NAMES`): the ground truth, the pose-control and the face-crop videos
(lossless FFV1, bit-exact), the keypoints ``.npz`` and the reference PNG. Writing them here keeps
their names, formats and byte-for-byte reproducibility in one place, so two producers of the same
frames produce the same bytes and the same content hash.

A clip is written into a hidden ``.<folder>.partial`` folder beside its final folder and renamed into
place by :meth:`ClipWriter.finish`, which also checks that the five files agree (frame counts,
sizes) and returns the manifest record. An interrupted or failed clip leaves nothing behind.

A split with exact person masks (the synthetic renderer's) gets a sixth file per clip,
``person_mask.npz``, written by :func:`write_person_masks` into the finished clip's folder and
recorded in the manifest's ``person_masks`` record, not in the clip's record.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ClipError
from ..files import check_clip_id, remove_inside, resolve_inside, sha256_file
from ..video import VideoWriter
from .manifest import CLIP_FILE_FIELDS, NUM_KEYPOINTS, PERSON_MASK_KEY, ClipRecord, PersonMaskFile, make_clip_record

CLIP_FILE_NAMES: dict[str, str] = {
    "video": "video.mkv",
    "pose_video": "pose.mkv",
    "face_video": "face.mkv",
    "keypoints": "keypoints.npz",
    "reference": "reference.png",
}
VIDEO_FIELDS = ("video", "pose_video", "face_video")
# Zip entries carry a timestamp; a fixed one keeps equal arrays equal bytes whenever they are written.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_keypoints(path: str | Path, keypoints: np.ndarray, face_boxes: np.ndarray) -> None:
    """Write ``keypoints`` and ``face_boxes`` as float32 arrays in an uncompressed ``.npz`` whose
    bytes depend on the arrays only: fixed entry timestamps, fixed order, no pickle. It is the
    layout ``np.savez`` writes, so it reads with ``np.load``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, array in (("keypoints", keypoints), ("face_boxes", face_boxes)):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)


PERSON_MASK_NAME = "person_mask.npz"


def save_person_masks(path: str | Path, masks: np.ndarray) -> None:
    """Write person masks ``bool (T, H, W)`` as the array ``person_mask`` of a deflated ``.npz`` with a
    fixed entry timestamp (equal masks, equal bytes); it reads with ``np.load``."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.dtype != bool:
        raise ValueError(f"person masks must be bool (T, H, W), got {masks.dtype} {masks.shape}")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(f"{PERSON_MASK_KEY}.npy", date_time=ZIP_EPOCH)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as handle:
            np.lib.format.write_array(handle, np.ascontiguousarray(masks), allow_pickle=False)


def write_person_masks(root: str | Path, folder: str, clip_id: str, masks: np.ndarray) -> PersonMaskFile:
    """Write a finished clip's person masks into its folder (beside the five clip files, outside its
    record) and return the entry for the manifest's ``person_masks`` record."""
    relative = f"{folder}/{PERSON_MASK_NAME}"
    path = resolve_inside(Path(root), relative, clip_id, PERSON_MASK_KEY)
    save_person_masks(path, masks)
    return PersonMaskFile(relative, sha256_file(path))


def save_reference(path: str | Path, frame: np.ndarray) -> None:
    """The reference frame ``uint8 (H, W, 3)`` as a PNG (Pillow's defaults, no metadata)."""
    Image.fromarray(np.ascontiguousarray(frame)).save(path, format="PNG")


class ClipWriter:
    """Write one clip's files into ``root/folder`` and make its record.

    >>> with ClipWriter(root, "clips/walk_01", "walk_01", fps=25.0) as clip:
    ...     clip.write_video("video", frames)  # or stream with ``clip.video("video", w, h)``
    ...     ...
    ...     record = clip.finish(source="walk_01.mp4", license="CC-BY-4.0")

    ``fps`` is written into the videos and recorded as given (an int and a float are different
    JSON, hence different content hashes). Number of frames, width and height are recorded from
    what was written.
    """

    def __init__(self, root: str | Path, folder: str, clip_id: str, fps: float):
        self.root = Path(root)
        self.clip_id = check_clip_id(clip_id, self.root)
        self.folder = folder
        self.fps = fps
        self.final = resolve_inside(self.root, folder, clip_id, "folder")
        self.partial = self.final.with_name(f".{self.final.name}.partial")
        remove_inside(self.root, self.partial)
        self.partial.mkdir(parents=True)
        self._videos: dict[str, VideoWriter] = {}
        self._keypoint_frames: int | None = None
        self._finished = False

    def path(self, field: str) -> Path:
        """Where ``field``'s file is being written (inside the partial folder)."""
        return self.partial / CLIP_FILE_NAMES[field]

    def video(self, field: str, width: int, height: int) -> VideoWriter:
        """A streaming writer for one of the three videos; use it as a context manager."""
        if field not in VIDEO_FIELDS:
            raise ValueError(f"{field!r} is not a video field ({', '.join(VIDEO_FIELDS)})")
        writer = VideoWriter(self.path(field), self.fps, width, height, clip_id=self.clip_id)
        self._videos[field] = writer
        return writer

    def write_video(self, field: str, frames: np.ndarray) -> None:
        """A whole video ``uint8 (T, H, W, 3)`` at once."""
        with self.video(field, frames.shape[2], frames.shape[1]) as writer:
            writer.write(frames)

    def write_keypoints(self, keypoints: np.ndarray, face_boxes: np.ndarray) -> None:
        if keypoints.shape[1:] != (NUM_KEYPOINTS, 3) or face_boxes.shape != (len(keypoints), 4):
            raise ClipError(self.clip_id, self.path("keypoints"), f"keypoints {keypoints.shape} / face boxes {face_boxes.shape}, expected (T, {NUM_KEYPOINTS}, 3) / (T, 4)")
        save_keypoints(self.path("keypoints"), keypoints, face_boxes)
        self._keypoint_frames = len(keypoints)

    def write_reference(self, frame: np.ndarray) -> None:
        save_reference(self.path("reference"), frame)

    def finish(self, **fields) -> ClipRecord:
        """Check that the five files agree, rename the folder into place (replacing an older one)
        and return the record; ``fields`` are the record's other fields (source, license, ...)."""
        missing = [f for f in CLIP_FILE_FIELDS if not self.path(f).is_file()]
        if missing:
            raise ClipError(self.clip_id, self.partial, f"clip files not written: {', '.join(missing)}")
        counts = {f: self._videos[f].num_frames for f in VIDEO_FIELDS}
        counts["keypoints"] = self._keypoint_frames
        if len(set(counts.values())) != 1:
            raise ClipError(self.clip_id, self.partial, f"the clip's files disagree on the number of frames: {counts}")
        video, pose, face = (self._videos[f] for f in VIDEO_FIELDS)
        if (pose.width, pose.height) != (video.width, video.height) or face.width != face.height:
            raise ClipError(self.clip_id, self.partial, f"pose video {pose.width}x{pose.height} and face video {face.width}x{face.height} do not fit the video's {video.width}x{video.height}")
        remove_inside(self.root, self.final)
        os.replace(self.partial, self.final)
        self._finished = True
        files = {f: f"{self.folder}/{CLIP_FILE_NAMES[f]}" for f in CLIP_FILE_FIELDS}
        return make_clip_record(self.root, self.clip_id, files, fps=self.fps, num_frames=video.num_frames, width=video.width, height=video.height, **fields)

    def abort(self) -> None:
        remove_inside(self.root, self.partial)

    def __enter__(self) -> "ClipWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._finished:
            self.abort()


def write_clip(
    root: str | Path,
    folder: str,
    clip_id: str,
    *,
    fps: float,
    video: np.ndarray,
    pose_video: np.ndarray,
    face_video: np.ndarray,
    keypoints: np.ndarray,
    face_boxes: np.ndarray,
    **fields,
) -> ClipRecord:
    """Write a clip held in memory (frame 0 of ``video`` is the reference) and return its record."""
    with ClipWriter(root, folder, clip_id, fps) as clip:
        clip.write_video("video", video)
        clip.write_video("pose_video", pose_video)
        clip.write_video("face_video", face_video)
        clip.write_keypoints(keypoints, face_boxes)
        clip.write_reference(video[0])
        return clip.finish(**fields)
