"""Estimated GPU cost per chunk of the Wan methods on the 14B preset, from an exact FLOP count.

The models are built on the meta device from the 14B configuration (the diffusers class defaults,
with ``added_kv_proj_dim=5120`` for the CLIP branch), so nothing is downloaded or allocated, and one
forward pass of each is run under :class:`torch.utils.flop_counter.FlopCounterMode`: the count is that
of the code that runs, attention products included, not of a formula. Time is that count divided by
an assumed throughput; memory is the weights plus a stated rule of thumb for activations. Both are
estimates: ``scripts/gpu_check.sh`` measures them on a GPU.

What each method runs per chunk (77 frames, 20 steps, no CFG), as its adapter does:

- ``wan-animate``: VAE-encode the pose video and the temporal guidance (the carried frame followed by
  zero frames), 20 transformer passes over ``1 + T`` slots, decode.
- ``everanimate`` (paper layout): VAE-encode the pose video, 20 passes over ``1 + T`` slots (the memory
  sits in the conditioning channels), decode; the identity frames are encoded once per clip.
  ``everanimate layout=release``: the same over ``K + T`` slots.
- ``unianimate-dit``: the whole video at once; every step evaluates all context windows of ``T``
  latents overlapping by 4, so a "chunk" is the video's cost divided by the chunks the protocol cuts
  it into.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from .conditioning import latent_frames

#: Dense bf16 throughput (TFLOP/s) of the GPUs the table quotes, and the fraction a well-fed
#: transformer reaches; the time column is an estimate under these assumptions only.
GPU_TFLOPS = {"H100": 989.0, "A100": 312.0}
ASSUMED_UTILISATION = 0.4
#: A forward pass without gradients keeps a handful of ``tokens x width`` bf16 buffers alive
#: (residual stream, q, k, v, attention output, FFN hidden at 2.7x width): 12 is the rule of thumb.
ACTIVATION_BUFFERS = 12
TEXT_TOKENS, CLIP_TOKENS = 512, 257


@dataclass(frozen=True)
class Shape14B:
    width: int = 832
    height: int = 480
    chunk_frames: int = 77
    steps: int = 20
    identity_frames: int = 4
    face_size: int = 512

    @property
    def latent_slots(self) -> int:
        return latent_frames(self.chunk_frames)

    @property
    def patches_per_slot(self) -> int:
        return (self.height // 16) * (self.width // 16)  # VAE 8x, patch 2


@lru_cache(maxsize=1)
def meta_models() -> tuple[Any, Any]:
    """The 14B transformer (bf16) and the Wan VAE, on the meta device."""
    from diffusers import AutoencoderKLWan, WanAnimateTransformer3DModel

    with torch.device("meta"):
        transformer = WanAnimateTransformer3DModel(added_kv_proj_dim=5120).to(torch.bfloat16)
        vae = AutoencoderKLWan()
    return transformer, vae


def counted_flops(run: Any) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def transformer_inputs(model: Any, slots: int, latent_h: int, latent_w: int, face_size: int) -> dict[str, Any]:
    """Zero inputs of one forward pass of ``model`` over ``slots`` time slots (slot 0 and any prepended
    slots included) of a ``latent_h x latent_w`` latent, on the model's device and dtype."""
    config, device, dtype = model.config, model.device, model.dtype
    targets = slots - 1
    return {
        "hidden_states": torch.zeros(1, config.in_channels, slots, latent_h, latent_w, device=device, dtype=dtype),
        "timestep": torch.full((1,), 500.0, device=device),
        "encoder_hidden_states": torch.zeros(1, TEXT_TOKENS, config.text_dim, device=device, dtype=dtype),
        "encoder_hidden_states_image": None if config.image_dim is None else torch.zeros(1, CLIP_TOKENS, config.image_dim, device=device, dtype=dtype),
        "pose_hidden_states": torch.zeros(1, config.latent_channels, targets, latent_h, latent_w, device=device, dtype=dtype),
        "face_pixel_values": torch.zeros(1, 3, 4 * (targets - 1) + 1, face_size, face_size, device=device, dtype=dtype),
        "return_dict": False,
    }


def transformer_pass_flops(model: Any, slots: int, latent_h: int, latent_w: int, face_size: int) -> int:
    """FLOPs of one forward pass of ``model`` on :func:`transformer_inputs` (the meta device counts too)."""
    inputs = transformer_inputs(model, slots, latent_h, latent_w, face_size)
    return counted_flops(lambda: model(**inputs))


def vae_flops(vae: Any, frames: int, height: int, width: int) -> tuple[int, int]:
    """FLOPs of encoding ``frames`` frames and of decoding their latent."""
    video = torch.zeros(1, 3, frames, height, width, device=vae.device)
    factor = int(vae.config.scale_factor_spatial)
    latent = torch.zeros(1, vae.config.z_dim, latent_frames(frames), height // factor, width // factor, device=vae.device)
    return counted_flops(lambda: vae.encode(video)), counted_flops(lambda: vae.decode(latent))


def method_passes(shape: Shape14B, horizon_s: float = 90.0) -> dict[str, dict[str, float]]:
    """Per chunk, for each method: transformer passes and their slot count, and VAE encodes and
    decodes in units of one chunk's frames (unianimate-dit: averaged over a ``horizon_s`` video)."""
    from benchmark.protocol import Protocol
    from methods.unianimate_dit import scaled_overlap, window_starts

    from .runtime import vae_length

    protocol = Protocol(width=shape.width, height=shape.height, chunk_frames=shape.chunk_frames, sampling_steps=shape.steps)
    slots = shape.latent_slots
    frames = protocol.horizon_frames(horizon_s)
    chunks = len(protocol.chunk_starts(frames, 0))  # chunk-equivalents as methods.perf counts them
    windows = len(window_starts(latent_frames(vae_length(frames)), slots, scaled_overlap(slots)))
    whole_video = frames / shape.chunk_frames / chunks  # one encode and one decode of the whole video
    return {
        "wan-animate": {"passes": shape.steps, "slots": 1 + slots, "encodes": 2, "decodes": 1},
        "everanimate": {"passes": shape.steps, "slots": 1 + slots, "encodes": 1, "decodes": 1},
        "everanimate layout=release": {"passes": shape.steps, "slots": shape.identity_frames + slots, "encodes": 1, "decodes": 1},
        "unianimate-dit": {"passes": shape.steps * windows / chunks, "slots": 1 + slots, "encodes": whole_video, "decodes": whole_video},
    }


def parameter_count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def estimate(shape: Shape14B = Shape14B(), horizon_s: float = 90.0) -> list[dict[str, Any]]:
    """One row per method: PFLOP per chunk (transformer, VAE), estimated seconds per chunk on each GPU
    of :data:`GPU_TFLOPS`, and estimated GPU memory (GB)."""
    transformer, vae = meta_models()
    encode, decode = vae_flops(vae, shape.chunk_frames, shape.height, shape.width)
    weights_gb = (parameter_count(transformer) * 2 + parameter_count(vae) * 4) / 1e9
    width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    rows = []
    for method, plan in method_passes(shape, horizon_s).items():
        tokens = plan["slots"] * shape.patches_per_slot
        per_pass = transformer_pass_flops(transformer, plan["slots"], shape.height // 8, shape.width // 8, shape.face_size)
        transformer_flops = plan["passes"] * per_pass
        codec_flops = plan["encodes"] * encode + plan["decodes"] * decode
        total = transformer_flops + codec_flops
        rows.append(
            {
                "method": method,
                "slots": plan["slots"],
                "tokens": tokens,
                "transformer_pflop": transformer_flops / 1e15,
                "vae_pflop": codec_flops / 1e15,
                **{f"seconds_{gpu}": total / (tflops * 1e12 * ASSUMED_UTILISATION) for gpu, tflops in GPU_TFLOPS.items()},
                "memory_gb": weights_gb + ACTIVATION_BUFFERS * tokens * width * 2 / 1e9,
            }
        )
    return rows
