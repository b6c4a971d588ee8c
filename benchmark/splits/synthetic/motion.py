"""Dance-like motion: joint angles over time from sums of sinusoids on a per-clip beat, step-touches,
occasional moves (arm raises, waves, reaches, squats, kicks, leans, side steps), turns through the
front, side and back views, and the face's mouth and blinks.

Every event draws the same number of values from its stream, in time order, so a shorter clip is
exactly the beginning of a longer one with the same seed.
"""

from __future__ import annotations

import numpy as np

from .primitives import bump, smootherstep

# Bilateral channels hold (2, T) arrays: row 0 the left limb, row 1 the right.
ARM_CHANNELS = ("arm_abd", "arm_flex", "elbow_flex", "elbow_up", "wrist", "curl")
LEG_CHANNELS = ("hip_abd", "hip_flex", "knee")
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


def make_motion(streams: dict[str, np.random.Generator], num_frames: int, fps: int, height: float) -> dict[str, np.ndarray]:
    """Joint angles ``(T,)`` or ``(2, T)``, the turn ``yaw``, the sideways wander ``x`` in pixels
    (before keeping the body in frame), ``mouth`` opening and ``blink`` in [0, 1]."""
    t = np.arange(num_frames) / fps
    rhythm = streams["rhythm"]
    beat = rhythm.uniform(0.8, 1.2)  # Hz: dance steps on every other beat of 96-144 bpm
    energy = 0.6 + 0.4 * np.sin(2 * np.pi * rhythm.uniform(1 / 40, 1 / 15) * t + rhythm.uniform(0, 2 * np.pi))

    angles: dict[str, np.ndarray] = {}
    for name, (base, amplitude, _, _) in _CHANNELS.items():
        bilateral = name in ARM_CHANNELS or name in LEG_CHANNELS
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
        pulse = bump(t, start, length)
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
            angles["x"] += step * height / 72 * smootherstep((t - start) / length)
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
        yaw = np.where(t >= begin, current + delta * smootherstep((t - begin) / turn), yaw)
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
