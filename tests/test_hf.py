"""Hugging Face export and import: the round trip must give back the same split, byte for byte."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("datasets")

from benchmark.errors import ClipError  # noqa: E402
from benchmark.splits.__main__ import main  # noqa: E402
from benchmark.splits.hf import SIDECAR_NAME, HFError, export_split, import_split  # noqa: E402
from benchmark.splits.manifest import CLIP_FILE_FIELDS, MANIFEST_NAME  # noqa: E402


@pytest.fixture(scope="module")
def exported(tiny_split, tmp_path_factory):
    return export_split(tiny_split, tmp_path_factory.mktemp("hf") / "dataset")


def test_round_trip_keeps_hash_and_files(tiny_split, exported, tmp_path):
    assert (exported / SIDECAR_NAME).is_file()
    assert not any(p.name.endswith(".cache") for p in exported.parent.iterdir())
    imported = import_split(exported, tmp_path / "back")
    assert imported.content_hash == tiny_split.content_hash
    assert (imported.name, imported.version, imported.fps, imported.face_size) == (tiny_split.name, tiny_split.version, 25, tiny_split.face_size)
    assert imported.description == tiny_split.description
    assert [c.id for c in imported.clips] == [c.id for c in tiny_split.clips]
    for original, copy in zip(tiny_split.clips, imported.clips):
        assert original == copy
        for field in CLIP_FILE_FIELDS:
            assert imported.path(copy, field).read_bytes() == tiny_split.path(original, field).read_bytes()
    assert json.loads((tmp_path / "back" / MANIFEST_NAME).read_text()) == json.loads((tiny_split.root / MANIFEST_NAME).read_text())


def test_rows_hold_manifest_fields_and_bytes(tiny_split, exported):
    import datasets

    dataset = datasets.load_from_disk(str(exported))
    assert len(dataset) == len(tiny_split.clips)
    row = dataset[0]
    clip = tiny_split.clips[0]
    assert row["id"] == clip.id and row["num_frames"] == clip.num_frames and row["video_sha256"] == clip.video_sha256
    assert row["reference_bytes"] == tiny_split.path(clip, "reference").read_bytes()
    meta = json.loads(dataset.info.description)
    assert meta["content_hash"] == tiny_split.content_hash and meta["width"] == tiny_split.width


def _edited_copy(exported, out, column, edit):
    import datasets

    dataset = datasets.load_from_disk(str(exported))
    dataset.map(lambda row, index: {column: edit(row[column]) if index == 0 else row[column]}, with_indices=True, keep_in_memory=True).save_to_disk(str(out))
    return out


def test_tampered_dataset_is_refused(exported, tmp_path):
    renamed = _edited_copy(exported, tmp_path / "meta", "split_meta", lambda text: json.dumps({**json.loads(text), "version": "2"}))
    with pytest.raises(HFError, match="disagree"):
        import_split(renamed, tmp_path / "out")
    flipped = _edited_copy(exported, tmp_path / "bytes", "reference_bytes", lambda data: data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ClipError, match="sha256"):
        import_split(flipped, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


def test_edited_metadata_breaks_the_content_hash(exported, tmp_path):
    import datasets

    dataset = datasets.load_from_disk(str(exported))
    edited = dataset.map(lambda row: {"split_meta": json.dumps({**json.loads(row["split_meta"]), "fps": 24})}, keep_in_memory=True)
    edited.save_to_disk(str(tmp_path / "fps"))
    with pytest.raises(HFError, match="content hash"):
        import_split(tmp_path / "fps", tmp_path / "out")


def test_limited_view_and_non_empty_targets_are_refused(tiny_split, exported, tmp_path):
    with pytest.raises(HFError, match="whole split"):
        export_split(tiny_split.limited(1), tmp_path / "limited")
    with pytest.raises(HFError, match="not empty"):
        export_split(tiny_split, exported)


def test_cli_export_and_import(tiny_split_dir, tmp_path, capsys):
    assert main(["export-hf", str(tiny_split_dir), str(tmp_path / "ds")]) == 0
    assert main(["import-hf", str(tmp_path / "ds"), str(tmp_path / "back")]) == 0
    out = capsys.readouterr().out
    assert "content hash" in out and "tiny00" in out
