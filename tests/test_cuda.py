"""What only a GPU can check: the same code on CUDA gives what it gives on the CPU. Marked ``cuda``
and skipped without a device; ``python -m benchmark.gpu_check`` runs them."""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (python -m benchmark.gpu_check runs these)"),
]


def test_pixel_metrics_on_cuda_equal_the_cpu():
    from benchmark.metrics import to_unit_float
    from benchmark.metrics.frame import psnr_per_frame, ssim_per_frame

    generator = torch.Generator().manual_seed(0)
    reference = torch.randint(0, 256, (6, 64, 96, 3), generator=generator, dtype=torch.uint8)
    generated = (reference.int() + torch.randint(-20, 21, reference.shape, generator=generator)).clamp(0, 255).to(torch.uint8)
    assert psnr_per_frame(generated.cuda(), reference.cuda()) == psnr_per_frame(generated, reference)  # integer squared errors
    cpu = ssim_per_frame(to_unit_float(generated), to_unit_float(reference))
    cuda = ssim_per_frame(to_unit_float(generated.cuda()), to_unit_float(reference.cuda())).cpu()
    assert torch.allclose(cpu.double(), cuda.double(), atol=1e-6)


def test_the_tiny_backbone_predicts_the_same_velocity_on_cuda():
    from methods.wan.presets import tiny_random_backbone

    cpu, cuda = tiny_random_backbone(seed=0), tiny_random_backbone(seed=0, device="cuda")
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(1, 4, 3, 4, 4, generator=generator), 0.7, torch.randn(1, 4, 3, 4, 4, generator=generator), torch.ones(1, 4, 3, 4, 4)]
    pose, face = torch.randn(1, 4, 2, 4, 4, generator=generator), torch.rand(1, 3, 5, 16, 16, generator=generator) * 2 - 1
    expected = cpu.velocity(*inputs, pose, face)
    moved = [x.cuda() if isinstance(x, torch.Tensor) else x for x in inputs]
    assert torch.allclose(cuda.velocity(*moved, pose.cuda(), face.cuda()).cpu(), expected, atol=1e-4)


def test_everanimate_generates_a_chunk_on_cuda():
    from benchmark.protocol import Protocol
    from methods.everanimate import EverAnimate
    from methods.wan.presets import tiny_random_backbone
    from methods.wan.random_clip import random_clip_context

    protocol = Protocol(width=32, height=32, chunk_frames=21, sampling_steps=2, carry_over=4)
    method = EverAnimate(device="cuda", backbone=tiny_random_backbone(device="cuda"), lora="none")
    clip = random_clip_context(protocol, 40, face_size=16)
    frames, state = method.generate_chunk(method.start(clip), clip.read_controls(0, 21, 0))
    assert frames.shape == (21, 32, 32, 3) and frames.dtype == torch.uint8 and state["identity_complete"]
