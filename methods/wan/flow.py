"""Rectified-flow conventions shared by sampling and training.

The paper writes the flow with ``t = 1`` at the data (Eq. 4); diffusers' Wan models use
``sigma = 1 - t`` with ``x = (1 - sigma) * x0 + sigma * noise`` and predict ``noise - x0``, i.e. the
negative of the paper's ``U_t``. Every function here states which convention it uses so that the sign
of a velocity target is never ambiguous.
"""

from __future__ import annotations

from typing import Callable

import torch

#: diffusers' Wan transformers take ``timestep = sigma * 1000``.
NUM_TRAIN_TIMESTEPS = 1000


def sigma_to_timestep(sigma: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
    """The transformer's ``timestep`` input for noise level ``sigma``, one value per sample."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=device).reshape(-1)
    if sigma.numel() == 1:
        sigma = sigma.expand(batch)
    return sigma * NUM_TRAIN_TIMESTEPS


def flow_interpolant(clean: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Paper Eq. (4), ``X_t = (1 - t) X_0 + t X_1``, written with ``sigma = 1 - t``:
    ``x_sigma = (1 - sigma) * clean + sigma * noise``. ``sigma`` broadcasts from shape ``(B,)``."""
    sigma = _per_sample(sigma, clean)
    return (1.0 - sigma) * clean + sigma * noise


def flow_velocity_target(clean: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """What the Wan transformer is trained to output: ``noise - clean``, which is ``-U_t`` of paper Eq. (4)."""
    return noise - clean


def flow_matching_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Paper Eq. (5): mean squared error between the predicted and the target velocity."""
    return torch.mean((predicted.float() - target.float()) ** 2)


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """Time shift of the flow schedule (Wan uses 5): spends more steps at high noise."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def sample_training_sigmas(batch: int, generator: torch.Generator, shift: float, device: torch.device | None = None) -> torch.Tensor:
    """Noise levels for training, uniform before the shift so training matches the sampler's emphasis."""
    uniform = torch.rand(batch, generator=generator)
    return shift_sigma(uniform, shift).to(device or "cpu")


def sampling_sigmas(steps: int, shift: float) -> torch.Tensor:
    """The ``steps + 1`` noise levels (from 1 down to 0) of diffusers' ``FlowMatchEulerDiscreteScheduler``."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if steps < 1:
        raise ValueError(f"sampling needs at least one step, got {steps}")
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=float(shift))
    scheduler.set_timesteps(steps)
    return scheduler.sigmas.to(torch.float32).clone()


def euler_step(latent: torch.Tensor, velocity: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One Euler step of the probability-flow ODE in the sigma convention: ``x += (sigma_next - sigma) * v``."""
    return latent + (sigma_next - sigma) * velocity.to(latent.dtype)


def euler_sample(velocity: Callable[[torch.Tensor, float], torch.Tensor], noise: torch.Tensor, steps: int, shift: float) -> torch.Tensor:
    """Integrate the probability-flow ODE from ``noise`` at sigma 1 down to sigma 0 with Euler steps on
    :func:`sampling_sigmas`; ``velocity(latent, sigma)`` is the model's ``noise - x0`` prediction."""
    sigmas = sampling_sigmas(steps, shift).tolist()
    latent = noise
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        latent = euler_step(latent, velocity(latent, sigma), sigma, sigma_next)
    return latent


def _per_sample(sigma: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if sigma.ndim == 0:
        return sigma
    return sigma.reshape(-1, *([1] * (like.ndim - 1)))
