"""Small numeric helpers shared by the look, the motion, the rig, the room and the renderer:
colours, soft-edged coverage, smooth pulses and 3D rotations. Pure numpy, no state."""

from __future__ import annotations

import numpy as np


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """HSV in [0, 1] (hue wraps) to an RGB float32 triple."""
    h = (h % 1.0) * 6.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return (np.array(rgb) + (v - c)).astype(np.float32)


def rgb8(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.float32) / 255.0


def blend(base: np.ndarray, coverage: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """``colour`` painted over ``base`` (``(..., 3)``) with per-pixel ``coverage``."""
    return base + (colour - base) * coverage[..., None]


def soft_edge(distance: np.ndarray, width: float) -> np.ndarray:
    """Coverage in [0, 1] of a shape with signed ``distance`` (negative inside), edge ``width`` wide."""
    return np.clip(0.5 - distance / width, 0.0, 1.0)


def soft_band(u: np.ndarray, duty: float, width: np.ndarray | float) -> np.ndarray:
    """A soft square wave of period 1 in ``u``: 1 on a fraction ``duty`` of each period."""
    distance = np.abs(u - np.floor(u) - 0.5) - duty / 2
    return soft_edge(distance, width)


def smootherstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


def bump(t: np.ndarray, start: float, duration: float) -> np.ndarray:
    """A smooth sin^2 pulse over ``[start, start + duration]``, 0 elsewhere."""
    phase = np.clip((t - start) / duration, 0.0, 1.0)
    return np.sin(np.pi * phase) ** 2


def rotation_about(axis: str, angle: np.ndarray) -> np.ndarray:
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


def rotate(rotation: np.ndarray, vector: np.ndarray) -> np.ndarray:
    return np.einsum("...ij,...j->...i", rotation, vector)


def normalise(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)
