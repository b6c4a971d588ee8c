"""A picture to look at: frames of every clip, spread over the clip so that every view shows, above
the matching pose-control frames (``docs/img/synthetic_strip.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .render import render_clip
from .rig import view_names
from .spec import SPLITS, SyntheticSpec

_STRIP_VIEWS = ("front", "three-quarter", "side", "back", "front", "side", "back", "front")


def save_strip(path: str | Path, spec: SyntheticSpec | None = None, scale: int = 2) -> Path:
    """Save a PNG to look at: per clip of ``spec`` (default: the test split), a row of frames
    spread over the clip that shows every view, and below it the matching pose-control frames."""
    spec = spec or SPLITS["synthetic"]
    rows = []
    for index in range(spec.num_clips):
        clip = render_clip(spec, index)
        views = view_names(clip.yaw)
        picks = []
        for window, wanted in zip(np.array_split(np.arange(spec.num_frames), len(_STRIP_VIEWS)), _STRIP_VIEWS):
            matching = window[views[window] == wanted]
            picks.append(int(matching[len(matching) // 2]) if len(matching) else int(window[len(window) // 2]))
        rows.append(np.concatenate([clip.rgb[p] for p in picks], axis=1))
        rows.append(np.concatenate([clip.pose[p] for p in picks], axis=1))
    image = Image.fromarray(np.concatenate(rows, axis=0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST).save(path)
    return path
