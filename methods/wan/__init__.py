"""Wan-Animate backbone shared by the baselines and EverAnimate: VAE, transformer, sampler, presets."""

from .backbone import LORA_TARGET_MODULES, LatentCodec, WanBackbone, frames_to_video, video_to_frames
from .conditioning import ChunkConditioning, concat_memory, frame_mask_to_slot_mask, guided_frames_mask, latent_frames, video_frames
from .presets import PRESETS, MissingWeightsError, load_backbone, load_codec, save_backbone, tiny_random_backbone

__all__ = [
    "LORA_TARGET_MODULES",
    "PRESETS",
    "ChunkConditioning",
    "LatentCodec",
    "MissingWeightsError",
    "WanBackbone",
    "concat_memory",
    "frame_mask_to_slot_mask",
    "frames_to_video",
    "guided_frames_mask",
    "latent_frames",
    "load_backbone",
    "load_codec",
    "save_backbone",
    "tiny_random_backbone",
    "video_frames",
    "video_to_frames",
]
