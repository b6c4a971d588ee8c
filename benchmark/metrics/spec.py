"""One :class:`MetricSpec` per metric, and the registry :data:`METRICS` that every part reads.

The harness (which networks to build, how to feed each metric, which rows and drift curves to
report), the clip records (how a clip's value is derived), the results files (CSV columns, the
printed table), ``benchmark.compare`` (default columns) and the ``--metrics`` checks all take what
they need from here, so adding a metric that fits an existing feed is one entry in :data:`METRICS`.

This module imports nothing heavy: ``benchmark.results`` and ``benchmark.compare`` read the
registry without loading torch or the metric networks. Each spec's ``build`` imports its metric
class when the harness calls it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

if TYPE_CHECKING:
    from ..protocol import Protocol

# How the harness feeds a metric, and which records a clip evaluation keeps for it.
#: Per frame, the (generated, ground-truth) frame pair; per-window sums and counts of the frame
#: scores in ``ClipEvaluation.frame_metrics[name]``.
FRAME_PAIRS = "frame_pairs"
#: As :data:`FRAME_PAIRS`, plus the frame's ground-truth face box; frames without one are skipped
#: and counted in ``ClipEvaluation.frames_without_face``.
FACE_PAIRS = "face_pairs"
#: As :data:`FRAME_PAIRS`, plus the frame's ground-truth region named by the spec's ``region``
#: (:data:`PERSON` or :data:`BACKGROUND`, see :mod:`.regions`) as a boolean mask; frames whose region
#: is empty or unknown are skipped and counted in ``ClipEvaluation.frames_without_region[name]``.
REGION_PAIRS = "region_pairs"
#: Consecutive frames and the chunk boundaries; exact integer change totals in ``ClipEvaluation.seam``.
CHUNK_SEAMS = "chunk_seams"
#: VideoMAE features of each aligned V-MAE window; one distance per window in ``ClipEvaluation.vmae``.
VIDEOMAE_WINDOWS = "videomae_windows"
#: Per-frame features of the spec's network pooled over all clips (Fréchet distance); no per-clip
#: value, only ``ClipEvaluation.feature_counts[name]``.
POOLED_FRAME_FEATURES = "pooled_frame_features"
#: VideoMAE window features pooled over all clips (Fréchet distance), like :data:`POOLED_FRAME_FEATURES`.
POOLED_VIDEOMAE_FEATURES = "pooled_videomae_features"

FEEDS = (FRAME_PAIRS, FACE_PAIRS, REGION_PAIRS, CHUNK_SEAMS, VIDEOMAE_WINDOWS, POOLED_FRAME_FEATURES, POOLED_VIDEOMAE_FEATURES)
PER_FRAME_FEEDS = (FRAME_PAIRS, FACE_PAIRS, REGION_PAIRS)
POOLED_FEEDS = (POOLED_FRAME_FEATURES, POOLED_VIDEOMAE_FEATURES)
# Feeds with per-1-second-window records, from which a drift curve can be drawn.
WINDOWED_FEEDS = (FRAME_PAIRS, FACE_PAIRS, REGION_PAIRS, VIDEOMAE_WINDOWS)
# Feeds whose records have a single slot in ClipEvaluation (``seam``, ``vmae``): one metric each.
SINGLE_SLOT_FEEDS = (CHUNK_SEAMS, VIDEOMAE_WINDOWS)

# The two regions of a ground-truth frame a REGION_PAIRS metric scores: the person (the renderer's
# exact mask, or the keypoint box on splits without masks) and the rest of the frame.
PERSON = "person"
BACKGROUND = "background"
REGIONS = (PERSON, BACKGROUND)


@dataclass(frozen=True)
class BuildContext:
    """What a spec's ``build`` gets from the harness to construct its metric state."""

    protocol: "Protocol"
    num_windows: int  # 1-second windows in the longest horizon
    num_frames: int  # frames in the longest horizon
    num_horizons: int
    networks: Mapping[str, object]  # the loaded networks, by network name
    feature_dim: Callable[[str], int]  # output size of a loaded feature network


@dataclass(frozen=True)
class MetricSpec:
    """Everything the benchmark knows about one metric.

    ``feed`` says how the harness feeds it and which records it produces (see the ``FEEDS``
    constants above); ``build`` makes its torchmetrics state for one harness. ``networks`` are the
    harness's network names it needs (a missing one makes the metric unavailable, not zero).
    ``drift`` gives it a per-1-second-window curve; ``csv_column`` its leaderboard column in
    ``summary.csv`` (None: not in the CSV); ``decimals`` the digits every table prints;
    ``compare_by_default`` puts it in ``benchmark.compare``'s default columns; ``min_side`` is the
    smallest frame side it can score; ``undefined_reason`` says why no clip has a value; ``region``
    is the ground-truth region a :data:`REGION_PAIRS` metric scores (:data:`REGIONS`).
    """

    name: str
    label: str
    higher_is_better: bool
    feed: str
    build: Callable[[BuildContext], Any] = field(repr=False, compare=False)
    description: str
    unit: str = ""
    networks: tuple[str, ...] = ()
    drift: bool = False
    csv_column: str | None = None
    decimals: int = 4
    compare_by_default: bool = True
    min_side: int = 1
    undefined_reason: str = "no clip has a value"
    region: str | None = None

    def __post_init__(self) -> None:
        if self.feed not in FEEDS:
            raise ValueError(f"metric {self.name!r}: unknown feed {self.feed!r}; choose from {', '.join(FEEDS)}")
        if (self.feed == REGION_PAIRS) != (self.region is not None) or (self.region is not None and self.region not in REGIONS):
            raise ValueError(f"metric {self.name!r}: a {REGION_PAIRS} metric names one region of {REGIONS} and no other feed names one, got feed {self.feed!r}, region {self.region!r}")
        if self.drift and self.feed not in WINDOWED_FEEDS:
            raise ValueError(f"metric {self.name!r}: feed {self.feed!r} keeps no per-window records, so it cannot have a drift curve")
        if self.feed == POOLED_FRAME_FEATURES and len(self.networks) != 1:
            raise ValueError(f"metric {self.name!r}: pooled frame features come from exactly one network, got {self.networks}")

    @property
    def pooled(self) -> bool:
        """Pooled over all clips (one value per horizon, no standard error), not a mean over clips."""
        return self.feed in POOLED_FEEDS

    @property
    def per_frame(self) -> bool:
        return self.feed in PER_FRAME_FEEDS

    @property
    def needs_face_boxes(self) -> bool:
        return self.feed == FACE_PAIRS

    @property
    def needs_person_regions(self) -> bool:
        return self.feed == REGION_PAIRS

    @property
    def needs_chunk_boundaries(self) -> bool:
        return self.feed == CHUNK_SEAMS

    def format(self, value: float | None, stderr: float | None = None) -> str:
        """``value ± stderr`` at this metric's precision; ``n/a`` for no value."""
        if value is None:
            return "n/a"
        text = _fixed(value, self.decimals)
        return text if stderr is None else f"{text} ± {_fixed(stderr, self.decimals)}"

    def describe(self) -> dict:
        """The spec as JSON (without ``build``), for records of what was computed."""
        return {
            "name": self.name,
            "label": self.label,
            "higher_is_better": self.higher_is_better,
            "unit": self.unit,
            "description": self.description,
            "feed": self.feed,
            "networks": list(self.networks),
            "drift": self.drift,
            "pooled": self.pooled,
            **({"region": self.region} if self.region is not None else {}),
        }


def _fixed(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}" if math.isfinite(value) else str(value)


# ---- how each metric is built (imports happen only when a harness is built) ----------------------
def _psnr(ctx: BuildContext):
    from .frame import PSNR

    return PSNR(ctx.num_windows, cap_db=ctx.protocol.psnr_cap_db)


def _ssim(ctx: BuildContext):
    from .frame import SSIM

    return SSIM(ctx.num_windows)


def _lpips(ctx: BuildContext):
    from .frame import LPIPS

    return LPIPS(ctx.num_windows, ctx.networks["lpips"])


def _fid(ctx: BuildContext):
    from .frechet import FrechetDistance

    return FrechetDistance(ctx.num_horizons, ctx.feature_dim("inception"))


def _vmae(ctx: BuildContext):
    from .temporal import VideoMAEDistance

    return VideoMAEDistance(ctx.num_frames // ctx.protocol.vmae_window_frames)


def _f_psnr(ctx: BuildContext):
    from .frame import FacePSNR

    return FacePSNR(ctx.num_windows, cap_db=ctx.protocol.psnr_cap_db)


def _fvd_videomae(ctx: BuildContext):
    from .frechet import FrechetDistance

    return FrechetDistance(ctx.num_horizons, ctx.feature_dim("videomae"))


def _seam(ctx: BuildContext):
    from .temporal import SeamScore

    return SeamScore(ctx.num_windows)


def _identity(ctx: BuildContext):
    from .identity import IdentitySimilarity

    return IdentitySimilarity(ctx.num_windows, ctx.networks["arcface"])


def _region_psnr(ctx: BuildContext):
    from .regions import RegionPSNR

    return RegionPSNR(ctx.num_windows, cap_db=ctx.protocol.psnr_cap_db)


def _region_ssim(ctx: BuildContext):
    from .regions import RegionSSIM

    return RegionSSIM(ctx.num_windows)


# The frame side below which SSIM's 11-tap Gaussian window does not fit (radius 5, frame.SSIM_RADIUS).
SSIM_MIN_SIDE = 11

_FACE_MISSING = "no frame within the horizon has a face box"
_REGION_PSNR = "PSNR over the ground truth's {} pixels ({}), all channels, MAX 255, capped like psnr; frames where it is empty are skipped"
_REGION_SSIM = (
    "SSIM map with the Gaussian window restricted to the ground truth's {} pixels ({}; weights renormalised), "
    "averaged over those pixels where the window fits in the frame, then channels; frames where it is empty are skipped"
)
_REGION_MISSING = "no frame within the horizon has {} pixels (or a known person region)"
_PERSON_PIXELS = "the renderer's exact mask, else the keypoint box"
_BACKGROUND_PIXELS = "outside the person region"

# In leaderboard (CSV) order.
METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            name="psnr", label="PSNR", unit="dB", higher_is_better=True, feed=FRAME_PAIRS, build=_psnr,
            description="PSNR per frame, RGB uint8, MAX 255, capped at the protocol's psnr_cap_db; mean over frames, then clips",
            drift=True, csv_column="psnr", decimals=2,
        ),
        MetricSpec(
            name="ssim", label="SSIM", higher_is_better=True, feed=FRAME_PAIRS, build=_ssim,
            description="SSIM per frame, RGB in [0,1], Gaussian window 11 / sigma 1.5, K1 0.01, K2 0.03 (scikit-image convention)",
            drift=True, csv_column="ssim", decimals=4, min_side=SSIM_MIN_SIDE,
        ),
        MetricSpec(
            name="lpips", label="LPIPS", higher_is_better=False, feed=FRAME_PAIRS, build=_lpips, networks=("lpips",),
            description="LPIPS v0.1 (AlexNet by default) per frame at native resolution, inputs in [-1,1]",
            drift=True, csv_column="lpips", decimals=4,
        ),
        MetricSpec(
            name="fid", label="FID", higher_is_better=False, feed=POOLED_FRAME_FEATURES, build=_fid, networks=("inception",),
            description="FID, pytorch-fid InceptionV3 pool3 at 299x299, all frames in [0,H) of all clips, generated vs ground truth",
            csv_column="fid", decimals=2,
        ),
        MetricSpec(
            name="vmae", label="V-MAE", higher_is_better=False, feed=VIDEOMAE_WINDOWS, build=_vmae, networks=("videomae",),
            description="1 - cosine of mean-pooled VideoMAE features per aligned 16-frame window; mean over windows, then clips",
            drift=True, csv_column="vmae", decimals=4, undefined_reason="no complete V-MAE window fits within the horizon",
        ),
        MetricSpec(
            name="f_psnr", label="F-PSNR", unit="dB", higher_is_better=True, feed=FACE_PAIRS, build=_f_psnr,
            description="PSNR over the ground-truth face box (frames without a face box are skipped)",
            drift=True, csv_column="f_psnr", decimals=2, undefined_reason=_FACE_MISSING,
        ),
        MetricSpec(
            name="fvd_videomae", label="FVD-VideoMAE", higher_is_better=False, feed=POOLED_VIDEOMAE_FEATURES, build=_fvd_videomae,
            networks=("videomae",),
            description="Fréchet distance of VideoMAE window features pooled over clips, generated vs ground truth",
            csv_column="fvd_videomae", decimals=2, compare_by_default=False,
        ),
        MetricSpec(
            name="seam", label="seam", higher_is_better=False, feed=CHUNK_SEAMS, build=_seam,
            description="(boundary / inner frame-to-frame change) of generated over ground truth; 1.0 = no extra flicker at chunk seams",
            csv_column="seam", decimals=2,
            undefined_reason="no clip has a chunk boundary inside the horizon with ground-truth motion at the boundary and within chunks",
        ),
        MetricSpec(
            name="identity", label="identity", higher_is_better=True, feed=FACE_PAIRS, build=_identity, networks=("arcface",),
            description="ArcFace cosine similarity of face crops at the ground-truth face box",
            drift=True, csv_column="identity", decimals=4, compare_by_default=False, undefined_reason=_FACE_MISSING,
        ),
        MetricSpec(
            name="background_psnr", label="background PSNR", unit="dB", higher_is_better=True, feed=REGION_PAIRS, build=_region_psnr,
            region=BACKGROUND, description=_REGION_PSNR.format(BACKGROUND, _BACKGROUND_PIXELS),
            drift=True, csv_column="background_psnr", decimals=2, compare_by_default=False, undefined_reason=_REGION_MISSING.format(BACKGROUND),
        ),
        MetricSpec(
            name="background_ssim", label="background SSIM", higher_is_better=True, feed=REGION_PAIRS, build=_region_ssim,
            region=BACKGROUND, description=_REGION_SSIM.format(BACKGROUND, _BACKGROUND_PIXELS),
            drift=True, csv_column="background_ssim", decimals=4, compare_by_default=False, min_side=SSIM_MIN_SIDE,
            undefined_reason=_REGION_MISSING.format(BACKGROUND),
        ),
        MetricSpec(
            name="person_psnr", label="person PSNR", unit="dB", higher_is_better=True, feed=REGION_PAIRS, build=_region_psnr,
            region=PERSON, description=_REGION_PSNR.format(PERSON, _PERSON_PIXELS),
            drift=True, csv_column="person_psnr", decimals=2, compare_by_default=False, undefined_reason=_REGION_MISSING.format(PERSON),
        ),
        MetricSpec(
            name="person_ssim", label="person SSIM", higher_is_better=True, feed=REGION_PAIRS, build=_region_ssim,
            region=PERSON, description=_REGION_SSIM.format(PERSON, _PERSON_PIXELS),
            drift=True, csv_column="person_ssim", decimals=4, compare_by_default=False, min_side=SSIM_MIN_SIDE,
            undefined_reason=_REGION_MISSING.format(PERSON),
        ),
    )
}


def unknown_metrics(names: Iterable[str], registry: Mapping[str, MetricSpec] | None = None) -> list[str]:
    """The names in ``names`` that are not registered metrics."""
    registry = METRICS if registry is None else registry
    return [name for name in names if name not in registry]


def check_registry(registry: Mapping[str, MetricSpec] | None = None) -> None:
    """Raise ``ValueError`` for a registry the harness and the records cannot serve: a key that is
    not its spec's name, a CSV column used twice, or two metrics in a single-slot feed."""
    registry = METRICS if registry is None else registry
    for key, spec in registry.items():
        if key != spec.name:
            raise ValueError(f"metric registered as {key!r} is named {spec.name!r}")
    columns = [spec.csv_column for spec in registry.values() if spec.csv_column]
    if len(set(columns)) != len(columns):
        raise ValueError(f"two metrics share a CSV column: {columns}")
    for feed in SINGLE_SLOT_FEEDS:
        users = [spec.name for spec in registry.values() if spec.feed == feed]
        if len(users) > 1:
            raise ValueError(f"clip records hold one {feed} metric, the registry has {users}")
