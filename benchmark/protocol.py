"""The common chunk protocol: one frozen dataclass whose hash is written into every result.

Frame 0 of the ground-truth video is the reference frame. Output frame ``l`` is compared with
ground-truth frame ``l``. A horizon of ``H`` seconds covers frames ``[0, H * fps)``.

Chunking: chunk ``k`` covers frames ``[s_k, s_k + chunk_frames)`` with
``s_k = k * (chunk_frames - carry_over)``. Every chunk returns ``chunk_frames`` frames aligned with its
controls; the runner keeps all frames of chunk 0 and drops the first ``carry_over`` frames of every
later chunk, which re-generate frames the previous chunk already produced.

The protocol recorded with a run is the one that ran: a method declares its carry-over and sampling
steps (its options may change them), and the runner writes those effective values into the protocol
and so into its hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

PROTOCOL_VERSION = "1.1"

DEFAULT_HORIZONS_S: tuple[float, ...] = (10.0, 30.0, 60.0, 90.0)

REAL_RESOLUTIONS: tuple[tuple[int, int], ...] = ((832, 480), (480, 832))


@dataclass(frozen=True)
class Protocol:
    """Everything that must match for two numbers to be comparable.

    Resolution is ``width x height`` and is set per split: 832x480 or 480x832 for real splits,
    the split's own size for the synthetic ones.
    """

    width: int
    height: int
    fps: int = 25
    horizons_s: tuple[float, ...] = DEFAULT_HORIZONS_S
    chunk_frames: int = 77
    # Frames shared by consecutive chunks and denoising steps per chunk, as the method ran them.
    carry_over: int = 0
    sampling_steps: int = 20
    # Seeds derive from the clip id (and chunk index), never from the process rank.
    seed_rule: str = "sha256(f'{seed_base}/{clip_id}/{chunk}')[:8] as uint64 & (2**63-1)"
    seed_base: int = 0
    # Metric conventions that change numbers.
    window_s: float = 1.0
    psnr_cap_db: float = 100.0
    fid_frame_stride: int = 1
    vmae_window_frames: int = 16
    version: str = PROTOCOL_VERSION
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Canonical forms, so equal protocols compare and hash equal however they were built.
        object.__setattr__(self, "horizons_s", tuple(float(h) for h in self.horizons_s))
        object.__setattr__(self, "extra", tuple(sorted((str(k), str(v)) for k, v in self.extra)))
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"protocol resolution must be positive, got {self.width}x{self.height}")
        if self.chunk_frames < 2:
            raise ValueError("chunk_frames must be at least 2")
        if not 0 <= self.carry_over < self.chunk_frames:
            raise ValueError(f"carry-over must be in [0, {self.chunk_frames}) frames, got {self.carry_over}")
        if self.sampling_steps < 1:
            raise ValueError(f"sampling steps must be at least 1, got {self.sampling_steps}")
        if any(not math.isfinite(h) or h <= 0 for h in self.horizons_s):
            raise ValueError(f"horizons must be positive and finite, got {self.horizons_s}")

    # ---- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["horizons_s"] = list(self.horizons_s)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        d = dict(d)
        d["horizons_s"] = tuple(float(h) for h in d["horizons_s"])
        d["extra"] = tuple(sorted(d.get("extra", {}).items()))
        return cls(**d)

    @property
    def hash(self) -> str:
        payload = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    # ---- derived quantities ------------------------------------------------------------------
    def replace(self, **changes) -> "Protocol":
        return dataclasses.replace(self, **changes)

    def horizon_frames(self, horizon_s: float) -> int:
        return int(round(horizon_s * self.fps))

    @property
    def window_frames(self) -> int:
        return int(round(self.window_s * self.fps))

    def chunk_starts(self, num_frames: int, carry_over: int | None = None) -> list[int]:
        """Start frame of every chunk needed to produce ``num_frames`` output frames, with the
        protocol's carry-over unless ``carry_over`` is given."""
        stride = self.chunk_frames - (self.carry_over if carry_over is None else carry_over)
        extra = max(0, num_frames - self.chunk_frames)
        count = 1 + math.ceil(extra / stride)
        return [k * stride for k in range(count)]

    def chunk_seed(self, clip_id: str, chunk: int) -> int:
        digest = hashlib.sha256(f"{self.seed_base}/{clip_id}/{chunk}".encode()).digest()
        return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def resolve_horizons(requested: list[float] | None, protocol: Protocol, clip_seconds: float) -> tuple[float, ...]:
    """Sorted, de-duplicated horizons. Each must be finite, a whole number of drift windows
    (``window_s``, 1 s: a horizon's score is a mean over whole windows) and fit in the shortest clip."""
    horizons = tuple(sorted({float(h) for h in (requested or protocol.horizons_s)}))
    longest = math.floor(clip_seconds / protocol.window_s + 1e-9) * protocol.window_s
    for h in horizons:
        if not math.isfinite(h) or h <= 0:
            raise ValueError(f"horizon {h:g} s: horizons must be positive, finite numbers of seconds")
        windows = h / protocol.window_s
        if abs(windows - round(windows)) > 1e-9:
            raise ValueError(f"horizon {h:g} s is not a whole number of {protocol.window_s:g} s drift windows")
        if h > clip_seconds + 1e-9:
            raise ValueError(f"horizon {h:g} s exceeds the shortest clip of the split ({clip_seconds:.2f} s); this split supports horizons up to {longest:g} s")
    return horizons
