"""Methods used only by the tests: deterministic, stateful, and misbehaving on purpose."""

from __future__ import annotations

import os

import torch

from methods.base import ChunkControls, ChunkMethod, ClipContext, State


class NoisyDrift(ChunkMethod):
    """Starts from the reference and drifts: each chunk adds seeded noise to the last frame it produced.
    Its output depends on the state carried between chunks and on the per-chunk generator, so a resumed
    run only matches an uninterrupted one if both are restored exactly."""

    name = "noisy-drift"

    def carry_over_frames(self, protocol) -> int:
        return 3

    def start(self, clip: ClipContext) -> State:
        return {"last": clip.references[0].to(torch.float32), "chunks_done": 0}

    def generate_chunk(self, state: State, controls: ChunkControls) -> tuple[torch.Tensor, State]:
        crash_at = os.environ.get("NOISY_DRIFT_KILL_AT_CHUNK")
        if crash_at is not None and controls.index == int(crash_at):
            os._exit(9)  # as abrupt as a SIGKILL: no cleanup runs
        noise = torch.randn((len(controls), *state["last"].shape), generator=controls.generator)
        frames = (state["last"].unsqueeze(0) + 4.0 * noise.cumsum(0) / len(controls) ** 0.5).clamp(0, 255)
        return frames.round().to(torch.uint8), {"last": frames[-1], "chunks_done": state["chunks_done"] + 1}


class WrongShape(ChunkMethod):
    name = "wrong-shape"

    def start(self, clip: ClipContext) -> State:
        return {}

    def generate_chunk(self, state, controls):
        return torch.zeros((len(controls) - 1, 4, 4, 3), dtype=torch.uint8), state


class NaNFrames(ChunkMethod):
    name = "nan-frames"

    def start(self, clip: ClipContext) -> State:
        self._height, self._width = clip.height, clip.width
        return {}

    def generate_chunk(self, state, controls):
        return torch.full((len(controls), self._height, self._width, 3), float("nan")), state


class OutOfRange(ChunkMethod):
    name = "out-of-range"

    def start(self, clip: ClipContext) -> State:
        self._height, self._width = clip.height, clip.width
        return {}

    def generate_chunk(self, state, controls):
        return torch.full((len(controls), self._height, self._width, 3), 300.0), state


class FailsOnSecondClip(ChunkMethod):
    """Returns the reference, except for clip ``tiny01`` where it returns a wrong shape."""

    name = "fails-on-second-clip"

    def start(self, clip: ClipContext) -> State:
        return {"reference": clip.references[0], "broken": clip.clip_id == "tiny01"}

    def generate_chunk(self, state, controls):
        if state["broken"]:
            return torch.zeros((1, 1, 1, 3), dtype=torch.uint8), state
        return state["reference"].expand(len(controls), *state["reference"].shape).clone(), state


class Sampler(ChunkMethod):
    """Repeats the reference; has a ``steps`` option like the diffusion methods, and can be slowed
    down (``delay`` seconds per chunk) so that a test can catch a run in the middle."""

    name = "sampler"

    def __init__(self, device="cpu", steps: int | None = None, delay: float = 0.0):
        super().__init__(device, steps=steps)
        self.steps, self.delay = steps, float(delay)

    def sampling_steps(self, protocol) -> int:
        return self.steps if self.steps is not None else protocol.sampling_steps

    def start(self, clip: ClipContext) -> State:
        return {"reference": clip.references[0].clone()}

    def generate_chunk(self, state, controls):
        import time

        time.sleep(self.delay)
        return state["reference"].expand(len(controls), *state["reference"].shape).clone(), state


class CarriedMemory(ChunkMethod):
    """A memory the recovery probe can perturb, with a known recovery. It carries a frame ``m``
    (float, the reference at first). Each chunk is the ground truth plus seeded Gaussian noise of
    standard deviation ``noise * exp(gain * d)``, ``d`` the mean absolute difference of ``m`` from the
    reference in uint8 levels, so a deviation costs ``20 log10(e) gain d`` dB of PSNR. After each chunk
    ``m`` moves towards the reference by the fraction ``blend``: 0 carries it exactly (the excess
    never decays), 0.5 halves the deviation, and with it the excess PSNR loss, every chunk."""

    name = "carried-memory"

    def __init__(self, device="cpu", blend: float = 0.0, noise: float = 2.0, gain: float = 0.015, carry: int = 1):
        super().__init__(device, blend=blend, noise=noise, gain=gain, carry=carry)
        self.blend, self.noise, self.gain, self.carry = float(blend), float(noise), float(gain), int(carry)

    def carry_over_frames(self, protocol) -> int:
        return self.carry

    def start(self, clip: ClipContext) -> State:
        # The ground-truth reader is an input of the clip, set again by start() on resume.
        self._read_ground_truth = clip.read_ground_truth
        return {"memory": clip.references[0].to(torch.float32), "reference": clip.references[0].clone()}

    def generate_chunk(self, state: State, controls: ChunkControls) -> tuple[torch.Tensor, State]:
        import math

        truth = self._read_ground_truth(controls.start, controls.start + len(controls)).to(torch.float32)
        deviation = float((state["memory"] - state["reference"].to(torch.float32)).abs().mean())
        noise = torch.randn(truth.shape, generator=controls.generator) * (self.noise * math.exp(self.gain * deviation))
        frames = (truth + noise).round().clamp(0, 255).to(torch.uint8)
        memory = state["memory"] + self.blend * (state["reference"].to(torch.float32) - state["memory"])
        return frames, {**state, "memory": memory}

    def describe_memory(self, perturbation) -> str:
        return "the carried frame"

    def perturb_memory(self, state: State, perturbation) -> State:
        carried = state["memory"].round().clamp(0, 255).to(torch.uint8).unsqueeze(0)
        return {**state, "memory": perturbation.apply(carried)[0].to(torch.float32)}
