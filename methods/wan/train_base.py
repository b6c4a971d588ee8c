"""Train the synthetic preset's Wan-Animate transformer: ``python -m methods.wan.train_base``.

Wan-Animate's single-chunk objective: the reference latent in slot 0, the temporal guidance of the
chunk in the conditioning channels (the first ``r`` frames of the chunk re-encoded with zero frames
after them, mask 1 on them, as at inference; or the blank guidance of a first chunk), the pose latent
and the face crops; flow matching (paper Eq. 4-5) on every slot, the reference slot included.

The VAE is frozen, so every training window is encoded once into a bank of latents cached in the run
folder. Windows are 77 frames; a step trains on a prefix of ``L`` latent slots of a window, which is
exactly the latent of the shorter chunk because the VAE is causal, so short cheap steps and full
20-slot steps share one bank. Deterministic per ``(seed, step)``, resumable from ``--run-dir``, with an
EMA of the weights, a log file and a held-out evaluation: single-chunk PSNR on the test split against
the ground truth, next to the reference-copy baseline and the VAE's own reconstruction.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from . import flow
from .backbone import WanBackbone
from .checkpoint import step_generator
from .conditioning import guided_frames_mask, video_frames, with_reference_slot
from .data import ClipArrays, load_clips, psnr, ssim, to_video
from .presets import BACKBONE_FILE, BACKBONE_FORMAT, SYNTHETIC_TRANSFORMER_CONFIG, build_transformer, load_vae
from .training import DEFAULT_ROOT, LossLog, draw_length, due, learning_rate, out_of_time, parse_lengths, record_evaluation, resume_run, save_run, set_learning_rate

WINDOW_FRAMES = 77
GUIDED_FRAMES = (1, 5)
#: Held-out chunks of the test split: (first frame, guided frames). The chunk at 0 is a benchmark's
#: first chunk (blank guidance); the later one is guided by one ground-truth frame re-encoded.
EVAL_CHUNKS = ((0, 0), (1000, 1))


@dataclass
class WindowBank:
    """Latents of every training window (fp16) and the raw face crops; see :func:`build_bank`."""

    target: torch.Tensor  # (N, C, 20, h, w)
    pose: torch.Tensor  # (N, C, 20, h, w)
    guide: dict[int, torch.Tensor]  # r -> (N, C, 20, h, w)
    face: torch.Tensor  # uint8 (N, 77, S, S, 3)
    clip_index: torch.Tensor  # (N,)
    references: torch.Tensor  # (clips, K, C, 1, h, w); candidate 0 is the clip's frame 0
    blank: torch.Tensor  # (1, C, 20, h, w)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"target": self.target, "pose": self.pose, "face": self.face, "clip_index": self.clip_index, "references": self.references, "blank": self.blank}
        out.update({f"guide_{r}": g for r, g in self.guide.items()})
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "WindowBank":
        guide = {int(k.split("_")[1]): v for k, v in t.items() if k.startswith("guide_")}
        return cls(t["target"], t["pose"], guide, t["face"], t["clip_index"], t["references"], t["blank"])


@torch.no_grad()
def build_bank(backbone: WanBackbone, clips: list[ClipArrays], stride: int, reference_candidates: int, seed: int) -> WindowBank:
    """Encode every 77-frame window (start every ``stride`` frames) of every clip: the target video,
    the pose video, and the temporal guidance for 1 and 5 carried frames as Wan-Animate builds it."""
    generator = torch.Generator().manual_seed(seed)
    target, pose, face, clip_index = [], [], [], []
    guide: dict[int, list[torch.Tensor]] = {r: [] for r in GUIDED_FRAMES}
    references = []
    height, width = clips[0].video.shape[1:3]
    num_latents = 1 + (WINDOW_FRAMES - 1) // 4
    for index, clip in enumerate(tqdm(clips, desc="encoding training windows", leave=False)):
        picks = [0] + torch.randint(clip.num_frames, (reference_candidates - 1,), generator=generator).tolist()
        references.append(torch.cat([backbone.encode(clip.video[p : p + 1]) for p in picks]).half())
        for start in range(0, clip.num_frames - WINDOW_FRAMES + 1, stride):
            window = slice(start, start + WINDOW_FRAMES)
            target.append(backbone.encode(clip.video[window]).half())
            pose.append(backbone.encode(clip.pose[window]).half())
            for r in GUIDED_FRAMES:
                guide[r].append(backbone.temporal_guidance(clip.video[start : start + r], num_latents, height, width)[0].half())
            face.append(clip.face[window].clone())
            clip_index.append(index)
    return WindowBank(
        target=torch.cat(target),
        pose=torch.cat(pose),
        guide={r: torch.cat(g) for r, g in guide.items()},
        face=torch.stack(face),
        clip_index=torch.tensor(clip_index),
        references=torch.stack(references),
        blank=backbone.blank_guidance(num_latents, height, width).half().cpu(),
    )


def training_batch(bank: WindowBank, batch: int, length: int, generator: torch.Generator, guide_probs: tuple[float, float, float]) -> dict[str, torch.Tensor]:
    """One batch of ``length``-slot chunks: prefixes of random windows, each with a random guidance
    mode (blank / 1 / 5 frames, ``guide_probs``) and a reference that is the clip's frame 0 half the
    time and another frame of the clip otherwise."""
    index = torch.randint(bank.target.shape[0], (batch,), generator=generator)
    _, channels, _, height, width = bank.target.shape
    slots, masks, refs = [], [], []
    for i in index.tolist():
        choice = int(torch.multinomial(torch.tensor(guide_probs), 1, generator=generator))
        guided = (0, 1, 5)[choice] if length > 1 else min((0, 1, 5)[choice], 1)
        slots.append((bank.blank if guided == 0 else bank.guide[guided][i : i + 1])[:, :, :length])
        masks.append(guided_frames_mask(length, guided, height, width))
        candidates = bank.references.shape[1]
        pick = 0 if float(torch.rand(1, generator=generator)) < 0.5 else int(torch.randint(1, candidates, (1,), generator=generator))
        refs.append(bank.references[bank.clip_index[i], pick : pick + 1])
    return {
        "clean": bank.target[index, :, :length].float(),
        "pose": bank.pose[index, :, :length].float(),
        "face": to_video(bank.face[index, : video_frames(length)]),
        "slots": torch.cat(slots).float(),
        "mask": torch.cat(masks),
        "reference": torch.cat(refs).float(),
    }


def flow_matching_step(backbone: WanBackbone, batch: dict[str, torch.Tensor], generator: torch.Generator, shift: float, reference_slot: bool = True) -> torch.Tensor:
    """Paper Eq. (4)-(5) on one batch, over all ``T + 1`` slots. Slot 0 is the noised reference: the
    sampler starts it from noise and steps it with the model's own prediction, as diffusers' pipeline
    does, so its velocity is trained too; otherwise it drifts off the noised reference the other slots
    attend to. Only the generated slots are decoded. ``reference_slot=False`` leaves slot 0 out of the
    loss (the shipped weights' first 4,500 steps; see ``--reference-slot-loss-from``)."""
    clean, reference = batch["clean"], batch["reference"]
    size = clean.shape[0]
    full_clean = torch.cat([reference, clean], dim=2)
    noise = torch.randn(full_clean.shape, generator=generator)
    sigma = flow.sample_training_sigmas(size, generator, shift)
    noisy = flow.flow_interpolant(full_clean, noise, sigma)
    conditioning, mask = with_reference_slot(reference, batch["slots"], batch["mask"])
    predicted = backbone.velocity(noisy, sigma, conditioning, mask, batch["pose"], batch["face"])
    first = 0 if reference_slot else 1
    return flow.flow_matching_loss(predicted[:, :, first:], flow.flow_velocity_target(full_clean, noise)[:, :, first:])


@torch.no_grad()
def evaluate(backbone: WanBackbone, clips: list[ClipArrays], steps: int, seed: int = 0) -> dict[str, float]:
    """Single-chunk PSNR on held-out chunks (:data:`EVAL_CHUNKS`), sampled exactly as the wan-animate
    method does, against the ground truth; with reference-copy and VAE-reconstruction PSNR of the
    same frames for scale."""
    backbone.transformer.eval()
    generated, reference_copy, reconstruction, generated_ssim, reference_copy_ssim = [], [], [], [], []
    num_latents = 1 + (WINDOW_FRAMES - 1) // 4
    for clip_number, clip in enumerate(clips):
        reference = clip.video[:1]
        reference_latent = backbone.encode(reference)
        for start, guided in EVAL_CHUNKS:
            window = slice(start, start + WINDOW_FRAMES)
            truth = to_video(clip.video[window]).unsqueeze(0)
            guide = clip.video[start : start + guided] if guided else None
            slots, mask = backbone.temporal_guidance(guide, num_latents, truth.shape[3], truth.shape[4])
            conditioning = backbone.chunk_conditioning(reference_latent, slots, mask, clip.pose[window], clip.face[window])
            latent = backbone.sample(conditioning, torch.Generator().manual_seed(seed * 1000 + clip_number), steps=steps)
            decoded, copied = backbone.decode_video(latent), to_video(reference).unsqueeze(0).expand_as(truth)
            generated.append(psnr(decoded, truth))
            reference_copy.append(psnr(copied, truth))
            generated_ssim.append(ssim(decoded, truth))
            reference_copy_ssim.append(ssim(copied, truth))
            reconstruction.append(psnr(backbone.decode_video(backbone.encode(truth)), truth))
    backbone.transformer.train()
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return {
        "psnr": mean(generated),
        "reference_copy_psnr": mean(reference_copy),
        "vae_psnr": mean(reconstruction),
        "ssim": mean(generated_ssim),
        "reference_copy_ssim": mean(reference_copy_ssim),
        "chunks": len(generated),
    }


class ExponentialAverage:
    """EMA of the trainable weights, used for evaluation and export."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, parameter in model.named_parameters():
            self.shadow[name].lerp_(parameter.detach(), 1 - decay)

    @torch.no_grad()
    def swap(self, model: torch.nn.Module) -> None:
        """Exchange the model's weights with the average (call twice to restore)."""
        for name, parameter in model.named_parameters():
            current = parameter.detach().clone()
            parameter.copy_(self.shadow[name])
            self.shadow[name].copy_(current)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


#: Training options that change the weights, in the order the model card's command lists them.
COMMAND_OPTIONS = ("steps", "batch", "lr", "warmup", "train_shift", "ema", "lengths", "guide_probs", "stride", "seed", "reference_slot_loss_from")


def training_command(args: argparse.Namespace) -> str:
    """The command line that reproduces a run: every weight-changing option, spelled out."""
    options = " ".join(f"--{name.replace('_', '-')} {getattr(args, name)}" for name in COMMAND_OPTIONS)
    return f"python -m methods.wan.train_base {options} --export"


def last_logged_loss(log_path: Path) -> float | None:
    """The last training-loss line of a run's ``train.log``."""
    if not log_path.exists():
        return None
    records = (json.loads(line) for line in log_path.read_text().splitlines() if line.strip())
    losses = [record["loss"] for record in records if "loss" in record]
    return losses[-1] if losses else None


def export(backbone: WanBackbone, vae_folder: Path, target: Path, history: list[dict], args: argparse.Namespace, step: int) -> Path:
    """Write a complete weights folder: ``vae/`` (copied), ``transformer/`` (EMA weights), ``backbone.json``."""
    target.mkdir(parents=True, exist_ok=True)
    if (vae_folder / "vae").resolve() != (target / "vae").resolve():
        shutil.rmtree(target / "vae", ignore_errors=True)
        shutil.copytree(vae_folder / "vae", target / "vae")
    backbone.transformer.save_pretrained(target / "transformer", safe_serialization=True)
    description = {"format": BACKBONE_FORMAT, "shift": 5.0, "text_embedding": {"kind": "zeros", "tokens": int(backbone.text_embeds.shape[1])}, "resolution": [64, 96]}
    (target / BACKBONE_FILE).write_text(json.dumps(description, indent=1, sort_keys=True) + "\n")
    last = history[-1] if history else {}
    params = sum(p.numel() for p in backbone.transformer.parameters())
    loss = last_logged_loss(args.run_dir / "train.log")
    final_loss = "not logged" if loss is None else f"{loss:.4f} (flow-matching MSE)"
    card = f"""# Synthetic-preset Wan-Animate transformer

- Class: `WanAnimateTransformer3DModel` ({params / 1e6:.2f}M parameters), config in `config.json` (image_dim None,
  a constant zero text embedding of {int(backbone.text_embeds.shape[1])} token).
- Command: `{training_command(args)}` (after `python -m methods.wan.train_vae --export`, which writes the
  VAE this run reads). Deterministic per (seed, step) and resumable: rerunning the command continues the run.
- {step} steps, {last.get('minutes', float('nan')):.0f} minutes of wall time on a 2-core CPU up to the last evaluation:
  77-frame windows of `{args.train_split}`, batch {args.batch} x 20/L chunks of L slots, AdamW lr {args.lr},
  flow matching with time shift {args.train_shift}, chunk prefixes of {args.lengths} latent slots, guidance
  blank/1/5 frames with probabilities {args.guide_probs}; the weights are the EMA ({args.ema}).
- Final training loss (mean of the last 25 steps): {final_loss}.
- Held-out single-chunk PSNR on `{args.eval_split}` (chunks {list(EVAL_CHUNKS)} (start, guided frames) of every clip, 20 steps):
  {last.get('psnr', float('nan')):.2f} dB; reference-copy {last.get('reference_copy_psnr', float('nan')):.2f} dB; VAE reconstruction {last.get('vae_psnr', float('nan')):.2f} dB.
  SSIM {last.get('ssim', float('nan')):.4f}; reference-copy {last.get('reference_copy_ssim', float('nan')):.4f}.
- For the synthetic split only (64x96, 25 fps). Not a model of real video.
"""
    (target / "transformer" / "MODEL_CARD.md").write_text(card)
    (target / "transformer" / "training_history.json").write_text(json.dumps(history, indent=1))
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vae", type=Path, default=DEFAULT_ROOT / "vae-small" / "export", help="folder holding vae/ (train_vae --export)")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_ROOT / "base")
    parser.add_argument("--train-split", default="synthetic-train")
    parser.add_argument("--eval-split", default="synthetic")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lengths", default="5:0.5,10:0.25,20:0.25", help="latent slots per training chunk : probability")
    parser.add_argument("--guide-probs", default="0.3,0.5,0.2", help="probabilities of blank / 1-frame / 5-frame guidance")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--train-shift", type=float, default=3.0)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--stride", type=int, default=32, help="frames between training windows")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--reference-slot-loss-from", type=int, default=0, metavar="STEP",
                        help="leave the reference slot out of the loss before this step (the shipped weights used 4500)")
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--export", nargs="?", type=Path, const=Path(__file__).resolve().parent / "weights" / "synthetic", default=None,
                        help="write the weights folder (default: the package's weights/synthetic)")
    parser.add_argument("--export-every", type=int, default=0, help="also export after every N steps (0: only at the end)")
    parser.add_argument("--export-only", action="store_true", help="export the EMA weights of --run-dir (evaluating them first if needed) and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lengths = parse_lengths(args.lengths)
    guide_probs = tuple(float(p) for p in args.guide_probs.split(","))
    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "train.log"

    vae_weights = args.vae / "vae" / "diffusion_pytorch_model.safetensors"
    if not vae_weights.exists():
        parser.error(f"no trained VAE in {args.vae}/vae; run `python -m methods.wan.train_vae --export {args.vae}` first")
    torch.manual_seed(args.seed)
    backbone = WanBackbone(load_vae(args.vae), build_transformer(SYNTHETIC_TRANSFORMER_CONFIG), name="synthetic")
    backbone.vae.requires_grad_(False)
    model = backbone.transformer
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    ema = ExponentialAverage(model, args.ema)
    info, step, history = resume_run(run_dir, model, optimizer, extra={"ema": ema.shadow})
    minutes_before = float(info.get("minutes", 0.0))  # wall time of earlier invocations of this run
    if info and info.get("vae") != file_digest(vae_weights):
        parser.error(f"{run_dir} was trained with another VAE; use a new --run-dir")

    eval_clips = load_clips(args.eval_split, cache_dir=DEFAULT_ROOT / "data", frames=(0, max(s for s, _ in EVAL_CHUNKS) + WINDOW_FRAMES))
    if args.export_only:
        ema.swap(model)
        if not history or history[-1].get("step") != step or "ssim" not in history[-1]:
            # The card reports the exported weights: evaluate them when the last evaluation is older.
            record = {"step": step, **evaluate(backbone, eval_clips, args.eval_steps, args.seed), "minutes": minutes_before}
            history = [h for h in history if h.get("step") != step] + [record]
        print(f"exported {export(backbone, args.vae, args.export or run_dir / 'export', history, args, step)}")
        return 0

    bank_path = run_dir / f"bank-{file_digest(vae_weights)}-{args.stride}.safetensors"
    if bank_path.exists():
        bank = WindowBank.from_tensors(load_file(str(bank_path)))
    else:
        bank = build_bank(backbone, load_clips(args.train_split, cache_dir=DEFAULT_ROOT / "data"), args.stride, 4, args.seed)
        save_file({k: v.contiguous() for k, v in bank.tensors().items()}, str(bank_path))

    began = time.time()

    def minutes() -> float:
        """Wall time of the whole run so far, over all its invocations."""
        return minutes_before + (time.time() - began) / 60

    def save() -> None:
        save_run(run_dir, model, optimizer, {"step": step, "history": history, "vae": file_digest(vae_weights), "minutes": minutes()}, args, extra={"ema": ema.shadow})

    def run_eval() -> None:
        ema.swap(model)
        record = {"step": step, **evaluate(backbone, eval_clips, args.eval_steps, args.seed), "minutes": minutes()}
        ema.swap(model)
        record_evaluation(log_path, history, record)
        bar.write(f"step {step}: single-chunk PSNR {record['psnr']:.2f} dB (reference-copy {record['reference_copy_psnr']:.2f}, VAE {record['vae_psnr']:.2f})")

    bar = tqdm(total=args.steps, initial=step, desc="base", dynamic_ncols=True)
    losses = LossLog(log_path, bar)
    while step < args.steps:
        set_learning_rate(optimizer, learning_rate(step, args.steps, args.lr, args.warmup))
        generator = step_generator(args.seed, step)
        length = draw_length(lengths, generator)
        # Shorter chunks get proportionally more samples so every step sees a similar number of tokens.
        batch = training_batch(bank, max(1, args.batch * 20 // length), length, generator, guide_probs)
        loss = flow_matching_step(backbone, batch, generator, args.train_shift, reference_slot=step >= args.reference_slot_loss_from)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema.update(model, step)
        step += 1
        bar.update(1)
        losses.add(step, float(loss.detach()), optimizer.param_groups[0]["lr"], minutes())
        stopping = out_of_time(began, args.max_minutes)  # this invocation
        if due(step, args.eval_every, args.steps, stopping):
            run_eval()
        if due(step, args.save_every, args.steps, stopping):
            save()
        if args.export is not None and args.export_every and step % args.export_every == 0:
            ema.swap(model)
            export(backbone, args.vae, args.export, history, args, step)
            ema.swap(model)
        if stopping:
            bar.write(f"stopping after {args.max_minutes} minutes at step {step}; rerun the command to continue")
            break
    bar.close()
    if args.export is not None:
        ema.swap(model)
        print(f"exported {export(backbone, args.vae, args.export, history, args, step)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
