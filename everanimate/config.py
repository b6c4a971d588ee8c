"""EverAnimate's configuration: one frozen dataclass, saved as JSON next to the LoRA weights.

Defaults follow the paper (Sec. 4-5). Where the official release (vita-epfl/EverAnimate at db7703c)
differs, the field comment says how; :meth:`EverAnimateConfig.release` returns the release's settings.
Values the paper leaves open (perturbation strengths, the augmentation ranges) are marked as our choice.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from methods.wan.backbone import LORA_TARGET_MODULES

LAYOUTS = ("paper", "release")
#: "latent": Persistent Latent Propagation (Sec. 4.1). "image": the ablation without it (Table 2,
#: "w/o PLP"): Wan-Animate's image-space carry, the previous chunk's last frames decoded and encoded
#: again into the conditioning slots, with the single reference in slot 0 and no identity memory.
#: "none" (inference only, a control): no motion memory in any chunk, every chunk conditioned as the
#: first one is, on the chunk grid of "latent"; it measures how much the output depends on M_mot.
CARRIES = ("latent", "image", "none")
#: Frames each chunk re-generates from the previous one, by carry: the span of the one motion latent
#: (the release's 4 overlap frames), or Wan-Animate's one carried frame (refert_num 1).
CARRY_OVERLAP = {"latent": 4, "image": 1, "none": 4}
PERTURBATION_SETS = ("paper", "release")

#: One perturbation of T_xi: (name, probability, lowest strength, highest strength). Strengths are in
#: the units of :func:`everanimate.rfm.perturb`; each fires on its own with its probability.
PerturbationSpec = tuple[str, float, float, float]

#: The paper's set (Sec. 5, "following Helios"): colour shift, sharpness and saturation. The paper
#: gives neither probabilities nor strengths; these are our choice, mild enough to stay near the data.
PAPER_PERTURBATIONS: tuple[PerturbationSpec, ...] = (
    ("color_shift", 0.5, 0.02, 0.08),
    ("sharpness", 0.5, -0.8, 1.5),
    ("saturation", 0.5, -0.4, 0.6),
)

#: The release's set, in the order it applies them: CLAHE, oversaturation x1.3-3.0, brightness
#: x0.8-1.2, detail erase downsampling patches 8-32x.
RELEASE_PERTURBATIONS: tuple[PerturbationSpec, ...] = (
    ("clahe", 0.9, 1.0, 1.0),
    ("saturation", 0.3, 0.3, 2.0),
    ("brightness", 0.1, -0.2, 0.2),
    ("detail_erase", 0.9, 8.0, 32.0),
)


@dataclass(frozen=True)
class EverAnimateConfig:
    # ---- Persistent Latent Propagation (Sec. 4.1) ----
    carry: str = "latent"  # see CARRIES
    identity_frames: int = 4  # K: one user reference + three views (Sec. 5)
    motion_latents: int = 1  # r: last latent slices of the previous chunk (Eq. 1)
    # "paper": M_ctx in the conditioning channels of the T_z target slots (Eq. 2-3), the reference in
    # the backbone's slot 0. "release": the K anchor latents prepended as extra time slots.
    layout: str = "paper"
    # T_id (Eq. 1, "mild translation and rescaling"): one affine shared by the K frames. The paper
    # applies it to every training sample; the release with probability 0.5. Ranges from the release.
    identity_augment_probability: float = 1.0
    identity_scale_range: tuple[float, float] = (0.8, 1.2)
    identity_max_shift: float = 0.1  # fraction of the frame size
    # Release only: a training sample is a first chunk (zero motion, reference repeated) with p 0.2.
    first_chunk_probability: float = 0.0
    # Stage 1 perturbs the motion memory (Sec. 4.3, "following [16, 49]"): Gaussian noise of a standard
    # deviation uniform in [0, motion_noise] on the normalised latent, so the model learns to use a
    # generated M_mot, which is never exactly the encoding of the true frames. The amount is our choice.
    motion_noise: float = 0.25

    # ---- LoRA (Sec. 5) ----
    lora_rank: int = 128  # the release ships rank 32
    lora_alpha: float = 128.0  # the release uses alpha = rank (scale 1)
    lora_target_modules: str = LORA_TARGET_MODULES  # attention q, k, v, o and both FFN linears

    # ---- Restorative Flow Matching (Sec. 4.2) ----
    perturbation_set: str = "paper"
    # Probability that a target chunk is perturbed at all. The paper gives none; the release uses 0.8,
    # checked twice (about 0.64 effective): set 0.64 to reproduce its rate.
    perturbation_probability: float = 0.8
    # Custom per-operator specs; empty means the named set's defaults.
    perturbations: tuple[PerturbationSpec, ...] = ()
    # beta of Eq. 11. The paper gives no value; the release's exp(-2 ((timestep - 500) / 1000)^2),
    # min-max normalised, is Eq. 11 with beta = 2.
    restoration_beta: float = 2.0
    # Release rule: the perturbed path only at sigma >= min_sigma, the clean pair below it.
    perturbed_path_high_noise_only: bool = False
    perturbed_path_min_sigma: float = 0.5

    # ---- Training (Sec. 4.3, 5) ----
    train_shift: float = 5.0  # sigma shift of the training timesteps (release: 5; the paper: none given)
    learning_rate: float = 1e-4  # release
    memory_steps: int = 4000  # stage 1, standard FM
    restoration_steps: int = 1000  # stage 2, RFM

    # ---- Inference (Sec. 4.3, 5) ----
    sampling_steps: int = 20  # no CFG
    sampling_shift: float = 5.0
    # Frames each chunk re-generates from the previous one (the release's 77-frame chunks with 4
    # overlap frames): the span of the one motion latent, which the runner drops from the output.
    # CARRY_OVERLAP gives the value for each carry.
    overlap_frames: int = 4

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.carry not in CARRIES:
            raise ValueError(f"carry must be one of {CARRIES}, got {self.carry!r}")
        if self.carry == "image" and self.layout != "paper":
            raise ValueError("carry='image' uses the backbone's own layout; it needs layout='paper'")
        if self.perturbation_set not in PERTURBATION_SETS:
            raise ValueError(f"perturbation_set must be one of {PERTURBATION_SETS}, got {self.perturbation_set!r}")
        if self.identity_frames < 1 or self.motion_latents < 1:
            raise ValueError("identity_frames (K) and motion_latents (r) must be at least 1")
        if self.restoration_beta <= 0:
            raise ValueError(f"Eq. 11 needs beta > 0, got {self.restoration_beta}")
        for name in ("identity_augment_probability", "first_chunk_probability", "perturbation_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")

    @property
    def perturbation_specs(self) -> tuple[PerturbationSpec, ...]:
        """The T_xi operators to draw from: the custom list, or the named set."""
        if self.perturbations:
            return self.perturbations
        return PAPER_PERTURBATIONS if self.perturbation_set == "paper" else RELEASE_PERTURBATIONS

    @classmethod
    def release(cls, **overrides: Any) -> "EverAnimateConfig":
        """The official release's settings (rank 32, prepended anchors, its perturbations and rules)."""
        settings: dict[str, Any] = {
            "layout": "release",
            "identity_augment_probability": 0.5,
            "first_chunk_probability": 0.2,
            "lora_rank": 32,
            "lora_alpha": 32.0,
            "perturbation_set": "release",
            "perturbed_path_high_noise_only": True,
        }
        settings.update(overrides)
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EverAnimateConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EverAnimate config keys: {', '.join(unknown)}")
        return cls(**{key: _as_tuples(value) for key, value in data.items()})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "EverAnimateConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _as_tuples(value: Any) -> Any:
    """JSON turns tuples into lists; the frozen config keeps tuples so that it stays hashable."""
    if isinstance(value, list):
        return tuple(_as_tuples(item) for item in value)
    return value


__all__ = ["CARRIES", "CARRY_OVERLAP", "EverAnimateConfig", "LAYOUTS", "PAPER_PERTURBATIONS", "PERTURBATION_SETS", "RELEASE_PERTURBATIONS"]
