"""The evaluation harness: one streaming pass per clip for every metric and every horizon.

Each clip's two videos are read once, in batches of whole 1-second windows. Every network sees one
window at a time (a fixed batch composition, so a frame's features never depend on ``batch_frames``
or on which horizons were requested). Per-frame metrics keep per-window sums; pooled metrics
(FID, FVD-VideoMAE) keep one fixed-point accumulator per requested horizon. Memory is bounded by a
batch of frames, the networks and those accumulators, whatever the horizon.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import torch

from .. import distributed
from ..errors import ClipError
from ..protocol import Protocol
from ..weights import WeightsConfig
from .frame import WindowedFrameMetric, face_regions
from .frechet import FIXED_POINT_BITS, ClipMoments, FixedPointMoments, FrechetDistance
from .identity import build_arcface
from .networks import (
    RANDOM_WEIGHTS_NOTE,
    LoadedNetwork,
    NetworkUnavailable,
    as_videomae_features,
    build_inception,
    build_lpips,
    build_videomae,
)
from .pixels import as_uint8_frames, to_unit_float
from .records import AggregateResult, ClipEvaluation, DriftPoint, HorizonMetric, WindowSeries, mean_and_stderr
from .regions import PersonRegions, region_masks
from .spec import (
    CHUNK_SEAMS,
    METRICS,
    POOLED_FRAME_FEATURES,
    POOLED_VIDEOMAE_FEATURES,
    VIDEOMAE_WINDOWS,
    BuildContext,
    MetricSpec,
    check_registry,
    unknown_metrics,
)
from .temporal import SeamScore, VideoMAEDistance


@dataclass
class _ClipRun:
    """Per-clip working state that is not a metric state: pooled-feature moments and their
    per-horizon snapshots, pending V-MAE frames, frames without a face per window, person regions."""

    moments: dict[str, ClipMoments]
    snapshots: dict[str, dict[int, FixedPointMoments]]
    vmae_pending: list[torch.Tensor | None] = field(default_factory=lambda: [None, None])
    next_vmae_window: int = 0
    frames_without_face: list[int] = field(default_factory=list)
    person_regions: PersonRegions | None = None


class EvaluationHarness:
    """Scores generated clips against ground truth at several horizons in one pass per clip.

    ``metrics`` is a subset of the registry :data:`~benchmark.metrics.spec.METRICS` (None = all).
    Metrics whose network or weights are missing are listed in ``unavailable`` with the reason and
    reported with value None; so are the metrics the caller names in ``unavailable`` (e.g. the seam
    score of videos whose chunk structure is unknown). ``networks`` may supply prebuilt modules by
    network name (``lpips``, ``inception``, ``videomae``, ``arcface``), e.g. tiny random ones in
    tests; their rows are marked as such. ``batch_frames`` (default: one window, 25 frames at
    25 fps) is how many frames are taken from the iterators per step; it must be a multiple of the
    window and never changes a number.
    """

    def __init__(
        self,
        protocol: Protocol,
        horizons_s: Iterable[float] | None = None,
        metrics: Iterable[str] | None = None,
        device: str | torch.device = "cpu",
        weights: WeightsConfig | None = None,
        batch_frames: int | None = None,
        lpips_net: str = "alex",
        networks: Mapping[str, object] | None = None,
        unavailable: Mapping[str, str] | None = None,
    ) -> None:
        check_registry()
        self.protocol = protocol
        self.device = torch.device(device)
        self.weights = weights if weights is not None else WeightsConfig.from_env()
        self.window_frames = protocol.window_frames
        self.horizons_s: tuple[float, ...] = tuple(sorted({float(h) for h in (horizons_s or protocol.horizons_s)}))
        self.horizon_frames: tuple[int, ...] = tuple(protocol.horizon_frames(h) for h in self.horizons_s)
        for horizon, frames in zip(self.horizons_s, self.horizon_frames):
            if frames <= 0 or frames % self.window_frames:
                raise ValueError(f"horizon {horizon:g} s ({frames} frames) is not a positive whole number of {self.window_frames}-frame windows")
        batch_frames = batch_frames or self.window_frames
        if batch_frames <= 0 or batch_frames % self.window_frames:
            raise ValueError(f"batch_frames must be a positive multiple of the window ({self.window_frames} frames), got {batch_frames}")
        self.batch_frames = batch_frames
        self.num_frames = max(self.horizon_frames)
        self.num_windows = self.num_frames // self.window_frames
        requested = list(dict.fromkeys(metrics)) if metrics else list(METRICS)
        unknown = unknown_metrics([*requested, *(unavailable or {})])
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
        # Registry order, whatever order they were asked in.
        self.specs: dict[str, MetricSpec] = {name: spec for name, spec in METRICS.items() if name in requested}
        for spec in self.specs.values():
            if min(protocol.width, protocol.height) < spec.min_side:
                raise ValueError(f"{spec.label} needs frames of at least {spec.min_side} pixels per side, the protocol has {protocol.width}x{protocol.height}")
        self.unavailable: dict[str, str] = {name: reason for name, reason in (unavailable or {}).items() if name in self.specs}
        self.network_sources: dict[str, str] = {}
        self.random_weights: set[str] = set()
        self._synced = False
        self._build_networks(lpips_net, dict(networks or {}))
        self._build_metrics()

    # ---- construction -----------------------------------------------------------------------
    def _network_builders(self, lpips_net: str) -> dict[str, Callable[[], LoadedNetwork]]:
        """How this harness loads each network it knows, in the order they are built."""

        def arcface() -> LoadedNetwork:
            embedder, source = build_arcface(self.weights)
            return LoadedNetwork(embedder, source)  # type: ignore[arg-type]

        return {
            "lpips": lambda: build_lpips(self.weights, lpips_net),
            "inception": lambda: build_inception(self.weights),
            "videomae": lambda: build_videomae(self.weights),
            "arcface": arcface,
        }

    def _build_networks(self, lpips_net: str, supplied: dict) -> None:
        """Load every network a requested metric needs; a network that cannot be loaded makes its
        metrics unavailable with the reason."""
        builders = self._network_builders(lpips_net)
        needed = dict.fromkeys(network for spec in self.specs.values() for network in spec.networks)
        wanted = [n for n in builders if n in needed] + [n for n in needed if n not in builders]
        self._networks: dict[str, object] = {}
        for network in wanted:
            users = [name for name, spec in self.specs.items() if network in spec.networks and name not in self.unavailable]
            if not users:
                continue
            if network in supplied:
                loaded = LoadedNetwork(supplied[network], "supplied by the caller (test/performance network, not comparable)", random_weights=True)
            elif network in builders:
                try:
                    loaded = builders[network]()
                except NetworkUnavailable as exc:
                    for metric in users:
                        self.unavailable[metric] = str(exc)
                    continue
            else:
                raise ValueError(f"metric(s) {users} need network {network!r}, which the harness cannot load; pass it in networks=")
            for metric in users:
                self.network_sources[metric] = loaded.source
                if loaded.random_weights:
                    self.random_weights.add(metric)
            module = loaded.module
            module = module.to(self.device).eval() if isinstance(module, torch.nn.Module) else module
            if network == "videomae":
                module = self._videomae_features(module)
            self._networks[network] = module

    def _videomae_features(self, module: object):
        """VideoMAE wrapped to take the protocol's V-MAE windows and return one feature vector each."""
        features = as_videomae_features(module).to(self.device)
        if features.num_frames != self.protocol.vmae_window_frames:
            raise ValueError(f"VideoMAE takes {features.num_frames} frames, the protocol's V-MAE window is {self.protocol.vmae_window_frames}")
        return features

    def _active(self, metric: str) -> bool:
        return metric in self.specs and metric not in self.unavailable

    def _build_metrics(self) -> None:
        context = BuildContext(
            protocol=self.protocol,
            num_windows=self.num_windows,
            num_frames=self.num_frames,
            num_horizons=len(self.horizons_s),
            networks=self._networks,
            feature_dim=lambda network: self._feature_dim(self._networks[network]),
        )
        built = {name: spec.build(context).to(self.device) for name, spec in self.specs.items() if self._active(name)}
        feeds = {name: self.specs[name].feed for name in built}
        self._frame_metrics: dict[str, WindowedFrameMetric] = {name: m for name, m in built.items() if self.specs[name].per_frame}
        self._seam: SeamScore | None = next((m for name, m in built.items() if feeds[name] == CHUNK_SEAMS), None)
        self._vmae: VideoMAEDistance | None = next((m for name, m in built.items() if feeds[name] == VIDEOMAE_WINDOWS), None)
        self._pooled: dict[str, FrechetDistance] = {name: m for name, m in built.items() if self.specs[name].pooled}
        self._pooled_frame_features = [name for name in self._pooled if feeds[name] == POOLED_FRAME_FEATURES]
        self._pooled_videomae_features = [name for name in self._pooled if feeds[name] == POOLED_VIDEOMAE_FEATURES]
        self._wants_face_boxes = any(spec.needs_face_boxes for spec in self.specs.values())
        self._region_metrics = [name for name in self._frame_metrics if self.specs[name].needs_person_regions]

    def _feature_dim(self, network: object) -> int:
        """Declared ``feature_dim``, or measured with one black frame (stub networks)."""
        if getattr(network, "feature_dim", None):
            return int(network.feature_dim)  # type: ignore[union-attr]
        probe = torch.zeros(1, 3, self.protocol.height, self.protocol.width, device=self.device)
        with torch.no_grad():
            return int(network(probe).shape[-1])  # type: ignore[operator]

    @property
    def needs_videomae(self) -> bool:
        return self._vmae is not None or bool(self._pooled_videomae_features)

    @property
    def needs_person_regions(self) -> bool:
        """Whether a metric being computed scores the person or background region (so callers load
        the clips' person regions)."""
        return bool(self._region_metrics)

    # ---- one clip ---------------------------------------------------------------------------
    def evaluate_clip(
        self,
        clip_id: str,
        generated: Iterable[torch.Tensor],
        ground_truth: Iterable[torch.Tensor],
        face_boxes: np.ndarray | None = None,
        chunk_boundaries: Iterable[int] | None = None,
        person_regions: PersonRegions | None = None,
    ) -> ClipEvaluation:
        """Read exactly ``num_frames`` frames (the longest horizon) from each iterator of
        ``uint8 (B, H, W, 3)`` batches and score them. ``person_regions`` are the ground truth's
        person regions (None: unknown, and the region metrics skip every frame). Raises
        :class:`ClipError` when a video is short, has the wrong size or invalid pixels, or
        ``face_boxes`` or ``person_regions`` do not cover the frames."""
        if self._synced:
            raise RuntimeError("this harness has been synced; evaluate every clip before sync()")
        boxes = self._checked_face_boxes(clip_id, face_boxes)
        if person_regions is not None:
            try:
                person_regions.check(self.num_frames, self.protocol.width, self.protocol.height)
            except ValueError as exc:
                raise ClipError(clip_id, None, str(exc)) from exc
        boundaries = frozenset(int(b) for b in (chunk_boundaries or ()))
        for metric in self._clip_metrics():
            metric.reset()
        run = _ClipRun(
            moments={name: ClipMoments(metric.dim, self.device) for name, metric in self._pooled.items()},
            snapshots={name: {} for name in self._pooled},
            frames_without_face=[0] * self.num_windows,
            person_regions=person_regions,
        )
        try:
            with torch.no_grad(), self._precise_math():
                for first_frame, gen, gt in self._frame_batches(clip_id, iter(generated), iter(ground_truth)):
                    for offset in range(0, len(gen), self.window_frames):
                        window = (first_frame + offset) // self.window_frames
                        stop = offset + self.window_frames
                        self._evaluate_window(run, window, gen[offset:stop], gt[offset:stop], boxes, boundaries)
        finally:
            for source in (generated, ground_truth):
                close = getattr(source, "close", None)
                if callable(close):
                    close()
        return self._finish_clip(clip_id, run)

    def _clip_metrics(self) -> list:
        return [m for m in (*self._frame_metrics.values(), self._seam, self._vmae) if m is not None]

    def _checked_face_boxes(self, clip_id: str, face_boxes: np.ndarray | None) -> np.ndarray | None:
        if face_boxes is None:
            return None
        boxes = np.asarray(face_boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] < self.num_frames:
            raise ClipError(clip_id, None, f"face boxes must be (T >= {self.num_frames}, 4), got {boxes.shape}")
        return boxes

    def _rechunk(self, clip_id: str, side: str, source: Iterator) -> Iterator[torch.Tensor]:
        """Batches of ``batch_frames`` frames (whole windows) holding exactly the first ``num_frames``
        frames of ``source``; stops pulling from ``source`` once it has them."""
        pending: list[torch.Tensor] = []
        pending_frames = delivered = 0
        size = (self.protocol.height, self.protocol.width)
        for batch in source:
            try:
                batch = as_uint8_frames(torch.as_tensor(batch))
            except ValueError as exc:
                raise ClipError(clip_id, None, f"{side} frames: {exc}") from exc
            if tuple(batch.shape[1:3]) != size:
                raise ClipError(clip_id, None, f"{side} frames are {batch.shape[2]}x{batch.shape[1]}, the protocol needs {size[1]}x{size[0]}")
            pending.append(batch[: self.num_frames - delivered - pending_frames])
            pending_frames += len(pending[-1])
            while pending_frames >= self.batch_frames or (pending_frames and delivered + pending_frames == self.num_frames):
                joined = torch.cat(pending) if len(pending) > 1 else pending[0]
                take = min(self.batch_frames, pending_frames)
                yield joined[:take]
                pending = [joined[take:]] if pending_frames > take else []
                pending_frames -= take
                delivered += take
            if delivered == self.num_frames:
                return
        raise ClipError(clip_id, None, f"{side} video ended after {delivered + pending_frames} frames; {self.num_frames} are needed (horizon {max(self.horizons_s):g} s)")

    def _frame_batches(self, clip_id: str, generated: Iterator, ground_truth: Iterator) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        first_frame = 0
        for gen, gt in zip(self._rechunk(clip_id, "generated", generated), self._rechunk(clip_id, "ground-truth", ground_truth)):
            yield first_frame, gen.to(self.device, non_blocking=True), gt.to(self.device, non_blocking=True)
            first_frame += len(gen)

    @contextmanager
    def _precise_math(self) -> Iterator[None]:
        """Full float32 on CUDA: TF32 convolutions/matmuls would move LPIPS/FID values."""
        if self.device.type != "cuda":
            yield
            return
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    def _evaluate_window(self, run: _ClipRun, window: int, gen: torch.Tensor, gt: torch.Tensor, boxes: np.ndarray | None, boundaries: frozenset[int]) -> None:
        first = window * self.window_frames
        window_boxes = boxes[first : first + len(gen)] if boxes is not None else None
        if self._wants_face_boxes:
            regions = face_regions(window_boxes, len(gen), self.protocol.width, self.protocol.height)
            run.frames_without_face[window] = sum(region is None for region in regions)
        masks = {}
        if self._region_metrics:
            region_of = region_masks(run.person_regions, first, first + len(gen), self.protocol.width, self.protocol.height)
            masks = {region: torch.from_numpy(mask).to(self.device) for region, mask in region_of.items()}
        for name, metric in self._frame_metrics.items():
            spec = self.specs[name]
            if spec.needs_face_boxes:
                metric.update(gen, gt, window, window_boxes)
            elif spec.needs_person_regions:
                metric.update(gen, gt, window, masks[spec.region])
            else:
                metric.update(gen, gt, window)
        if self._seam is not None:
            self._seam.update(gen, gt, window, first, boundaries)
        if self._pooled_frame_features:
            self._add_frame_features(run, first, gen, gt)
        if self.needs_videomae:
            self._add_videomae_windows(run, gen, gt)
        end = first + len(gen)
        for index, horizon_end in enumerate(self.horizon_frames):
            if horizon_end == end:
                for name, moments in run.moments.items():
                    run.snapshots[name][index] = moments.snapshot()

    def _add_frame_features(self, run: _ClipRun, first: int, gen: torch.Tensor, gt: torch.Tensor) -> None:
        """Per-frame features of every pooled frame-feature metric (every ``fid_frame_stride``-th
        frame), one forward pass per network over the window's generated and ground-truth frames."""
        stride = self.protocol.fid_frame_stride
        keep = [i for i in range(len(gen)) if (first + i) % stride == 0]
        if not keep:
            return
        features_of: dict[str, torch.Tensor] = {}
        for name in self._pooled_frame_features:
            network = self.specs[name].networks[0]
            if network not in features_of:
                features_of[network] = self._networks[network](to_unit_float(torch.cat([gen[keep], gt[keep]])))  # type: ignore[operator]
            features = features_of[network]
            run.moments[name].add(0, features[: len(keep)])
            run.moments[name].add(1, features[len(keep) :])

    def _add_videomae_windows(self, run: _ClipRun, gen: torch.Tensor, gt: torch.Tensor) -> None:
        """Preprocess the window's frames and score every complete 16-frame V-MAE window."""
        size = self.protocol.vmae_window_frames
        videomae = self._networks["videomae"]
        for side, frames in enumerate((gen, gt)):
            prepared = videomae.preprocess(frames)  # type: ignore[attr-defined]
            pending = run.vmae_pending[side]
            run.vmae_pending[side] = prepared if pending is None else torch.cat([pending, prepared])
        while len(run.vmae_pending[0]) >= size:  # type: ignore[arg-type]
            clips = torch.stack([run.vmae_pending[0][:size], run.vmae_pending[1][:size]])  # type: ignore[index]
            run.vmae_pending = [run.vmae_pending[0][size:], run.vmae_pending[1][size:]]  # type: ignore[index]
            features = videomae(clips)  # type: ignore[operator]
            if self._vmae is not None:
                self._vmae.update(features[0], features[1], run.next_vmae_window)
            for name in self._pooled_videomae_features:
                run.moments[name].add(0, features[0:1])
                run.moments[name].add(1, features[1:2])
            run.next_vmae_window += 1

    def _finish_clip(self, clip_id: str, run: _ClipRun) -> ClipEvaluation:
        frame_metrics, frames_without_region = {}, {}
        for name, metric in self._frame_metrics.items():
            computed = _compute(metric)
            frame_metrics[name] = WindowSeries(sums=computed[0], counts=computed[1])
            if name in self._region_metrics:
                frames_without_region[name] = computed[2]
        evaluation = ClipEvaluation(
            clip_id=clip_id,
            fps=float(self.protocol.fps),
            window_frames=self.window_frames,
            num_frames=self.num_frames,
            vmae_window_frames=self.protocol.vmae_window_frames,
            frame_metrics=frame_metrics,
            frames_without_face=run.frames_without_face if self._wants_face_boxes else None,
            frames_without_region=frames_without_region,
            person_region=run.person_regions.source if self._region_metrics and run.person_regions is not None else None,
            vmae=_compute(self._vmae) if self._vmae is not None else None,
            seam=self._seam.compute() if self._seam is not None else None,
        )
        for name, metric in self._pooled.items():
            snapshots = run.snapshots[name]
            for index, moments in sorted(snapshots.items()):
                metric.update(index, moments)
            evaluation.feature_counts[name] = {_horizon_key(self.horizons_s[i]): int(m.count[0]) for i, m in sorted(snapshots.items())}
        return evaluation

    # ---- across processes -------------------------------------------------------------------
    def sync(self) -> None:
        """Sum the pooled FID/FVD statistics over all processes (exact int64). Call once on every
        process after its last clip and before ``aggregate``; a no-op in a single process."""
        if self._synced or not distributed.is_distributed():
            return
        for metric in self._pooled.values():
            metric.all_reduce()
        self._synced = True

    def pooled_statistics(self, metric: str, horizon_s: float, side: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Mean, covariance and sample count behind a pooled metric ("fid", "fvd_videomae") at a
        horizon; ``side`` 0 is generated, 1 ground truth."""
        pooled = self._pooled.get(metric)
        if pooled is None:
            raise KeyError(f"{metric} is not a pooled metric of this harness")
        return pooled.statistics(self.horizons_s.index(float(horizon_s)), side)

    # ---- split results ----------------------------------------------------------------------
    def aggregate(self, evaluations: Iterable[ClipEvaluation], failed_clips: Mapping[str, str] | None = None) -> AggregateResult:
        """Every reported number, from per-clip records (in clip-id order) and the pooled statistics.

        Failed clips are excluded. Split values are means over clips with a defined value, with the
        standard error over clips; pooled metrics (FID/FVD) have no standard error.
        """
        failed = dict(failed_clips or {})
        clips = sorted((ev for ev in evaluations if ev.clip_id not in failed), key=lambda ev: ev.clip_id)
        ids = [ev.clip_id for ev in clips]
        if len(set(ids)) != len(ids):
            raise ValueError("aggregate() got the same clip more than once")
        for ev in clips:
            if ev.window_frames != self.window_frames or ev.num_frames < self.num_frames:
                raise ValueError(f"clip {ev.clip_id!r} was evaluated with {ev.window_frames}-frame windows over {ev.num_frames} frames; this harness needs {self.window_frames} over {self.num_frames}")
        if distributed.is_distributed() and not self._synced and self._pooled:
            raise RuntimeError("call harness.sync() on every process before aggregate()")
        pooled_values = {name: _compute(metric) for name, metric in self._pooled.items()}
        rows = [self._horizon_row(name, index, clips, pooled_values) for index in range(len(self.horizons_s)) for name in self.specs]
        return AggregateResult(horizons=rows, drift=self._drift(clips), num_clips=len(clips), failed_clips=failed, specs=dict(self.specs))

    def _horizon_row(self, name: str, index: int, clips: list[ClipEvaluation], pooled_values: dict[str, list[float | None]]) -> HorizonMetric:
        horizon = self.horizons_s[index]
        spec = self.specs[name]
        row = HorizonMetric(horizon_s=horizon, metric=name, value=None, stderr=None, num_clips=0, higher_is_better=spec.higher_is_better)
        if name in self.unavailable:
            row.unavailable_reason = self.unavailable[name]
            return row
        if name in self.network_sources:
            row.extra["network"] = self.network_sources[name]
        if name in self.random_weights:
            row.extra["weights"] = RANDOM_WEIGHTS_NOTE
        if spec.pooled:
            return self._pooled_row(row, index, clips, pooled_values[name])
        if not clips:
            row.unavailable_reason = "no clip was evaluated successfully"
            return row
        values = [value for value in (ev.clip_value(name, horizon) for ev in clips) if value is not None]
        row.value, row.stderr = mean_and_stderr(values)
        row.num_clips = len(values)
        if len(values) < len(clips):
            row.extra["clips_without_value"] = len(clips) - len(values)
        if spec.needs_face_boxes:
            row.extra["frames_without_face"] = sum(ev.frames_without_face_in(horizon) for ev in clips)
        if spec.needs_person_regions:
            row.extra["frames_without_region"] = sum(ev.frames_without_region_in(name, horizon) for ev in clips)
            row.extra["person_region"] = ", ".join(sorted({ev.person_region or "none" for ev in clips}))
        if not values:
            row.unavailable_reason = f"{spec.undefined_reason} ({horizon:g} s)"
        return row

    def _pooled_row(self, row: HorizonMetric, index: int, clips: list[ClipEvaluation], values: list[float | None]) -> HorizonMetric:
        metric = self._pooled[row.metric]
        key = _horizon_key(row.horizon_s)
        listed = [ev.feature_counts.get(row.metric, {}).get(key) for ev in clips]
        expected_samples = sum(c for c in listed if c is not None)
        expected_clips = sum(c is not None for c in listed)
        pooled_samples, pooled_clips = int(metric.count[index, 0]), int(metric.num_clips[index])
        if (pooled_samples, pooled_clips) != (expected_samples, expected_clips):
            row.unavailable_reason = (
                f"pooled {row.metric} statistics hold {pooled_samples} samples from {pooled_clips} clips, but the evaluations given "
                f"to aggregate() account for {expected_samples} from {expected_clips}: {row.metric} comes from the harness that "
                "evaluated the clips (after sync() on every process), not from saved records"
            )
            return row
        row.num_clips = pooled_clips
        row.value = values[index]
        row.extra.update({"samples_per_side": pooled_samples, "fixed_point_bits": FIXED_POINT_BITS})
        if self.specs[row.metric].feed == POOLED_FRAME_FEATURES:
            row.extra["frame_stride"] = self.protocol.fid_frame_stride
        if row.value is None:
            row.unavailable_reason = f"{row.metric} needs at least 2 samples per side within {row.horizon_s:g} s, got {pooled_samples}"
        return row

    def _drift(self, clips: list[ClipEvaluation]) -> list[DriftPoint]:
        points = []
        window_s = self.window_frames / self.protocol.fps
        for name, spec in self.specs.items():
            if not spec.drift or not self._active(name):
                continue
            for window in range(self.num_windows):
                values = [v for v in (ev.window_value(name, window)[0] for ev in clips) if v is not None]
                if not values:
                    continue
                mean, stderr = mean_and_stderr(values)
                points.append(DriftPoint(name, window, round(window * window_s, 9), round((window + 1) * window_s, 9), mean, stderr, len(values)))
        return points


def _compute(metric):
    """``metric.compute()``; a metric with no update (e.g. no V-MAE window fits the horizon, or a
    process without clips) is valid here, so torchmetrics' warning about it is dropped."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*compute.*called before.*update.*")
        return metric.compute()


def _horizon_key(horizon_s: float) -> str:
    return f"{horizon_s:g}"
