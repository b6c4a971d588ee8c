"""The weights shipped in ``methods/wan/weights/synthetic/`` load through the ``synthetic`` preset and
generate a chunk that follows its pose input."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

pytest.importorskip("diffusers")

from benchmark.protocol import Protocol
from methods.wan.presets import PRESETS
from methods.wan.random_clip import random_clip_context
from methods.wan_animate import WanAnimate

pytestmark = pytest.mark.usefixtures("single_thread")

# The synthetic splits' frame size, a short chunk (4k + 1 frames) and two sampling steps.
PROTOCOL = Protocol(width=64, height=96, chunk_frames=13, sampling_steps=2)


@pytest.fixture(scope="module")
def method():
    return WanAnimate(preset="synthetic")


def _chunk_pose() -> torch.Tensor:
    clip = random_clip_context(PROTOCOL, PROTOCOL.chunk_frames, face_size=32)
    return clip.read_controls(0, PROTOCOL.chunk_frames, 0).pose


def _chunk(method: WanAnimate, pose: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames and clean latent of chunk 0 of a seeded random clip, with its pose frames replaced by
    ``pose`` when given; the generator is seeded afresh, so two calls differ only in their inputs."""
    clip = random_clip_context(PROTOCOL, PROTOCOL.chunk_frames, face_size=32)
    controls = clip.read_controls(0, PROTOCOL.chunk_frames, 0)
    if pose is not None:
        controls = dataclasses.replace(controls, pose=pose)
    latents = []
    backbone = method.backbone
    original = backbone.sample

    def keep_latent(*args, **kwargs):
        latents.append(original(*args, **kwargs))
        return latents[-1]

    backbone.sample = keep_latent
    try:
        frames, state = method.generate_chunk(method.start(clip), controls)
    finally:
        del backbone.sample
    assert state["carry_frames"].shape == (1, PROTOCOL.height, PROTOCOL.width, 3)
    return frames, latents[0]


def test_the_synthetic_preset_loads_the_shipped_weights(method):
    assert PRESETS["synthetic"].source.endswith("weights/synthetic")
    described = method.describe()
    assert described["arguments"]["preset"] == "synthetic"
    assert re.fullmatch(r"[0-9a-f]{16}", described["weights_sha256"])
    parameters = method.backbone.parameter_counts()
    assert 1.2e6 < parameters["transformer"] < 1.35e6 and 0.9e6 < parameters["vae"] < 1.05e6


def test_the_shipped_weights_generate_a_chunk_that_follows_the_pose(method):
    frames, latent = _chunk(method)
    assert frames.shape == (PROTOCOL.chunk_frames, PROTOCOL.height, PROTOCOL.width, 3) and frames.dtype == torch.uint8
    assert torch.isfinite(latent).all() and latent.abs().max() < 100
    # In range and not saturated: a broken decoder clamps everything to 0 or 255.
    assert 0 < frames.float().mean() < 255 and frames.float().std() > 1
    again, _ = _chunk(method)
    assert torch.equal(frames, again)
    # Another pose with the same reference, face crops and noise gives another chunk: mirrored pose
    # frames, or none (black). Measured: 14 and 18 uint8 levels of mean difference.
    mirrored, _ = _chunk(method, pose=_chunk_pose().flip(2))
    blank, _ = _chunk(method, pose=torch.zeros_like(_chunk_pose()))
    for other in (mirrored, blank):
        assert (frames.float() - other.float()).abs().mean() > 3
