"""Share splits as Hugging Face datasets: one row per clip, every file's bytes in a binary column.

The round trip is exact: ``import_split(export_split(split))`` writes the same files under the same
relative paths and the same manifest, so the imported split has the original's content hash (and
the import fails if it does not).

The split's own fields (name, version, fps, size, face size, keypoint layout, description, content
hash) are JSON in a ``split_meta`` column of every row, which survives any way of moving the rows
(``save_to_disk``, ``push_to_hub``, parquet); that copy is the one ``import_split`` reads. For people
and tools browsing the dataset, the same JSON is in ``info.description`` and in a sidecar
``everanimate_split.json`` next to a saved dataset.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Iterator

from ..errors import BenchmarkError, ClipError
from ..files import resolve_inside, sha256_file
from .manifest import (
    CLIP_FILE_FIELDS,
    KEYPOINT_LAYOUT,
    MANIFEST_FORMAT,
    MANIFEST_FORMAT_VERSION,
    MANIFEST_NAME,
    ClipRecord,
    Split,
    content_hash,
    load_split,
    parse_clip_record,
    write_manifest,
)

SIDECAR_NAME = "everanimate_split.json"
BYTES_SUFFIX = "_bytes"
# The manifest entry exactly as written (JSON keeps 25 apart from 25.0, which Arrow columns do
# not, and the content hash sees the difference); the typed columns are for browsing and filtering.
RECORD_COLUMN = "record"
META_COLUMN = "split_meta"
# ``resampling`` is a free-form dict whose keys differ between splits; Arrow wants one schema, so
# it travels as a JSON string.
JSON_FIELDS = ("resampling",)


class HFError(BenchmarkError):
    """A dataset that is not an exported split, or that does not round-trip."""


def _datasets():
    try:
        import datasets
    except ImportError as exc:
        raise HFError("Hugging Face export/import needs the 'datasets' package: pip install 'everanimate-bench[hf]'") from exc
    return datasets


def _features(datasets) -> Any:
    columns: dict[str, Any] = {}
    for f in fields(ClipRecord):
        if f.name in JSON_FIELDS or f.type in ("str", str):
            columns[f.name] = datasets.Value("string")
        elif f.type in ("int", int):
            columns[f.name] = datasets.Value("int64")
        elif f.type in ("float", float):
            columns[f.name] = datasets.Value("float64")
        else:
            raise TypeError(f"no Arrow type for ClipRecord.{f.name}: {f.type}")
    columns[RECORD_COLUMN] = datasets.Value("string")
    columns[META_COLUMN] = datasets.Value("string")
    for name in CLIP_FILE_FIELDS:
        # large_binary: a long lossless video is far beyond Arrow's 2 GB-per-chunk binary limit.
        columns[name + BYTES_SUFFIX] = datasets.Value("large_binary")
    return datasets.Features(columns)


def split_meta(split: Split) -> dict:
    """The split's manifest fields, read from its manifest so the values (and thus the content
    hash) are exactly those recorded."""
    try:
        document = json.loads((split.root / MANIFEST_NAME).read_text())
        meta = {key: document[key] for key in ("name", "version", "fps", "width", "height", "face_size", "keypoint_layout")}
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise HFError(f"{split.root}: cannot read the split's manifest: {exc}") from exc
    if content_hash(split.clips, meta) != split.content_hash:
        raise HFError(f"{split.root}: the clips given differ from the manifest's (a --limit view?); export a whole split")
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_FORMAT_VERSION,
        **meta,
        "description": split.description,
        "content_hash": split.content_hash,
    }


def _rows(split: Split, meta_json: str) -> Iterator[dict]:
    for clip in split.clips:
        row: dict[str, Any] = {}
        for key, value in asdict(clip).items():
            row[key] = json.dumps(value, sort_keys=True) if key in JSON_FIELDS else value
        row[RECORD_COLUMN] = json.dumps(asdict(clip), sort_keys=True)
        row[META_COLUMN] = meta_json
        for name in CLIP_FILE_FIELDS:
            row[name + BYTES_SUFFIX] = split.path(clip, name).read_bytes()
        yield row


def export_split(split: Split, out_dir: str | Path) -> Path:
    """Save ``split`` as a ``datasets.Dataset`` folder (``save_to_disk``) and return its path.

    Rows are generated one clip at a time into a cache folder beside ``out_dir``, so a split larger
    than memory exports; that cache is removed afterwards.
    """
    datasets = _datasets()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise HFError(f"{out_dir} is not empty")
    meta = split_meta(split)
    meta_json = json.dumps(meta, sort_keys=True)
    info = datasets.DatasetInfo(description=meta_json, features=_features(datasets))
    cache = out_dir.parent / f".{out_dir.name}.cache"
    try:
        dataset = datasets.Dataset.from_generator(
            _rows,
            gen_kwargs={"split": split, "meta_json": meta_json},
            features=info.features,
            cache_dir=str(cache),
            writer_batch_size=1,
            keep_in_memory=False,
        )
        dataset.info.description = info.description
        dataset.save_to_disk(str(out_dir))
        del dataset
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    (out_dir / SIDECAR_NAME).write_text(json.dumps(meta, indent=1, sort_keys=True))
    return out_dir


def _load(source: str | Path, revision: str | None, hf_split: str):
    datasets = _datasets()
    if Path(source).is_dir():
        dataset = datasets.load_from_disk(str(source))
    else:
        dataset = datasets.load_dataset(str(source), split=hf_split, revision=revision)
    if isinstance(dataset, datasets.DatasetDict):
        if hf_split not in dataset:
            raise HFError(f"{source}: no dataset split {hf_split!r} (has {sorted(dataset)})")
        dataset = dataset[hf_split]
    if len(dataset) == 0 or META_COLUMN not in dataset.column_names:
        raise HFError(f"{source}: no clips with a {META_COLUMN!r} column (was it written by export_split?)")
    metas = set(dataset[META_COLUMN])
    if len(metas) != 1:
        raise HFError(f"{source}: rows disagree about the split they belong to")
    try:
        meta = json.loads(metas.pop())
    except json.JSONDecodeError as exc:
        raise HFError(f"{source}: unreadable {META_COLUMN!r}: {exc}") from exc
    if meta.get("format") != MANIFEST_FORMAT or meta.get("format_version") != MANIFEST_FORMAT_VERSION:
        raise HFError(f"{source}: not an exported split of format {MANIFEST_FORMAT} v{MANIFEST_FORMAT_VERSION}")
    missing = {"name", "version", "fps", "width", "height", "face_size", "content_hash"} - set(meta)
    if missing:
        raise HFError(f"{source}: {META_COLUMN!r} lacks {sorted(missing)}")
    if meta.get("keypoint_layout") != KEYPOINT_LAYOUT:
        raise HFError(f"{source}: keypoint layout {meta.get('keypoint_layout')!r}, expected {KEYPOINT_LAYOUT!r}")
    return dataset, meta


def _safe_target(root: Path, clip_id: str, field_name: str, value: str) -> Path:
    """Paths come from a downloaded dataset: refuse any that would land outside the split folder."""
    target = resolve_inside(root, value, clip_id, field_name)
    if target.name == MANIFEST_NAME:
        raise ClipError(clip_id, value, f"field {field_name!r} would overwrite the manifest")
    return target


def import_split(source: str | Path, out_dir: str | Path, revision: str | None = None, hf_split: str = "train") -> Split:
    """Write a dataset made by :func:`export_split` back into a split folder and load it.

    ``source`` is a folder written by ``save_to_disk`` or a Hub dataset id (``revision`` and
    ``hf_split`` then select what ``load_dataset`` fetches). Every file's sha256 and the split's
    content hash are checked against the exported values.
    """
    dataset, meta = _load(source, revision, hf_split)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise HFError(f"{out_dir} is not empty")
    partial = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        clips = []
        for index, row in enumerate(dataset):
            try:
                raw = json.loads(row[RECORD_COLUMN])
            except (KeyError, TypeError, json.JSONDecodeError) as exc:
                raise HFError(f"{source}: row {index} has no valid {RECORD_COLUMN!r} column: {exc}") from exc
            clip = parse_clip_record(raw, index, f"{source} row {index}")
            for name in CLIP_FILE_FIELDS:
                target = _safe_target(partial, clip.id, name, getattr(clip, name))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(row[name + BYTES_SUFFIX])
                if sha256_file(target) != getattr(clip, f"{name}_sha256"):
                    raise ClipError(clip.id, target, "bytes in the dataset do not match the recorded sha256")
            clips.append(clip)
        args = {key: meta[key] for key in ("name", "version", "fps", "width", "height", "face_size")}
        recomputed = content_hash(clips, {**args, "keypoint_layout": meta["keypoint_layout"]})
        if recomputed != meta["content_hash"]:
            raise HFError(f"{source}: content hash {recomputed} differs from the exported {meta['content_hash']}")
        write_manifest(partial, clips=clips, description=meta.get("description", ""), **args)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(partial, out_dir)
    return load_split(out_dir)
