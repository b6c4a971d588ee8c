"""The synthetic splits on disk: rendered into the cache on first use, loaded from it afterwards.

The cache folder's name carries a hash of the renderer's source, so a changed renderer renders a new
folder instead of reusing clips it might no longer produce. The manifest does not: a clip's
``source`` names the renderer version and the seed only, so the split's content hash changes exactly
when a file's bytes or a field change, and a refactor that leaves the frames alone keeps earlier
results comparable.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from tqdm import tqdm

from ...errors import ManifestError
from ...files import cache_root
from ..clip_files import write_clip, write_person_masks
from ..manifest import MANIFEST_NAME, PersonMasks, Split, load_split, write_manifest
from .render import PERSON_MASK_RULE, render_clip
from .spec import SPLITS, SyntheticSpec

LICENSE = "CC0-1.0 (procedurally generated)"
PACKAGE = Path(__file__).resolve().parent
BENCHMARK = PACKAGE.parents[1]


def renderer_files() -> list[Path]:
    """Every ``.py`` file of this package and the pose drawing (``benchmark/pose.py``), sorted by
    their path inside ``benchmark/``: the source the rendered bytes depend on."""
    files = [*PACKAGE.rglob("*.py"), BENCHMARK / "pose.py"]
    return sorted(files, key=lambda path: path.relative_to(BENCHMARK).as_posix())


def renderer_hash() -> str:
    """Short hash of :func:`renderer_files` (each file's path, length and bytes)."""
    digest = hashlib.sha256()
    for path in renderer_files():
        data = path.read_bytes()
        digest.update(f"{path.relative_to(BENCHMARK).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:12]


def split_folder(name: str, cache_dir: str | Path | None = None) -> Path:
    spec = _spec(name)
    return cache_root(cache_dir) / "splits" / f"{spec.name}-v{spec.version}-{renderer_hash()}"


def _spec(name: str) -> SyntheticSpec:
    if name not in SPLITS:
        raise ManifestError(f"unknown synthetic split {name!r}: one of {sorted(SPLITS)}")
    return SPLITS[name]


def ensure_split(name: str, cache_dir: str | Path | None = None, limit: int | None = None, verify: str = "auto") -> Split:
    """The synthetic split ``name``, rendered into the cache on first use and loaded (validated)
    from it afterwards. The whole split is always rendered, so the cached folder and the split's
    content hash never depend on ``limit``, which only trims the clips returned."""
    spec = _spec(name)
    folder = split_folder(name, cache_dir)
    if not (folder / MANIFEST_NAME).exists():
        render_split(spec, folder)
    return load_split(folder, verify=verify).limited(limit)


def render_split(spec: SyntheticSpec, folder: Path) -> None:
    """Render every clip of ``spec`` into a temporary folder beside ``folder`` and rename it into
    place, so a cached split is never half-written; a concurrent renderer that finished first wins.

    Each clip's exact person masks go beside its five files, recorded in the manifest's
    ``person_masks`` (outside the content hash: the split's hash is that of its frames and fields)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    source = f"synthetic renderer v{spec.version}"
    try:
        records, masks = [], {}
        with tqdm(total=spec.num_clips * spec.num_frames, desc=f"rendering {spec.name}", unit="frame") as bar:
            for index in range(spec.num_clips):
                clip = render_clip(spec, index, progress=bar.update)
                folder_name, clip_id = f"clip{index:03d}", spec.clip_id(index)
                records.append(
                    write_clip(
                        tmp, folder_name, clip_id, fps=spec.fps,
                        video=clip.rgb, pose_video=clip.pose, face_video=clip.face, keypoints=clip.keypoints, face_boxes=clip.face_boxes,
                        source=f"{source}, seed {spec.seed(index)}", license=LICENSE,
                    )  # fmt: skip
                )
                masks[clip_id] = write_person_masks(tmp, folder_name, clip_id, clip.person_mask)
        description = (
            f"Procedurally rendered dance clips ({source}, rendered by renderer source {renderer_hash()}), "
            f"{spec.num_clips} x {spec.num_frames} frames, seeds {spec.seed_offset}-{spec.seed_offset + spec.num_clips - 1}"
        )
        write_manifest(
            tmp, spec.name, spec.version, spec.fps, spec.width, spec.height, spec.face_size, records,
            description=description, person_masks=PersonMasks(PERSON_MASK_RULE, masks),
        )  # fmt: skip
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / MANIFEST_NAME).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
