"""Train EverAnimate's LoRA in two stages (paper Sec. 4.3): ``python -m everanimate.train --stage 1|2``.

Stage 1, memory adaptation: standard flow matching (Eq. 4-5) of a chunk conditioned on its context
memory (Eq. 1-3), with the motion memory perturbed. Stage 2, anti-drift adaptation: restorative flow
matching (Eq. 6-12), starting from the stage-1 LoRA. Only the LoRA on attention q/k/v/o and the FFN
linears trains; the base weights are frozen and never written.

Data: pairs of adjacent chunks of the training split's long clips. The target chunk starts at ``s``, its
context chunk at ``s - (chunk - overlap)`` (73 frames earlier for 77-frame chunks with 4 overlap), as
consecutive chunks of a rollout do: M_mot is the last latent of the context chunk's encoding, M_id the
encoding of K frames of the context chunk under T_id, and the reference in the backbone's slot 0 is
the clip's frame 0. Each clip's first chunk is also a sample, with no motion memory and the reference
repeated as identity memory, as a rollout's first chunk is. The frozen VAE encodes everything once into
a bank cached in the run folder (stage 2 adds encoded perturbed copies of every target chunk, E(T_xi(V))).

``--carry image`` trains the ablation without PLP on Wan-Animate's conditioning instead: the target's
first frame (the previous chunk's last, with one frame of overlap) encoded as temporal guidance, the
reference in slot 0, no identity memory and no motion-memory noise.

Timesteps: sigma uniform in [0, 1], then shifted with ``train_shift`` (5, as the release), the
sampler's emphasis; the loss covers every slot, the prepended ones included, as the base model's.
Deterministic per (seed, step), resumable from ``--run-dir``, with a held-out evaluation: PSNR of a
few-chunk rollout of the test split's clips, exactly as the ``everanimate`` method generates them.

Multi-process: ``accelerate launch -m everanimate.train ...`` or ``torchrun --nproc-per-node N -m
everanimate.train ...``. The global batch of a step is drawn whole, with its noise and timesteps, from
the (seed, step) generator on every process; each process computes the loss of its own share of the
rows (in ``--grad-accum`` micro-batches), and the LoRA gradients are averaged over the processes, so a
step is the one-process step up to the order of float sums. The first process alone builds the bank,
evaluates and writes the log, checkpoints and the export; a checkpoint holds the global step, the LoRA
and the optimizer moments only, so a run resumes on any process count.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from benchmark import distributed
from benchmark.errors import BenchmarkError
from benchmark.files import temporary_sibling
from methods.wan import flow
from methods.wan.checkpoint import step_generator
from methods.wan.conditioning import guided_frames_mask, video_frames
from methods.wan.data import ClipArrays, load_clips, psnr, to_video
from methods.wan.training import DEFAULT_ROOT, LOG_EVERY, LossLog, draw_length, due, learning_rate, out_of_time, parse_lengths, record_evaluation, resume_run, save_run, set_learning_rate

from .config import CARRIES, CARRY_OVERLAP, EverAnimateConfig
from .inference import generate_chunk, start_state
from .lora import lora_state, read_lora, save_lora
from .memory import ChunkLayout, chunk_layout, identity_memory, image_carry_layout, layout_velocity, motion_memory, training_identity_frames
from .rfm import random_perturbation, restorative_training_pair

CHUNK_FRAMES = 77
PROCESS_GROUP_TIMEOUT_HOURS = 4
SHIPPED = Path(__file__).resolve().parent / "weights" / "synthetic"
#: Latent slots a step of ``--batch B`` trains on: B x 20/L chunks of L slots.
SLOTS_PER_BATCH_UNIT = 20
MIXED_PRECISIONS = ("no", "bf16", "fp16")


class TrainingInputError(BenchmarkError):
    """A command line, run folder or launch this script cannot train with; the message says why."""


@dataclass
class PairBank:
    """Encoded training pairs (latents fp16). ``N`` samples, ``G`` identity draws, ``P`` perturbed draws."""

    target: torch.Tensor  # (N, C, T, h, w): the chunk to generate
    pose: torch.Tensor  # (N, C, T, h, w)
    face: torch.Tensor  # uint8 (N, F, S, S, 3)
    # (N, C, r, h, w): last latents of the context chunk (zeros for first chunks); with carry "image",
    # (N, C, T, h, w): the temporal guidance of the target chunk (blank for first chunks)
    motion: torch.Tensor
    identity: torch.Tensor  # (N, G, C, K, h, w): E(T_id(I_k)) of the context chunk
    reference: torch.Tensor  # (N, C, 1, h, w): the clip's frame 0
    first: torch.Tensor  # bool (N,): the clip's first chunk, with no context chunk
    perturbed: torch.Tensor  # (N, P, C, T, h, w): E(T_xi(V)); P = 0 for stage 1

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).contiguous() for name in self.__dataclass_fields__}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "PairBank":
        return cls(**tensors)


def context_start(start: int, config: EverAnimateConfig, chunk_frames: int = CHUNK_FRAMES) -> int:
    """First frame of the chunk before the one starting at ``start`` in a rollout."""
    return start - (chunk_frames - config.overlap_frames)


@torch.no_grad()
def build_bank(backbone: Any, clips: list[ClipArrays], config: EverAnimateConfig, stride: int, identity_draws: int, perturbed_draws: int, seed: int, chunk_frames: int = CHUNK_FRAMES) -> PairBank:
    """Encode every pair of adjacent chunks (target starts every ``stride`` frames) and each clip's first chunk."""
    generator = torch.Generator().manual_seed(seed)
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in PairBank.__dataclass_fields__}
    for clip in tqdm(clips, desc="encoding training pairs", leave=False):
        reference = backbone.encode(clip.video[:1])
        starts = [0, *range(chunk_frames - config.overlap_frames, clip.num_frames - chunk_frames + 1, stride)]
        for start in starts:
            window = clip.video[start : start + chunk_frames]
            target = backbone.encode(window)
            if config.carry == "image":
                guide = None if start == 0 else window[: config.overlap_frames]
                motion = backbone.temporal_guidance(guide, target.shape[2], window.shape[1], window.shape[2])[0]
                identity = reference.repeat(1, 1, config.identity_frames, 1, 1).unsqueeze(1).repeat(1, identity_draws, 1, 1, 1, 1)
            elif start == 0:
                motion = torch.zeros_like(target[:, :, : config.motion_latents])
                identity = reference.repeat(1, 1, config.identity_frames, 1, 1).unsqueeze(1).repeat(1, identity_draws, 1, 1, 1, 1)
            else:
                context = clip.video[context_start(start, config, chunk_frames) :][:chunk_frames]
                motion = motion_memory(backbone.encode(context), config.motion_latents)
                draws = [identity_memory(training_identity_frames(context, config.identity_frames, generator, config), backbone.encode) for _ in range(identity_draws)]
                identity = torch.stack(draws, dim=1)
            perturbed = []
            for _ in range(perturbed_draws):
                frames, chosen = random_perturbation(window, config, generator)
                perturbed.append(backbone.encode(frames) if chosen else target)
            rows["target"].append(target.half())
            rows["pose"].append(backbone.encode(clip.pose[start : start + chunk_frames]).half())
            rows["face"].append(clip.face[start : start + chunk_frames].unsqueeze(0).clone())
            rows["motion"].append(motion.half())
            rows["identity"].append(identity.half())
            rows["reference"].append(reference.half())
            rows["first"].append(torch.tensor([start == 0]))
            rows["perturbed"].append(torch.stack(perturbed, dim=1).half() if perturbed else target.new_zeros(1, 0, *target.shape[1:]).half())
    return PairBank(**{name: torch.cat(values) for name, values in rows.items()})


def training_batch(bank: PairBank, size: int, length: int, generator: torch.Generator, config: EverAnimateConfig) -> dict[str, Any]:
    """``size`` samples of ``length`` latent slots: a first chunk with ``first_chunk_probability``, else a
    pair; one of the identity draws; the motion memory with noise of a random level up to
    ``motion_noise`` (the stage-1 perturbation of M_mot); one perturbed draw when the bank has them."""
    first_rows = torch.nonzero(bank.first).flatten()
    pair_rows = torch.nonzero(~bank.first).flatten()
    if not len(pair_rows):
        raise ValueError("the bank holds no pairs of adjacent chunks: the training clips are shorter than two chunks")
    picks = []
    for _ in range(size):
        pool = first_rows if float(torch.rand((), generator=generator)) < config.first_chunk_probability else pair_rows
        picks.append(int(pool[torch.randint(len(pool), (), generator=generator)]))
    index = torch.tensor(picks)
    draws = torch.randint(bank.identity.shape[1], (size,), generator=generator)
    motion = bank.motion[index].float()
    if config.carry == "image":
        motion = motion[:, :, :length]
    else:
        levels = config.motion_noise * torch.rand(size, 1, 1, 1, 1, generator=generator)
        motion = motion + levels * torch.randn(motion.shape, generator=generator)
    batch: dict[str, Any] = {
        "clean": bank.target[index, :, :length].float(),
        "pose": bank.pose[index, :, :length].float(),
        "face": to_video(bank.face[index, : video_frames(length)]),
        "motion": motion,
        "identity": bank.identity[index, draws].float(),
        "reference": bank.reference[index].float(),
        "first": bank.first[index],
        "perturbed": None,
    }
    if bank.perturbed.shape[1]:
        which = torch.randint(bank.perturbed.shape[1], (size,), generator=generator)
        batch["perturbed"] = bank.perturbed[index, which, :, :length].float()
    return batch


def batch_layout(batch: dict[str, Any], config: EverAnimateConfig, length: int) -> ChunkLayout:
    """Every sample's layout (first chunks without motion memory or guidance), stacked along the batch."""
    if config.carry == "image":
        height, width = batch["reference"].shape[3:]
        layouts = [
            image_carry_layout(batch["reference"][i : i + 1], batch["motion"][i : i + 1], guided_frames_mask(length, 0 if bool(first) else config.overlap_frames, height, width))
            for i, first in enumerate(batch["first"])
        ]
    else:
        layouts = [
            chunk_layout(config, batch["reference"][i : i + 1], batch["identity"][i : i + 1], length, None if bool(batch["first"][i]) else batch["motion"][i : i + 1])
            for i in range(len(batch["first"]))
        ]
    return ChunkLayout(config.layout, torch.cat([x.latent for x in layouts]), torch.cat([x.mask for x in layouts]), torch.cat([x.prefix for x in layouts]))


def step_batch_size(batch: int, length: int) -> int:
    """The global batch of a step of ``length`` latent slots under ``--batch batch``."""
    return max(1, batch * SLOTS_PER_BATCH_UNIT // length)


def draw_noise(batch: dict[str, Any], config: EverAnimateConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow noise ``(B, C, P + T, h, w)`` of every slot (the ``P`` prepended ones included) and the
    noise levels ``(B,)`` of a whole batch, drawn in this order from ``generator``. Drawn for the global
    batch and then sliced, they never depend on how the rows are split over processes."""
    layout = batch_layout(batch, config, batch["clean"].shape[2])
    noise = torch.randn(layout.with_prefix(batch["clean"]).shape, generator=generator)
    sigma = flow.sample_training_sigmas(noise.shape[0], generator, config.train_shift)
    return noise, sigma


def batch_rows(batch: dict[str, Any], rows: slice) -> dict[str, Any]:
    """The samples ``rows`` of a batch (every field is batch-first)."""
    return {name: None if value is None else value[rows] for name, value in batch.items()}


def noised_loss(backbone: Any, batch: dict[str, Any], config: EverAnimateConfig, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Eq. (5) (no perturbed chunk: stage 1) or Eq. (12) (stage 2) on one batch, over every slot, with
    the given noise ``(B, C, P + T, h, w)`` and noise levels ``(B,)`` (:func:`draw_noise`): the mean over
    the batch, so equal micro-batches average to the loss of their union."""
    layout = batch_layout(batch, config, batch["clean"].shape[2])
    clean = layout.with_prefix(batch["clean"])
    if batch["perturbed"] is None:
        noisy, target = flow.flow_interpolant(clean, noise, sigma), flow.flow_velocity_target(clean, noise)
    else:
        noisy, target = restorative_training_pair(clean, noise, sigma, config, layout.with_prefix(batch["perturbed"]))
    predicted = layout_velocity(backbone, layout, noisy, sigma, batch["pose"], batch["face"])
    return flow.flow_matching_loss(predicted, target.to(predicted.device))


def training_loss(backbone: Any, batch: dict[str, Any], config: EverAnimateConfig, generator: torch.Generator) -> torch.Tensor:
    """Eq. (5) (no perturbed chunk: stage 1) or Eq. (12) (stage 2) on one batch, over every slot."""
    noise, sigma = draw_noise(batch, config, generator)
    return noised_loss(backbone, batch, config, noise, sigma)


def process_rows(size: int, processes: int, rank: int, accumulation: int) -> list[slice]:
    """The rows of a global batch of ``size`` that process ``rank`` of ``processes`` computes, as
    ``accumulation`` equal micro-batches: the ``rank``-th of ``processes`` contiguous equal shares."""
    if size % (processes * accumulation):
        raise TrainingInputError(f"a global batch of {size} cannot be split over {processes} processes x {accumulation} accumulation steps")
    share = size // processes
    micro = share // accumulation
    return [slice(rank * share + k * micro, rank * share + (k + 1) * micro) for k in range(accumulation)]


def check_divisible(batch: int, lengths: list[tuple[int, float]], processes: int, accumulation: int) -> None:
    """Every step's global batch (``--batch`` x 20/L for each length L of ``--lengths``) must split into
    ``processes`` x ``accumulation`` equal micro-batches."""
    parts = processes * accumulation
    bad = [f"{step_batch_size(batch, length)} chunks of {length} slots" for length, _ in lengths if step_batch_size(batch, length) % parts]
    if bad:
        raise TrainingInputError(
            f"--batch {batch}: the global batch of a step ({', '.join(bad)}) is not divisible by {processes} processes x --grad-accum {accumulation} = {parts}; "
            "choose --batch, --lengths and --grad-accum so that it is"
        )


def lora_gradients_mean_(parameters: list[torch.nn.Parameter], processes: int) -> None:
    """Average the LoRA gradients over the processes in place, in one all-reduce (a missing gradient
    counts as zero, so every process sends the same layout)."""
    if processes == 1:
        return
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in parameters]
    flat = distributed.all_reduce_sum_(torch.cat([g.flatten() for g in grads])) / processes
    offset = 0
    for parameter in parameters:
        parameter.grad = flat[offset : offset + parameter.numel()].view_as(parameter).clone()
        offset += parameter.numel()


def broadcast_lora_(parameters: list[torch.nn.Parameter]) -> None:
    """Give every process the LoRA of the first one."""
    if distributed.is_distributed():
        with torch.no_grad():
            flat = torch.cat([p.detach().flatten() for p in parameters])
            torch.distributed.broadcast(flat, src=0)
            offset = 0
            for parameter in parameters:
                parameter.copy_(flat[offset : offset + parameter.numel()].view_as(parameter))
                offset += parameter.numel()


@torch.no_grad()
def evaluate(backbone: Any, config: EverAnimateConfig, clips: list[ClipArrays], chunks: int, steps: int, seed: int = 0) -> dict[str, float]:
    """PSNR of ``chunks``-chunk rollouts of the held-out clips (as the benchmark generates them: the
    latent carry of :mod:`everanimate.inference`, frames kept as the runner keeps them), overall and
    for the chunks after the first, where the memory is at work."""
    backbone.transformer.eval()
    stride = CHUNK_FRAMES - config.overlap_frames
    first_psnr, later_psnr = [], []
    for number, clip in enumerate(clips):
        references = clip.video[:1]
        state = start_state(backbone, config, references)
        for chunk in range(chunks):
            start = chunk * stride
            window = slice(start, start + CHUNK_FRAMES)
            generator = torch.Generator().manual_seed(seed * 1000 + number * 100 + chunk)
            frames, state = generate_chunk(backbone, config, state, references, clip.pose[window], clip.face[window], generator, clip.clip_id, steps)
            kept = slice(0 if chunk == 0 else config.overlap_frames, None)
            value = psnr(to_video(frames[kept]).unsqueeze(0), to_video(clip.video[window][kept]).unsqueeze(0))
            (first_psnr if chunk == 0 else later_psnr).append(value)
    backbone.transformer.train()
    mean = lambda values: sum(values) / len(values) if values else float("nan")  # noqa: E731
    return {"psnr": mean(first_psnr + later_psnr), "psnr_first_chunk": mean(first_psnr), "psnr_later_chunks": mean(later_psnr), "chunks": chunks}


class LoraParameters:
    """The LoRA of a transformer seen as a model by :mod:`methods.wan.checkpoint`: its state dict is the
    adapter's tensors only, so checkpoints hold LoRA keys and never the frozen base."""

    def __init__(self, transformer: Any):
        self.transformer = transformer

    def state_dict(self) -> dict[str, torch.Tensor]:
        return lora_state(self.transformer)

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.transformer, tensors)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for name, p in self.transformer.named_parameters() if "lora_" in name]


def prepare_backbone(backbone: Any, config: EverAnimateConfig, init: Path | None) -> LoraParameters:
    """Freeze the base, attach the LoRA (from ``init`` when given: stage 2 starts from stage 1)."""
    backbone.vae.requires_grad_(False)
    backbone.transformer.requires_grad_(False)
    if init is not None:
        from .lora import attach_lora

        tensors, init_config, _ = read_lora(init)
        theirs = (init_config.lora_rank, init_config.lora_alpha, init_config.layout, init_config.carry)
        ours = (config.lora_rank, config.lora_alpha, config.layout, config.carry)
        if theirs != ours:
            raise ValueError(f"{init} has rank/alpha/layout/carry {'/'.join(map(str, theirs))}, this run {'/'.join(map(str, ours))}")
        attach_lora(backbone, tensors, config)
    else:
        backbone.add_lora(rank=config.lora_rank, alpha=config.lora_alpha)
    lora = LoraParameters(backbone.transformer)
    for parameter in lora.parameters():
        parameter.requires_grad_(True)
    backbone.transformer.train()
    return lora


def base_fingerprint(weights: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((weights / "transformer").glob("*.safetensors")) + sorted((weights / "vae").glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


#: Options that change the weights, in the order the model card's command lists them.
COMMAND_OPTIONS = ("stage", "steps", "batch", "lr", "warmup", "lengths", "rank", "layout", "carry", "perturbation_set", "first_chunk_probability", "stride", "seed")


def training_command(args: argparse.Namespace) -> str:
    options = " ".join(f"--{name.replace('_', '-')} {getattr(args, name)}" for name in COMMAND_OPTIONS)
    init = f" --init {args.init}" if args.init is not None else ""
    return f"python -m everanimate.train {options}{init} --export"


def variant_name(args: argparse.Namespace) -> str:
    """The LoRA's folder name: ``stage1``, ``stage2``, and a suffix for the ablation variants
    (``stage1-release``: the release's layout; ``stage2-image-carry``: without PLP)."""
    suffix = ("-release" if args.layout == "release" else "") + ("-image-carry" if args.carry == "image" else "")
    return f"stage{args.stage}{suffix}"


def initial_lora(args: argparse.Namespace) -> Path | None:
    """The LoRA a run starts from: ``--init`` (``none``: a new LoRA), else stage 2 starts from the
    exported stage-1 LoRA of the same variant."""
    if args.init is not None:
        return None if args.init == "none" else Path(args.init)
    if args.stage == 1:
        return None
    return SHIPPED / variant_name(argparse.Namespace(**{**vars(args), "stage": 1}))


def write_model_card(folder: Path, args: argparse.Namespace, step: int, history: list[dict], minutes: float, loss: float | None, lora_params: int) -> None:
    last = history[-1] if history else {}
    first = history[0] if history else {}
    stage = {1: "memory adaptation (flow matching, perturbed motion memory)", 2: "anti-drift adaptation (restorative flow matching)"}[args.stage]
    carry_note = " (the ablation without PLP: Wan-Animate's image-space carry of one frame)" if args.carry == "image" else ""
    init = initial_lora(args)
    carried = "latent propagation" if args.carry == "latent" else "image-space carry, i.e. `wan-animate`"
    start_label = f"the base model with {carried}, no LoRA" if init is None else f"the LoRA in `{init.relative_to(SHIPPED.parents[2]) if init.is_relative_to(SHIPPED.parents[2]) else init}`"
    card = f"""# EverAnimate LoRA `{variant_name(args)}`, stage {args.stage}: {stage}

- Base: the synthetic preset (`methods/wan/weights/synthetic/`), frozen; LoRA rank {args.rank}, alpha {args.rank},
  on attention q/k/v/o and both FFN linears ({lora_params} parameters). Layout `{args.layout}`, carry `{args.carry}`{carry_note}.
- Command: `{training_command(args)}`{' (after stage 1)' if args.stage == 2 and args.init is None else ''}. Deterministic per (seed, step),
  resumable: rerunning the command continues the run.
- {step} of {args.steps} steps{' (stopped early by --max-minutes, before the final learning-rate decay; rerun the command to continue)' if step < args.steps else ''}, {minutes:.0f} minutes of wall time on a 2-core CPU; pairs of adjacent 77-frame chunks of `{args.train_split}`,
  batch {args.batch} x 20/L chunks of L slots ({args.lengths}), AdamW lr {args.lr}, sigma shift 5.
- Final training loss (mean of the last 25 steps): {'not logged' if loss is None else f'{loss:.4f}'}.
- Held-out: PSNR of {args.eval_chunks}-chunk rollouts of `{args.eval_split}` (20 steps): {last.get('psnr', float('nan')):.2f} dB
  (first chunk {last.get('psnr_first_chunk', float('nan')):.2f}, later chunks {last.get('psnr_later_chunks', float('nan')):.2f});
  at step {first.get('step', 0)} (the run's start: {start_label}) {first.get('psnr', float('nan')):.2f} dB.
- For the synthetic split only (64x96, 25 fps). Not a model of real video.
"""
    (folder / "MODEL_CARD.md").write_text(card)
    (folder / "training_history.json").write_text(json.dumps(history, indent=1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m everanimate.train",
        description=__doc__.split("\n")[0],
        epilog="Several processes: accelerate launch --multi_gpu --num_processes N -m everanimate.train ... (also on CPUs, with gloo), "
        "or torchrun --nproc-per-node N -m everanimate.train ...; --batch is the global batch, whatever N.",
    )
    parser.add_argument("--stage", type=int, choices=(1, 2), required=True, help="1: memory adaptation (FM); 2: anti-drift adaptation (RFM), from the stage-1 LoRA")
    parser.add_argument("--weights", type=Path, default=Path(__file__).resolve().parents[1] / "methods" / "wan" / "weights" / "synthetic", help="base weights folder (the synthetic preset's)")
    parser.add_argument("--init", help="LoRA folder to start from, or none for a new LoRA (stage 2 default: the exported stage-1 LoRA of the same variant)")
    parser.add_argument("--run-dir", type=Path, help="checkpoints, bank and log (default: ~/.cache/everanimate-bench/train/everanimate-VARIANT)")
    parser.add_argument("--train-split", default="synthetic-train")
    parser.add_argument("--eval-split", default="synthetic")
    parser.add_argument("--max-clips", type=int, default=None, help="train on the first N clips only (smoke runs)")
    parser.add_argument("--eval-clips", type=int, default=None, help="evaluate on the first N held-out clips only (smoke runs)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=2, help="global batch unit: a step of L slots trains B x 20/L chunks over all processes together")
    parser.add_argument("--grad-accum", type=int, default=1, metavar="K", help="gradient accumulation: each process computes its share of the global batch in K micro-batches; processes x K must divide every step's batch")
    parser.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISIONS,
        default=None,
        help="autocast of the forward pass, the LoRA and optimizer stay float32 (default: accelerate launch's --mixed_precision, else no); fp16 needs a GPU",
    )
    parser.add_argument("--lengths", default="10:0.5,20:0.5", help="latent slots per training chunk : probability (at least K + r + 1)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank, alpha = rank (the transformer is 128 wide)")
    parser.add_argument("--layout", choices=("paper", "release"), default="paper", help="where the memory goes (see everanimate.memory); release: the K anchors as prepended slots")
    parser.add_argument("--carry", choices=[c for c in CARRIES if c != "none"], default="latent", help="latent: PLP; image: the ablation without PLP (Wan-Animate's image-space carry, one frame)")
    parser.add_argument("--perturbation-set", choices=("paper", "release"), default="paper")
    parser.add_argument("--first-chunk-probability", type=float, default=0.2, help="share of first-chunk samples (the release's 0.2)")
    parser.add_argument("--stride", type=int, default=16, help="frames between training pairs")
    parser.add_argument("--perturbed-draws", type=int, default=2, help="encoded T_xi draws per target chunk (stage 2)")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-chunks", type=int, default=4)
    parser.add_argument("--eval-steps", type=int, default=20, help="sampling steps of the held-out rollouts")
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--log-every", type=int, default=LOG_EVERY, help="steps averaged into one line of train.log")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop this invocation after so many minutes (rerun to continue)")
    parser.add_argument("--stop-after", type=int, default=None, metavar="STEP", help="stop this invocation once the run reaches STEP, with a checkpoint (rerun to continue)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--export", nargs="?", type=Path, const=SHIPPED, default=None, help="write the LoRA to FOLDER/VARIANT (default FOLDER: everanimate/weights/synthetic; VARIANT: stageN, with -release or -image-carry for the ablation variants)")
    return parser


def run_config(args: argparse.Namespace) -> EverAnimateConfig:
    return EverAnimateConfig(
        layout=args.layout,
        lora_rank=args.rank,
        lora_alpha=float(args.rank),
        perturbation_set=args.perturbation_set,
        first_chunk_probability=args.first_chunk_probability,
        learning_rate=args.lr,
        carry=args.carry,
        overlap_frames=CARRY_OVERLAP[args.carry],
    )


def resolve_mixed_precision(requested: str | None) -> str:
    """``--mixed-precision``, else the one ``accelerate launch --mixed_precision`` passes on, else no.
    fp16 is refused on a CPU: autocast there has no loss scaling, so small gradients would underflow."""
    mixed = requested or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if mixed not in MIXED_PRECISIONS:
        raise TrainingInputError(f"mixed precision {mixed!r} is not one of {', '.join(MIXED_PRECISIONS)}")
    on_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")
    if mixed == "fp16" and on_cpu:
        raise TrainingInputError("--mixed-precision fp16 needs a GPU (its loss scaling is CUDA's); use bf16 or no on a CPU")
    return mixed


def start_processes(mixed_precision: str) -> Any:
    """The :class:`accelerate.Accelerator` of this process (one process, or one of those started by
    ``accelerate launch`` or ``torchrun``; gloo on CPUs, NCCL on GPUs)."""
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    # Without cpu=True accelerate takes a CPU-only torchrun launch for N unrelated single processes.
    # The others wait at a barrier while the first process evaluates, which on the 14B preset can
    # outlast the default 30-minute process-group timeout.
    timeout = InitProcessGroupKwargs(timeout=timedelta(hours=PROCESS_GROUP_TIMEOUT_HOURS))
    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available(), kwargs_handlers=[timeout])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        mixed_precision = resolve_mixed_precision(args.mixed_precision)
        accelerator = start_processes(mixed_precision)
        code = train(args, accelerator)
    except BenchmarkError as exc:
        # Every process meets the same input error (missing weights, a bad split, a bad command) at the
        # same point; the first one reports it.
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"error: {exc}", file=sys.stderr)
        code = 2
    distributed.shutdown()
    return code


def prepare_data(args: argparse.Namespace, backbone: Any, config: EverAnimateConfig, run_dir: Path, base: str, is_main: bool) -> tuple[PairBank, list[ClipArrays]]:
    """The pair bank (built and cached in ``run_dir`` by the first process, read by the others) and the
    held-out clips (read by every process from the data cache the first one filled)."""
    draws = args.perturbed_draws if args.stage == 2 else 0
    bank_key = [base, args.train_split, args.max_clips, args.stride, draws, args.perturbation_set, config.identity_frames, config.motion_latents, config.overlap_frames, args.seed]
    bank_key += [config.carry] if config.carry != "latent" else []
    bank_path = run_dir / f"bank-{hashlib.sha256(json.dumps(bank_key).encode()).hexdigest()[:12]}.safetensors"
    if bank_path.exists():
        bank = PairBank.from_tensors(load_file(str(bank_path)))
    elif not is_main:
        raise TrainingInputError(f"the first process built no bank {bank_path}")
    else:
        clips = load_clips(args.train_split, cache_dir=DEFAULT_ROOT / "data", max_clips=args.max_clips)
        bank = build_bank(backbone, clips, config, args.stride, identity_draws=2, perturbed_draws=draws, seed=args.seed)
        with temporary_sibling(bank_path) as tmp:
            save_file(bank.tensors(), str(tmp))
    frames_needed = (args.eval_chunks - 1) * (CHUNK_FRAMES - config.overlap_frames) + CHUNK_FRAMES
    eval_clips = load_clips(args.eval_split, cache_dir=DEFAULT_ROOT / "data", max_clips=args.eval_clips, frames=(0, frames_needed)) if is_main else []
    return bank, eval_clips


def train(args: argparse.Namespace, accelerator: Any) -> int:
    from methods.wan.presets import load_backbone

    is_main, processes, rank = accelerator.is_main_process, accelerator.num_processes, accelerator.process_index
    torch.set_num_threads(args.threads)
    lengths = parse_lengths(args.lengths)
    if args.grad_accum < 1:
        raise TrainingInputError(f"--grad-accum must be at least 1, got {args.grad_accum}")
    check_divisible(args.batch, lengths, processes, args.grad_accum)
    try:
        config = run_config(args)
    except ValueError as exc:
        raise TrainingInputError(str(exc)) from exc
    smallest = config.identity_frames + config.motion_latents + 1
    if any(length < smallest for length, _ in lengths):
        raise TrainingInputError(f"--lengths: the paper layout needs at least K + r + 1 = {smallest} slots per chunk")
    init = initial_lora(args)
    if init is not None and not (init / "lora.json").is_file():
        raise TrainingInputError(f"--init: no LoRA in {init}; train stage 1 of this variant with --export first, or give --init FOLDER or --init none")
    run_dir = args.run_dir or DEFAULT_ROOT / f"everanimate-{variant_name(args)}"
    log_path = run_dir / "train.log"

    torch.manual_seed(args.seed)
    backbone = load_backbone("synthetic", weights=args.weights, device=accelerator.device)
    try:
        lora = prepare_backbone(backbone, config, init)
    except ValueError as exc:
        raise TrainingInputError(str(exc)) from exc
    optimizer = torch.optim.AdamW(lora.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    base = base_fingerprint(args.weights)
    info, step, history = resume_run(run_dir, lora, optimizer)  # type: ignore[arg-type]
    if info and info.get("base") != base:
        raise TrainingInputError(f"{run_dir} was trained on other base weights; use a new --run-dir")
    minutes_before = float(info.get("minutes", 0.0))
    parameters = lora.parameters()
    broadcast_lora_(parameters)
    # Wrapped for fp16 loss scaling (accelerator.backward scales, clip_grad_norm_ unscales, step skips overflows).
    prepared = accelerator.prepare(optimizer)
    if accelerator.scaler is not None and "grad_scaler" in info:
        accelerator.scaler.load_state_dict(info["grad_scaler"])

    def data_step(main_turn: bool) -> tuple[PairBank, list[ClipArrays]]:
        if main_turn:
            run_dir.mkdir(parents=True, exist_ok=True)
        return prepare_data(args, backbone, config, run_dir, base, main_turn)

    data, error = distributed.main_process_first(data_step, (BenchmarkError, ValueError, OSError))
    if error is not None or data is None:
        raise TrainingInputError(error or "no training data")
    bank, eval_clips = data

    began = time.time()

    def minutes() -> float:
        """Wall time of the whole run so far, over all its invocations."""
        return minutes_before + (time.time() - began) / 60

    def run_eval() -> None:
        """On the first process only (its numbers do not depend on the process count); the others wait."""
        if is_main:
            record = {"step": step, **evaluate(backbone, config, eval_clips, args.eval_chunks, args.eval_steps, args.seed), "minutes": minutes()}
            record_evaluation(log_path, history, record)
            bar.write(f"step {step}: rollout PSNR {record['psnr']:.2f} dB (first chunk {record['psnr_first_chunk']:.2f}, later {record['psnr_later_chunks']:.2f})")
        accelerator.wait_for_everyone()

    def checkpoint() -> None:
        if is_main:
            record = {"step": step, "history": history, "base": base, "minutes": minutes(), "processes": processes, "mixed_precision": accelerator.mixed_precision}
            if accelerator.scaler is not None:
                record["grad_scaler"] = accelerator.scaler.state_dict()
            save_run(run_dir, lora, optimizer, record, args)  # type: ignore[arg-type]
        accelerator.wait_for_everyone()

    bar = tqdm(total=args.steps, initial=step, desc=f"everanimate stage {args.stage}", dynamic_ncols=True, disable=not is_main)
    if not history:
        run_eval()  # step 0: the starting point (the base model, or the stage-1 LoRA)
    losses = LossLog(log_path, bar, every=args.log_every) if is_main else None
    while step < args.steps:
        set_learning_rate(optimizer, learning_rate(step, args.steps, args.lr, args.warmup))
        generator = step_generator(args.seed, step)
        length = draw_length(lengths, generator)
        batch = training_batch(bank, step_batch_size(args.batch, length), length, generator, config)
        noise, sigma = draw_noise(batch, config, generator)
        prepared.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=accelerator.device)
        for rows in process_rows(len(noise), processes, rank, args.grad_accum):
            with accelerator.autocast():
                loss = noised_loss(backbone, batch_rows(batch, rows), config, noise[rows], sigma[rows]) / args.grad_accum
            accelerator.backward(loss)
            step_loss += loss.detach()
        lora_gradients_mean_(parameters, processes)
        accelerator.clip_grad_norm_(parameters, 1.0)
        prepared.step()
        step += 1
        step_loss = distributed.all_reduce_sum_(step_loss) / processes
        if losses is not None:
            losses.add(step, float(step_loss), optimizer.param_groups[0]["lr"], minutes())
        bar.update(1)
        stopping = out_of_time(began, args.max_minutes)
        if args.max_minutes is not None:
            # Clocks differ between processes: all stop at the step where the first one runs out.
            stopping = bool(distributed.all_reduce_sum_(torch.tensor([float(stopping)], device=accelerator.device)) > 0)
        stopping = stopping or (args.stop_after is not None and step >= args.stop_after)
        if due(step, args.eval_every, args.steps, False):
            run_eval()
        if due(step, args.save_every, args.steps, stopping):
            checkpoint()
        if stopping:
            if is_main:
                reason = "--stop-after" if args.stop_after is not None and step >= args.stop_after else f"--max-minutes {args.max_minutes}"
                bar.write(f"stopping at step {step} ({reason}); rerun the command to continue")
            break
    bar.close()
    if args.export is not None and is_main:
        folder = args.export / variant_name(args)
        record = {"stage": args.stage, "step": step, "base_weights_sha256": base, "command": training_command(args), "minutes": round(minutes(), 1)}
        record |= {"processes": processes, "grad_accum": args.grad_accum, "mixed_precision": accelerator.mixed_precision}
        save_lora(folder, backbone.transformer, config, record)
        logged = [json.loads(line) for line in log_path.read_text().splitlines() if '"loss"' in line]
        write_model_card(folder, args, step, history, minutes(), logged[-1]["loss"] if logged else None, sum(p.numel() for p in lora.parameters()))
        print(f"exported {folder}")
    accelerator.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
