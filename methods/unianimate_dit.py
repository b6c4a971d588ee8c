"""UniAnimate-DiT's long-video scheme on the shared backbone: the whole video's latent is denoised at
once, split into overlapping context windows that are all evaluated at every step, with the
overlapping velocity predictions averaged. Every window is conditioned on the reference (slot 0) and
its own pose and face controls; no window sees generated frames of another, so nothing is carried
over and nothing is decoded before the end.

UniAnimate-DiT uses windows of 21 latents with 4 overlapping; here the window is one protocol chunk
(``latent_frames(chunk_frames)``, 20 for 77 frames) and the overlap is scaled in proportion.
The official code (a different backbone, 50 steps, CFG 1.5) can be run externally and scored with
``python -m benchmark.evaluate`` (docs/backbone.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from .base import ClipContext, VideoMethod
from .wan import flow
from .wan.backbone import WanBackbone
from .wan.conditioning import latent_frames, video_frames, with_reference_slot
from .wan.method import WanMethod
from .wan.runtime import pad_frames, vae_length

OFFICIAL_WINDOW_LATENTS = 21
OFFICIAL_OVERLAP_LATENTS = 4


def scaled_overlap(window: int) -> int:
    """UniAnimate-DiT's 4-of-21 overlap scaled to a window of ``window`` latents (at least 1)."""
    return max(1, round(OFFICIAL_OVERLAP_LATENTS * window / OFFICIAL_WINDOW_LATENTS))


def window_starts(num_latents: int, window: int, overlap: int) -> list[int]:
    """First latent of every context window: stride ``window - overlap``, the last window flush with
    the end so every latent is covered and every window is full length."""
    if num_latents <= window:
        return [0]
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, {window}), got {overlap}")
    stride = window - overlap
    starts = list(range(0, num_latents - window + 1, stride))
    if starts[-1] + window < num_latents:
        starts.append(num_latents - window)
    return starts


def fusion_weights(starts: list[int], window: int, num_latents: int) -> torch.Tensor:
    """``(windows, num_latents)`` averaging weights: where ``k`` windows overlap a latent each gets ``1/k``,
    so the weights of every latent sum to 1."""
    coverage = torch.zeros(len(starts), num_latents)
    for row, start in enumerate(starts):
        coverage[row, start : start + window] = 1.0
    counts = coverage.sum(dim=0)
    if (counts == 0).any():
        raise ValueError("some latents are covered by no window")
    return coverage / counts


def window_face_frames(start: int, window: int) -> slice:
    """Face frames a window of latents ``[start, start + window)`` needs: ``4 (window - 1) + 1`` frames
    ending at the window's last frame, ``4 start .. 4 (start + window - 1)``."""
    return slice(4 * start, 4 * start + video_frames(window))


DEFAULT_WINDOW_BATCH = 4


class UniAnimateDiT(WanMethod, VideoMethod):
    """Options: ``preset``, ``weights``, ``steps`` (default: the protocol's), ``window`` and ``overlap``
    in latents (default: one chunk, scaled overlap), ``window_batch`` (windows per transformer call,
    a speed/memory trade-off). ``backbone=`` for tests.

    The windows' fusion does not depend on ``window_batch``, but the transformer's kernels do: a
    batch of windows is not computed as the same windows one at a time to the last bit (convolution
    and matrix-product kernels sum in an order that depends on the batch size), so another
    ``window_batch`` changes output pixels by rounding (at most one uint8 level in the tests). It is
    therefore recorded with the results when it is not the default."""

    name = "unianimate-dit"
    no_memory_reason = (
        "not chunked: all context windows are denoised jointly at every step (a whole-video method), "
        "so no memory passes from one chunk to the next"
    )

    def __init__(
        self,
        device: str | torch.device = "cpu",
        preset: str = "synthetic",
        weights: str | Path | None = None,
        steps: int | None = None,
        window: int | None = None,
        overlap: int | None = None,
        window_batch: int = DEFAULT_WINDOW_BATCH,
        shift: float = 5.0,
        prompt: str | None = None,
        backbone: WanBackbone | None = None,
    ):
        options: dict[str, Any] = {"steps": steps, "window": window, "overlap": overlap, "shift": shift}
        if window_batch != DEFAULT_WINDOW_BATCH:
            options["window_batch"] = window_batch
        super().__init__(device, preset, weights, backbone, prompt, **options)
        self.steps, self.window, self.overlap = steps, window, overlap
        self.window_batch = max(1, int(window_batch))
        self.shift = float(shift)

    def plan(self, num_frames: int, chunk_frames: int) -> tuple[int, int, int]:
        """``(num_latents, window, overlap)`` for a video of ``num_frames``."""
        num_latents = latent_frames(vae_length(num_frames))
        window = self.window or latent_frames(vae_length(chunk_frames))
        window = min(window, num_latents)
        overlap = self.overlap if self.overlap is not None else scaled_overlap(window)
        return num_latents, window, min(overlap, window - 1)

    @torch.no_grad()
    def generate_video(self, clip: ClipContext, num_frames: int, write: Callable[[torch.Tensor], None]) -> None:
        backbone = self.backbone
        height, width = clip.height, clip.width
        backbone.latent_size(height, width)
        num_latents, window, overlap = self.plan(num_frames, clip.protocol.chunk_frames)
        total_frames = video_frames(num_latents)
        controls = clip.read_controls(0, total_frames)
        pose_latent = backbone.encode(pad_frames(controls.pose, total_frames))
        face_pixels = backbone.face_pixels(pad_frames(controls.face, total_frames))
        reference = clip.references[0]
        reference_latent = backbone.encode(reference.unsqueeze(0))
        image_embeds = backbone.image_embedding(reference)
        blank = backbone.blank_guidance(window, height, width)
        h, w = blank.shape[-2:]
        cond_latent, cond_mask = with_reference_slot(reference_latent, blank, torch.zeros(1, 4, window, h, w).to(blank))

        starts = window_starts(num_latents, window, overlap)
        weights = fusion_weights(starts, window, num_latents).to(backbone.device)
        generator = controls.generator
        latent = torch.randn(1, backbone.latent_channels, num_latents, h, w, generator=generator).to(backbone.device)
        reference_slots = torch.randn(len(starts), backbone.latent_channels, 1, h, w, generator=generator).to(backbone.device)
        sigmas = flow.sampling_sigmas(self.sampling_steps(clip.protocol), self.shift).tolist()

        for sigma, sigma_next in tqdm(list(zip(sigmas[:-1], sigmas[1:])), desc=f"{clip.clip_id} windows x steps", leave=False):
            fused = torch.zeros_like(latent)
            for first in range(0, len(starts), self.window_batch):
                batch = list(range(first, min(first + self.window_batch, len(starts))))
                noisy = torch.stack([torch.cat([reference_slots[i : i + 1], latent[:, :, starts[i] : starts[i] + window]], dim=2)[0] for i in batch])
                pose = torch.cat([pose_latent[:, :, starts[i] : starts[i] + window] for i in batch])
                face = torch.cat([face_pixels[:, :, window_face_frames(starts[i], window)] for i in batch])
                count = len(batch)
                velocity = backbone.velocity(
                    noisy,
                    sigma,
                    cond_latent.expand(count, -1, -1, -1, -1),
                    cond_mask.expand(count, -1, -1, -1, -1),
                    pose,
                    face,
                    image_embeds=image_embeds,
                )
                for row, i in enumerate(batch):
                    span = slice(starts[i], starts[i] + window)
                    fused[:, :, span] += weights[i, span].view(1, 1, -1, 1, 1) * velocity[row : row + 1, :, 1:]
                    reference_slots[i : i + 1] = flow.euler_step(reference_slots[i : i + 1], velocity[row : row + 1, :, :1], sigma, sigma_next)
            latent = flow.euler_step(latent, fused, sigma, sigma_next)

        frames = backbone.decode(latent)[:num_frames]
        for begin in range(0, num_frames, clip.protocol.fps):
            write(frames[begin : begin + clip.protocol.fps])
