"""Performance of the metric harness on synthetic 480p video: ``python -m benchmark.perf``.

Goals, printed as ratios:

- P1: one call evaluating horizons 10+30+60+90 / four separate calls (goal <= 0.55; ideal 9/19).
- P2: peak RSS evaluating 90 s / 10 s, each in a fresh subprocess (goal <= 1.25).
- P3: harness wall time / bare metric-network forward time on the same frames (goal <= 1.2).
- P4: against usual practice (dump PNGs, pytorch-fid on folders, an lpips loop over frames): the
  same numbers, and the speed ratio.
- P5: frames per second of the harness; real time is 25 frames/s (measure with ``--device cuda``).
- P6: what FFV1 slice CRCs cost the output videos (a cost stated, no goal): write time and file size with CRCs /
  without, and read time with every CRC checked, for one 90 s synthetic test clip (64x96) and for 250
  frames at 832x480, each best of 3.

On a CPU the default run uses stand-in horizons for P1/P3/P4: 5-frame windows and seconds scaled by
``--scale`` (default 1/50, so 10/30/60/90 s become 5/15/30/45 frames, i.e. 1/3/6/9 windows), and P2 uses cheap
stand-in feature networks (pooled projections with Inception's 2048-d output, a one-layer VideoMAE)
so a real 2250-frame clip fits in minutes. ``--full`` uses the real horizons and all networks.
Where pretrained weights are absent, networks are the real architectures with random weights; the
output says so. Numbers from random networks are timings, never benchmark results.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Iterator
from unittest import mock

import numpy as np
import torch

from . import video
from .memory import PeakMemory, resident_bytes
from .metrics import EvaluationHarness
from .metrics.networks import NetworkUnavailable, build_inception, build_lpips, build_videomae, random_inception_state_dict
from .metrics.pixels import to_signed_float, to_unit_float
from .metrics.testing import FramePool, PooledFeatures, synthetic_clip, tiny_videomae
from .protocol import DEFAULT_HORIZONS_S, Protocol
from .video import prefetch
from .weights import WeightsConfig, load_state_dict

WIDTH, HEIGHT = 832, 480
POOL_FRAMES = 10
CARRY_OVER = 4
# Without --full: 5-frame windows, and horizons of 1/3/6/9 windows at the default scale (real: 10/30/60/90).
STAND_IN_WINDOW_S = 0.2


class Setup:
    """Protocol, horizons, synthetic video and networks shared by the measurements."""

    def __init__(self, device: str, full: bool, scale: float) -> None:
        self.device = device
        self.full = full
        self.scale = 1.0 if full else scale
        base = Protocol(width=WIDTH, height=HEIGHT)
        self.protocol = base if full else replace(base, window_s=STAND_IN_WINDOW_S)
        self.horizons_s = tuple(h * self.scale for h in DEFAULT_HORIZONS_S)
        generated, truth, boxes = synthetic_clip("perf", POOL_FRAMES, WIDTH, HEIGHT)
        self.generated, self.truth, self.boxes = FramePool(generated), FramePool(truth), boxes
        self.networks, self.sources = real_or_random_networks(device)

    def face_boxes(self, num_frames: int) -> np.ndarray:
        return self.boxes[np.arange(num_frames) % len(self.boxes)]

    def boundaries(self, num_frames: int) -> list[int]:
        starts = self.protocol.chunk_starts(num_frames, CARRY_OVER)
        return [start + CARRY_OVER for start in starts[1:]]

    def harness(self, horizons: tuple[float, ...], metrics: list[str] | None = None, networks: dict | None = None) -> EvaluationHarness:
        return EvaluationHarness(self.protocol, horizons_s=horizons, metrics=metrics, device=self.device, networks=networks or self.networks)

    def evaluate(self, harness: EvaluationHarness):
        """One clip through ``harness`` with decoding emulated in a background thread; (seconds, evaluation)."""
        num_frames, window = harness.num_frames, self.protocol.window_frames
        began = time.perf_counter()
        evaluation = harness.evaluate_clip(
            "perf",
            prefetch(self.generated.iterate(num_frames, window)),
            prefetch(self.truth.iterate(num_frames, window)),
            face_boxes=self.face_boxes(num_frames),
            chunk_boundaries=self.boundaries(num_frames),
        )
        synchronize(self.device)
        return time.perf_counter() - began, evaluation


def synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def real_or_random_networks(device: str) -> tuple[dict, dict[str, str]]:
    """The three metric networks: pretrained where weights are present, else random-initialised."""
    config = replace(WeightsConfig.from_env(), random_init=True)
    networks, sources = {}, {}
    for name, build in (("lpips", lambda: build_lpips(config)), ("inception", lambda: build_inception(config)), ("videomae", lambda: build_videomae(config))):
        loaded = build()
        networks[name] = loaded.module.to(device).eval()
        sources[name] = loaded.source
    return networks, sources


# ---- P1 / P3 / P5 ---------------------------------------------------------------------------


def measure_horizons(setup: Setup) -> dict:
    """P1: all horizons in one pass vs one pass per horizon."""
    one = setup.harness(setup.horizons_s)
    one_s, _ = setup.evaluate(one)
    separate = {}
    for horizon in setup.horizons_s:
        seconds, _ = setup.evaluate(setup.harness((horizon,)))
        separate[f"{horizon:g}"] = seconds
    total = sum(separate.values())
    frames = one.num_frames
    ideal = frames / sum(setup.protocol.horizon_frames(h) for h in setup.horizons_s)
    return {
        "one_call_s": one_s,
        "separate_calls_s": separate,
        "ratio": one_s / total,
        "ideal_ratio": ideal,
        "frames": frames,
        "harness_frames_per_s": frames / one_s,
        "unavailable": dict(one.unavailable),
    }


def measure_overhead(setup: Setup, repeats: int = 2) -> dict:
    """P3: the harness vs only the network forward calls it makes, on the same frames.

    The two are measured alternately ``repeats`` times and the fastest of each is compared, so load
    from other processes on a shared machine affects both alike.
    """
    horizon = setup.horizons_s[2]  # the 60 s horizon: 30 frames at the default scale, one V-MAE window
    harness = setup.harness((horizon,))
    harness_runs, bare_runs = [], []
    for _ in range(repeats):
        harness_runs.append(setup.evaluate(harness)[0])
        bare_runs.append(bare_forward_seconds(setup, setup.protocol.horizon_frames(horizon)))
    return {
        "frames": harness.num_frames,
        "harness_s": min(harness_runs),
        "bare_forward_s": min(bare_runs),
        "ratio": min(harness_runs) / min(bare_runs),
        "harness_runs_s": harness_runs,
        "bare_runs_s": bare_runs,
    }


def bare_forward_seconds(setup: Setup, num_frames: int) -> float:
    """Time of the LPIPS, Inception and VideoMAE forward calls alone, inputs prepared untimed."""
    window = setup.protocol.window_frames
    lpips_net, inception, videomae = (setup.networks[k] for k in ("lpips", "inception", "videomae"))
    vmae_frames = setup.protocol.vmae_window_frames
    pending: list[torch.Tensor] = []
    forward_s = 0.0
    with torch.no_grad():
        for gen, gt in zip(setup.generated.iterate(num_frames, window), setup.truth.iterate(num_frames, window)):
            gen, gt = gen.to(setup.device), gt.to(setup.device)
            signed = to_signed_float(gen), to_signed_float(gt)
            unit = to_unit_float(torch.cat([gen, gt]))
            pending.append(torch.stack([videomae.preprocess(gen), videomae.preprocess(gt)]))
            clips = []
            stacked = torch.cat(pending, dim=1)
            while stacked.shape[1] >= vmae_frames:
                clips.append(stacked[:, :vmae_frames].contiguous())
                stacked = stacked[:, vmae_frames:]
            pending = [stacked]
            synchronize(setup.device)
            began = time.perf_counter()
            lpips_net(*signed)
            inception(unit)
            for clip in clips:
                videomae(clip)
            synchronize(setup.device)
            forward_s += time.perf_counter() - began
    return forward_s


# ---- P2 -------------------------------------------------------------------------------------


def rss_child(seconds: float, device: str, full: bool) -> dict:
    """Evaluate one clip of ``seconds`` at the real protocol; report peak and pre-evaluation RSS."""
    protocol = Protocol(width=WIDTH, height=HEIGHT)
    generated, truth, boxes = synthetic_clip("perf", POOL_FRAMES, WIDTH, HEIGHT)
    if full:
        networks, _ = real_or_random_networks(device)
        metrics = None
    else:
        networks = {"inception": PooledFeatures(dim=2048), "videomae": tiny_videomae(num_frames=protocol.vmae_window_frames, hidden_size=768)}
        metrics = ["psnr", "ssim", "f_psnr", "seam", "fid", "vmae", "fvd_videomae"]
    harness = EvaluationHarness(protocol, horizons_s=[seconds], metrics=metrics, device=device, networks=networks)
    num_frames = harness.num_frames
    before_mb = resident_bytes() / 2**20
    # Host memory on any --device: the RSS goal is about frames held in host memory.
    with PeakMemory("cpu") as memory:
        began = time.perf_counter()
        harness.evaluate_clip(
            "rss",
            prefetch(FramePool(generated).iterate(num_frames, protocol.window_frames)),
            prefetch(FramePool(truth).iterate(num_frames, protocol.window_frames)),
            face_boxes=boxes[np.arange(num_frames) % len(boxes)],
            chunk_boundaries=[s + CARRY_OVER for s in protocol.chunk_starts(num_frames, CARRY_OVER)[1:]],
        )
        wall_s = time.perf_counter() - began
    return {
        "seconds": seconds,
        "frames": num_frames,
        "rss_before_mb": before_mb,
        "peak_rss_mb": memory.peak_mb,
        "wall_s": wall_s,
        "metrics": metrics or "all",
    }


def measure_memory(device: str, full: bool, threads: int | None) -> dict:
    runs = {}
    for seconds in (10.0, 90.0):
        command = [sys.executable, "-m", "benchmark.perf", "--rss-child", str(seconds), "--device", device]
        command += (["--full"] if full else []) + ([f"--threads={threads}"] if threads else [])
        output = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ.copy()).stdout
        runs[f"{seconds:g}"] = json.loads(output.strip().splitlines()[-1])
    return {"runs": runs, "ratio": runs["90"]["peak_rss_mb"] / runs["10"]["peak_rss_mb"]}


# ---- P4 -------------------------------------------------------------------------------------


@contextlib.contextmanager
def fid_weights_for_pytorch_fid(state_dict: dict) -> Iterator[None]:
    """Let pytorch-fid's own pipeline build its Inception from the same weights the harness uses."""
    from pytorch_fid import inception as fid_inception

    with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state_dict):
        yield


def measure_usual_practice(setup: Setup, with_distance: bool) -> dict:
    """P4: PNG dump + pytorch-fid folder statistics + lpips frame loop, vs one harness pass."""
    import lpips
    from PIL import Image
    from pytorch_fid import fid_score
    from pytorch_fid.fid_score import calculate_frechet_distance, compute_statistics_of_path
    from pytorch_fid.inception import InceptionV3

    horizon = setup.horizons_s[1]  # the 30 s horizon (15 frames at the default stand-in scale)
    num_frames = setup.protocol.horizon_frames(horizon)
    harness = setup.harness((horizon,), metrics=["lpips", "fid"])
    ours_s, evaluation = setup.evaluate(harness)
    ours_lpips = evaluation.clip_value("lpips", horizon)
    mu_ours, sigma_ours, _ = harness.pooled_statistics("fid", horizon, side=0)

    config = WeightsConfig.from_env()
    location = config.locate("inception")
    state = load_state_dict(location.path) if location.present else random_inception_state_dict()
    timings = {}
    with tempfile.TemporaryDirectory() as folder:
        gen_dir, gt_dir = Path(folder, "generated"), Path(folder, "truth")
        gen_dir.mkdir()
        gt_dir.mkdir()
        began = time.perf_counter()
        for directory, pool in ((gen_dir, setup.generated), (gt_dir, setup.truth)):
            index = 0
            for batch in pool.iterate(num_frames, setup.protocol.window_frames):
                for frame in batch.numpy():
                    Image.fromarray(frame).save(directory / f"{index:05d}.png")
                    index += 1
        timings["dump_png_s"] = time.perf_counter() - began

        with fid_weights_for_pytorch_fid(state):
            model = InceptionV3([3]).to(setup.device)
        began = time.perf_counter()
        with warnings.catch_warnings(), mock.patch.object(fid_score, "tqdm", lambda items: items), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            mu_gen, sigma_gen = compute_statistics_of_path(str(gen_dir), model, 50, 2048, setup.device, num_workers=0)
            mu_gt, sigma_gt = compute_statistics_of_path(str(gt_dir), model, 50, 2048, setup.device, num_workers=0)
        timings["pytorch_fid_statistics_s"] = time.perf_counter() - began

        began = time.perf_counter()
        loop_model = setup.networks["lpips"]
        distances = []
        with torch.no_grad():
            for index in range(num_frames):
                a = lpips.im2tensor(lpips.load_image(str(gen_dir / f"{index:05d}.png"))).to(setup.device)
                b = lpips.im2tensor(lpips.load_image(str(gt_dir / f"{index:05d}.png"))).to(setup.device)
                distances.append(float(loop_model(a, b)))
        timings["lpips_loop_s"] = time.perf_counter() - began

    usual_s = sum(timings.values())
    result = {
        "frames": num_frames,
        "usual_s": timings,
        "usual_total_s": usual_s,
        "harness_s": ours_s,
        "speedup": usual_s / ours_s,
        "lpips_harness": ours_lpips,
        "lpips_usual": float(np.mean(distances)),
        "lpips_abs_diff": abs(ours_lpips - float(np.mean(distances))),
        "fid_mean_max_abs_diff": float(np.abs(mu_ours - mu_gen).max()),
        "fid_cov_max_abs_diff": float(np.abs(sigma_ours - sigma_gen).max()),
        "fid_cov_scale": float(np.abs(sigma_gen).max()),
    }
    if with_distance:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            usual_fid = calculate_frechet_distance(mu_gen, sigma_gen, mu_gt, sigma_gt)
            ours_fid = harness.aggregate([evaluation]).get("fid", horizon).value
        result.update(fid_usual=float(usual_fid), fid_harness=ours_fid, fid_rel_diff=abs(ours_fid - usual_fid) / abs(usual_fid))
    return result


# ---- P6 -------------------------------------------------------------------------------------


def measure_slice_crcs(repeats: int = 3) -> dict:
    """P6: VideoWriter with its slice CRCs vs the same FFV1 level 3 without them.

    The 480p frames are the noisy "generated" pool of P1-P4; they compress little, which gives the CRC, a
    pass over every compressed byte, its largest share. The variants alternate ``repeats`` times and the
    fastest of each is kept, so load from other processes affects both alike. Reading goes through
    ``iter_frames``, which checks every CRC of the CRC'd file.
    """
    from .splits.registry import resolve_split
    from .video import iter_frames, read_frames

    split = resolve_split("synthetic")
    clip = split.clips[0]
    sources = {
        f"{clip.id} ({split.width}x{split.height}, {clip.seconds:g} s)": read_frames(split.path(clip, "video")),
        f"480p ({WIDTH}x{HEIGHT}, 250 frames)": torch.cat(list(FramePool(synthetic_clip("perf", POOL_FRAMES, WIDTH, HEIGHT)[0]).iterate(250, 25))),
    }
    without = {**video.FFV1_OPTIONS, "slicecrc": "0"}
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, frames in sources.items():
            runs: dict[str, dict[str, list[float]]] = {"crc": {"write_s": [], "read_s": []}, "no_crc": {"write_s": [], "read_s": []}}
            sizes = {}
            for _ in range(repeats):
                for variant, options in (("crc", video.FFV1_OPTIONS), ("no_crc", without)):
                    path = Path(folder, f"{variant}.mkv")
                    with mock.patch.object(video, "FFV1_OPTIONS", options):  # read when a VideoWriter opens
                        began = time.perf_counter()
                        video.write_video(path, frames, 25)
                        runs[variant]["write_s"].append(time.perf_counter() - began)
                    began = time.perf_counter()
                    for _batch in iter_frames(path, batch_size=25):
                        pass
                    runs[variant]["read_s"].append(time.perf_counter() - began)
                    sizes[variant] = path.stat().st_size
            best = {variant: {key: min(values) for key, values in timings.items()} for variant, timings in runs.items()}
            results[name] = {
                "frames": len(frames),
                "bytes": sizes,
                "best_s": best,
                "runs_s": runs,
                "write_ratio": best["crc"]["write_s"] / best["no_crc"]["write_s"],
                "read_ratio": best["crc"]["read_s"] / best["no_crc"]["read_s"],
                "size_ratio": sizes["crc"] / sizes["no_crc"],
            }
    return {"sources": results, "repeats": repeats, "write_ratio": max(r["write_ratio"] for r in results.values())}


# ---- report ---------------------------------------------------------------------------------


def report(results: dict) -> str:
    lines = []
    if "networks" in results:
        lines += [
            f"device {results['device']}, {WIDTH}x{HEIGHT} synthetic frames, "
            + ("real horizons" if results["full"] else f"stand-in horizons {results['horizons_s']} s (real seconds x {results['scale']:g})"),
            "networks: " + "; ".join(f"{k}: {v}" for k, v in results["networks"].items()),
            "",
        ]
    lines.append(f"{'goal':<4} {'measured':>10} {'target':>10}  detail")
    p1, p2, p3, p4 = (results.get(k) for k in ("P1", "P2", "P3", "P4"))
    if p1:
        lines.append(f"{'P1':<4} {p1['ratio']:>10.3f} {'<= 0.55':>10}  one call {p1['one_call_s']:.1f} s vs separate {sum(p1['separate_calls_s'].values()):.1f} s (ideal {p1['ideal_ratio']:.3f})")
    if p2:
        r10, r90 = p2["runs"]["10"], p2["runs"]["90"]
        lines.append(
            f"{'P2':<4} {p2['ratio']:>10.3f} {'<= 1.25':>10}  peak RSS while evaluating {r90['peak_rss_mb']:.0f} MB ({r90['frames']} frames) vs {r10['peak_rss_mb']:.0f} MB ({r10['frames']} frames); {r90['rss_before_mb']:.0f} MB before"
        )
    if p3:
        lines.append(f"{'P3':<4} {p3['ratio']:>10.3f} {'<= 1.2':>10}  harness {p3['harness_s']:.1f} s vs bare network forward {p3['bare_forward_s']:.1f} s ({p3['frames']} frames, best of {len(p3['harness_runs_s'])})")
    if p4:
        detail = f"usual {p4['usual_total_s']:.1f} s vs harness {p4['harness_s']:.1f} s; |dLPIPS| {p4['lpips_abs_diff']:.1e}; FID stats max |dmu| {p4['fid_mean_max_abs_diff']:.1e}, |dSigma| {p4['fid_cov_max_abs_diff']:.1e}"
        if "fid_rel_diff" in p4:
            detail += f", FID rel diff {p4['fid_rel_diff']:.1e}"
        lines.append(f"{'P4':<4} {p4['speedup']:>9.2f}x {'faster':>10}  {detail}")
    if p1:
        lines.append(f"{'P5':<4} {p1['harness_frames_per_s']:>10.2f} {'>= 25 fps':>10}  frames/s on {results['device']} (real time needs a GPU: python -m benchmark.perf --device cuda --full)")
    p6 = results.get("P6")
    if p6:
        for name, source in p6["sources"].items():
            crc, plain = source["best_s"]["crc"], source["best_s"]["no_crc"]
            lines.append(
                f"{'P6':<4} {source['write_ratio']:>10.3f} {'(cost)':>10}  {name}: write {crc['write_s']:.2f} s with slice CRCs vs {plain['write_s']:.2f} s without; "
                f"size {source['bytes']['crc']} vs {source['bytes']['no_crc']} bytes (x{source['size_ratio']:.5f}); "
                f"read with every CRC checked {crc['read_s']:.2f} s vs {plain['read_s']:.2f} s (best of {p6['repeats']})"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.perf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    parser.add_argument("--full", action="store_true", help="real horizons (10/30/60/90 s) and real networks everywhere: hours on a CPU")
    parser.add_argument("--scale", type=float, default=1 / 50, help="stand-in horizon seconds per real second without --full; a multiple of 0.02 (default 1/50)")
    parser.add_argument("--only", default="P1,P2,P3,P4,P6", help="comma-separated subset of P1,P2,P3,P4,P6 (P5 comes with P1)")
    parser.add_argument("--fid-distance", action="store_true", help="in P4 also compute both FIDs (two 2048x2048 matrix square roots)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice; 1 can be faster on a busy shared machine)")
    parser.add_argument("--rss-child", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child is not None:
        print(json.dumps(rss_child(args.rss_child, args.device, args.full)))
        return 0
    goals = {g.strip().upper() for g in args.only.split(",")}
    results: dict = {"device": args.device, "full": args.full, "torch_threads": torch.get_num_threads()}
    if goals & {"P1", "P3", "P4"}:
        try:
            setup = Setup(args.device, args.full, args.scale)
        except NetworkUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        results.update(
            scale=setup.scale,
            horizons_s=[round(h, 6) for h in setup.horizons_s],
            window_frames=setup.protocol.window_frames,
            networks=setup.sources,
        )
    if "P1" in goals:
        results["P1"] = measure_horizons(setup)
        print(f"P1 done: ratio {results['P1']['ratio']:.3f}", file=sys.stderr)
    if "P3" in goals:
        results["P3"] = measure_overhead(setup)
        print(f"P3 done: ratio {results['P3']['ratio']:.3f}", file=sys.stderr)
    if "P4" in goals:
        results["P4"] = measure_usual_practice(setup, args.fid_distance)
        print(f"P4 done: {results['P4']['speedup']:.2f}x", file=sys.stderr)
    if "P2" in goals:
        results["P2"] = measure_memory(args.device, args.full, args.threads)
    if "P6" in goals:
        results["P6"] = measure_slice_crcs()
        print(f"P6 done: write ratio {results['P6']['write_ratio']:.3f}", file=sys.stderr)
    table = report(results)
    print(table)
    results["table"] = table
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else str(v)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
