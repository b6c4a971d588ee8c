"""Sanity methods: the oracle and the reference copy. They bound every metric from above and below."""

from __future__ import annotations

import torch

from .base import ChunkControls, ChunkMethod, ClipContext, State


class GroundTruth(ChunkMethod):
    """Returns the ground-truth frames: PSNR at the cap, SSIM 1, LPIPS 0 at every horizon."""

    name = "ground-truth"
    no_memory_reason = "an oracle: every chunk reads the ground truth, nothing passes from one chunk to the next"

    def start(self, clip: ClipContext) -> State:
        self._clip = clip
        return {}

    def generate_chunk(self, state: State, controls: ChunkControls) -> tuple[torch.Tensor, State]:
        frames = self._clip.read_ground_truth(controls.start, controls.start + len(controls))
        return frames, state


class ReferenceCopy(ChunkMethod):
    """Repeats the reference frame: static background right, moving person wrong."""

    name = "reference-copy"
    no_memory_reason = "carries nothing between chunks: every chunk repeats the reference frame"

    def start(self, clip: ClipContext) -> State:
        return {"reference": clip.references[0].clone()}

    def generate_chunk(self, state: State, controls: ChunkControls) -> tuple[torch.Tensor, State]:
        reference = state["reference"]
        return reference.unsqueeze(0).expand(len(controls), *reference.shape).clone(), state
