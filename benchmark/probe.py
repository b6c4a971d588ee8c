"""The recovery probe: perturb what a method carries from one chunk to the next, once, and measure how
the excess error decays (or grows) in the chunks that follow.

    python -m benchmark.probe --method wan-animate --perturb saturation:2.0 --at-chunk 2 --chunks 8 --out runs/probe/wan-animate
    python -m benchmark.probe plot runs/probe/wan-animate runs/probe/everanimate --out probe.png

Every clip is rolled out with the runner's chunk plan and seeds (:func:`benchmark.rollout.step_chunk`):
chunks ``0 .. k - 1`` once, then two branches from the state after chunk ``k - 1``, the clean one and
one whose memory went through :meth:`methods.base.ChunkMethod.perturb_memory`, each for chunks
``k .. k + N - 1``. Both branches get the same controls and the same per-chunk generators, so they
differ by the perturbation alone and the clean branch is exactly what ``benchmark.run`` generates.
Only the frames the runner keeps are scored (each chunk after the first without its ``carry_over``
re-generated frames), with the harness's per-frame PSNR (MAX 255, capped at the protocol's cap) and
SSIM, against the ground truth and between the two branches.

Per chunk ``k + i`` (``i`` chunks after injection) and clip: the mean over its kept frames of each
score. The excess PSNR loss is ``L_i = PSNR_clean - PSNR_perturbed`` (dB, positive when the
perturbation still hurts); ``psnr_delta_db`` and ``ssim_delta`` are perturbed minus clean. Curves are
means over clips with their standard error.

Half-life (:func:`half_life`) of the mean curve ``L_0 .. L_{N-1}``: the first ``i >= 1`` with
``L_i <= L_0 / 2``, interpolated linearly between chunks ``i - 1`` and ``i``, in chunks after the
injection chunk; "does not recover within N - 1 chunks" when no chunk gets there; undefined when
``L_0`` is below :data:`MIN_EXCESS_DB` (the perturbation did not lower PSNR at all) or ``N < 2``. The
excess grows when ``L_{N-1} > L_0 + MIN_EXCESS_DB``. The run-difference half-life is the same rule on the RMS pixel
difference between the two branches: how long the perturbation stays visible in the output at all,
whether or not it costs PSNR.

A method whose hook says it carries nothing (:class:`methods.base.MemoryNotApplicable`) is reported as
not applicable, with the reason, and nothing is generated.

Perturbations are the restorative flow matching operators (:data:`everanimate.rfm.PERTURBATIONS`),
their random parameters drawn from the protocol's seed rule applied to ``probe/<clip_id>`` and the
injection chunk, so they are the same on every run and independent of the sampling noise.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from methods import registry
from methods.base import ChunkMethod, MemoryNotApplicable, Method, Perturbation, State
from methods.registry import MethodError

from .compare import _table, distinct_labels, protocol_differences
from .errors import BenchmarkError, ClipError
from .evaluate import check_device
from .files import atomic_write_text, remove_inside, temporary_sibling
from .lock import FolderLock
from .metrics.frame import PIXEL_CHUNK_FRAMES, frame_squared_errors, psnr_per_frame, ssim_per_frame
from .metrics.pixels import to_unit_float
from .metrics.records import mean_and_stderr
from .protocol import Protocol
from .results import environment_info, git_info, package_versions
from .rollout import build_context, first_kept_frame, plan_clip, step_chunk
from .splits.manifest import ClipRecord, Split
from .splits.registry import resolve_split

SCHEMA_VERSION = "1.0"
READABLE_SCHEMAS = (SCHEMA_VERSION,)
KIND = "everanimate-bench/recovery-probe"
PROBE_FILE = "probe.json"
PLOT_FILE = "probe.png"
#: An excess PSNR loss at the injection chunk below this (dB) is no measurable effect: no half-life.
MIN_EXCESS_DB = 0.01
#: Likewise for the RMS difference between the branches, in uint8 levels.
MIN_DIFFERENCE = 0.01
#: Strengths each operator accepts (inclusive), in :func:`everanimate.rfm.perturb`'s units: factors
#: ``1 + s`` must not be negative, the CLAHE blend weight and the colour offset (a fraction of 255)
#: lie in [0, 1], and the detail-erase downsampling factor is positive (1 or less changes nothing).
STRENGTH_RANGES: dict[str, tuple[float, float]] = {
    "color_shift": (0.0, 1.0),
    "sharpness": (-1.0, math.inf),
    "saturation": (-1.0, math.inf),
    "brightness": (-1.0, math.inf),
    "clahe": (0.0, 1.0),
    "detail_erase": (0.0, math.inf),
}
#: Per-chunk scores, each a mean over the chunk's kept frames (deltas: perturbed minus clean).
CHUNK_SCORES = (
    "psnr_clean_db",
    "psnr_perturbed_db",
    "psnr_delta_db",
    "excess_psnr_loss_db",
    "ssim_clean",
    "ssim_perturbed",
    "ssim_delta",
    "psnr_between_db",
    "rms_between",
)
HALF_LIFE_DEFINITION = (
    "chunks after the injection chunk until the mean excess PSNR loss first falls to half its value at the injection "
    "chunk, linearly interpolated between chunks; undefined below {floor} dB at the injection chunk"
)


class ProbeInputError(BenchmarkError):
    """A probe argument that cannot work; reported in one line with exit status 2."""


# ---- perturbations ---------------------------------------------------------------------------------
def perturbation_names() -> list[str]:
    from everanimate.rfm import PERTURBATIONS

    return list(PERTURBATIONS)


def parse_perturbation(text: str) -> tuple[str, float]:
    """``"saturation:2.0"`` -> ``("saturation", 2.0)``, the name and the strength checked."""
    names = perturbation_names()
    name, sep, raw = text.partition(":")
    if not sep or not name:
        raise ProbeInputError(f"--perturb {text!r}: give NAME:STRENGTH, e.g. saturation:2.0; names: {', '.join(names)}")
    if name not in names:
        raise ProbeInputError(f"--perturb {text!r}: unknown perturbation {name!r}; known: {', '.join(names)}")
    try:
        strength = float(raw)
    except ValueError:
        raise ProbeInputError(f"--perturb {text!r}: strength {raw!r} is not a number") from None
    low, high = STRENGTH_RANGES.get(name, (-math.inf, math.inf))
    if not math.isfinite(strength) or not low <= strength <= high:
        raise ProbeInputError(f"--perturb {text!r}: {name} takes a finite strength in [{low:g}, {high:g}], got {raw}")
    return name, strength


def perturbation_seed(protocol: Protocol, clip_id: str, chunk: int) -> int:
    """The seed of the perturbation injected into clip ``clip_id`` before chunk ``chunk``: the
    protocol's seed rule on ``probe/<clip_id>``, a stream the sampling noise never uses."""
    return protocol.chunk_seed(f"probe/{clip_id}", chunk)


# ---- half-life ---------------------------------------------------------------------------------------
@dataclass
class HalfLife:
    """How an excess curve ``values[0 .. N-1]`` (``values[0]`` at the injection chunk) decays.

    ``status``: ``recovered`` (``chunks`` is the half-life), ``not_recovered`` (never down to half within
    the probe), ``no_excess`` (``values[0]`` below the floor), ``too_short`` (fewer than 2 chunks),
    ``no_data`` (no clip was probed) or ``not_applicable``. ``grows``: the last value exceeds the first
    by more than the floor."""

    status: str
    chunks: float | None
    initial: float | None
    last: float | None
    grows: bool | None
    text: str


def half_life(values: list[float], floor: float, unit: str = "dB") -> HalfLife:
    """The half-life of ``values`` in chunks (see the module docstring for the rule)."""
    if not values:
        return HalfLife("no_data", None, None, None, None, "no clip was probed")
    initial, last = values[0], values[-1]
    grows = last - initial > floor
    if initial < floor:
        return HalfLife("no_excess", None, initial, last, grows, f"no excess at the injection chunk ({initial:.3g} {unit} < {floor:g} {unit})")
    if len(values) < 2:
        return HalfLife("too_short", None, initial, last, grows, "needs at least 2 chunks")
    target = initial / 2
    for i in range(1, len(values)):
        if values[i] <= target:
            previous = values[i - 1]
            chunks = (i - 1) + (previous - target) / (previous - values[i])
            return HalfLife("recovered", chunks, initial, last, grows, f"{chunks:.2f} chunks")
    after = len(values) - 1
    return HalfLife("not_recovered", None, initial, last, grows, f"does not recover within {after} chunk{'s' if after != 1 else ''}")


# ---- one clip ------------------------------------------------------------------------------------------
@dataclass
class ChunkRecord:
    """Scores of one recorded chunk of one clip: output frames ``[first_frame, stop_frame)``."""

    chunk: int
    after: int
    first_frame: int
    stop_frame: int
    psnr_clean_db: float
    psnr_perturbed_db: float
    psnr_delta_db: float
    excess_psnr_loss_db: float
    ssim_clean: float
    ssim_perturbed: float
    ssim_delta: float
    psnr_between_db: float
    rms_between: float
    seconds_clean: float
    seconds_perturbed: float


@dataclass
class ClipProbe:
    """One clip's probe: per recorded chunk, and per kept frame (columns, one entry per frame)."""

    clip_id: str
    perturbation: dict
    chunks: list[ChunkRecord]
    frames: dict[str, list]
    seconds: float
    half_life: HalfLife
    difference_half_life: HalfLife

    @classmethod
    def from_dict(cls, d: dict) -> "ClipProbe":
        d = dict(d)
        d["chunks"] = [ChunkRecord(**c) for c in d["chunks"]]
        d["half_life"] = HalfLife(**d["half_life"])
        d["difference_half_life"] = HalfLife(**d["difference_half_life"])
        return cls(**d)


def ssim_frames(generated: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """The harness's per-frame SSIM (:func:`~benchmark.metrics.frame.ssim_per_frame` on ``uint8 / 255``
    in float64), a few frames at a time as the harness does."""
    scores: list[float] = []
    for start in range(0, len(generated), PIXEL_CHUNK_FRAMES):
        part = slice(start, start + PIXEL_CHUNK_FRAMES)
        scores += ssim_per_frame(to_unit_float(generated[part], torch.float64), to_unit_float(truth[part], torch.float64)).tolist()
    return scores


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def score_chunk(clean: torch.Tensor, perturbed: torch.Tensor, truth: torch.Tensor, cap_db: float) -> dict[str, list[float]]:
    """Per-frame scores of a chunk's kept frames: each branch against the ground truth, and the two
    branches against each other (PSNR, and the sum of squared differences for the RMS)."""
    return {
        "psnr_clean": psnr_per_frame(clean, truth, cap_db),
        "psnr_perturbed": psnr_per_frame(perturbed, truth, cap_db),
        "ssim_clean": ssim_frames(clean, truth),
        "ssim_perturbed": ssim_frames(perturbed, truth),
        "psnr_between": psnr_per_frame(perturbed, clean, cap_db),
        "sse_between": frame_squared_errors(perturbed, clean),
    }


def _clone_state(state: State) -> State:
    return {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in state.items()}


def probe_clip(
    method: ChunkMethod,
    split: Split,
    protocol: Protocol,
    clip: ClipRecord,
    at_chunk: int,
    chunks: int,
    perturbation: Perturbation,
    device: torch.device,
    on_chunk: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    step: Callable[[], None] | None = None,
) -> ClipProbe:
    """Probe one clip: chunks ``0 .. at_chunk - 1`` once, then the clean and the perturbed branch for
    chunks ``at_chunk .. at_chunk + chunks - 1``. ``on_chunk(chunk, clean, perturbed)`` sees each
    recorded chunk's kept frames; ``step()`` is called after every generated chunk."""
    began = time.perf_counter()
    plan = plan_clip(protocol, clip, frames_needed(protocol, at_chunk, chunks))
    context = build_context(split, clip, protocol, device)
    state = method.start(context)
    for chunk in range(at_chunk):
        _, state, _ = step_chunk(method, context, plan, state, chunk)
        if step is not None:
            step()
    clean_state = state
    perturbed_state = method.perturb_memory(_clone_state(state), perturbation)
    records: list[ChunkRecord] = []
    columns: dict[str, list] = {name: [] for name in ("frame", "chunk", "psnr_clean", "psnr_perturbed", "ssim_clean", "ssim_perturbed", "psnr_between")}
    values_per_frame = protocol.height * protocol.width * 3
    for chunk in range(at_chunk, at_chunk + chunks):
        clean, clean_state, seconds_clean = step_chunk(method, context, plan, clean_state, chunk)
        if step is not None:
            step()
        perturbed, perturbed_state, seconds_perturbed = step_chunk(method, context, plan, perturbed_state, chunk)
        if step is not None:
            step()
        first = first_kept_frame(plan, chunk)
        truth = context.read_ground_truth(first, first + len(clean))
        if on_chunk is not None:
            on_chunk(chunk, clean, perturbed)
        scores = score_chunk(clean, perturbed, truth, protocol.psnr_cap_db)
        psnr_clean, psnr_perturbed = _mean(scores["psnr_clean"]), _mean(scores["psnr_perturbed"])
        ssim_clean, ssim_perturbed = _mean(scores["ssim_clean"]), _mean(scores["ssim_perturbed"])
        records.append(
            ChunkRecord(
                chunk=chunk,
                after=chunk - at_chunk,
                first_frame=first,
                stop_frame=first + len(clean),
                psnr_clean_db=psnr_clean,
                psnr_perturbed_db=psnr_perturbed,
                psnr_delta_db=psnr_perturbed - psnr_clean,
                excess_psnr_loss_db=psnr_clean - psnr_perturbed,
                ssim_clean=ssim_clean,
                ssim_perturbed=ssim_perturbed,
                ssim_delta=ssim_perturbed - ssim_clean,
                psnr_between_db=_mean(scores["psnr_between"]),
                rms_between=math.sqrt(sum(scores["sse_between"]) / (len(clean) * values_per_frame)),
                seconds_clean=round(seconds_clean, 4),
                seconds_perturbed=round(seconds_perturbed, 4),
            )
        )
        columns["frame"] += list(range(first, first + len(clean)))
        columns["chunk"] += [chunk] * len(clean)
        for name in ("psnr_clean", "psnr_perturbed", "ssim_clean", "ssim_perturbed", "psnr_between"):
            columns[name] += scores[name]
    return ClipProbe(
        clip_id=clip.id,
        perturbation=perturbation.describe(),
        chunks=records,
        frames=columns,
        seconds=round(time.perf_counter() - began, 3),
        half_life=half_life([r.excess_psnr_loss_db for r in records], MIN_EXCESS_DB),
        difference_half_life=half_life([r.rms_between for r in records], MIN_DIFFERENCE, unit="levels"),
    )


def frames_needed(protocol: Protocol, at_chunk: int, chunks: int) -> int:
    """Frames a clip needs for chunks ``0 .. at_chunk + chunks - 1``, all inside the clip (the probe
    scores every recorded frame against the ground truth, so none may be reflected)."""
    stride = protocol.chunk_frames - protocol.carry_over
    return (at_chunk + chunks - 1) * stride + protocol.chunk_frames


# ---- the whole probe -------------------------------------------------------------------------------
@dataclass
class CurvePoint:
    """Mean over clips, and standard error, of every per-chunk score at ``after`` chunks after injection."""

    chunk: int
    after: int
    num_clips: int
    mean: dict[str, float]
    stderr: dict[str, float | None]


def mean_curve(clips: list[ClipProbe]) -> list[CurvePoint]:
    if not clips:
        return []
    points = []
    for index, record in enumerate(clips[0].chunks):
        rows = [clip.chunks[index] for clip in clips]
        means, errors = {}, {}
        for score in CHUNK_SCORES:
            means[score], errors[score] = mean_and_stderr([getattr(row, score) for row in rows])
        points.append(CurvePoint(chunk=record.chunk, after=record.after, num_clips=len(rows), mean=means, stderr=errors))
    return points


@dataclass
class ProbeResults:
    """``probe.json``: one method, one perturbation, every clip, the mean curves and half-lives."""

    method: dict
    applicable: bool
    memory: str | None
    not_applicable_reason: str | None
    perturbation: dict
    at_chunk: int
    chunks: int
    protocol: dict
    protocol_hash: str
    split: dict
    limit: int | None
    clips_evaluated: list[str]
    clips_failed: dict[str, str]
    curve: list[CurvePoint]
    half_life: HalfLife
    difference_half_life: HalfLife
    clips: list[ClipProbe]
    timing: dict
    git: dict
    packages: dict
    environment: dict
    half_life_definition: str = HALF_LIFE_DEFINITION.format(floor=MIN_EXCESS_DB)
    kind: str = KIND
    schema_version: str = SCHEMA_VERSION
    created_utc: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ProbeResults":
        if not isinstance(d, dict) or d.get("kind") != KIND:
            raise ValueError(f"not a recovery probe (kind {d.get('kind') if isinstance(d, dict) else None!r}, expected {KIND!r})")
        if d.get("schema_version") not in READABLE_SCHEMAS:
            raise ValueError(f"probe schema {d.get('schema_version')!r}, this code reads {', '.join(READABLE_SCHEMAS)}")
        d = dict(d)
        d["curve"] = [CurvePoint(**p) for p in d["curve"]]
        d["half_life"] = HalfLife(**d["half_life"])
        d["difference_half_life"] = HalfLife(**d["difference_half_life"])
        d["clips"] = [ClipProbe.from_dict(c) for c in d["clips"]]
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "ProbeResults":
        path = Path(path)
        if path.is_dir():
            path = path / PROBE_FILE
        return cls.from_dict(json.loads(path.read_text()))

    def excess(self, score: str = "excess_psnr_loss_db") -> list[float]:
        return [point.mean[score] for point in self.curve]


def perturbation_label(perturbation: dict) -> str:
    label = f"{perturbation['name']}:{perturbation['strength']:g}"
    return label + " +identity" if perturbation.get("identity") else label


# ---- command line ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.probe",
        description="Recovery probe: roll each clip out twice from the same seeds, once clean and once with a pixel-space "
        "perturbation injected into the method's carried memory before chunk K, and measure the excess error in the N "
        "chunks from K on (excess PSNR loss and SSIM against the ground truth, PSNR between the runs), its half-life "
        "in chunks, and whether it grows. Writes probe.json and probe.png. "
        "'python -m benchmark.probe plot DIR [DIR ...]' overlays finished probes. "
        "Every argument is checked before anything is generated; an input mistake exits with status 2.",
        epilog=f"methods: {', '.join(registry.available())}",
    )
    parser.add_argument("--method", required=True, help="registered method name, or package.module:Class")
    parser.add_argument("--method-arg", action="append", metavar="KEY=VALUE", help="method option, repeatable (as for benchmark.run)")
    parser.add_argument(
        "--perturb",
        required=True,
        metavar="NAME:STRENGTH",
        help="perturbation of the carried memory: color_shift, sharpness, saturation, brightness, clahe or detail_erase "
        "with a strength in everanimate.rfm's units (e.g. saturation:2.0 is x3 saturation; strength 0 is the identity)",
    )
    parser.add_argument("--at-chunk", type=int, default=2, metavar="K", help="inject into the memory carried into chunk K (>= 1; default 2)")
    parser.add_argument("--chunks", type=int, default=8, metavar="N", help="chunks recorded from the injection chunk on (>= 1; default 8)")
    parser.add_argument("--identity", action="store_true", help="also perturb the identity memory, where the method keeps one (everanimate)")
    parser.add_argument("--split", default="synthetic", help="split name or folder (default: synthetic)")
    parser.add_argument("--limit", type=int, metavar="N", help="probe only the first N clips")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for probe.json and probe.png")
    parser.add_argument("--overwrite", action="store_true", help="replace a probe already in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


@dataclass
class ProbeSetup:
    """Everything checked before the first chunk: a bad input never costs any generation."""

    method: Method
    split: Split
    protocol: Protocol
    name: str
    strength: float
    memory: str | None
    reason: str | None


def prepare(args: argparse.Namespace) -> ProbeSetup:
    """Check every argument and resolve the method, split and protocol; raises on a bad input."""
    check_device(args.device)
    name, strength = parse_perturbation(args.perturb)
    if args.at_chunk < 1:
        raise ProbeInputError(f"--at-chunk {args.at_chunk}: the perturbation goes into memory carried from one chunk to the next, so K must be at least 1")
    if args.chunks < 1:
        raise ProbeInputError(f"--chunks {args.chunks}: record at least 1 chunk")
    method = registry.build_from_command_line(args.method, args.method_arg, device=args.device)
    split = resolve_split(args.split).limited(args.limit)
    protocol = method.effective_protocol(split.protocol())
    needed = frames_needed(protocol, args.at_chunk, args.chunks)
    shortest = min(split.clips, key=lambda clip: clip.num_frames)
    if shortest.num_frames < needed:
        stride = protocol.chunk_frames - protocol.carry_over
        fits = (shortest.num_frames - protocol.chunk_frames) // stride + 1 - args.at_chunk
        hint = f"at most --chunks {fits} fit after --at-chunk {args.at_chunk}" if fits >= 1 else f"--at-chunk {args.at_chunk} does not fit"
        raise ProbeInputError(
            f"clip {shortest.id} has {shortest.num_frames} frames; --at-chunk {args.at_chunk} --chunks {args.chunks} needs "
            f"{args.at_chunk + args.chunks} chunks of {protocol.chunk_frames} frames with carry-over {protocol.carry_over}, "
            f"{needed} frames; {hint}"
        )
    probe_perturbation = Perturbation(name, strength, identity=args.identity)
    memory, reason = None, None
    try:
        memory = method.describe_memory(probe_perturbation)
    except MemoryNotApplicable as exc:
        reason = str(exc)
    if memory is not None and not isinstance(method, ChunkMethod):
        raise ProbeInputError(f"method {method.name!r} describes a memory but is not a chunk method; the probe needs perturb_memory")
    return ProbeSetup(method, split, protocol, name, strength, memory, reason)


INPUT_ERRORS = (BenchmarkError, MethodError, ValueError)


def _prepare_out(out: Path, overwrite: bool) -> None:
    if (out / PROBE_FILE).exists() and not overwrite:
        raise ProbeInputError(f"{out} already holds a probe; pass --overwrite to replace it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    for name in (PROBE_FILE, PLOT_FILE):
        remove_inside(out, out / name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plot"]:
        return plot_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        setup = prepare(args)
        lock = FolderLock(args.out).acquire()
    except INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            _prepare_out(args.out, args.overwrite)
        except INPUT_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        results = run_probe(args, setup, progress=not args.no_progress)
        write_probe(args.out, results)
        print(format_probe(results))
        print(f"probe written to {args.out / PROBE_FILE}")
        return 1 if results.clips_failed else 0
    finally:
        lock.release()


def run_probe(args: argparse.Namespace, setup: ProbeSetup, progress: bool = True) -> ProbeResults:
    """Probe every clip of the split (nothing is generated when the method is not applicable)."""
    method, split, protocol = setup.method, setup.split, setup.protocol
    device = torch.device(args.device)
    perturbation = {"name": setup.name, "strength": setup.strength, "identity": bool(args.identity), "seed_rule": "protocol.chunk_seed(f'probe/{clip_id}', at_chunk)"}
    clips: list[ClipProbe] = []
    failed: dict[str, str] = {}
    began = time.perf_counter()
    if setup.reason is None:
        assert isinstance(method, ChunkMethod)
        clip_bar = tqdm(split.clips, desc=f"probe {method.name}", unit="clip", disable=not progress)
        for clip in clip_bar:
            clip_bar.set_postfix_str(clip.id)
            chunk_bar = tqdm(total=args.at_chunk + 2 * args.chunks, desc=f"  {clip.id}", unit="chunk", leave=False, disable=not progress)
            injected = Perturbation(setup.name, setup.strength, perturbation_seed(protocol, clip.id, args.at_chunk), bool(args.identity))
            try:
                clips.append(probe_clip(method, split, protocol, clip, args.at_chunk, args.chunks, injected, device, step=partial(chunk_bar.update, 1)))
            except BenchmarkError as exc:
                failed[clip.id] = str(exc)
                tqdm.write(f"FAILED {exc}", file=sys.stderr)
            except Exception as exc:  # noqa: BLE001 - a method bug fails its clip, not the whole probe
                failed[clip.id] = str(ClipError(clip.id, None, f"{type(exc).__name__}: {exc}"))
                tqdm.write(f"FAILED clip {clip.id!r}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}", file=sys.stderr)
            finally:
                chunk_bar.close()
    seconds = time.perf_counter() - began
    curve = mean_curve(clips)
    if setup.reason is not None:
        not_applicable = HalfLife("not_applicable", None, None, None, None, f"not applicable ({setup.reason})")
        lives = (not_applicable, not_applicable)
    else:
        lives = (
            half_life([p.mean["excess_psnr_loss_db"] for p in curve], MIN_EXCESS_DB),
            half_life([p.mean["rms_between"] for p in curve], MIN_DIFFERENCE, unit="levels"),
        )
    generated = sum(len(c.chunks) * 2 + args.at_chunk for c in clips)
    timing = {
        "wall_s": round(seconds, 3),
        "chunks_generated": generated,
        "seconds_per_chunk": round(seconds / generated, 4) if generated else None,
        "per_clip_s": {c.clip_id: c.seconds for c in clips},
    }
    return ProbeResults(
        method=method.describe(),
        applicable=setup.reason is None,
        memory=setup.memory,
        not_applicable_reason=setup.reason,
        perturbation=perturbation,
        at_chunk=args.at_chunk,
        chunks=args.chunks,
        protocol=protocol.to_dict(),
        protocol_hash=protocol.hash,
        split={"name": split.name, "version": split.version, "content_hash": split.content_hash, "num_clips": len(split.clips), "clip_ids": [c.id for c in split.clips]},
        limit=args.limit,
        clips_evaluated=[c.clip_id for c in clips],
        clips_failed=failed,
        curve=curve,
        half_life=lives[0],
        difference_half_life=lives[1],
        clips=clips,
        timing=timing,
        git=git_info(),
        packages=package_versions(),
        environment=environment_info(args.device, 1),
    )


# ---- output ------------------------------------------------------------------------------------------
def write_probe(out: Path, results: ProbeResults) -> None:
    """``probe.png``, then ``probe.json`` (its presence means the probe is complete), both atomically."""
    out.mkdir(parents=True, exist_ok=True)
    plot_probes(out / PLOT_FILE, {str(out): results})
    atomic_write_text(out / PROBE_FILE, json.dumps(results.to_dict(), indent=1, allow_nan=False))


def _with_error(mean: float | None, stderr: float | None, decimals: int, sign: bool = False) -> str:
    if mean is None:
        return "n/a"
    text = f"{mean:+.{decimals}f}" if sign else f"{mean:.{decimals}f}"
    return text + (f" ± {stderr:.{decimals}f}" if stderr is not None else "")


def probe_title(label: str, results: ProbeResults) -> str:
    clips = len(results.clips_evaluated)
    limited = f", limit {results.limit}" if results.limit is not None else ""
    return (
        f"{label}: {perturbation_label(results.perturbation)} into the memory carried into chunk {results.at_chunk}, "
        f"{results.chunks} chunks, {clips} clip(s) of {results.split['name']} ({results.split['content_hash']}{limited})"
    )


def format_probe(results: ProbeResults, label: str | None = None, markdown: bool = False) -> str:
    """One probe's table: per chunk after injection, the mean excess PSNR loss, SSIM delta and PSNR
    between the runs (± standard error over clips), then the half-lives."""
    label = label or _method_label(results)
    lines = [probe_title(label, results)]
    if not results.applicable:
        lines.append(f"not applicable ({results.not_applicable_reason})")
        return "\n".join(lines)
    lines.append(f"memory perturbed: {results.memory}")
    header = ["after", "chunk", "excess PSNR loss (dB)", "SSIM delta", "PSNR between runs (dB)", "PSNR clean (dB)"]
    rows = [
        [
            str(p.after),
            str(p.chunk),
            _with_error(p.mean["excess_psnr_loss_db"], p.stderr["excess_psnr_loss_db"], 3, sign=True),
            _with_error(p.mean["ssim_delta"], p.stderr["ssim_delta"], 4, sign=True),
            _with_error(p.mean["psnr_between_db"], p.stderr["psnr_between_db"], 2),
            _with_error(p.mean["psnr_clean_db"], p.stderr["psnr_clean_db"], 2),
        ]
        for p in results.curve
    ]
    if rows:
        lines.append(_table(header, rows, markdown))
    grows = results.half_life.grows
    lines.append(f"half-life of the excess PSNR loss: {results.half_life.text}" + ("" if grows is None else f"; the excess {'grows' if grows else 'does not grow'}"))
    lines.append(f"half-life of the difference between the runs: {results.difference_half_life.text}")
    if results.clips_failed:
        lines.append(f"{len(results.clips_failed)} clip(s) failed: {', '.join(results.clips_failed)}")
    return "\n".join(lines)


def _method_label(results: ProbeResults) -> str:
    arguments = results.method.get("arguments", {})
    shown = ", ".join(f"{k}={v}" for k, v in arguments.items() if k not in ("preset", "weights") and v is not None)
    return results.method["name"] + (f" ({shown})" if shown else "")


def probe_labels(probes: dict[str, ProbeResults], with_perturbation: bool = True) -> dict[str, str]:
    """Method labels as ``benchmark.compare`` makes them (the folder added where labels collide), with
    the perturbation and injection chunk when they differ between the probes and ``with_perturbation``."""
    if len(probes) == 1:
        return {key: _method_label(probe) for key, probe in probes.items()}
    labels = distinct_labels(probes)  # duck-typed: reads .method and .protocol
    settings = {(perturbation_label(p.perturbation), p.at_chunk) for p in probes.values()}
    if with_perturbation and len(settings) > 1:
        labels = {key: f"{label}, {perturbation_label(probes[key].perturbation)} at {probes[key].at_chunk}" for key, label in labels.items()}
    return labels


def _excess_cell(point: CurvePoint | None) -> str:
    if point is None:
        return "n/a"
    return _with_error(point.mean["excess_psnr_loss_db"], point.stderr["excess_psnr_loss_db"], 3, sign=True)


def summary_table(probes: dict[str, ProbeResults], markdown: bool = False) -> str:
    """One row per probe: the excess at the injection chunk and at the last chunk, the half-lives and
    whether the excess grows; not-applicable probes say why."""
    labels = probe_labels(probes, with_perturbation=False)
    header = ["method", "perturbation", "clips", "excess at injection (dB)", "excess at last chunk (dB)", "half-life", "grows", "difference half-life"]
    rows = []
    for key, probe in probes.items():
        if not probe.applicable:
            rows.append([labels[key], perturbation_label(probe.perturbation), "-", "-", "-", f"not applicable ({probe.not_applicable_reason})", "-", "-"])
            continue
        first, last = (probe.curve[0], probe.curve[-1]) if probe.curve else (None, None)
        grows = "-" if probe.half_life.grows is None else ("yes" if probe.half_life.grows else "no")
        rows.append(
            [
                labels[key],
                f"{perturbation_label(probe.perturbation)} at {probe.at_chunk}",
                str(len(probe.clips_evaluated)),
                _excess_cell(first),
                f"{_excess_cell(last)} (+{probe.chunks - 1})",
                probe.half_life.text,
                grows,
                probe.difference_half_life.text,
            ]
        )
    return _table(header, rows, markdown)


def curve_table(probes: dict[str, ProbeResults], markdown: bool = False) -> str:
    """Excess PSNR loss per chunk after injection (rows), one column per applicable probe."""
    labels = probe_labels(probes)
    applicable = {key: p for key, p in probes.items() if p.applicable and p.curve}
    if not applicable:
        return ""
    longest = max(len(p.curve) for p in applicable.values())
    header = ["after", *(labels[key] for key in applicable)]
    rows = []
    for i in range(longest):
        row = [str(i)]
        for probe in applicable.values():
            row.append(_with_error(probe.curve[i].mean["excess_psnr_loss_db"], probe.curve[i].stderr["excess_psnr_loss_db"], 3, sign=True) if i < len(probe.curve) else "")
        rows.append(row)
    return _table(header, rows, markdown)


PLOT_PANELS = (
    ("excess_psnr_loss_db", "excess PSNR loss (dB)"),
    ("ssim_delta", "SSIM, perturbed - clean"),
    ("psnr_between_db", "PSNR between the runs (dB)"),
)


def plot_probes(path: str | Path, probes: dict[str, ProbeResults]) -> None:
    """Excess PSNR loss, SSIM delta and PSNR between the runs against chunks after injection: one line
    per probe, with a standard-error band; not-applicable probes are named under the plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    labels = probe_labels(probes)
    fig, axes = plt.subplots(1, len(PLOT_PANELS), figsize=(4.6 * len(PLOT_PANELS), 3.4), squeeze=False)
    drawn = False
    for ax, (score, title) in zip(axes[0], PLOT_PANELS):
        for key, probe in probes.items():
            if not probe.applicable or not probe.curve:
                continue
            after = [p.after for p in probe.curve]
            values = [p.mean[score] for p in probe.curve]
            (line,) = ax.plot(after, values, marker="o", ms=3, lw=1.2, label=labels[key])
            errors = [p.stderr[score] for p in probe.curve]
            if all(e is not None for e in errors):
                ax.fill_between(after, [v - e for v, e in zip(values, errors)], [v + e for v, e in zip(values, errors)], color=line.get_color(), alpha=0.2, lw=0)
            drawn = True
        if score != "psnr_between_db":
            ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("chunks after injection")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if drawn:
        axes[0][0].legend(fontsize=7)
    missing = [f"{labels[key]}: not applicable ({p.not_applicable_reason})" for key, p in probes.items() if not p.applicable]
    if missing:
        fig.text(0.01, 0.01, "\n".join(missing), fontsize=7, va="bottom")
    first = next(iter(probes.values()))
    title = probe_title(labels[next(iter(probes))], first) if len(probes) == 1 else f"recovery probes on {first.split['name']} ({first.split['content_hash']})"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04 * len(missing), 1, 1))
    with temporary_sibling(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# ---- plot: overlay finished probes -----------------------------------------------------------------
def load_probes(folders: Iterable[str | Path]) -> dict[str, ProbeResults]:
    """Finished probes by folder, checked to be on one split and one protocol (apart from the chunk
    structure, which is each method's own)."""
    probes: dict[str, ProbeResults] = {}
    for folder in folders:
        path = Path(folder) / PROBE_FILE
        if not path.is_file():
            raise ProbeInputError(f"{folder}: no {PROBE_FILE} (not a finished probe)")
        try:
            probes[str(folder)] = ProbeResults.load(path)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ProbeInputError(f"{path}: unreadable probe ({exc})") from None
    first_key, first = next(iter(probes.items()))
    for key, probe in probes.items():
        if (probe.split["name"], probe.split["content_hash"]) != (first.split["name"], first.split["content_hash"]):
            raise ProbeInputError(f"{key}: split {probe.split['name']} ({probe.split['content_hash']}) differs from {first_key}'s")
        fields = protocol_differences(first, probe)  # duck-typed: reads .protocol
        if fields:
            detail = ", ".join(f"{k} ({probe.protocol.get(k)!r} vs {first.protocol.get(k)!r})" for k in fields)
            raise ProbeInputError(f"{key}: protocol differs from {first_key}'s in {detail}")
    return probes


def plot_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.probe plot",
        description="Overlay finished recovery probes: one table (excess at injection and at the last chunk, half-lives, growth; "
        "then the excess PSNR loss per chunk after injection) and, with --out, one plot.",
    )
    parser.add_argument("folders", nargs="+", type=Path, help="probe folders (each holding probe.json)")
    parser.add_argument("--out", type=Path, help="write the overlay plot here (PNG)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    try:
        probes = load_probes(args.folders)
        if args.out is not None and args.out.suffix.lower() != ".png":
            raise ProbeInputError(f"--out {args.out}: the plot is a PNG file (FILE.png)")
    except INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(probes, args.markdown))
    curves = curve_table(probes, args.markdown)
    if curves:
        print("\nexcess PSNR loss (dB) per chunk after injection:\n" + curves)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        plot_probes(args.out, probes)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
