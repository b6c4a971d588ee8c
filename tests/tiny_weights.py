"""Tiny random weights saved in the folder layouts the real presets load from, for tests of the
loading code paths. Their frames mean nothing."""

from __future__ import annotations

from pathlib import Path

import torch

from methods.wan.presets import TINY_TRANSFORMER_CONFIG, TINY_VAE_CONFIG, build_transformer, build_vae


def make_tiny_14b_folder(root: Path) -> Path:
    """A folder with the layout of Wan-AI/Wan2.2-Animate-14B-Diffusers holding tiny random models of
    the same classes: VAE, transformer with CLIP image input, umT5 text encoder and tokenizer, CLIP."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    build_vae("AutoencoderKLWan", TINY_VAE_CONFIG).save_pretrained(root / "vae")
    config = {**TINY_TRANSFORMER_CONFIG, "image_dim": 8, "added_kv_proj_dim": 24}
    build_transformer(config).save_pretrained(root / "transformer")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "视频中的人在做动作": 3, "dance": 4}
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(root / "tokenizer")
    text_config = UMT5Config(vocab_size=8, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2, relative_attention_num_buckets=4)
    UMT5EncoderModel(text_config).save_pretrained(root / "text_encoder")
    vision = CLIPVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    CLIPVisionModel(vision).save_pretrained(root / "image_encoder")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "image_processor")
    return root


def guided_velocity(backbone) -> torch.Tensor:
    """The velocity a tiny backbone predicts for fixed random inputs (32x32 frames, 16x16 faces, one
    carried frame as temporal guidance): a fingerprint of the transformer's weights and adapters."""
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (5, 32, 32, 3), generator=generator, dtype=torch.uint8)
    slots, mask = backbone.temporal_guidance(frames[-1:], 2, 32, 32)
    faces = torch.randint(0, 256, (5, 16, 16, 3), generator=generator, dtype=torch.uint8)
    conditioning = backbone.chunk_conditioning(backbone.encode(frames[:1]), slots, mask, frames, faces)
    noise = torch.randn(1, 4, 3, 8, 8, generator=generator)
    with torch.no_grad():
        return backbone.conditioned_velocity(noise, 0.7, conditioning)
