"""The character's look: body size, skin, hair (colour, style and shape), eyes, clothes and their
patterns, the chest emblem and shoes, drawn from the clip's ``look`` stream. The shapes of the hair
styles live here too, because the rig hangs long hair from the head and the renderer draws it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .primitives import hsv, rgb8
from .spec import HEIGHT, SyntheticSpec

SKIN_TONES = ((255, 224, 196), (241, 194, 150), (224, 172, 125), (198, 134, 90), (161, 102, 64), (112, 70, 45), (86, 54, 36))
HAIR_COLOURS = ((24, 18, 15), (62, 40, 26), (112, 72, 40), (206, 168, 96), (168, 66, 32), (150, 150, 156), (52, 58, 130), (196, 84, 140))
EYE_COLOURS = ((60, 36, 20), (40, 80, 140), (50, 110, 60), (30, 24, 20))
TROUSER_COLOURS = ((62, 84, 136), (50, 50, 58), (176, 150, 106), (116, 116, 124), (106, 66, 52), (56, 100, 76))
SHOE_COLOURS = ((215, 215, 210), (50, 48, 48), (170, 52, 52), (100, 70, 50))
HAIR_STYLES = ("short", "bob", "long", "ponytail", "bun")
SHIRT_PATTERNS = ("solid", "hstripes", "vstripes", "checks")
EMBLEMS = ("circle", "diamond", "star", "triangle", "ring")

# Hair on the head, per style, in head radii.
HAIR_SHAPES = {
    # fringe offset, back-of-head limit (z), nape (y), sides (|x| above y)
    "short": (0.0, -0.05, -0.55, (0.8, -0.1)),
    "bob": (-0.05, 0.25, -0.85, (0.72, -0.75)),
    "long": (0.0, 0.25, -1.1, (0.7, -1.1)),
    "ponytail": (0.05, -0.05, -0.6, (0.82, 0.0)),
    "bun": (0.05, -0.05, -0.6, (0.82, 0.0)),
}
# Hair hanging behind the head, as a capsule in head radii: start, end, start radius, end radius.
HAIR_BACK = {
    "bob": ((0, -0.1, -0.4), (0, -0.95, -0.55), 1.0, 0.95),
    "long": ((0, 0.0, -0.55), (0, -2.0, -0.8), 1.0, 0.85),
    "ponytail": ((0, 0.25, -1.0), (0, -1.3, -1.4), 0.32, 0.2),
    "bun": ((0, 0.75, -0.75), (0, 0.8, -0.8), 0.48, 0.48),
}


@dataclass(frozen=True)
class Look:
    """One character's look, fixed for the whole clip; colours are RGB float32 in [0, 1]."""

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


def make_look(rng: np.random.Generator, spec: SyntheticSpec) -> Look:
    def jitter(colour: tuple[int, int, int], amount: float = 0.06) -> np.ndarray:
        return np.clip(rgb8(*colour) * (1 + rng.uniform(-amount, amount, 3)), 0, 1).astype(np.float32)

    shirt_hue = rng.random()
    shirt = hsv(shirt_hue, rng.uniform(0.35, 0.8), rng.uniform(0.45, 0.9))
    second_kind = rng.integers(3)
    if second_kind == 0:
        second = rgb8(240, 240, 232)
    elif second_kind == 1:
        second = shirt * 0.45
    else:
        second = hsv(shirt_hue + rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.8), rng.uniform(0.5, 0.9))
    emblem_colour = hsv(shirt_hue + 0.5, rng.uniform(0.5, 0.9), 1.0) if rng.random() < 0.5 else rgb8(250, 245, 225)
    scale = spec.height / HEIGHT
    return Look(
        height=float(rng.uniform(0.70, 0.77) * spec.height),
        floor_y=float(spec.height - rng.uniform(3.0, 4.5) * scale),
        build=float(rng.uniform(0.88, 1.15)),
        skin=jitter(_pick(rng, SKIN_TONES)),
        hair=jitter(_pick(rng, HAIR_COLOURS), 0.1),
        hair_style=str(_pick(rng, HAIR_STYLES)),
        fringe=float(rng.uniform(0.25, 0.5)),
        eyes=rgb8(*_pick(rng, EYE_COLOURS)),
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
