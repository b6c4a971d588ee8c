"""Restorative Flow Matching (paper Sec. 4.2, Eq. 4-12) and the pixel-space perturbations T_xi.

Conventions. The paper's time ``t`` runs from noise (``t = 0``, ``X_0 ~ N(0, I)``) to data (``t = 1``,
``X_1 = E(V)``) and its velocity ``U_t = X_1 - X_0`` points at the data. The Wan backbone
(:mod:`methods.wan.flow`) works in ``sigma = 1 - t``: ``x = (1 - sigma) x0 + sigma noise``, the
transformer is fed ``timestep = sigma * 1000`` and predicts ``noise - x0 = -U_t``, and an Euler step is
``x += (sigma_next - sigma) v``. So:

=================  ==========================================
paper              backbone
=================  ==========================================
``t``              ``1 - sigma``
``X_t``            ``flow.flow_interpolant(X_1, X_0, sigma)``
``U_t``            ``-flow.flow_velocity_target(X_1, X_0)``
model target       ``-U`` (:func:`model_velocity`)
=================  ==========================================

The equation functions take the paper's ``t`` and return velocities in the paper's sign;
:func:`restorative_training_pair` returns the transformer's input and target in the backbone's.

Perturbations act on ``uint8 (T, H, W, 3)`` frames, one draw of their random parameters shared by all
frames of the chunk, so that the latent endpoint drifts coherently. :func:`perturb` runs one operator by
name and strength; strength 0 is the identity for every operator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from methods.wan import flow

from .config import EverAnimateConfig

# ---- Eq. 4-12 -------------------------------------------------------------------------------------


def _per_sample(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value if value.ndim == 0 else value.reshape(-1, *([1] * (like.ndim - 1)))


def time_to_sigma(t: torch.Tensor | float) -> torch.Tensor | float:
    """The backbone's noise level for the paper's time: ``sigma = 1 - t``."""
    return 1.0 - t


def sigma_to_time(sigma: torch.Tensor | float) -> torch.Tensor | float:
    return 1.0 - sigma


def clean_path(clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Eq. (4): ``X_t = (1 - t) X_0 + t X_1``; ``t`` is a scalar or one value per sample."""
    return flow.flow_interpolant(clean, noise, time_to_sigma(t))


def flow_velocity(clean: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Eq. (4): ``U_t = X_1 - X_0``, the target of standard FM (Eq. 5)."""
    return -flow.flow_velocity_target(clean, noise)


def perturbed_path(perturbed_clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Eq. (6): ``X~_t = (1 - t) X_0 + t X~_1`` with the same noise ``X_0`` as the clean path, so the
    two states differ only by ``t (X~_1 - X_1)``."""
    return clean_path(perturbed_clean, noise, t)


def restorative_continuation(perturbed_state: torch.Tensor, clean: torch.Tensor, t: torch.Tensor | float, s: torch.Tensor | float) -> torch.Tensor:
    """Eq. (7): the straight line from ``X~_t`` at time ``t`` to ``X_1`` at time 1, evaluated at ``s``."""
    t, s = _per_sample(t, clean), _per_sample(s, clean)
    return (1 - s) / (1 - t) * perturbed_state + (s - t) / (1 - t) * clean


def exact_restorative_velocity(perturbed_state: torch.Tensor, clean: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Eq. (8): ``(X_1 - X~_t) / (1 - t)``, the constant velocity of Eq. (7). Unbounded as ``t -> 1``."""
    return (clean - perturbed_state) / (1 - _per_sample(t, clean))


def decomposed_restorative_velocity(clean: torch.Tensor, noise: torch.Tensor, perturbed_clean: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Eq. (9): ``U_t + (X_t - X~_t) / (1 - t)``, the FM velocity plus the restoration term."""
    restoration = clean_path(clean, noise, t) - perturbed_path(perturbed_clean, noise, t)
    return flow_velocity(clean, noise) + restoration / (1 - _per_sample(t, clean))


def restoration_weight(t: torch.Tensor | float, beta: float) -> torch.Tensor:
    """Eq. (11): ``lambda(t) = (exp(-beta (t - 1/2)^2) - exp(-beta / 4)) / (1 - exp(-beta / 4))``.

    A Gaussian bump shifted and scaled so that ``lambda(0) = lambda(1) = 0`` and ``lambda(1/2) = 1``
    for every ``beta > 0``. It is symmetric, so it reads the same in ``t`` and in ``sigma = 1 - t``."""
    if beta <= 0:
        raise ValueError(f"Eq. 11 needs beta > 0, got {beta}")
    t = torch.as_tensor(t)
    t = t if t.is_floating_point() else t.float()
    floor = math.exp(-beta / 4)
    return (torch.exp(-beta * (t - 0.5) ** 2) - floor) / (1 - floor)


def restorative_velocity_target(clean: torch.Tensor, noise: torch.Tensor, perturbed_clean: torch.Tensor, t: torch.Tensor | float, beta: float) -> torch.Tensor:
    """Eq. (10): ``U~_t = U_t + lambda(t) (X_t - X~_t)``, Eq. (9) with the unbounded ``1 / (1 - t)``
    replaced by the bounded ``lambda(t)`` of Eq. (11). Equal to ``U_t`` when ``X~_1 = X_1``."""
    restoration = clean_path(clean, noise, t) - perturbed_path(perturbed_clean, noise, t)
    weight = _per_sample(restoration_weight(t, beta).to(clean), clean)
    return flow_velocity(clean, noise) + weight * restoration


def model_velocity(velocity: torch.Tensor) -> torch.Tensor:
    """A paper-convention velocity (towards the data) as the Wan transformer outputs it (``-U``)."""
    return -velocity


def restorative_training_pair(
    clean: torch.Tensor,
    noise: torch.Tensor,
    sigma: torch.Tensor,
    config: EverAnimateConfig,
    perturbed_clean: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The transformer's noisy input and regression target for Eq. (12), in the backbone's convention.

    ``clean`` is ``X_1 = E(V)``, ``perturbed_clean`` is ``X~_1 = E(T_xi(V))`` (None, or equal to
    ``clean``, is ``xi = 0``: standard FM, Eq. 4-5), ``sigma`` one noise level per sample. The model is
    fed ``X~_t`` and regresses ``-U~_t`` (Eq. 10). With the release's rule
    (``perturbed_path_high_noise_only``) samples below ``perturbed_path_min_sigma`` use the clean pair.
    """
    if perturbed_clean is None:
        perturbed_clean = clean
    sigma = torch.as_tensor(sigma, dtype=clean.dtype, device=clean.device).reshape(-1)
    if config.perturbed_path_high_noise_only:
        high_noise = (sigma >= config.perturbed_path_min_sigma).reshape(-1, *([1] * (clean.ndim - 1)))
        perturbed_clean = torch.where(high_noise, perturbed_clean, clean)
    t = sigma_to_time(sigma)
    noisy = perturbed_path(perturbed_clean, noise, t)
    target = restorative_velocity_target(clean, noise, perturbed_clean, t, config.restoration_beta)
    return noisy, model_velocity(target)


def restorative_flow_matching_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. (12): ``|| v_theta(H~_t, t | C) - U~_t ||^2``, averaged (Eq. 5 when the target is ``U_t``)."""
    return flow.flow_matching_loss(predicted, target)


# ---- T_xi: pixel-space perturbations ------------------------------------------------------------

#: ITU-R BT.601 luma weights.
LUMA = (0.299, 0.587, 0.114)
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = 8
ERASE_PATCHES = (1, 4)
ERASE_SIZE = (0.1, 0.3)


def _to_float(frames: torch.Tensor) -> torch.Tensor:
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"perturbations take uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    return frames.permute(0, 3, 1, 2).float()


def _to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _luma(pixels: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(LUMA, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels * weights).sum(1, keepdim=True)


def _uniform(generator: torch.Generator, low: float, high: float, size: tuple[int, ...] = ()) -> torch.Tensor:
    return low + (high - low) * torch.rand(size, generator=generator)


def color_shift(frames: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Add a per-channel offset of up to ``strength * 255`` in a random RGB direction."""
    offset = strength * 255.0 * _uniform(generator, -1.0, 1.0, (3,))
    return _to_uint8(_to_float(frames) + offset.to(frames.device).view(1, 3, 1, 1))


def sharpness(frames: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Sharpness factor ``1 + strength`` around a 3x3 binomial blur: -1 is the blur, > 0 sharpens."""
    pixels = _to_float(frames)
    taps = torch.tensor([1.0, 2.0, 1.0], device=frames.device)
    kernel = (torch.outer(taps, taps) / 16).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(pixels, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    return _to_uint8(blurred + (1.0 + strength) * (pixels - blurred))


def saturation(frames: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Saturation factor ``1 + strength`` around the luma: -1 is grey, the release's x1.3-3.0 is 0.3-2."""
    pixels = _to_float(frames)
    grey = _luma(pixels)
    return _to_uint8(grey + (1.0 + strength) * (pixels - grey))


def brightness(frames: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Gain ``1 + strength`` (the release's x0.8-1.2 is -0.2..0.2)."""
    return _to_uint8(_to_float(frames) * (1.0 + strength))


def _equalised_luma(luma: torch.Tensor, clip_limit: float, tiles: int) -> torch.Tensor:
    """Contrast-limited adaptive histogram equalisation of integer luma ``(T, H, W)`` in 0..255, with
    OpenCV's arithmetic (integer clip limit, clipped counts spread evenly with the remainder on every
    ``256 // remainder``-th bin, rounded lookup tables, bilinear between tile centres), so it agrees
    with ``cv2.createCLAHE`` to within one grey level (ties) when the frame divides into the tiles."""
    frames, height, width = luma.shape
    rows, cols = min(tiles, height), min(tiles, width)

    def arange(size: int) -> torch.Tensor:
        return torch.arange(size, device=luma.device)

    tile = ((arange(height) * rows) // height)[:, None] * cols + ((arange(width) * cols) // width)[None, :]
    index = (arange(frames)[:, None, None] * rows * cols + tile) * 256 + luma
    hist = torch.bincount(index.flatten(), minlength=frames * rows * cols * 256).view(frames, rows * cols, 256)
    pixels = hist.sum(-1, keepdim=True)
    limit = (clip_limit * pixels.double() / 256).floor().long().clamp_min(1)
    excess = (hist - limit).clamp_min(0).sum(-1, keepdim=True)
    remainder = excess % 256
    bins = arange(256)
    step = 256 // remainder.clamp_min(1)
    hist = torch.minimum(hist, limit) + excess // 256 + ((bins % step == 0) & (bins // step < remainder)).long()
    table = (hist.cumsum(-1).double() * (255.0 / pixels.double())).round().float().view(frames, rows, cols, 256)

    def neighbours(size: int, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        position = arange(size) * count / size - 0.5
        low = position.floor().long()
        return low.clamp(0, count - 1), (low + 1).clamp(max=count - 1), position - low

    y0, y1, wy = neighbours(height, rows)
    x0, x1, wx = neighbours(width, cols)
    t = arange(frames)[:, None, None]
    wy, wx = wy[None, :, None], wx[None, None, :]

    def look(ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        return table[t, ys[None, :, None], xs[None, None, :], luma]

    top = (1 - wx) * look(y0, x0) + wx * look(y0, x1)
    bottom = (1 - wx) * look(y1, x0) + wx * look(y1, x1)
    return (1 - wy) * top + wy * bottom


def clahe(frames: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """CLAHE on the luma (OpenCV's usual clip limit 2 and 8x8 tiles), blended in with weight ``strength`` (1: full).
    The luma change is added to all three channels, which keeps the chroma differences."""
    pixels = _to_float(frames)
    luma = _luma(pixels)[:, 0]
    equalised = _equalised_luma(luma.round().clamp(0, 255).long(), CLAHE_CLIP_LIMIT, CLAHE_TILES)
    return _to_uint8(pixels + strength * (equalised - luma).unsqueeze(1))


def detail_erase(frames: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Erase detail in 1-4 random patches of 10-30 % of each side: area-downsample them by
    ``strength`` and upsample back bilinearly. A factor of 1 or less changes nothing."""
    pixels = _to_float(frames)
    if strength <= 1.0:
        return frames.clone()
    _, _, height, width = pixels.shape
    count = int(torch.randint(ERASE_PATCHES[0], ERASE_PATCHES[1] + 1, (1,), generator=generator))
    for _ in range(count):
        ph = max(1, round(float(_uniform(generator, *ERASE_SIZE)) * height))
        pw = max(1, round(float(_uniform(generator, *ERASE_SIZE)) * width))
        top = int(torch.randint(0, height - ph + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - pw + 1, (1,), generator=generator))
        patch = pixels[:, :, top : top + ph, left : left + pw]
        small = F.interpolate(patch, size=(max(1, round(ph / strength)), max(1, round(pw / strength))), mode="area")
        pixels[:, :, top : top + ph, left : left + pw] = F.interpolate(small, size=(ph, pw), mode="bilinear", align_corners=False)
    return _to_uint8(pixels)


#: Every perturbation operator by name. Strength units: ``color_shift`` the largest offset as a
#: fraction of 255; ``sharpness``, ``saturation``, ``brightness`` a factor minus 1; ``clahe`` a blend
#: weight in [0, 1]; ``detail_erase`` a downsampling factor.
PERTURBATIONS = {
    "color_shift": color_shift,
    "sharpness": sharpness,
    "saturation": saturation,
    "brightness": brightness,
    "clahe": clahe,
    "detail_erase": detail_erase,
}


def perturb(frames: torch.Tensor, name: str, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """One operator of T_xi on ``uint8 (T, H, W, 3)`` frames; returns new frames of the same shape and
    dtype. Operators with random parameters (colour direction, patch placement) draw them from
    ``generator``; without one they use a generator seeded with 0, so a name and strength alone give
    the same result every time."""
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    return PERTURBATIONS[name](frames, float(strength), generator)


def sample_perturbations(config: EverAnimateConfig, generator: torch.Generator) -> list[tuple[str, float]]:
    """Draw xi: with probability ``perturbation_probability`` each operator of the config's set fires
    with its own probability, at a strength uniform in its range. An empty list is ``xi = 0``. The
    same number of random values is drawn whatever fires, so later draws do not depend on earlier ones."""
    specs = config.perturbation_specs
    draws = torch.rand(1 + 2 * len(specs), generator=generator).tolist()
    if draws[0] >= config.perturbation_probability:
        return []
    chosen = []
    for (name, probability, low, high), fire, where in zip(specs, draws[1::2], draws[2::2]):
        if fire < probability:
            chosen.append((name, low + (high - low) * where))
    return chosen


def apply_perturbations(frames: torch.Tensor, perturbations: list[tuple[str, float]], generator: torch.Generator) -> torch.Tensor:
    """Apply ``(name, strength)`` operators in order; the identity for an empty list."""
    frames = frames.clone()
    for name, strength in perturbations:
        frames = perturb(frames, name, strength, generator)
    return frames


def random_perturbation(frames: torch.Tensor, config: EverAnimateConfig, generator: torch.Generator) -> tuple[torch.Tensor, list[tuple[str, float]]]:
    """``V~ = T_xi(V)`` of Eq. (6) for one target chunk, and the xi that was drawn."""
    chosen = sample_perturbations(config, generator)
    return apply_perturbations(frames, chosen, generator), chosen
