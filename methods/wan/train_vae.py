"""Train the synthetic preset's VAE: ``python -m methods.wan.train_vae [--arch small|wan]``.

Deterministic (every step's batch comes from ``(seed, step)``), resumable (``--run-dir`` holds a
safetensors + JSON checkpoint; rerunning the command continues), with a progress bar, a log file and a
held-out evaluation on the test split every ``--eval-every`` steps: reconstruction PSNR, and how much
the reconstructions follow their input (a collapsed VAE scores ~17 dB while ignoring it).

Recipe, following the measured traps of docs/backbone.md: the loss (L1 + MSE) is taken on the
*unclamped* decoder output, the latent is the posterior mean with a tiny KL, and latents_mean/std of
length z_dim are measured on the training split at export. A finished run writes ``RUN_DIR/export/vae``
(or ``--export DIR``), where ``train_base`` looks for it by default.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .checkpoint import step_generator
from .data import ClipArrays, load_clips, psnr, to_video
from .presets import SYNTHETIC_VAE_CONFIG, build_vae
from .training import DEFAULT_ROOT, LossLog, due, learning_rate, out_of_time, record_evaluation, resume_run, save_run, set_learning_rate
from .training import log_line  # noqa: F401 - still imported from here by everanimate.train

#: ``AutoencoderKLWan`` at a CPU-trainable size (4x spatial, 4x temporal), for the comparison trial.
WAN_TRIAL_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 16,
    "z_dim": 16,
    "dim_mult": [1, 2, 2],
    "num_res_blocks": 1,
    "temperal_downsample": [True, True],
    "latents_mean": [0.0] * 16,
    "latents_std": [1.0] * 16,
    "scale_factor_spatial": 4,
    "scale_factor_temporal": 4,
}

#: Held-out windows of the test split: (first frame, frames); one at the start, one a minute in.
EVAL_WINDOWS = ((0, 77), (1500, 77))


def decode_unclamped(vae: torch.nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """The decoder output before the [-1, 1] clamp, whose gradient survives on saturated pixels."""
    if hasattr(vae, "decode_unclamped"):
        return vae.decode_unclamped(latent)
    # AutoencoderKLWan.decode clamps; run its causal decoder loop (one latent slot per call) ourselves.
    vae.clear_cache()
    hidden = vae.post_quant_conv(latent)
    slots = []
    for index in range(latent.shape[2]):
        vae._conv_idx = [0]
        slots.append(vae.decoder(hidden[:, :, index : index + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=index == 0))
    vae.clear_cache()
    return torch.cat(slots, dim=2)


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 + MSE on the unclamped reconstruction."""
    return (reconstruction - target).abs().mean() + (reconstruction - target).pow(2).mean()


def kl_divergence(posterior) -> torch.Tensor:
    return posterior.kl().mean() / posterior.mean[0].numel()


def sample_batch(clips: list[ClipArrays], batch: int, frames: int, pose_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """``(batch, 3, frames, H, W)`` windows of random clips at random starts, randomly mirrored; a
    ``pose_fraction`` of them from the pose videos, which the VAE also encodes."""
    windows = []
    for _ in range(batch):
        clip = clips[int(torch.randint(len(clips), (1,), generator=generator))]
        start = int(torch.randint(clip.num_frames - frames + 1, (1,), generator=generator))
        source = clip.pose if float(torch.rand(1, generator=generator)) < pose_fraction else clip.video
        window = source[start : start + frames]
        if float(torch.rand(1, generator=generator)) < 0.5:
            window = window.flip(2)
        windows.append(window)
    return to_video(torch.stack(windows))


@torch.no_grad()
def evaluate(vae: torch.nn.Module, clips: list[ClipArrays]) -> dict[str, float]:
    """Held-out PSNR over :data:`EVAL_WINDOWS` of every clip, the first frame's PSNR, and the input
    dependence: mean |recon_a - recon_b| / mean |x_a - x_b| over pairs of windows (1 = follows the
    input, 0 = ignores it)."""
    vae.eval()
    scores, first, inputs, outputs = [], [], [], []
    for clip in clips:
        for start, length in EVAL_WINDOWS:
            if start + length > clip.num_frames:
                continue
            video = to_video(clip.video[start : start + length]).unsqueeze(0)
            reconstruction = vae.decode(vae.encode(video).latent_dist.mode()).sample
            scores.append(psnr(reconstruction, video))
            first.append(psnr(reconstruction[:, :, :1], video[:, :, :1]))
            inputs.append(video)
            outputs.append(reconstruction)
    pairs = [(i, (i + 1) % len(inputs)) for i in range(len(inputs))] if len(inputs) > 1 else []
    dependence = [float((outputs[a] - outputs[b]).abs().mean() / (inputs[a] - inputs[b]).abs().mean().clamp_min(1e-6)) for a, b in pairs]
    vae.train()
    return {
        "psnr": sum(scores) / len(scores),
        "psnr_first_frame": sum(first) / len(first),
        "input_dependence": sum(dependence) / len(dependence) if dependence else float("nan"),
        "windows": len(scores),
    }


@torch.no_grad()
def latent_statistics(vae: torch.nn.Module, clips: list[ClipArrays], frames: int = 17, windows: int = 64, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of posterior means over training windows (RGB and pose videos)."""
    generator = torch.Generator().manual_seed(seed)
    latents = []
    for _ in range(windows):
        video = sample_batch(clips, 1, frames, 0.25, generator)
        latents.append(vae.encode(video).latent_dist.mode().transpose(0, 1).flatten(1))
    stacked = torch.cat(latents, dim=1)
    return stacked.mean(dim=1).tolist(), stacked.std(dim=1).clamp_min(1e-3).tolist()


def build(arch: str) -> torch.nn.Module:
    if arch == "small":
        return build_vae("SmallCausalVAE", SYNTHETIC_VAE_CONFIG)
    if arch == "wan":
        return build_vae("AutoencoderKLWan", WAN_TRIAL_VAE_CONFIG)
    raise ValueError(f"unknown --arch {arch!r}")


def export(vae: torch.nn.Module, train_clips: list[ClipArrays], folder: Path, history: list[dict], args: argparse.Namespace, step: int) -> Path:
    """Write ``folder/vae`` with latent statistics measured on the training split, and its model card."""
    mean, std = latent_statistics(vae, train_clips, seed=args.seed)
    vae.register_to_config(latents_mean=mean, latents_std=std)
    target = folder / "vae"
    vae.save_pretrained(target, safe_serialization=True)
    last = history[-1] if history else {}
    params = sum(p.numel() for p in vae.parameters())
    card = f"""# Synthetic-preset VAE

- Class: `{type(vae).__name__}` ({params / 1e6:.2f}M parameters), causal, 4x temporal, {vae.config.scale_factor_spatial}x spatial, z_dim {vae.config.z_dim}.
- Trained by `python -m methods.wan.train_vae --arch {args.arch}` on the `{args.train_split}` split for {step} steps
  (batch {args.batch} windows of {args.clip_frames} frames, AdamW lr {args.lr}, L1 + MSE on the unclamped output, KL weight {args.kl}, seed {args.seed}).
- Held-out reconstruction on `{args.eval_split}` (windows {list(EVAL_WINDOWS)} of every clip, uint8 PSNR):
  {last.get('psnr', float('nan')):.2f} dB; first frame {last.get('psnr_first_frame', float('nan')):.2f} dB; input dependence {last.get('input_dependence', float('nan')):.3f}.
- `latents_mean` / `latents_std` measured on the training split (posterior means of 64 windows).
- For the synthetic split only (64x96, 25 fps). Not a model of real video.
"""
    (target / "MODEL_CARD.md").write_text(card)
    (target / "training_history.json").write_text(json.dumps(history, indent=1))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=("small", "wan"), default="small")
    parser.add_argument("--run-dir", type=Path, default=None, help="checkpoint and log folder (default: cache/train/vae-ARCH)")
    parser.add_argument("--train-split", default="synthetic-train")
    parser.add_argument("--eval-split", default="synthetic")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--clip-frames", type=int, default=None, help="frames per training window, 4k+1 (default 9 small, 17 wan)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--kl", type=float, default=1e-6)
    parser.add_argument("--pose-fraction", type=float, default=0.25)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--max-minutes", type=float, default=None, help="save and stop after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--export", type=Path, default=None, help="where the finished VAE goes (EXPORT/vae; default RUN_DIR/export, where train_base looks)")
    parser.add_argument("--export-only", action="store_true")
    args = parser.parse_args(argv)
    args.clip_frames = args.clip_frames or (9 if args.arch == "small" else 17)
    if (args.clip_frames - 1) % 4:
        parser.error("--clip-frames must be 4k+1")
    torch.set_num_threads(args.threads)
    run_dir = args.run_dir or DEFAULT_ROOT / f"vae-{args.arch}"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "train.log"

    torch.manual_seed(args.seed)
    vae = build(args.arch)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    info, step, history = resume_run(run_dir, vae, optimizer)
    if info and info.get("arch") != args.arch:
        parser.error(f"{run_dir} holds a {info.get('arch')} run, not {args.arch}")

    train_clips = load_clips(args.train_split, cache_dir=run_dir.parent / "data")
    eval_clips = load_clips(args.eval_split, cache_dir=run_dir.parent / "data", frames=(0, max(s + n for s, n in EVAL_WINDOWS)))
    if args.export_only:
        target = export(vae, train_clips, args.export or run_dir / "export", history, args, step)
        print(f"exported {target}")
        return 0

    def save() -> None:
        save_run(run_dir, vae, optimizer, {"step": step, "history": history, "arch": args.arch}, args)

    began = time.time()
    vae.train()
    bar = tqdm(total=args.steps, initial=step, desc=f"vae-{args.arch}", dynamic_ncols=True)
    losses = LossLog(log_path, bar)
    while step < args.steps:
        set_learning_rate(optimizer, learning_rate(step, args.steps, args.lr, args.warmup))
        video = sample_batch(train_clips, args.batch, args.clip_frames, args.pose_fraction, step_generator(args.seed, step))
        posterior = vae.encode(video).latent_dist
        reconstruction = decode_unclamped(vae, posterior.mode())
        loss = reconstruction_loss(reconstruction, video) + args.kl * kl_divergence(posterior)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        step += 1
        bar.update(1)
        losses.add(step, float(loss.detach()), optimizer.param_groups[0]["lr"], (time.time() - began) / 60)
        stopping = out_of_time(began, args.max_minutes)
        if due(step, args.eval_every, args.steps, stopping):
            record = {"step": step, **evaluate(vae, eval_clips), "minutes": (time.time() - began) / 60}
            record_evaluation(log_path, history, record)
            bar.write(f"step {step}: held-out PSNR {record['psnr']:.2f} dB (first frame {record['psnr_first_frame']:.2f}), input dependence {record['input_dependence']:.3f}")
        if due(step, args.save_every, args.steps, stopping):
            save()
        if stopping:
            bar.write(f"stopping after {args.max_minutes} minutes at step {step}; rerun the command to continue")
            break
    bar.close()
    if step >= args.steps:
        print(f"exported {export(vae, train_clips, args.export or run_dir / 'export', history, args, step)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
