"""Rendering: the character's parts as distance fields evaluated on the supersampled pixel grid,
vectorised over batches of frames, composited over the room back to front by depth, then
area-downsampled; the exact person mask from the same layers; and the pose-control and face-crop
videos drawn from the exact keypoints.

:func:`render_clip` is the whole clip. :func:`resample_psnr` measures how much of it a codec of a
given spatial compression can keep (the bound in the package docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...pose import crop_faces, face_boxes_from_keypoints, render_pose
from .look import HAIR_BACK, HAIR_SHAPES, Look
from .primitives import blend, normalise, rgb8, rotate, soft_band, soft_edge
from .rig import EYE_CENTRES, HEAD, MOUTH_Y, TORSO, Rig, prepare
from .room import make_room
from .spec import SUPERSAMPLE, SyntheticSpec

# Frames rasterised together: large enough to amortise numpy's per-call cost, small enough for memory.
BATCH_FRAMES = 64
# Edge width of the body in frame pixels: soft enough that a 4x downsample keeps most of the image,
# sharp enough that edges, patterns and faces stay visible.
BODY_EDGE = 1.5
# Colours are pulled towards mid-grey by this factor: a soft, evenly lit look whose edges cost less
# at 4x downsampling (the error of an edge grows with the square of its contrast).
CONTRAST = 0.75
# A frame pixel belongs to the person when the character covers at least this fraction of it.
PERSON_COVERAGE = 0.5
PERSON_MASK_RULE = (
    f"exact, from the renderer's layers: a pixel is the person's when the character (every body part; not its floor shadow) "
    f"covers at least {PERSON_COVERAGE:g} of it, coverage = 1 - the product of the parts' transmittances, averaged over the "
    f"{SUPERSAMPLE}x{SUPERSAMPLE} supersamples"
)

_LIGHT = normalise(np.array([-0.45, 0.55, 0.7])).astype(np.float32)


@dataclass
class _Layer:
    """One part's pixels over a batch of frames, in a window that follows the part."""

    origin: np.ndarray  # int (B, 2): row, column of the window in the padded canvas
    keep: np.ndarray  # float32 (B, h, w, 1): 1 - coverage
    paint: np.ndarray  # float32 (B, h, w, 3): colour * coverage
    depth: np.ndarray  # (B,): larger is nearer the camera
    character: bool = True  # part of the person (False: the shadow it casts on the floor)


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

    def layer(self, coverage: np.ndarray, colour: np.ndarray, depth: np.ndarray, character: bool = True) -> _Layer:
        coverage = np.broadcast_to(coverage, (len(self.origin), self.y.shape[1], self.x.shape[2]))[..., None].astype(np.float32)
        return _Layer(self.origin, 1 - coverage, (colour * coverage).astype(np.float32), depth, character)


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
    mix = soft_edge(split - along, 0.08)[..., None] if split < 1 else 1.0
    colour = second + (first - second) * mix
    shade = (0.82 + 0.18 * np.sqrt(1 - across**2) - 0.06 * across)[..., None]
    return window.layer(soft_edge(distance, BODY_EDGE), colour * shade, depth)


def _torso_layer(rig: Rig, look: Look, sl: slice, pad: int, canvas: tuple[int, int], depth: np.ndarray) -> _Layer:
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
    up = height * (TORSO * h)  # pixels up from the waist
    normal_x, normal_z = sin_t * rz, cos_t * rx
    norm = np.sqrt(normal_x**2 + normal_z**2)
    light = ((normal_x * cos_yaw + normal_z * sin_yaw) * _LIGHT[0] + (normal_z * cos_yaw - normal_x * sin_yaw) * _LIGHT[2]) / norm
    shade = 0.55 + 0.45 * np.clip(light + 0.3 * _LIGHT[1], 0, 1)

    period, edge = look.pattern_period, 0.5
    if look.pattern == "hstripes":
        mask = soft_band(up / period, 0.45, edge / period)
    elif look.pattern == "vstripes":
        mask = soft_band(arc / period + 0.5, 0.45, edge / period)
    elif look.pattern == "checks":
        mask = 0.5 * (soft_band(up / period, 0.5, edge / period) + soft_band(arc / period + 0.5, 0.5, edge / period))
    else:
        mask = np.zeros_like(up)
    colour = blend(np.broadcast_to(look.shirt, mask.shape + (3,)), 0.4 * mask, look.shirt_second)
    front = cos_t > 0
    emblem = _emblem_distance(look.emblem, arc, up - 0.7 * TORSO * h, 0.048 * h)
    colour = blend(colour, soft_edge(emblem, edge) * front, look.emblem_colour)
    v_neck = (0.86 + 1.6 * np.abs(arc) / (TORSO * h) - height) * _column(length)
    collar = np.where(front, v_neck, (1.0 - height) * _column(length))
    colour = blend(colour, soft_edge(collar, edge), look.skin)
    belt = np.abs(height - 0.02) * _column(length) - 0.6
    colour = np.where((height < 0.02)[..., None], look.trousers, colour)
    colour = blend(colour, soft_edge(belt, edge), look.trousers * 0.7)
    return window.layer(soft_edge(distance, BODY_EDGE), colour * shade[..., None], depth)


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


def _head_layer(rig: Rig, look: Look, sl: slice, pad: int, canvas: tuple[int, int], depth: np.ndarray) -> _Layer:
    """The head as a rotated ellipsoid: each pixel finds its point on the surface, which decides
    skin, ear, eye, brow, mouth or hair, so the face turns away and the hair covers the back."""
    radii = (HEAD * look.height).astype(np.float32)
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
    light = rotate(np.swapaxes(rotation, 1, 2), _LIGHT.astype(np.float32))
    lambert = np.clip(sum(_column(light[:, i]) * (ux, uy, uz)[i] for i in range(3)), 0, 1)
    soft = 0.6 / float(radii[0])  # half a pixel, in radii

    def ellipse(cx: float | np.ndarray, cy: float | np.ndarray, rx: float, ry: float | np.ndarray) -> np.ndarray:
        return soft_edge((np.hypot((ux - cx) / rx, (uy - cy) / ry) - 1) * rx, soft) * soft_edge(-uz, 0.1)

    colour = look.skin * (0.6 + 0.45 * lambert)[..., None]
    colour = blend(colour, ellipse(0.97, 0.05, 0.14, 0.24) + ellipse(-0.97, 0.05, 0.14, 0.24), look.skin * 0.78)
    colour = blend(colour, ellipse(0.04, -0.2, 0.09, 0.07), look.skin * 0.8)
    blink = _column(rig.blink[sl])
    for cx, cy in EYE_CENTRES:
        colour = blend(colour, ellipse(cx, cy, 0.18, 0.1 * (1 - blink) + 1e-3), rgb8(235, 235, 228))
        colour = blend(colour, ellipse(cx, cy, 0.11, 0.1 * (1 - blink) + 1e-3), look.eyes)
        colour = blend(colour, ellipse(cx, cy + 0.23, 0.22, 0.055), look.hair * 0.8)
    mouth = _column(rig.mouth[sl])
    colour = blend(colour, ellipse(0.0, MOUTH_Y - 0.05 * mouth, 0.24, 0.05 + 0.07 * mouth), rgb8(178, 70, 70))
    colour = blend(colour, ellipse(0.0, MOUTH_Y - 0.06 * mouth, 0.17, 0.01 + 0.07 * mouth), rgb8(70, 20, 24))

    fringe_shift, back_z, nape, (side_x, side_y) = HAIR_SHAPES[look.hair_style]
    fringe = look.fringe + fringe_shift + 0.25 * ux**2 + 0.04 * np.cos(ux * 9)
    hair = np.maximum(soft_edge(fringe - uy, soft), soft_edge(uz - back_z, soft) * soft_edge(nape - uy, soft))
    hair = np.maximum(hair, soft_edge(side_x - np.abs(ux), soft) * soft_edge(side_y - uy, soft))
    strands = 0.06 * np.sin(2 * np.pi * (ux * 2.2 + 0.4 * uy))
    colour = blend(colour, hair, look.hair * (0.55 + 0.5 * lambert + strands)[..., None])
    return window.layer(soft_edge(distance, BODY_EDGE), colour, depth)


def _shadow_layer(rig: Rig, look: Look, sl: slice, pad: int, canvas: tuple[int, int]) -> _Layer:
    x = rig.points["pelvis"][sl, 0]
    rx, ry = 0.17 * look.height, 0.025 * look.height
    floor = np.full_like(x, look.floor_y - 0.5)
    window = _Window(x - rx - 1, x + rx + 1, floor - ry - 1, floor + ry + 1, pad, canvas)
    distance = (np.hypot((window.x - _column(x)) / rx, (window.y - _column(floor)) / ry) - 1) * ry
    return window.layer(0.35 * soft_edge(distance, 2.0), np.zeros(3, np.float32), np.full(len(x), -np.inf), character=False)


def _layers(rig: Rig, look: Look, sl: slice, pad: int, canvas: tuple[int, int]) -> list[_Layer]:
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
    if look.hair_style in HAIR_BACK:
        _, _, start_radius, end_radius = HAIR_BACK[look.hair_style]
        head_x = HEAD[0] * h
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


def _render(rig: Rig, look: Look, room: np.ndarray, spec: SyntheticSpec, progress: Callable[[int], None] | None) -> tuple[np.ndarray, np.ndarray]:
    """Composite the character over the room, back to front per frame, and area-downsample: the
    frames ``uint8 (T, H, W, 3)`` and the person masks ``bool (T, H, W)`` (:data:`PERSON_MASK_RULE`)."""
    ss = SUPERSAMPLE
    pad = 2 * ss  # windows are clipped to the canvas, so parts beyond the frame need no room
    padded = np.pad(room, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    canvas_shape = padded.shape[:2]
    frames = len(rig.yaw)
    out = np.empty((frames, spec.height, spec.width, 3), dtype=np.uint8)
    person = np.empty((frames, spec.height, spec.width), dtype=bool)
    for start in range(0, frames, BATCH_FRAMES):
        sl = slice(start, min(frames, start + BATCH_FRAMES))
        count = sl.stop - sl.start
        layers = _layers(rig, look, sl, pad, canvas_shape)
        order = np.argsort(np.stack([layer.depth for layer in layers], 1), axis=1, kind="stable")
        canvas = np.repeat(padded[None], count, axis=0)
        # What the character's parts let through, per supersample: their coverages compose to 1 minus it.
        clear = np.ones((count, *canvas_shape), dtype=np.float32)
        for b in range(count):
            frame = canvas[b]
            for index in order[b]:
                layer = layers[index]
                row, col = layer.origin[b]
                h, w = layer.keep.shape[1:3]
                region = frame[row : row + h, col : col + w]
                region *= layer.keep[b]
                region += layer.paint[b]
                if layer.character:
                    clear[b, row : row + h, col : col + w] *= layer.keep[b, ..., 0]
        visible = canvas[:, pad : pad + spec.height * ss, pad : pad + spec.width * ss]
        small = sum(visible[:, i::ss, j::ss] for i in range(ss) for j in range(ss)) / ss**2
        small = 0.5 + CONTRAST * (small - 0.5)
        out[sl] = np.clip(np.round(small * 255), 0, 255).astype(np.uint8)
        person[sl] = person_from_transmittance(clear[:, pad : pad + spec.height * ss, pad : pad + spec.width * ss], ss)
        if progress is not None:
            progress(count)
    return out, person


def person_from_transmittance(clear: np.ndarray, supersample: int) -> np.ndarray:
    """Person masks ``bool (B, H, W)`` from the character's transmittance ``(B, H * s, W * s)`` on the
    supersampled grid: a pixel is the person's when its mean coverage (1 - transmittance) over its
    ``s x s`` supersamples is at least :data:`PERSON_COVERAGE`."""
    count, rows, columns = clear.shape
    blocks = clear.reshape(count, rows // supersample, supersample, columns // supersample, supersample)
    return 1 - blocks.mean(axis=(2, 4)) >= PERSON_COVERAGE


@dataclass
class RenderedClip:
    """Every array of one clip. ``yaw`` is the body's turn in radians (0 = facing the camera,
    pi = back to it, unwrapped); ``background`` is the room without the character; ``person_mask``
    the character's pixels (:data:`PERSON_MASK_RULE`)."""

    rgb: np.ndarray  # uint8 (T, H, W, 3)
    pose: np.ndarray  # uint8 (T, H, W, 3)
    face: np.ndarray  # uint8 (T, S, S, 3)
    keypoints: np.ndarray  # float32 (T, 133, 3)
    face_boxes: np.ndarray  # float32 (T, 4)
    yaw: np.ndarray  # float32 (T,)
    background: np.ndarray  # uint8 (H, W, 3)
    person_mask: np.ndarray  # bool (T, H, W)


def render_clip(spec: SyntheticSpec, index: int, progress: Callable[[int], None] | None = None) -> RenderedClip:
    """Render clip ``index`` of ``spec``: deterministic, identical on every machine up to float
    rounding in numpy. ``progress`` is called with the number of frames done after each batch."""
    streams, look, rig = prepare(spec, index)
    room = make_room(streams["room"], spec, look)
    rgb, person_mask = _render(rig, look, room, spec, progress)
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
        person_mask=person_mask,
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
