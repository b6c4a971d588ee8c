"""The embedded synthetic splits: procedurally rendered long dance clips with exact ground truth.

Real long-horizon clips are heavy, licensed, and their keypoints come from a detector. These clips
are small (64x96, 25 fps), free, and exact (keypoints, face boxes and view angle come from the
geometry that is drawn), so a model trained on a CPU can be measured over the full 90 s. A 90 s
clip renders in about 3 s on one core (about 4 s with its videos written).

The world of one clip:

- a static room: a wall with a structured wallpaper (stripes, dots, bricks, diamonds or waves with
  periods of 10-16 px), framed pictures, windows, shelves with books, clocks and plants, a baseboard,
  and a floor of planks, tiles or carpet in perspective, under smooth lighting. No per-pixel noise:
  a small VAE cannot learn it.
- one character: head with face (eyes, brows, mouth) and hair, a torso with a patterned shirt and a
  chest emblem, arms, hands, trousers and shoes. The head and torso are textured 3D surfaces (an
  ellipsoid and an elliptic cylinder), so the face and emblem show only from the front and the hair
  covers the back of the head; limbs are tapered capsules. The character turns through front, side
  and back views, so keeping its identity across views matters.
- dance-like motion: joint angles from sums of sinusoids on a per-clip beat, step-touches, and
  occasional moves (arm raises, waves, reaches, squats, kicks, leans, side steps), with the feet on
  the floor and the whole body inside the frame.

Rendering is 2x supersampled: parts are distance fields evaluated on the pixel grid, vectorised over
batches of frames, composited back to front by depth, then area-downsampled.

The world is smooth enough for a small VAE yet full of structure: edges are soft (1.5 px), colours
are kept off the extremes, patterns have periods of 5-16 px. Its downsample-upsample bound
(:func:`resample_psnr`: area-downsample by ``f``, bicubic upsample, PSNR against the frames),
measured over the three full 90 s test clips:

    ======  ==========================
    factor  PSNR (dB), clips 0 / 1 / 2
    ======  ==========================
    2x      36.8 / 36.7 / 34.8
    4x      30.9 / 30.2 / 29.4
    8x      26.9 / 26.6 / 26.2
    ======  ==========================

Over the first 4 s of twelve training clips (mostly facing the camera, the hardest part) 4x gives
28.8 dB on average, 27.2 dB at worst.

Every clip is a pure function of ``(split version, seed)`` with ``seed = seed_offset + index``; the
train split's seeds start far above the test split's. Each aspect (look, room, rhythm, moves, turns,
face) draws from its own random stream, and events are drawn in time order, so a shorter clip is
exactly the beginning of a longer one with the same seed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from .errors import ManifestError
from .files import CACHE_ENV, cache_root
from .pose import crop_faces, face_boxes_from_keypoints, render_pose
from .split import FACE, MANIFEST_NAME, NUM_KEYPOINTS, Split, load_split, make_clip_record, write_manifest
from .video import write_video

WIDTH, HEIGHT, FPS, FACE_SIZE = 64, 96, 25, 32
SUPERSAMPLE = 2
# Frames rasterised together: large enough to amortise numpy's per-call cost, small enough for memory.
BATCH_FRAMES = 64
# Edge widths in frame pixels. Soft enough that a 4x downsample keeps most of the image (the bound
# in the module docstring), sharp enough that edges, patterns and faces stay visible.
ROOM_EDGE = 1.6
BODY_EDGE = 1.5
# Colours are pulled towards mid-grey by this factor: a soft, evenly lit look whose edges cost less
# at 4x downsampling (the error of an edge grows with the square of its contrast).
CONTRAST = 0.75
LICENSE = "CC0-1.0 (procedurally generated)"


@dataclass(frozen=True)
class SyntheticSpec:
    """A synthetic split: ``num_clips`` clips of ``num_frames`` frames, clip ``i`` seeded ``seed_offset + i``."""

    name: str
    version: str
    num_clips: int
    num_frames: int
    width: int = WIDTH
    height: int = HEIGHT
    face_size: int = FACE_SIZE
    fps: int = FPS
    seed_offset: int = 0

    def seed(self, index: int) -> int:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"split {self.name!r} has clips 0-{self.num_clips - 1}, not {index}")
        return self.seed_offset + index

    def clip_id(self, index: int) -> str:
        return f"{self.name}-{index:03d}"


SPLITS: dict[str, SyntheticSpec] = {
    "synthetic": SyntheticSpec("synthetic", "1", num_clips=3, num_frames=90 * FPS, seed_offset=0),
    "synthetic-train": SyntheticSpec("synthetic-train", "1", num_clips=48, num_frames=12 * FPS, seed_offset=1_000_000),
}


@dataclass
class RenderedClip:
    """Every array of one clip. ``yaw`` is the body's turn in radians (0 = facing the camera,
    pi = back to it, unwrapped); ``background`` is the room without the character."""

    rgb: np.ndarray  # uint8 (T, H, W, 3)
    pose: np.ndarray  # uint8 (T, H, W, 3)
    face: np.ndarray  # uint8 (T, S, S, 3)
    keypoints: np.ndarray  # float32 (T, 133, 3)
    face_boxes: np.ndarray  # float32 (T, 4)
    yaw: np.ndarray  # float32 (T,)
    background: np.ndarray  # uint8 (H, W, 3)


@dataclass
class ClipMotion:
    """The motion of a clip without any rendering: cheap, for checks over whole 90 s clips."""

    keypoints: np.ndarray  # float32 (T, 133, 3)
    face_boxes: np.ndarray  # float32 (T, 4)
    yaw: np.ndarray  # float32 (T,)
    face_visible: np.ndarray  # bool (T,)


# ---------------------------------------------------------------------------------------------
# small helpers


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """HSV in [0, 1] (hue wraps) to an RGB float32 triple."""
    h = (h % 1.0) * 6.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return (np.array(rgb) + (v - c)).astype(np.float32)


def _rgb(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.float32) / 255.0


def _over(base: np.ndarray, coverage: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """``colour`` painted over ``base`` (``(..., 3)``) with per-pixel ``coverage``."""
    return base + (colour - base) * coverage[..., None]


def _soft(distance: np.ndarray, width: float) -> np.ndarray:
    """Coverage in [0, 1] of a shape with signed ``distance`` (negative inside), edge ``width`` wide."""
    return np.clip(0.5 - distance / width, 0.0, 1.0)


def _band(u: np.ndarray, duty: float, width: np.ndarray | float) -> np.ndarray:
    """A soft square wave of period 1 in ``u``: 1 on a fraction ``duty`` of each period."""
    distance = np.abs(u - np.floor(u) - 0.5) - duty / 2
    return _soft(distance, width)


def _smootherstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


def _bump(t: np.ndarray, start: float, duration: float) -> np.ndarray:
    """A smooth sin^2 pulse over ``[start, start + duration]``, 0 elsewhere."""
    phase = np.clip((t - start) / duration, 0.0, 1.0)
    return np.sin(np.pi * phase) ** 2


def _rotation(axis: str, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(T, 3, 3)`` about a body axis (x right, y up, z towards the camera)."""
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    rows = {
        "x": ((one, zero, zero), (zero, c, -s), (zero, s, c)),
        "y": ((c, zero, s), (zero, one, zero), (-s, zero, c)),
        "z": ((c, -s, zero), (s, c, zero), (zero, zero, one)),
    }[axis]
    return np.stack([np.stack(row, -1) for row in rows], -2)


def _apply(rotation: np.ndarray, vector: np.ndarray) -> np.ndarray:
    return np.einsum("...ij,...j->...i", rotation, vector)


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _random_streams(spec: SyntheticSpec, index: int) -> dict[str, np.random.Generator]:
    """Independent generators per aspect, so changing how one aspect draws never moves another."""
    digest = hashlib.sha256(f"everanimate-synthetic/v{spec.version}/{spec.seed(index)}".encode()).digest()
    root = np.random.SeedSequence(int.from_bytes(digest[:16], "little"))
    names = ("look", "room", "rhythm", "moves", "turns", "face")
    return {name: np.random.default_rng(child) for name, child in zip(names, root.spawn(len(names)))}


# ---------------------------------------------------------------------------------------------
# the character's look


SKIN_TONES = ((255, 224, 196), (241, 194, 150), (224, 172, 125), (198, 134, 90), (161, 102, 64), (112, 70, 45), (86, 54, 36))
HAIR_COLOURS = ((24, 18, 15), (62, 40, 26), (112, 72, 40), (206, 168, 96), (168, 66, 32), (150, 150, 156), (52, 58, 130), (196, 84, 140))
EYE_COLOURS = ((60, 36, 20), (40, 80, 140), (50, 110, 60), (30, 24, 20))
TROUSER_COLOURS = ((62, 84, 136), (50, 50, 58), (176, 150, 106), (116, 116, 124), (106, 66, 52), (56, 100, 76))
SHOE_COLOURS = ((215, 215, 210), (50, 48, 48), (170, 52, 52), (100, 70, 50))
HAIR_STYLES = ("short", "bob", "long", "ponytail", "bun")
SHIRT_PATTERNS = ("solid", "hstripes", "vstripes", "checks")
EMBLEMS = ("circle", "diamond", "star", "triangle", "ring")


@dataclass(frozen=True)
class _Look:
    height: float  # standing height in pixels, sole to crown
    floor_y: float
    build: float
    skin: np.ndarray
    hair: np.ndarray
    hair_style: str
    fringe: float
    eyes: np.ndarray
    shirt: np.ndarray
    shirt_second: np.ndarray
    pattern: str
    pattern_period: float
    long_sleeves: bool
    emblem: str
    emblem_colour: np.ndarray
    trousers: np.ndarray
    shorts: bool
    shoes: np.ndarray


def _pick(rng: np.random.Generator, options: tuple) -> object:
    return options[int(rng.integers(len(options)))]


def _make_look(rng: np.random.Generator, spec: SyntheticSpec) -> _Look:
    def jitter(colour: tuple[int, int, int], amount: float = 0.06) -> np.ndarray:
        return np.clip(_rgb(*colour) * (1 + rng.uniform(-amount, amount, 3)), 0, 1).astype(np.float32)

    shirt_hue = rng.random()
    shirt = _hsv(shirt_hue, rng.uniform(0.35, 0.8), rng.uniform(0.45, 0.9))
    second_kind = rng.integers(3)
    if second_kind == 0:
        second = _rgb(240, 240, 232)
    elif second_kind == 1:
        second = shirt * 0.45
    else:
        second = _hsv(shirt_hue + rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.8), rng.uniform(0.5, 0.9))
    emblem_colour = _hsv(shirt_hue + 0.5, rng.uniform(0.5, 0.9), 1.0) if rng.random() < 0.5 else _rgb(250, 245, 225)
    scale = spec.height / HEIGHT
    return _Look(
        height=float(rng.uniform(0.70, 0.77) * spec.height),
        floor_y=float(spec.height - rng.uniform(3.0, 4.5) * scale),
        build=float(rng.uniform(0.88, 1.15)),
        skin=jitter(_pick(rng, SKIN_TONES)),
        hair=jitter(_pick(rng, HAIR_COLOURS), 0.1),
        hair_style=str(_pick(rng, HAIR_STYLES)),
        fringe=float(rng.uniform(0.25, 0.5)),
        eyes=_rgb(*_pick(rng, EYE_COLOURS)),
        shirt=shirt,
        shirt_second=second.astype(np.float32),
        pattern=str(_pick(rng, SHIRT_PATTERNS)),
        pattern_period=float(rng.uniform(5.0, 7.0) * scale),
        long_sleeves=bool(rng.random() < 0.45),
        emblem=str(_pick(rng, EMBLEMS)),
        emblem_colour=emblem_colour.astype(np.float32),
        trousers=jitter(_pick(rng, TROUSER_COLOURS)),
        shorts=bool(rng.random() < 0.3),
        shoes=jitter(_pick(rng, SHOE_COLOURS)),
    )


# ---------------------------------------------------------------------------------------------
# motion: joint angles over time

# Bilateral channels hold (2, T) arrays: row 0 the left limb, row 1 the right.
_ARM_CHANNELS = ("arm_abd", "arm_flex", "elbow_flex", "elbow_up", "wrist", "curl")
_LEG_CHANNELS = ("hip_abd", "hip_flex", "knee")
# (base, sinusoid amplitude, lower limit, upper limit) in radians.
_CHANNELS = {
    "torso_roll": (0.0, 0.08, -0.35, 0.35),
    "torso_pitch": (0.04, 0.05, -0.15, 0.45),
    "head_yaw": (0.0, 0.2, -0.6, 0.6),
    "head_pitch": (0.0, 0.08, -0.3, 0.3),
    "head_roll": (0.0, 0.1, -0.3, 0.3),
    "arm_abd": (0.3, 0.35, 0.08, 2.9),
    "arm_flex": (0.1, 0.45, -0.6, 1.7),
    "elbow_flex": (0.45, 0.5, 0.0, 2.3),
    "elbow_up": (0.1, 0.25, 0.0, 1.6),
    "wrist": (0.1, 0.25, -0.5, 0.9),
    "curl": (0.3, 0.25, 0.0, 0.9),
    "hip_abd": (0.06, 0.06, 0.0, 0.5),
    "hip_flex": (0.05, 0.08, -0.35, 1.1),
    "knee": (0.1, 0.08, 0.0, 1.6),
}
_MOVES = ("raise", "raise_both", "wave", "reach", "clap", "squat", "kick", "lean", "side_step", "arms_out")


def _make_motion(streams: dict[str, np.random.Generator], num_frames: int, fps: int, height: float) -> dict[str, np.ndarray]:
    """Joint angles ``(T,)`` or ``(2, T)``, the turn ``yaw``, the sideways wander ``x`` in pixels
    (before keeping the body in frame), ``mouth`` opening and ``blink`` in [0, 1]."""
    t = np.arange(num_frames) / fps
    rhythm = streams["rhythm"]
    beat = rhythm.uniform(0.8, 1.2)  # Hz: dance steps on every other beat of 96-144 bpm
    energy = 0.6 + 0.4 * np.sin(2 * np.pi * rhythm.uniform(1 / 40, 1 / 15) * t + rhythm.uniform(0, 2 * np.pi))

    angles: dict[str, np.ndarray] = {}
    for name, (base, amplitude, _, _) in _CHANNELS.items():
        bilateral = name in _ARM_CHANNELS or name in _LEG_CHANNELS
        value = np.full((2, num_frames) if bilateral else (num_frames,), base)
        for _ in range(3):
            kind, spread, phase, mirror, size = rhythm.random(5)
            frequency = beat * (0.25, 0.5, 1.0, 2.0)[int(kind * 4)] if spread < 0.6 else 0.05 + 0.55 * kind
            wave = np.sin(2 * np.pi * frequency * t + 2 * np.pi * phase)
            if bilateral:
                other = np.sin(2 * np.pi * frequency * t + 2 * np.pi * phase + (np.pi if mirror < 0.5 else 0.0))
                wave = np.stack([wave, other])
            value = value + amplitude * (0.4 + 0.6 * size) * energy * wave
        angles[name] = value

    # Step-touch on alternate legs and a bounce on the beat, switched on and off slowly.
    step_phase = 2 * np.pi * beat / 2 * t + rhythm.uniform(0, 2 * np.pi)
    stepping = np.clip(1.5 * np.sin(2 * np.pi * rhythm.uniform(1 / 30, 1 / 10) * t + rhythm.uniform(0, 2 * np.pi)) + 0.5, 0, 1)
    lift = np.stack([np.maximum(0, np.sin(step_phase)) ** 2, np.maximum(0, -np.sin(step_phase)) ** 2]) * stepping * energy
    angles["hip_flex"] = angles["hip_flex"] + 0.45 * lift
    angles["knee"] = angles["knee"] + 0.9 * lift + 0.12 * (1 + np.cos(2 * np.pi * beat * t)) * energy

    wander = np.zeros(num_frames)
    for _ in range(2):
        frequency, phase, amplitude = rhythm.random(3)
        wander += (2 + 4 * amplitude) * np.sin(2 * np.pi * (0.02 + 0.08 * frequency) * t + 2 * np.pi * phase)
    angles["x"] = wander * height / 72

    _add_moves(angles, streams["moves"], t, height)
    for name, (_, _, low, high) in _CHANNELS.items():
        angles[name] = np.clip(angles[name], low, high)
    angles["yaw"] = _make_turns(streams["turns"], t)
    angles.update(_make_face_motion(streams["face"], t))
    return angles


def _add_moves(angles: dict[str, np.ndarray], rng: np.random.Generator, t: np.ndarray, height: float) -> None:
    """Occasional dance moves, each a smooth pulse added to some channels. Every event draws the
    same number of values, in time order, so clips of any length share their beginning."""
    start, offset = 0.8, 0.0
    while start < t[-1]:
        kind_draw, length_draw, side_draw, a, b, gap = rng.random(6)
        kind = _MOVES[int(kind_draw * len(_MOVES))]
        length = 1.0 + 1.6 * length_draw
        side = int(side_draw * 2)
        pulse = _bump(t, start, length)
        if kind == "raise":
            angles["arm_abd"][side] += (1.9 + 0.7 * a) * pulse
            angles["elbow_flex"][side] -= 0.4 * pulse
        elif kind == "raise_both":
            angles["arm_abd"] += (1.8 + 0.8 * a) * pulse
            angles["elbow_up"] += 0.5 * b * pulse
        elif kind == "wave":
            angles["arm_abd"][side] += 1.3 * pulse
            angles["elbow_up"][side] += (0.9 + 0.4 * np.sin(2 * np.pi * (2 + b) * t)) * pulse
        elif kind == "reach":
            angles["arm_flex"][side] += (1.0 + 0.5 * a) * pulse
            angles["elbow_flex"][side] -= 0.4 * pulse
        elif kind == "clap":
            angles["arm_flex"] += 1.1 * pulse
            angles["elbow_flex"] += (0.7 + 0.4 * np.abs(np.sin(2 * np.pi * (1 + a) * t))) * pulse
        elif kind == "squat":
            angles["knee"] += (0.9 + 0.5 * a) * pulse
            angles["hip_flex"] += (0.5 + 0.3 * a) * pulse
            angles["torso_pitch"] += 0.3 * pulse
            angles["arm_flex"] += 0.6 * b * pulse
        elif kind == "kick":
            angles["hip_flex"][side] += (0.5 + 0.4 * a) * pulse
            angles["knee"][side] += 0.5 * b * pulse
        elif kind == "lean":
            angles["torso_roll"] += (0.15 + 0.15 * a) * (1 if side else -1) * pulse
            angles["head_roll"] += 0.15 * (1 if side else -1) * pulse
        elif kind == "side_step":
            direction = -np.sign(offset) if abs(offset) > 3 else (1 if side else -1)
            step = direction * (3 + 4 * a)
            offset += step
            angles["x"] += step * height / 72 * _smootherstep((t - start) / length)
            angles["hip_abd"][0 if direction > 0 else 1] += 0.3 * pulse
        elif kind == "arms_out":
            angles["arm_abd"] += (0.9 + 0.5 * a) * pulse
            angles["elbow_up"] += 0.6 * b * pulse
        start += length * (0.6 + 0.6 * b) + 2.5 * gap


# Views the character holds: front, three-quarter, side and back, as yaw in radians.
_VIEWS = (0.0, 0.6, -0.6, np.pi / 2, -np.pi / 2, np.pi)
_VIEW_WEIGHTS = np.array([0.3, 0.12, 0.12, 0.14, 0.14, 0.18])


def _make_turns(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Piecewise holds joined by smooth turns; starts facing the camera, and shows a side and the
    back early, so every clip longer than about 20 s has all views."""
    yaw = np.zeros_like(t)
    current = 0.0
    time = 0.0
    hold = 2.5 + 2.5 * rng.random()
    early = [np.pi / 2 * (1 if rng.random() < 0.5 else -1), np.pi]
    if rng.random() < 0.5:
        early.reverse()
    while time + hold < t[-1]:
        view_draw, long_way, turn_draw, hold_draw, sign_draw = rng.random(5)
        target = early.pop(0) if early else _VIEWS[int(np.searchsorted(np.cumsum(_VIEW_WEIGHTS), view_draw * _VIEW_WEIGHTS.sum()))]
        delta = (target - current + np.pi) % (2 * np.pi) - np.pi
        if long_way < 0.2:  # turn the long way round, or spin on the spot
            delta -= np.copysign(2 * np.pi, delta if delta != 0 else sign_draw - 0.5)
        turn = 0.5 + 0.35 * abs(delta) * (0.5 + turn_draw)
        begin = time + hold
        yaw = np.where(t >= begin, current + delta * _smootherstep((t - begin) / turn), yaw)
        current += delta
        time = begin + turn
        is_front = abs((target + np.pi) % (2 * np.pi) - np.pi) < 0.1
        hold = (3.0 + 5.0 * hold_draw) if is_front else (1.5 + 3.0 * hold_draw)
    return yaw


def _make_face_motion(rng: np.random.Generator, t: np.ndarray) -> dict[str, np.ndarray]:
    """Talking-like mouth opening in bursts, and blinks every few seconds."""
    rate, phase, burst_rate, burst_phase = rng.random(4)
    syllables = np.maximum(0, np.sin(2 * np.pi * (3 + 2 * rate) * t + 2 * np.pi * phase))
    bursts = np.clip(2 * np.sin(2 * np.pi * (0.1 + 0.2 * burst_rate) * t + 2 * np.pi * burst_phase), 0, 1)
    blink = np.zeros_like(t)
    time = rng.uniform(0.5, 3.0)
    while time < t[-1] + 0.1:  # a blink just after the end still shows in the last frames
        blink = np.maximum(blink, 1 - np.clip(np.abs(t - time) / 0.08, 0, 1))
        time += rng.uniform(1.5, 5.0)
    return {"mouth": syllables * bursts, "blink": np.clip(blink * 1.5, 0, 1)}


# ---------------------------------------------------------------------------------------------
# skeleton: forward kinematics, placement in the frame, keypoints

# Body proportions in units of standing height.
_TORSO, _NECK, _SHOULDER, _HIP = 0.29, 0.035, 0.105, 0.06
_UPPER_ARM, _FOREARM, _HAND = 0.165, 0.145, 0.075
_THIGH, _SHIN, _ANKLE, _FOOT, _SOLE = 0.235, 0.215, 0.035, 0.085, 0.02
_HEAD = np.array([0.062, 0.078, 0.066])  # head ellipsoid radii x, y, z
_MARGIN = 1.5  # pixels kept between keypoints (and face boxes) and the frame's edge
_DOWN = np.array([0.0, -1.0, 0.0])
_FORWARD = np.array([0.0, 0.0, 1.0])
_JAW_ANGLES = np.linspace(np.pi, 2 * np.pi, 17)
# Eye landmarks around each eye's centre: corner, two upper-lid points, corner, two lower-lid points.
_EYE_DX = np.array([-0.17, -0.06, 0.06, 0.17, 0.06, -0.06])
_EYE_DY = np.array([0.0, 1.0, 1.0, 0.0, -1.0, -1.0])
_EYE_CENTRES = ((-0.36, 0.08), (0.36, 0.08))  # the person's right eye, then left
_MOUTH_Y = -0.48


def _face_layout(mouth: np.ndarray, blink: np.ndarray) -> np.ndarray:
    """The 68 face landmarks (iBUG order) ``(T, 68, 3)``: x, y on the head in radii (x = the
    person's left, y up) and a protrusion beyond the ellipsoid in depth radii. Eyes close with
    ``blink``, the mouth opens with ``mouth``; the drawn face uses the same numbers."""
    points = np.zeros((len(mouth), 68, 3))
    points[:, 0:17, 0] = 0.93 * np.cos(_JAW_ANGLES)
    points[:, 0:17, 1] = 0.1 + 0.9 * np.sin(_JAW_ANGLES)
    brow_x = np.linspace(0.14, 0.62, 5)
    brow_y = 0.3 + 0.06 * np.sin(np.pi * np.linspace(0, 1, 5))
    points[:, 17:22, 0], points[:, 17:22, 1] = -brow_x[::-1], brow_y[::-1]
    points[:, 22:27, 0], points[:, 22:27, 1] = brow_x, brow_y
    points[:, 27:31, 1], points[:, 27:31, 2] = np.linspace(0.2, -0.14, 4), np.linspace(0.0, 0.18, 4)
    points[:, 31:36, 0], points[:, 31:36, 1], points[:, 31:36, 2] = np.linspace(-0.14, 0.14, 5), -0.22, 0.06
    lid = 0.09 * (1 - blink)[:, None]
    for start, (cx, cy) in zip((36, 42), _EYE_CENTRES):
        points[:, start : start + 6, 0] = cx + _EYE_DX
        points[:, start : start + 6, 1] = cy + _EYE_DY * lid
    opening = 0.12 * mouth[:, None]
    outer_x = np.array([-0.26, -0.17, -0.07, 0.0, 0.07, 0.17, 0.26, 0.17, 0.07, 0.0, -0.07, -0.17])
    outer_up = np.array([0, 0.05, 0.07, 0.06, 0.07, 0.05, 0, 0, 0, 0, 0, 0])
    outer_down = np.array([0, 0, 0, 0, 0, 0, 0, 0.05, 0.07, 0.075, 0.07, 0.05])
    points[:, 48:60, 0] = outer_x
    points[:, 48:60, 1] = _MOUTH_Y + outer_up - outer_down - opening * (outer_down > 0)
    inner_low = np.array([0, 0, 0, 0, 0, 1, 1, 1], dtype=float)
    points[:, 60:68, 0] = np.array([-0.2, -0.08, 0.0, 0.08, 0.2, 0.08, 0.0, -0.08])
    points[:, 60:68, 1] = _MOUTH_Y + 0.01 * (1 - inner_low) - opening * inner_low
    points[:, 48:68, 2] = 0.04
    return points


def _on_head(layout: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Head-frame points in pixels for layout entries ``(..., 3)`` on the ellipsoid's front."""
    x, y, extra = layout[..., 0], layout[..., 1], layout[..., 2]
    z = np.sqrt(np.clip(1 - x**2 - y**2, 0.0, 1.0)) + extra
    return np.stack([x * radii[0], y * radii[1], z * radii[2]], -1)


def _forward_kinematics(angles: dict[str, np.ndarray], look: _Look) -> dict[str, np.ndarray]:
    """Joints relative to the pelvis, ``(T, 3)`` pixels in a y-up frame with z towards the camera,
    and the rotations ``(T, 3, 3)`` of body, torso, head and hands."""
    h = look.height
    body = _rotation("y", angles["yaw"])
    torso = body @ _rotation("z", angles["torso_roll"]) @ _rotation("x", angles["torso_pitch"])
    head = torso @ _rotation("y", angles["head_yaw"]) @ _rotation("x", -angles["head_pitch"]) @ _rotation("z", angles["head_roll"])
    out = {"body_rotation": body, "torso_rotation": torso, "head_rotation": head, "pelvis": np.zeros((len(angles["yaw"]), 3))}
    out["neck"] = _apply(torso, np.array([0.0, _TORSO * h, 0.0]))
    out["neck_top"] = out["neck"] + _apply(torso, np.array([0.0, _NECK * h, 0.0]))
    out["head"] = out["neck_top"] + _apply(head, np.array([0.0, 0.8 * _HEAD[1], 0.12 * _HEAD[2]]) * h)
    for s, (name, side) in enumerate((("left", 1.0), ("right", -1.0))):
        a = {key: angles[key][s] for key in _ARM_CHANNELS + _LEG_CHANNELS}
        shoulder = np.array([side * _SHOULDER * h * (0.9 + 0.1 * look.build), -0.025 * h, 0.0])
        out[f"{name}_shoulder"] = out["neck"] + _apply(torso, shoulder)
        upper = torso @ _rotation("x", -a["arm_flex"]) @ _rotation("z", side * a["arm_abd"])
        bend_flex, bend_abd = a["arm_flex"] + a["elbow_flex"], side * (a["arm_abd"] + a["elbow_up"])
        fore = torso @ _rotation("x", -bend_flex) @ _rotation("z", bend_abd)
        out[f"{name}_hand_rotation"] = torso @ _rotation("x", -(bend_flex + a["wrist"])) @ _rotation("z", bend_abd)
        out[f"{name}_curl"] = a["curl"]
        out[f"{name}_elbow"] = out[f"{name}_shoulder"] + _UPPER_ARM * h * _apply(upper, _DOWN)
        out[f"{name}_wrist"] = out[f"{name}_elbow"] + _FOREARM * h * _apply(fore, _DOWN)

        out[f"{name}_hip"] = _apply(body, np.array([side * _HIP * h * look.build, 0.0, 0.0]))
        thigh = body @ _rotation("x", -a["hip_flex"]) @ _rotation("z", side * a["hip_abd"])
        shin = body @ _rotation("x", -(a["hip_flex"] - a["knee"])) @ _rotation("z", side * 0.7 * a["hip_abd"])
        out[f"{name}_knee"] = out[f"{name}_hip"] + _THIGH * h * _apply(thigh, _DOWN)
        out[f"{name}_ankle"] = out[f"{name}_knee"] + _SHIN * h * _apply(shin, _DOWN)
        # The foot points forward and a little outward, and follows the shin a little.
        foot = body @ _rotation("y", side * 0.25) @ _rotation("x", -0.4 * (a["hip_flex"] - a["knee"]))
        forward, outward = _apply(foot, _FORWARD), _apply(foot, np.array([side, 0.0, 0.0]))
        sole = out[f"{name}_ankle"] + _apply(body, np.array([0.0, -(_ANKLE - _SOLE) * h, 0.0]))
        out[f"{name}_heel"] = sole - 0.22 * _FOOT * h * forward
        out[f"{name}_toe"] = sole + _FOOT * h * forward
        out[f"{name}_big_toe"] = sole + _FOOT * h * forward - 0.16 * _FOOT * h * outward
        out[f"{name}_small_toe"] = sole + 0.8 * _FOOT * h * forward + 0.22 * _FOOT * h * outward
    return out


def _hand_points(wrist: np.ndarray, rotation: np.ndarray, curl: np.ndarray, side: float, size: float) -> np.ndarray:
    """The 21 hand keypoints ``(T, 21, 3)``: wrist, then thumb, index, middle, ring and little
    finger, base to tip. The hand's frame follows the forearm's rotations, so it never flips."""
    along = _apply(rotation, _DOWN)
    across = _apply(rotation, _FORWARD)  # towards the thumb: forward when the arm hangs
    palm = side * np.cross(along, across)  # the way the fingers curl
    points = [wrist]
    thumb_base = wrist + 0.12 * size * along + 0.28 * size * across
    thumb = _normalise(0.6 * along + 0.8 * across + 0.3 * palm)
    points += [thumb_base + 0.16 * size * k * thumb for k in range(4)]
    for offset, length in ((0.24, 0.5), (0.08, 0.56), (-0.08, 0.52), (-0.23, 0.42)):
        point = wrist + 0.5 * size * along + offset * size * across
        direction = _normalise(along + 0.25 * offset * across)
        points.append(point)
        for k in range(1, 4):
            bend = curl[:, None] * k
            point = point + length / 3 * size * (np.cos(bend) * direction + np.sin(bend) * palm)
            points.append(point)
    return np.stack(points, 1)


@dataclass
class _Rig:
    """A clip's geometry in frame pixels: points ``(T, ..., 3)`` as x right, y down, z towards the
    camera; rotations ``(T, 3, 3)`` in the y-up frame."""

    points: dict[str, np.ndarray]
    rotations: dict[str, np.ndarray]
    yaw: np.ndarray
    keypoints: np.ndarray
    face_visible: np.ndarray
    mouth: np.ndarray
    blink: np.ndarray


def _limit_reach(angles: dict[str, np.ndarray], look: _Look, width: int) -> None:
    """Bend arms and legs that reach further sideways than half the frame, so the body always
    fits. A few smooth passes: the correction is continuous in the pose."""
    h = look.height
    budget = (width - 1) / 2 - _MARGIN - 0.05 * h
    for _ in range(4):
        joints = _forward_kinematics(angles, look)
        for s, name in enumerate(("left", "right")):
            arm = np.abs(np.stack([joints[f"{name}_wrist"][:, 0], joints[f"{name}_elbow"][:, 0]])).max(0) + _HAND * h
            over = np.maximum(0.0, arm - budget) / (_FOREARM * h)
            angles["elbow_up"][s] = np.clip(angles["elbow_up"][s] + 1.2 * over, 0.0, 2.6)
            angles["arm_abd"][s] = np.clip(angles["arm_abd"][s] - 0.4 * over, 0.08, 2.9)
            foot = np.abs(np.stack([joints[f"{name}_toe"][:, 0], joints[f"{name}_heel"][:, 0]])).max(0)
            angles["knee"][s] = np.clip(angles["knee"][s] + np.maximum(0.0, foot - budget) / (_SHIN * h), 0.0, 2.2)


def _build_rig(angles: dict[str, np.ndarray], look: _Look, width: int) -> _Rig:
    """Pose the body, put the lowest sole on the floor and everything inside the frame, and
    collect the keypoints from the same geometry that is drawn."""
    h = look.height
    _limit_reach(angles, look, width)
    joints = _forward_kinematics(angles, look)
    frames = len(angles["yaw"])
    head_rotation = joints["head_rotation"]
    radii = _HEAD * h
    face = joints["head"][:, None] + np.einsum("tij,tkj->tki", head_rotation, _on_head(_face_layout(angles["mouth"], angles["blink"]), radii))
    face_visible = _apply(head_rotation, _FORWARD)[:, 2] > -0.1
    eyes = joints["head"][:, None] + np.einsum("tij,kj->tki", head_rotation, _on_head(np.array([[0.36, 0.08, 0.0], [-0.36, 0.08, 0.0]]), radii))
    ear_axes = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    ears = joints["head"][:, None] + np.einsum("tij,kj->tki", head_rotation, ear_axes * radii)
    ears_visible = np.einsum("tij,kj->tki", head_rotation, ear_axes)[..., 2] > -0.5
    if look.hair_style in _HAIR_BACK:  # hair hanging behind the head moves with it
        start, end, _, _ = _HAIR_BACK[look.hair_style]
        joints["hair_start"] = joints["head"] + _apply(head_rotation, np.array(start) * radii)
        joints["hair_end"] = joints["head"] + _apply(head_rotation, np.array(end) * radii)
    hands = [
        _hand_points(joints[f"{name}_wrist"], joints[f"{name}_hand_rotation"], joints[f"{name}_curl"], 1.0 - 2 * s, _HAND * h)
        for s, name in enumerate(("left", "right"))
    ]

    keypoints = np.ones((frames, NUM_KEYPOINTS, 3))
    keypoints[:, 0, :2], keypoints[:, 0, 2] = face[:, 30, :2], face_visible
    keypoints[:, 1:3, :2], keypoints[:, 1:3, 2] = eyes[..., :2], face_visible[:, None]
    keypoints[:, 3:5, :2], keypoints[:, 3:5, 2] = ears[..., :2], ears_visible
    for k, part in enumerate(("shoulder", "elbow", "wrist", "hip", "knee", "ankle")):
        keypoints[:, 5 + 2 * k, :2] = joints[f"left_{part}"][:, :2]
        keypoints[:, 6 + 2 * k, :2] = joints[f"right_{part}"][:, :2]
    for s, name in enumerate(("left", "right")):
        for k, part in enumerate(("big_toe", "small_toe", "heel")):
            keypoints[:, 17 + 3 * s + k, :2] = joints[f"{name}_{part}"][:, :2]
        keypoints[:, 91 + 21 * s : 112 + 21 * s, :2] = hands[s][..., :2]
    keypoints[:, FACE, :2], keypoints[:, FACE, 2] = face[..., :2], face_visible[:, None]
    keypoints[..., 1] *= -1  # to image rows

    soles = np.stack([joints[f"{n}_{p}"][:, 1] for n in ("left", "right") for p in ("heel", "toe", "big_toe", "small_toe")])
    pelvis_y = look.floor_y - _SOLE * h + soles.min(0)
    boxes = face_boxes_from_keypoints(keypoints.astype(np.float32))
    xs = np.concatenate([keypoints[..., 0], np.where(np.isfinite(boxes[:, [0, 2]]), boxes[:, [0, 2]], 0.0)], axis=1)
    low, high = _MARGIN - xs.min(1), width - 1 - _MARGIN - xs.max(1)
    pelvis_x = np.clip((width - 1) / 2 + angles["x"], low, np.maximum(low, high))
    shift = np.stack([pelvis_x, pelvis_y, np.zeros(frames)], -1)
    keypoints[..., :2] += shift[:, None, :2]

    flip = np.array([1.0, -1.0, 1.0])
    points = {key: value * flip + shift for key, value in joints.items() if key not in ("left_curl", "right_curl") and not key.endswith("rotation")}
    points["face"] = face * flip + shift[:, None]
    points["left_hand"], points["right_hand"] = (hand * flip + shift[:, None] for hand in hands)
    rotations = {key: value for key, value in joints.items() if key.endswith("rotation")}
    return _Rig(points, rotations, angles["yaw"], keypoints.astype(np.float32), face_visible, angles["mouth"], angles["blink"])


# ---------------------------------------------------------------------------------------------
# the room

_WOOD = ((150, 100, 60), (184, 140, 96), (112, 72, 46), (204, 172, 124), (130, 112, 100))
_FRAMES = ((70, 45, 25), (190, 150, 60), (30, 30, 30), (235, 235, 228))


def _make_room(rng: np.random.Generator, spec: SyntheticSpec, look: _Look) -> np.ndarray:
    """The static background, float32 ``(H * ss, W * ss, 3)`` in [0, 1]: a patterned wall with
    objects on it and a floor, all in soft-edged shapes and smooth light."""
    ss, scale = SUPERSAMPLE, spec.height / HEIGHT
    x = ((np.arange(spec.width * ss) + 0.5) / ss - 0.5)[None, :]
    y = ((np.arange(spec.height * ss) + 0.5) / ss - 0.5)[:, None]
    edge = ROOM_EDGE
    horizon = look.floor_y - rng.uniform(12, 22) * scale

    wall_hue = rng.random()
    wall = np.broadcast_to(_hsv(wall_hue, rng.uniform(0.12, 0.45), rng.uniform(0.55, 0.85)), (y.size, x.size, 3)).copy()
    accent = _hsv(wall_hue + rng.choice([0.0, 0.08, 0.5]), rng.uniform(0.15, 0.5), rng.uniform(0.45, 0.9))
    period = rng.uniform(10, 16) * scale
    kind = int(rng.integers(5))
    phase_x, phase_y = rng.random(2)
    u, v = x / period + phase_x, y / period + phase_y
    if kind == 0:  # stripes
        mask = _band(u, rng.uniform(0.3, 0.6), edge / period) + 0 * v
    elif kind == 1:  # dots on a staggered grid
        shifted = u + 0.5 * (np.floor(v) % 2)
        distance = np.hypot(shifted - np.floor(shifted) - 0.5, v - np.floor(v) - 0.5) * period
        mask = _soft(distance - rng.uniform(2.5, 3.5) * scale, edge)
    elif kind == 2:  # bricks: mortar lines
        rows = v * 2
        shifted = u + 0.5 * (np.floor(rows) % 2)
        to_row = np.abs(rows - np.round(rows)) * period / 2
        to_joint = np.abs(shifted - np.round(shifted)) * period
        mask = _soft(np.minimum(to_row, to_joint) - 0.5, edge)
    elif kind == 3:  # diamonds
        distance = (np.abs(u - np.floor(u) - 0.5) + np.abs(v - np.floor(v) - 0.5)) * period
        mask = _soft(distance - rng.uniform(0.25, 0.4) * period, edge)
    else:  # waves
        mask = 0.5 + 0.5 * np.sin(2 * np.pi * (u + 0.3 * np.sin(2 * np.pi * v / 1.7)))
    wall += (accent - wall) * (rng.uniform(0.2, 0.35) * mask)[..., None]

    if rng.random() < 0.4:  # wainscot panel below a rail
        rail = horizon - rng.uniform(14, 24) * scale
        panel = _soft(rail - y, edge) + 0 * x
        wall += (wall * rng.uniform(0.7, 1.2) - wall) * panel[..., None]
        wall += (_rgb(*_FRAMES[int(rng.integers(4))]) - wall) * _soft(np.abs(y - rail) - 0.8, edge)[..., None] * np.ones_like(x)[..., None]
    for _ in range(int(rng.integers(1, 4))):
        _add_wall_object(wall, rng, x, y, horizon, scale, edge, spec.width)

    floor = _make_floor(rng, x, y, horizon, scale, edge, spec.width)
    baseboard = rng.uniform(1.5, 3.0) * scale
    image = np.where((y < horizon - baseboard)[..., None], wall, floor)
    board_colour = np.clip(wall[-1, 0] * rng.choice([0.75, 1.2]), 0, 1)
    board = _soft(np.abs(y - (horizon - baseboard / 2)) - baseboard / 2, edge) + 0 * x
    image += (board_colour - image) * board[..., None]
    floor_mask = _soft(horizon - y, edge) + 0 * x
    image *= (1 - 0.25 * np.exp(-np.maximum(y - horizon, 0) / (3 * scale)) * floor_mask)[..., None]

    lamp_x, lamp_y = rng.uniform(0, spec.width), rng.uniform(0, 0.5 * horizon)
    sigma = rng.uniform(18, 32) * scale
    light = 0.82 + 0.3 * np.exp(-((x - lamp_x) ** 2 + (y - lamp_y) ** 2) / (2 * sigma**2))
    light = light - 0.1 * ((x - spec.width / 2) / spec.width * 2) ** 2
    return np.clip(image * light[..., None], 0, 1).astype(np.float32)


def _rect_distance(x: np.ndarray, y: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Signed distance to an axis-aligned rectangle (negative inside)."""
    dx = np.maximum(x0 - x, x - x1)
    dy = np.maximum(y0 - y, y - y1)
    return np.hypot(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0)


def _paint(image: np.ndarray, coverage: np.ndarray, colour: np.ndarray) -> None:
    image += (np.asarray(colour, dtype=np.float32) - image) * np.broadcast_to(coverage, image.shape[:2])[..., None]


def _add_wall_object(wall: np.ndarray, rng: np.random.Generator, x: np.ndarray, y: np.ndarray, horizon: float, scale: float, edge: float, width: int) -> None:
    """One of: framed picture, window, shelf with books, clock, potted plant."""
    kind = int(rng.integers(5))
    draws = rng.random(8)
    if kind in (0, 1):  # picture or window
        w, h = (10 + 10 * draws[0]) * scale, (8 + 10 * draws[1]) * scale
        x0, y0 = draws[2] * (width - w), 3 * scale + draws[3] * max(1.0, horizon - h - 10 * scale)
        frame = rng.uniform(1.2, 2.2) * scale
        outer = _rect_distance(x, y, x0, y0, x0 + w, y0 + h)
        inner = _rect_distance(x, y, x0 + frame, y0 + frame, x0 + w - frame, y0 + h - frame)
        _paint(wall, _soft(outer, edge), _rgb(*_FRAMES[int(draws[4] * 4)]) if kind == 0 else _rgb(236, 236, 230))
        fraction = np.clip((y - y0) / h, 0, 1)
        if kind == 0:
            top, bottom = _hsv(draws[5], 0.5, 0.9), _hsv(draws[5] + 0.3, 0.6, 0.5)
        else:
            top, bottom = _rgb(150, 190, 235), _rgb(225, 235, 245)
        glass = (top + (bottom - top) * fraction[..., None]).astype(np.float32)
        inside = np.broadcast_to(_soft(inner, edge), wall.shape[:2])[..., None]
        wall += (glass - wall) * inside
        if kind == 0:  # a sun and a mountain
            sun = np.hypot(x - (x0 + w * (0.25 + 0.5 * draws[6])), y - (y0 + h * 0.35)) - 0.14 * min(w, h)
            _paint(wall, _soft(sun, edge) * _soft(inner, edge), _hsv(0.12, 0.7, 1.0))
            peak_x = x0 + w * (0.3 + 0.4 * draws[7])
            mountain = np.maximum(np.abs(x - peak_x) * 0.8 - (y - (y0 + h * 0.4)), y - (y0 + h))
            _paint(wall, _soft(mountain, edge) * _soft(inner, edge), _hsv(draws[5] + 0.35, 0.5, 0.4))
        else:  # window bars
            bars = np.minimum(np.abs(x - (x0 + w / 2)), np.abs(y - (y0 + h / 2))) - 0.6 * scale
            _paint(wall, _soft(bars, edge) * _soft(inner, edge), _rgb(236, 236, 230))
    elif kind == 2:  # shelf with books
        w = (16 + 14 * draws[0]) * scale
        x0, y0 = draws[1] * (width - w), (14 + draws[2] * max(1.0, horizon - 30 * scale))
        _paint(wall, _soft(_rect_distance(x, y, x0, y0, x0 + w, y0 + 1.6 * scale), edge), _rgb(*_WOOD[int(draws[3] * 5)]) * 0.8)
        position = x0 + 2 * scale
        for _ in range(int(2 + 3 * draws[4])):
            book_w, book_h = (3.0 + 2.0 * rng.random()) * scale, (5 + 3 * rng.random()) * scale
            colour = _hsv(rng.random(), 0.4, rng.uniform(0.45, 0.8))
            _paint(wall, _soft(_rect_distance(x, y, position, y0 - book_h, position + book_w, y0), edge), colour)
            position += book_w + 0.3 * scale
    elif kind == 3:  # clock
        radius = (4 + 3 * draws[0]) * scale
        cx, cy = radius + draws[1] * (width - 2 * radius), radius + 3 * scale + draws[2] * max(1.0, horizon - 2 * radius - 12 * scale)
        distance = np.hypot(x - cx, y - cy)
        _paint(wall, _soft(distance - radius, edge), _rgb(*_FRAMES[int(draws[3] * 4)]))
        _paint(wall, _soft(distance - radius + 1.2 * scale, edge), _rgb(245, 242, 230))
        for angle, length in ((draws[4] * 2 * np.pi, 0.55), (draws[5] * 2 * np.pi, 0.8)):
            ex, ey = cx + length * radius * np.sin(angle), cy - length * radius * np.cos(angle)
            t = np.clip(((x - cx) * (ex - cx) + (y - cy) * (ey - cy)) / ((ex - cx) ** 2 + (ey - cy) ** 2), 0, 1)
            _paint(wall, _soft(np.hypot(x - cx - t * (ex - cx), y - cy - t * (ey - cy)) - 0.5 * scale, edge), _rgb(90, 84, 80))
    else:  # potted plant standing on the floor line
        cx = (5 + draws[0] * (width - 10)) * 1.0
        pot_h, pot_w = (5 + 3 * draws[1]) * scale, (4 + 2 * draws[2]) * scale
        pot = np.maximum(np.abs(x - cx) - (pot_w / 2) * (1 - 0.25 * (horizon - y) / pot_h), np.abs(y - (horizon - pot_h / 2)) - pot_h / 2)
        leaves = np.full(np.broadcast(x, y).shape, np.inf)
        for k in range(5):
            angle = (k - 2) * 0.45 + 0.2 * rng.standard_normal()
            length = (6 + 6 * rng.random()) * scale
            lx, ly = cx + 0.5 * length * np.sin(angle), horizon - pot_h - 0.5 * length * np.cos(angle)
            along = (x - lx) * np.sin(angle) - (y - ly) * np.cos(angle)
            across = (x - lx) * np.cos(angle) + (y - ly) * np.sin(angle)
            leaves = np.minimum(leaves, (np.hypot(along / (0.5 * length), across / (1.3 * scale)) - 1) * 1.3 * scale)
        _paint(wall, _soft(leaves, edge), _hsv(0.3 + 0.08 * draws[3], 0.6, 0.45))
        _paint(wall, _soft(pot, edge), _hsv(0.05 + 0.1 * draws[4], 0.55, 0.6))


def _make_floor(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, horizon: float, scale: float, edge: float, width: int) -> np.ndarray:
    """Planks, tiles or a carpet in perspective: rows get taller towards the camera."""
    vanishing = horizon - rng.uniform(25, 45) * scale
    below = np.maximum(y - vanishing, 1e-3)
    depth = (horizon - vanishing) / below  # 1 at the wall, smaller towards the camera
    rows = rng.uniform(3.0, 5.0) * (1 - depth) / (1 - (horizon - vanishing) / (y.max() - vanishing))
    across = (x - width / 2) * depth / (10 * scale)
    row_scale = np.abs(np.gradient(rows, axis=0)) + 1e-6  # rows per pixel, for soft edges in perspective
    kind = int(rng.integers(3))
    if kind == 0:
        base = _rgb(*_WOOD[int(rng.integers(5))])
        length = rng.uniform(2.0, 3.5)
        row = np.floor(rows)
        tint = 1 + 0.05 * np.sin(row * 12.9898 + rng.uniform(0, 6))
        seams = np.minimum(np.abs(rows - np.round(rows)) / row_scale, np.abs(((across / length + 0.5 * (row % 2)) + 0.5) % 1 - 0.5) * length * 10 * scale / depth)
        floor = base * tint[..., None] * (1 - 0.2 * _soft(seams - 0.4, edge))[..., None]
    elif kind == 1:
        light, dark = _hsv(rng.random(), rng.uniform(0, 0.3), rng.uniform(0.7, 0.9)), _hsv(rng.random(), rng.uniform(0.1, 0.4), rng.uniform(0.3, 0.5))
        checker = np.abs((np.floor(rows) + np.floor(across / 1.2)) % 2)
        floor = light + (dark - light) * (0.35 + 0.3 * checker)[..., None]
    else:
        colour = _hsv(rng.random(), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.6))
        band = _band(rows * 0.5, 0.25, row_scale * edge) * (rows < 1.5)
        floor = colour * (1 + 0.18 * band)[..., None] * np.ones_like(x)[..., None]
    return np.broadcast_to(floor, (y.size, x.size, 3)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# rendering the character

_LIGHT = _normalise(np.array([-0.45, 0.55, 0.7])).astype(np.float32)
_HAIR_SHAPES = {
    # fringe offset, back-of-head limit (z), nape (y), sides (|x| above y)
    "short": (0.0, -0.05, -0.55, (0.8, -0.1)),
    "bob": (-0.05, 0.25, -0.85, (0.72, -0.75)),
    "long": (0.0, 0.25, -1.1, (0.7, -1.1)),
    "ponytail": (0.05, -0.05, -0.6, (0.82, 0.0)),
    "bun": (0.05, -0.05, -0.6, (0.82, 0.0)),
}
# Hair hanging behind the head, as a capsule in head radii: start, end, start radius, end radius.
_HAIR_BACK = {
    "bob": ((0, -0.1, -0.4), (0, -0.95, -0.55), 1.0, 0.95),
    "long": ((0, 0.0, -0.55), (0, -2.0, -0.8), 1.0, 0.85),
    "ponytail": ((0, 0.25, -1.0), (0, -1.3, -1.4), 0.32, 0.2),
    "bun": ((0, 0.75, -0.75), (0, 0.8, -0.8), 0.48, 0.48),
}


@dataclass
class _Layer:
    """One part's pixels over a batch of frames, in a window that follows the part."""

    origin: np.ndarray  # int (B, 2): row, column of the window in the padded canvas
    keep: np.ndarray  # float32 (B, h, w, 1): 1 - coverage
    paint: np.ndarray  # float32 (B, h, w, 3): colour * coverage
    depth: np.ndarray  # (B,): larger is nearer the camera


class _Window:
    """Sample positions (in frame pixels) of a per-frame window covering ``[x0, x1] x [y0, y1]``."""

    def __init__(self, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray, pad: int, canvas: tuple[int, int]):
        ss = SUPERSAMPLE
        col = np.floor((x0 + 0.5) * ss).astype(int) - 1
        row = np.floor((y0 + 0.5) * ss).astype(int) - 1
        w = int(np.max(np.ceil((x1 + 0.5) * ss) - col)) + 2
        h = int(np.max(np.ceil((y1 + 0.5) * ss) - row)) + 2
        col = np.clip(col + pad, 0, canvas[1] - w) - pad
        row = np.clip(row + pad, 0, canvas[0] - h) - pad
        self.origin = np.stack([row + pad, col + pad], 1)
        self.x = ((col[:, None] + np.arange(w)[None] + 0.5) / ss - 0.5)[:, None, :].astype(np.float32)
        self.y = ((row[:, None] + np.arange(h)[None] + 0.5) / ss - 0.5)[:, :, None].astype(np.float32)

    def layer(self, coverage: np.ndarray, colour: np.ndarray, depth: np.ndarray) -> _Layer:
        coverage = np.broadcast_to(coverage, (len(self.origin), self.y.shape[1], self.x.shape[2]))[..., None].astype(np.float32)
        return _Layer(self.origin, 1 - coverage, (colour * coverage).astype(np.float32), depth)


def _column(v: np.ndarray) -> np.ndarray:
    """Per-frame values ``(B,)`` or ``(B, k)`` shaped to broadcast over ``(B, h, w)`` windows."""
    return np.asarray(v, dtype=np.float32).reshape(v.shape[0], 1, 1, *v.shape[1:])


def _segment(window: _Window, a: np.ndarray, b: np.ndarray, ra: float, rb: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed distance to a tapered capsule ``a -> b`` (image points ``(B, 2)``), the position
    along it in [0, 1], and the signed offset across it in radii."""
    ax, ay = _column(a[:, 0]), _column(a[:, 1])
    dx, dy = _column(b[:, 0] - a[:, 0]), _column(b[:, 1] - a[:, 1])
    length2 = dx * dx + dy * dy + 1e-6
    px, py = window.x - ax, window.y - ay
    t = np.clip((px * dx + py * dy) / length2, 0.0, 1.0)
    ex, ey = px - t * dx, py - t * dy
    radius = ra + (rb - ra) * t
    across = (ex * dy - ey * dx) / np.sqrt(length2) / radius
    return np.hypot(ex, ey) - radius, t, np.clip(across, -1, 1)


def _capsules(sl: slice, pad: int, canvas: tuple[int, int], segments: list[tuple[np.ndarray, np.ndarray, float, float]], colours: tuple[np.ndarray, np.ndarray, float], depth: np.ndarray) -> _Layer:
    """A limb-like part: the union of tapered capsules, coloured ``colours[0]`` up to the fraction
    ``colours[2]`` of the first capsule and ``colours[1]`` beyond (a sleeve, a trouser leg), with
    round shading across."""
    points = [p for a, b, _, _ in segments for p in (a[sl, :2], b[sl, :2])]
    radius = max(max(ra, rb) for _, _, ra, rb in segments) + 1
    stack = np.stack(points)
    window = _Window(stack[..., 0].min(0) - radius, stack[..., 0].max(0) + radius, stack[..., 1].min(0) - radius, stack[..., 1].max(0) + radius, pad, canvas)
    distance, along, across = _segment(window, segments[0][0][sl, :2], segments[0][1][sl, :2], segments[0][2], segments[0][3])
    for a, b, ra, rb in segments[1:]:
        other, _, other_across = _segment(window, a[sl, :2], b[sl, :2], ra, rb)
        across = np.where(other < distance, other_across, across)
        distance = np.minimum(distance, other)
    first, second, split = colours
    mix = _soft(split - along, 0.08)[..., None] if split < 1 else 1.0
    colour = second + (first - second) * mix
    shade = (0.82 + 0.18 * np.sqrt(1 - across**2) - 0.06 * across)[..., None]
    return window.layer(_soft(distance, BODY_EDGE), colour * shade, depth)


def _torso_layer(rig: _Rig, look: _Look, sl: slice, pad: int, canvas: tuple[int, int], depth: np.ndarray) -> _Layer:
    """The torso as an elliptic cylinder seen at the body's yaw: shirt pattern wrapped around it,
    an emblem and a V-neck on the front only, trousers and a belt at the bottom."""
    h = look.height
    pelvis, neck = rig.points["pelvis"][sl, :2], rig.points["neck"][sl, :2]
    axis = neck - pelvis
    length = np.linalg.norm(axis, axis=1)
    e = axis / length[:, None]
    widths = np.array((0.09, 0.088, 0.076, 0.1), dtype=np.float32) * h * look.build
    reach = float(widths.max()) + 1.5
    ends = np.stack([pelvis - 0.16 * axis, neck + 0.06 * axis])
    window = _Window(ends[..., 0].min(0) - reach, ends[..., 0].max(0) + reach, ends[..., 1].min(0) - reach, ends[..., 1].max(0) + reach, pad, canvas)
    px, py = window.x - _column(pelvis[:, 0]), window.y - _column(pelvis[:, 1])
    height = (px * _column(e[:, 0]) + py * _column(e[:, 1])) / _column(length)
    offset = px * _column(-e[:, 1]) + py * _column(e[:, 0])
    cos_yaw, sin_yaw = _column(np.cos(rig.yaw[sl])), _column(np.sin(rig.yaw[sl]))
    rx = np.interp(height, (-0.15, 0.0, 0.4, 0.85), widths).astype(np.float32)
    rz = np.float32(0.055 * h * look.build)
    seen_x, seen_z = rx * cos_yaw, rz * sin_yaw
    half = np.sqrt(seen_x**2 + seen_z**2)  # the cylinder's projected half-width
    rounding = np.sqrt(np.clip(1 - ((height - 0.85) / 0.2) ** 2 * (height > 0.85), 0, 1))
    distance = np.maximum(np.abs(offset) - half * rounding, (-0.15 - height) * _column(length))

    # The visible point of the cylinder behind each pixel, at angle theta around it (0 = chest):
    # offset = half * sin(theta + phi), and the point nearer the camera has cos(theta + phi) >= 0.
    sin_a = np.clip(offset / half, -1, 1)
    cos_a = np.sqrt(1 - sin_a**2)
    cos_phi, sin_phi = seen_x / half, seen_z / half
    sin_t, cos_t = sin_a * cos_phi - cos_a * sin_phi, cos_a * cos_phi + sin_a * sin_phi
    arc = np.arctan2(sin_t, cos_t) * (rx + rz) / 2  # pixels along the surface from the chest's centre
    up = height * (_TORSO * h)  # pixels up from the waist
    normal_x, normal_z = sin_t * rz, cos_t * rx
    norm = np.sqrt(normal_x**2 + normal_z**2)
    light = ((normal_x * cos_yaw + normal_z * sin_yaw) * _LIGHT[0] + (normal_z * cos_yaw - normal_x * sin_yaw) * _LIGHT[2]) / norm
    shade = 0.55 + 0.45 * np.clip(light + 0.3 * _LIGHT[1], 0, 1)

    period, edge = look.pattern_period, 0.5
    if look.pattern == "hstripes":
        mask = _band(up / period, 0.45, edge / period)
    elif look.pattern == "vstripes":
        mask = _band(arc / period + 0.5, 0.45, edge / period)
    elif look.pattern == "checks":
        mask = 0.5 * (_band(up / period, 0.5, edge / period) + _band(arc / period + 0.5, 0.5, edge / period))
    else:
        mask = np.zeros_like(up)
    colour = _over(np.broadcast_to(look.shirt, mask.shape + (3,)), 0.4 * mask, look.shirt_second)
    front = cos_t > 0
    emblem = _emblem_distance(look.emblem, arc, up - 0.7 * _TORSO * h, 0.048 * h)
    colour = _over(colour, _soft(emblem, edge) * front, look.emblem_colour)
    v_neck = (0.86 + 1.6 * np.abs(arc) / (_TORSO * h) - height) * _column(length)
    collar = np.where(front, v_neck, (1.0 - height) * _column(length))
    colour = _over(colour, _soft(collar, edge), look.skin)
    belt = np.abs(height - 0.02) * _column(length) - 0.6
    colour = np.where((height < 0.02)[..., None], look.trousers, colour)
    colour = _over(colour, _soft(belt, edge), look.trousers * 0.7)
    return window.layer(_soft(distance, BODY_EDGE), colour * shade[..., None], depth)


def _emblem_distance(shape: str, x: np.ndarray, y: np.ndarray, size: float) -> np.ndarray:
    """Signed distance to the chest emblem centred at (0, 0), y up."""
    radius = np.hypot(x, y)
    if shape == "circle":
        return radius - size
    if shape == "ring":
        return np.abs(radius - 0.7 * size) - 0.35 * size
    if shape == "diamond":
        return (np.abs(x) + np.abs(y) - 1.2 * size) / np.sqrt(2)
    if shape == "triangle":
        return np.maximum(np.abs(x) * 0.866 + y * 0.5, -y - 0.5 * size) - 0.5 * size
    c = y / np.maximum(radius, 1e-6)  # cosine of the angle from straight up
    c2 = c * c
    return radius - size * (0.7 + 0.35 * c * ((16 * c2 - 20) * c2 + 5))  # five points: cos(5 angle)


def _head_layer(rig: _Rig, look: _Look, sl: slice, pad: int, canvas: tuple[int, int], depth: np.ndarray) -> _Layer:
    """The head as a rotated ellipsoid: each pixel finds its point on the surface, which decides
    skin, ear, eye, brow, mouth or hair, so the face turns away and the hair covers the back."""
    radii = (_HEAD * look.height).astype(np.float32)
    centre = rig.points["head"][sl]
    rotation = rig.rotations["head_rotation"][sl].astype(np.float32)
    reach = radii.max() * 1.1 + 1
    window = _Window(centre[:, 0] - reach, centre[:, 0] + reach, centre[:, 1] - reach, centre[:, 1] + reach, pad, canvas)
    dx, dy = window.x - _column(centre[:, 0]), -(window.y - _column(centre[:, 1]))
    inverse = 1 / radii**2
    # Ray x = (dx, dy, z) in the world is q0 + z w in the head frame; solve |q / r| = 1 for z.
    q0 = [_column(rotation[:, 0, i]) * dx + _column(rotation[:, 1, i]) * dy for i in range(3)]
    w = [_column(rotation[:, 2, i]) for i in range(3)]
    a = sum(inverse[i] * w[i] ** 2 for i in range(3))
    b = 2 * sum(inverse[i] * q0[i] * w[i] for i in range(3))
    c = sum(inverse[i] * q0[i] ** 2 for i in range(3)) - 1
    form = c - b * b / (4 * a)  # the silhouette's quadratic form minus one
    distance = (np.sqrt(np.maximum(form + 1, 0)) - 1) * float(radii[:2].mean())
    z = (-b + np.sqrt(np.maximum(-4 * a * form, 0))) / (2 * a)
    ux, uy, uz = ((q0[i] + z * w[i]) / radii[i] for i in range(3))
    light = _apply(np.swapaxes(rotation, 1, 2), _LIGHT.astype(np.float32))
    lambert = np.clip(sum(_column(light[:, i]) * (ux, uy, uz)[i] for i in range(3)), 0, 1)
    soft = 0.6 / float(radii[0])  # half a pixel, in radii

    def ellipse(cx: float | np.ndarray, cy: float | np.ndarray, rx: float, ry: float | np.ndarray) -> np.ndarray:
        return _soft((np.hypot((ux - cx) / rx, (uy - cy) / ry) - 1) * rx, soft) * _soft(-uz, 0.1)

    colour = look.skin * (0.6 + 0.45 * lambert)[..., None]
    colour = _over(colour, ellipse(0.97, 0.05, 0.14, 0.24) + ellipse(-0.97, 0.05, 0.14, 0.24), look.skin * 0.78)
    colour = _over(colour, ellipse(0.04, -0.2, 0.09, 0.07), look.skin * 0.8)
    blink = _column(rig.blink[sl])
    for cx, cy in _EYE_CENTRES:
        colour = _over(colour, ellipse(cx, cy, 0.18, 0.1 * (1 - blink) + 1e-3), _rgb(235, 235, 228))
        colour = _over(colour, ellipse(cx, cy, 0.11, 0.1 * (1 - blink) + 1e-3), look.eyes)
        colour = _over(colour, ellipse(cx, cy + 0.23, 0.22, 0.055), look.hair * 0.8)
    mouth = _column(rig.mouth[sl])
    colour = _over(colour, ellipse(0.0, _MOUTH_Y - 0.05 * mouth, 0.24, 0.05 + 0.07 * mouth), _rgb(178, 70, 70))
    colour = _over(colour, ellipse(0.0, _MOUTH_Y - 0.06 * mouth, 0.17, 0.01 + 0.07 * mouth), _rgb(70, 20, 24))

    fringe_shift, back_z, nape, (side_x, side_y) = _HAIR_SHAPES[look.hair_style]
    fringe = look.fringe + fringe_shift + 0.25 * ux**2 + 0.04 * np.cos(ux * 9)
    hair = np.maximum(_soft(fringe - uy, soft), _soft(uz - back_z, soft) * _soft(nape - uy, soft))
    hair = np.maximum(hair, _soft(side_x - np.abs(ux), soft) * _soft(side_y - uy, soft))
    strands = 0.06 * np.sin(2 * np.pi * (ux * 2.2 + 0.4 * uy))
    colour = _over(colour, hair, look.hair * (0.55 + 0.5 * lambert + strands)[..., None])
    return window.layer(_soft(distance, BODY_EDGE), colour, depth)


def _shadow_layer(rig: _Rig, look: _Look, sl: slice, pad: int, canvas: tuple[int, int]) -> _Layer:
    x = rig.points["pelvis"][sl, 0]
    rx, ry = 0.17 * look.height, 0.025 * look.height
    floor = np.full_like(x, look.floor_y - 0.5)
    window = _Window(x - rx - 1, x + rx + 1, floor - ry - 1, floor + ry + 1, pad, canvas)
    distance = (np.hypot((window.x - _column(x)) / rx, (window.y - _column(floor)) / ry) - 1) * ry
    return window.layer(0.35 * _soft(distance, 2.0), np.zeros(3, np.float32), np.full(len(x), -np.inf))


def _layers(rig: _Rig, look: _Look, sl: slice, pad: int, canvas: tuple[int, int]) -> list[_Layer]:
    """Every part of the character for the frames ``sl``, each with its depth per frame."""
    h = look.height
    p = rig.points

    def z(*names: str) -> np.ndarray:
        return np.mean([p[n][sl, 2] for n in names], axis=0)

    build = look.build
    torso_depth = z("pelvis", "neck") + 0.02 * h
    layers = [_shadow_layer(rig, look, sl, pad, canvas), _torso_layer(rig, look, sl, pad, canvas, torso_depth)]
    neck_r = 0.03 * h
    layers.append(_capsules(sl, pad, canvas, [(p["neck"], p["neck_top"], neck_r, neck_r)], (look.skin * 0.9, look.skin * 0.9, 1.0), torso_depth - 0.01))
    layers.append(_head_layer(rig, look, sl, pad, canvas, z("head") + 0.1 * h))
    if look.hair_style in _HAIR_BACK:
        _, _, start_radius, end_radius = _HAIR_BACK[look.hair_style]
        head_x = _HEAD[0] * h
        hair = look.hair * 0.85
        segment = (p["hair_start"], p["hair_end"], start_radius * head_x, end_radius * head_x)
        layers.append(_capsules(sl, pad, canvas, [segment], (hair, hair, 1.0), z("hair_start", "hair_end")))
    sleeve = look.shirt
    for name in ("left", "right"):
        arm_r = (0.03 * h * build, 0.025 * h * build)
        fore_r = (0.024 * h * build, 0.019 * h * build)
        upper = (sleeve, look.skin, 1.0 if look.long_sleeves else 0.55)
        fore = (sleeve, look.skin, 1.0) if look.long_sleeves else (look.skin, look.skin, 1.0)
        layers.append(_capsules(sl, pad, canvas, [(p[f"{name}_shoulder"], p[f"{name}_elbow"], *arm_r)], upper, z(f"{name}_shoulder", f"{name}_elbow")))
        layers.append(_capsules(sl, pad, canvas, [(p[f"{name}_elbow"], p[f"{name}_wrist"], *fore_r)], fore, z(f"{name}_elbow", f"{name}_wrist")))
        hand = p[f"{name}_hand"]
        knuckles, tips = hand[:, [5, 9, 13, 17]].mean(1), hand[:, [8, 12, 16, 20]].mean(1)
        hand_segments = [(hand[:, 0], knuckles, 0.024 * h, 0.022 * h), (knuckles, tips, 0.02 * h, 0.014 * h), (hand[:, 1], hand[:, 4], 0.011 * h, 0.009 * h)]
        layers.append(_capsules(sl, pad, canvas, hand_segments, (look.skin, look.skin, 1.0), (hand[sl, 0, 2] + tips[sl, 2]) / 2 + 0.002 * h))
        thigh_r = (0.05 * h * build, 0.04 * h * build)
        shin_r = (0.037 * h * build, 0.027 * h * build)
        legs = (look.trousers, look.skin, 0.7 if look.shorts else 1.0)
        shins = (look.skin, look.skin, 1.0) if look.shorts else (look.trousers, look.trousers, 1.0)
        layers.append(_capsules(sl, pad, canvas, [(p[f"{name}_hip"], p[f"{name}_knee"], *thigh_r)], legs, z(f"{name}_hip", f"{name}_knee") - 0.05 * h))
        layers.append(_capsules(sl, pad, canvas, [(p[f"{name}_knee"], p[f"{name}_ankle"], *shin_r)], shins, z(f"{name}_knee", f"{name}_ankle") - 0.05 * h))
        shoe = [(p[f"{name}_heel"], p[f"{name}_toe"], 0.024 * h, 0.022 * h), (p[f"{name}_ankle"], p[f"{name}_heel"], 0.026 * h, 0.024 * h)]
        layers.append(_capsules(sl, pad, canvas, shoe, (look.shoes, look.shoes, 1.0), z(f"{name}_heel", f"{name}_toe") - 0.04 * h))
    return layers


def _render(rig: _Rig, look: _Look, room: np.ndarray, spec: SyntheticSpec, progress: Callable[[int], None] | None) -> np.ndarray:
    """Composite the character over the room, back to front per frame, and area-downsample."""
    ss = SUPERSAMPLE
    pad = 2 * ss  # windows are clipped to the canvas, so parts beyond the frame need no room
    padded = np.pad(room, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    canvas_shape = padded.shape[:2]
    frames = len(rig.yaw)
    out = np.empty((frames, spec.height, spec.width, 3), dtype=np.uint8)
    for start in range(0, frames, BATCH_FRAMES):
        sl = slice(start, min(frames, start + BATCH_FRAMES))
        count = sl.stop - sl.start
        layers = _layers(rig, look, sl, pad, canvas_shape)
        order = np.argsort(np.stack([layer.depth for layer in layers], 1), axis=1, kind="stable")
        canvas = np.repeat(padded[None], count, axis=0)
        for b in range(count):
            frame = canvas[b]
            for index in order[b]:
                layer = layers[index]
                row, col = layer.origin[b]
                h, w = layer.keep.shape[1:3]
                region = frame[row : row + h, col : col + w]
                region *= layer.keep[b]
                region += layer.paint[b]
        visible = canvas[:, pad : pad + spec.height * ss, pad : pad + spec.width * ss]
        small = sum(visible[:, i::ss, j::ss] for i in range(ss) for j in range(ss)) / ss**2
        small = 0.5 + CONTRAST * (small - 0.5)
        out[sl] = np.clip(np.round(small * 255), 0, 255).astype(np.uint8)
        if progress is not None:
            progress(count)
    return out


# ---------------------------------------------------------------------------------------------
# public API


def _prepare(spec: SyntheticSpec, index: int) -> tuple[dict[str, np.random.Generator], _Look, _Rig]:
    streams = _random_streams(spec, index)
    look = _make_look(streams["look"], spec)
    angles = _make_motion(streams, spec.num_frames, spec.fps, look.height)
    return streams, look, _build_rig(angles, look, spec.width)


def clip_motion(spec: SyntheticSpec, index: int) -> ClipMotion:
    """Keypoints, face boxes and yaw of clip ``index`` without rendering a pixel."""
    _, _, rig = _prepare(spec, index)
    return ClipMotion(rig.keypoints, face_boxes_from_keypoints(rig.keypoints), rig.yaw.astype(np.float32), rig.face_visible)


def render_clip(spec: SyntheticSpec, index: int, progress: Callable[[int], None] | None = None) -> RenderedClip:
    """Render clip ``index`` of ``spec``: deterministic, identical on every machine up to float
    rounding in numpy. ``progress`` is called with the number of frames done after each batch."""
    streams, look, rig = _prepare(spec, index)
    room = _make_room(streams["room"], spec, look)
    rgb = _render(rig, look, room, spec, progress)
    boxes = face_boxes_from_keypoints(rig.keypoints)
    ss = SUPERSAMPLE
    background = np.clip(np.round((0.5 + CONTRAST * (room.reshape(spec.height, ss, spec.width, ss, 3).mean((1, 3)) - 0.5)) * 255), 0, 255).astype(np.uint8)
    return RenderedClip(
        rgb=rgb,
        pose=render_pose(rig.keypoints, spec.width, spec.height),
        face=crop_faces(rgb, boxes, spec.face_size),
        keypoints=rig.keypoints,
        face_boxes=boxes,
        yaw=rig.yaw.astype(np.float32),
        background=background,
    )


def resample_psnr(frames: np.ndarray, factor: int) -> float:
    """PSNR (dB) of ``uint8 (T, H, W, 3)`` frames against themselves area-downsampled by
    ``factor`` and bicubic-upsampled back: an upper bound on what a codec of that spatial
    compression keeps of this content."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    small = F.interpolate(x, scale_factor=1 / factor, mode="area")
    back = F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 255)
    mse = torch.mean((back - x) ** 2).item()
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


def renderer_hash() -> str:
    """Short hash of the renderer's source (this file and the pose drawing), so a changed renderer
    renders a new folder instead of silently reusing clips it would no longer produce."""
    digest = hashlib.sha256()
    for name in ("synthetic.py", "pose.py"):
        digest.update(name.encode())
        digest.update((Path(__file__).with_name(name)).read_bytes())
    return digest.hexdigest()[:12]


def split_folder(name: str, cache_dir: str | Path | None = None) -> Path:
    spec = _spec(name)
    return cache_root(cache_dir) / "splits" / f"{spec.name}-v{spec.version}-{renderer_hash()}"


def _spec(name: str) -> SyntheticSpec:
    if name not in SPLITS:
        raise ManifestError(f"unknown synthetic split {name!r}: one of {sorted(SPLITS)}")
    return SPLITS[name]


def ensure_split(name: str, cache_dir: str | Path | None = None, limit: int | None = None, verify: str = "auto") -> Split:
    """The synthetic split ``name``, rendered into the cache on first use and loaded (validated)
    from it afterwards. The whole split is always rendered, so the cached folder and the split's
    content hash never depend on ``limit``, which only trims the clips returned."""
    spec = _spec(name)
    folder = split_folder(name, cache_dir)
    if not (folder / MANIFEST_NAME).exists():
        _render_split(spec, folder)
    return load_split(folder, verify=verify).limited(limit)


def _render_split(spec: SyntheticSpec, folder: Path) -> None:
    """Render every clip into a temporary folder beside ``folder`` and rename it into place, so a
    cached split is never half-written; a concurrent renderer that finished first wins."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    source = f"synthetic renderer v{spec.version} ({renderer_hash()})"
    try:
        records = []
        with tqdm(total=spec.num_clips * spec.num_frames, desc=f"rendering {spec.name}", unit="frame") as bar:
            for index in range(spec.num_clips):
                records.append(_write_clip(tmp, spec, index, render_clip(spec, index, progress=bar.update), source))
        description = (
            f"Procedurally rendered dance clips ({source}), {spec.num_clips} x {spec.num_frames} frames, "
            f"seeds {spec.seed_offset}-{spec.seed_offset + spec.num_clips - 1}"
        )
        write_manifest(tmp, spec.name, spec.version, spec.fps, spec.width, spec.height, spec.face_size, records, description=description)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / MANIFEST_NAME).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_clip(root: Path, spec: SyntheticSpec, index: int, clip: RenderedClip, source: str):
    folder = f"clip{index:03d}"
    files = {
        "video": f"{folder}/video.mkv",
        "pose_video": f"{folder}/pose.mkv",
        "face_video": f"{folder}/face.mkv",
        "keypoints": f"{folder}/keypoints.npz",
        "reference": f"{folder}/reference.png",
    }
    (root / folder).mkdir()
    write_video(root / files["video"], clip.rgb, spec.fps)
    write_video(root / files["pose_video"], clip.pose, spec.fps)
    write_video(root / files["face_video"], clip.face, spec.fps)
    np.savez(root / files["keypoints"], keypoints=clip.keypoints, face_boxes=clip.face_boxes)
    Image.fromarray(clip.rgb[0]).save(root / files["reference"])
    return make_clip_record(
        root,
        spec.clip_id(index),
        files,
        fps=spec.fps,
        num_frames=spec.num_frames,
        width=spec.width,
        height=spec.height,
        source=f"{source}, seed {spec.seed(index)}",
        license=LICENSE,
    )


# ---------------------------------------------------------------------------------------------
# looking at it

_STRIP_VIEWS = ("front", "three-quarter", "side", "back", "front", "side", "back", "front")


def view_names(yaw: np.ndarray) -> np.ndarray:
    """``front``, ``three-quarter``, ``side``, ``back`` or ``between`` per frame, from the yaw."""
    angle = np.abs(np.degrees((np.asarray(yaw) + np.pi) % (2 * np.pi) - np.pi))
    names = np.full(angle.shape, "between", dtype=object)
    names[angle < 20] = "front"
    names[(angle > 25) & (angle < 60)] = "three-quarter"
    names[(angle > 70) & (angle < 110)] = "side"
    names[angle > 160] = "back"
    return names


def save_strip(path: str | Path, spec: SyntheticSpec | None = None, scale: int = 2) -> Path:
    """Save a PNG to look at: per clip of ``spec`` (default: the test split), a row of frames
    spread over the clip that shows every view, and below it the matching pose-control frames."""
    spec = spec or SPLITS["synthetic"]
    rows = []
    for index in range(spec.num_clips):
        clip = render_clip(spec, index)
        views = view_names(clip.yaw)
        picks = []
        for window, wanted in zip(np.array_split(np.arange(spec.num_frames), len(_STRIP_VIEWS)), _STRIP_VIEWS):
            matching = window[views[window] == wanted]
            picks.append(int(matching[len(matching) // 2]) if len(matching) else int(window[len(window) // 2]))
        rows.append(np.concatenate([clip.rgb[p] for p in picks], axis=1))
        rows.append(np.concatenate([clip.pose[p] for p in picks], axis=1))
    image = Image.fromarray(np.concatenate(rows, axis=0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST).save(path)
    return path


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmark.synthetic", description="Render synthetic splits into the cache, or save a strip of frames to look at.")
    parser.add_argument("splits", nargs="*", metavar="SPLIT", help=f"splits to render into the cache: {', '.join(sorted(SPLITS))}")
    parser.add_argument("--cache-dir", help=f"cache folder (default: ${CACHE_ENV} or ~/.cache/everanimate-bench)")
    parser.add_argument("--strip", metavar="PNG", help="save frames and pose frames of the test split's clips")
    args = parser.parse_args(argv)
    for name in args.splits:
        if name not in SPLITS:
            parser.error(f"unknown split {name!r}: one of {', '.join(sorted(SPLITS))}")
    for name in args.splits:
        split = ensure_split(name, cache_dir=args.cache_dir)
        print(f"{name}: {len(split.clips)} clips in {split.root} (content hash {split.content_hash})")
    if args.strip:
        print(f"saved {save_strip(args.strip)}")


if __name__ == "__main__":
    main()
