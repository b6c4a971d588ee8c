"""Test splits: what they are on disk, where they come from, and how they travel.

Imports run one way, from the producers down to the data model, never back:

- ``manifest``: the records, field types, loading and verification, writing, content hash; it
  imports nothing else of this package;
- ``clip_files``: one clip's folder of files, written the same way by every producer;
- ``synthetic``: the procedurally rendered splits (a package of its own, see its docstring);
- ``registry``: split names (``synthetic``, ``synthetic-train``, or a folder) to loaded splits;
- ``sources``, ``pose_estimation``, ``supplied_keypoints`` and ``build``: splits from one's own videos;
- ``hf``: export to and import from Hugging Face datasets;
- ``__main__``: ``python -m benchmark.splits {build,info,verify,export-hf,import-hf}``.

This file imports nothing, so reading a manifest never loads the renderer or the builder.
"""
