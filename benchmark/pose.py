"""Pose-control rendering and face boxes from COCO-WholeBody 133 keypoints.

Keypoints are ``float (T, 133, 3)``: x, y in pixels of the frame, and a confidence score in [0, 1].

``render_pose`` draws the skeleton the way DWPose/Wan-Animate pose videos look: the OpenPose-18 body
(neck = midpoint of the shoulders) with one colour per limb around the hue circle, limbs darker than
their joints, feet, rainbow hand edges and small white face dots, all on black. It uses Pillow only
(a core dependency), so a split renders to the same bytes whether or not OpenCV is installed; that
keeps the content hash of generated splits independent of the installed extras.

Face boxes follow Wan-Animate's preprocessing: the bounding box of the face landmarks, scaled by 1.3
about its centre and made square.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw

from .splits.manifest import BODY, FACE, FEET, LEFT_HAND, NUM_KEYPOINTS, RIGHT_HAND

__all__ = [
    "BODY",
    "FEET",
    "FACE",
    "LEFT_HAND",
    "RIGHT_HAND",
    "OPENPOSE_FROM_COCO",
    "OPENPOSE_LIMBS",
    "FOOT_LIMBS",
    "HAND_LIMBS",
    "MIN_FACE_POINTS",
    "render_pose",
    "openpose_body",
    "face_boxes_from_keypoints",
    "crop_faces",
    "face_box_pixels",
]

# OpenPose-18 joint order, as indices into COCO-17; the neck (OpenPose joint 1) has no COCO joint
# and is built from the shoulders, marked here by None.
# OpenPose: nose, neck, r-shoulder, r-elbow, r-wrist, l-shoulder, l-elbow, l-wrist, r-hip, r-knee,
# r-ankle, l-hip, l-knee, l-ankle, r-eye, l-eye, r-ear, l-ear.
OPENPOSE_FROM_COCO: tuple[int | None, ...] = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
COCO_LEFT_SHOULDER, COCO_RIGHT_SHOULDER = 5, 6
COCO_LEFT_ANKLE, COCO_RIGHT_ANKLE = 15, 16

# The 17 OpenPose body limbs (pairs of OpenPose-18 indices) in the conventional drawing order;
# limb k takes colour k of the 18-step hue circle.
OPENPOSE_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip

# Feet, as pairs of whole-body indices: ankle to big toe, small toe and heel.
# COCO-WholeBody feet: 17-19 left (big toe, small toe, heel), 20-22 right.
FOOT_LIMBS: tuple[tuple[int, int], ...] = (
    (COCO_LEFT_ANKLE, 17), (COCO_LEFT_ANKLE, 18), (COCO_LEFT_ANKLE, 19),
    (COCO_RIGHT_ANKLE, 20), (COCO_RIGHT_ANKLE, 21), (COCO_RIGHT_ANKLE, 22),
)  # fmt: skip

# Hand edges, as pairs of indices within one 21-point hand: wrist (0) to each finger's chain of 4.
HAND_LIMBS: tuple[tuple[int, int], ...] = tuple(
    (0 if joint == 0 else base + joint, base + joint + 1) for base in (0, 4, 8, 12, 16) for joint in range(4)
)

# Fewer confident face landmarks than this and the frame has no face box.
MIN_FACE_POINTS = 5

# Line widths and dot radii are specified at this reference size (shorter image side) and scale with it.
_REFERENCE_SIDE = 480.0
_BODY_STICK_WIDTH = 4.0
_BODY_JOINT_RADIUS = 4.0
_HAND_LINE_WIDTH = 2.0
_HAND_JOINT_RADIUS = 3.0
_FACE_DOT_RADIUS = 2.0
_LIMB_DARKEN = 0.6
_HAND_JOINT_COLOUR = (0, 0, 255)
_FACE_COLOUR = (255, 255, 255)


def _hue_colour(fraction: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(fraction % 1.0, 1.0, 1.0)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


# 18 colours 20 degrees apart on the hue circle: (255,0,0), (255,85,0), (255,170,0), (255,255,0), ...
BODY_COLOURS: tuple[tuple[int, int, int], ...] = tuple(_hue_colour(k / 18) for k in range(18))
LIMB_COLOURS: tuple[tuple[int, int, int], ...] = tuple(
    tuple(int(c * _LIMB_DARKEN) for c in BODY_COLOURS[k]) for k in range(len(OPENPOSE_LIMBS))  # type: ignore[misc]
)
HAND_COLOURS: tuple[tuple[int, int, int], ...] = tuple(_hue_colour(k / len(HAND_LIMBS)) for k in range(len(HAND_LIMBS)))
# Each foot edge takes the colour of its leg's lower limb (knee-ankle).
FOOT_COLOURS: tuple[tuple[int, int, int], ...] = (LIMB_COLOURS[11],) * 3 + (LIMB_COLOURS[8],) * 3


def openpose_body(keypoints: np.ndarray) -> np.ndarray:
    """COCO-WholeBody ``(..., 133, 3)`` -> OpenPose-18 body ``(..., 18, 3)``. The neck is the
    midpoint of the shoulders with the smaller of their two scores."""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    out = np.zeros(keypoints.shape[:-2] + (18, 3), dtype=np.float32)
    for op_index, coco_index in enumerate(OPENPOSE_FROM_COCO):
        if coco_index is not None:
            out[..., op_index, :] = keypoints[..., coco_index, :]
    left, right = keypoints[..., COCO_LEFT_SHOULDER, :], keypoints[..., COCO_RIGHT_SHOULDER, :]
    out[..., 1, :2] = (left[..., :2] + right[..., :2]) / 2
    out[..., 1, 2] = np.minimum(left[..., 2], right[..., 2])
    return out


def _limb_polygons(start: np.ndarray, end: np.ndarray, half_width: float, vertices: int = 12) -> np.ndarray:
    """Ellipses spanning each ``start -> end`` segment (the OpenPose limb shape): ``(N, vertices, 2)``."""
    centre = (start + end) / 2
    delta = end - start
    half_length = np.hypot(delta[:, 0], delta[:, 1])[:, None] / 2
    angle = np.arctan2(delta[:, 1], delta[:, 0])[:, None]
    theta = np.linspace(0, 2 * np.pi, vertices, endpoint=False)[None]
    ex, ey = half_length * np.cos(theta), half_width * np.sin(theta)
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([centre[:, :1] + ex * cos - ey * sin, centre[:, 1:] + ex * sin + ey * cos], axis=-1)


def _dot(draw: ImageDraw.ImageDraw, x: float, y: float, radius: float, colour: tuple[int, int, int]) -> None:
    if radius < 1:
        draw.point((x, y), fill=colour)
    else:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)


def render_pose(keypoints: np.ndarray, width: int, height: int, min_score: float = 0.3) -> np.ndarray:
    """Render ``(T, 133, 3)`` keypoints as ``uint8 (T, height, width, 3)`` pose-control frames.

    A limb is drawn when both its ends score at least ``min_score``; a joint when it does.
    Line widths and dot radii scale with the shorter image side (reference: 480 px), never
    below one pixel, so 64x96 frames get 1-2 px lines and 480x832 frames the usual DWPose look.
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must be (T, {NUM_KEYPOINTS}, 3), got {keypoints.shape}")
    scale = min(width, height) / _REFERENCE_SIDE
    stick_half = max(0.5, _BODY_STICK_WIDTH * scale)
    joint_radius = max(1.0, _BODY_JOINT_RADIUS * scale)
    hand_width = max(1, int(round(_HAND_LINE_WIDTH * scale)))
    # Below half the reference size a hand is a few pixels wide: its joint dots would hide the
    # rainbow edges that carry the finger layout, so they are left out.
    hand_radius = _HAND_JOINT_RADIUS * scale if scale >= 0.5 else None
    face_radius = _FACE_DOT_RADIUS * scale if scale >= 0.5 else 0.0

    body = openpose_body(keypoints)
    good = keypoints[..., 2] >= min_score
    body_good = body[..., 2] >= min_score
    limb_a = np.array([a for a, _ in OPENPOSE_LIMBS])
    limb_b = np.array([b for _, b in OPENPOSE_LIMBS])
    polygons = _limb_polygons(
        body[:, limb_a, :2].reshape(-1, 2), body[:, limb_b, :2].reshape(-1, 2), stick_half
    ).reshape(len(keypoints), len(OPENPOSE_LIMBS), -1, 2)
    limb_visible = body_good[:, limb_a] & body_good[:, limb_b]
    hands = (keypoints[:, LEFT_HAND], keypoints[:, RIGHT_HAND])
    hands_good = (good[:, LEFT_HAND], good[:, RIGHT_HAND])
    face_points, face_good = keypoints[:, FACE, :2], good[:, FACE]
    feet_start = FEET.start

    out = np.empty((len(keypoints), height, width, 3), dtype=np.uint8)
    for t in range(len(keypoints)):
        canvas = Image.new("RGB", (width, height))
        draw = ImageDraw.Draw(canvas)
        for k in np.flatnonzero(limb_visible[t]):
            draw.polygon([tuple(p) for p in polygons[t, k].tolist()], fill=LIMB_COLOURS[k])
        for k, (a, b) in enumerate(FOOT_LIMBS):
            if good[t, a] and good[t, b]:
                pa, pb = keypoints[t, a, :2].tolist(), keypoints[t, b, :2].tolist()
                draw.line((*pa, *pb), fill=FOOT_COLOURS[k], width=max(1, int(round(stick_half))))
        for j in np.flatnonzero(body_good[t]):
            x, y = body[t, j, :2].tolist()
            _dot(draw, x, y, joint_radius, BODY_COLOURS[j])
        for j in range(FEET.stop - feet_start):
            if good[t, feet_start + j]:
                x, y = keypoints[t, feet_start + j, :2].tolist()
                _dot(draw, x, y, joint_radius * 0.75, BODY_COLOURS[(10 if j >= 3 else 13)])
        for hand, hand_good in zip(hands, hands_good):
            points, visible = hand[t, :, :2].tolist(), hand_good[t]
            for k, (a, b) in enumerate(HAND_LIMBS):
                if visible[a] and visible[b]:
                    draw.line((*points[a], *points[b]), fill=HAND_COLOURS[k], width=hand_width)
            if hand_radius is not None:
                for j in np.flatnonzero(visible):
                    _dot(draw, *points[j], hand_radius, _HAND_JOINT_COLOUR)
        points = face_points[t].tolist()
        for j in np.flatnonzero(face_good[t]):
            _dot(draw, *points[j], face_radius, _FACE_COLOUR)
        out[t] = np.asarray(canvas)
    return out


def face_boxes_from_keypoints(keypoints: np.ndarray, scale: float = 1.3, min_score: float = 0.3) -> np.ndarray:
    """Square face boxes ``float32 (T, 4)`` as ``x0, y0, x1, y1``.

    The box of the confident face landmarks is scaled by ``scale`` about its centre, then made
    square with side ``max(w, h)`` (Wan-Animate's face crop). A row is NaN when fewer than
    ``MIN_FACE_POINTS`` landmarks reach ``min_score``: the face is not visible.
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must be (T, {NUM_KEYPOINTS}, 3), got {keypoints.shape}")
    face = keypoints[:, FACE]
    confident = face[..., 2] >= min_score
    xs = np.where(confident, face[..., 0], np.nan)
    ys = np.where(confident, face[..., 1], np.nan)
    boxes = np.full((len(keypoints), 4), np.nan, dtype=np.float32)
    visible = confident.sum(axis=1) >= MIN_FACE_POINTS
    if not visible.any():
        return boxes
    xs, ys = xs[visible], ys[visible]
    x0, x1 = np.nanmin(xs, axis=1), np.nanmax(xs, axis=1)
    y0, y1 = np.nanmin(ys, axis=1), np.nanmax(ys, axis=1)
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    half = np.maximum(x1 - x0, y1 - y0) * scale / 2
    boxes[visible] = np.stack([centre_x - half, centre_y - half, centre_x + half, centre_y + half], axis=1)
    return boxes


def face_box_pixels(box: np.ndarray | tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """The integer pixel region ``[x0, x1) x [y0, y1)`` of a face box inside a ``width x height`` frame.

    Rounding is outward, so the region covers every pixel the box touches: ``floor`` for x0, y0 and
    ``ceil`` for x1, y1, then each is clipped to ``[0, width]`` / ``[0, height]``. A box entirely
    outside the frame gives an empty region (``x1 <= x0`` or ``y1 <= y0``). Raises ``ValueError``
    for a NaN (face not visible) box: the caller decides what a missing face means.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"face box {box!r} is not finite (no face in this frame)")
    px0 = min(max(math.floor(x0), 0), width)
    py0 = min(max(math.floor(y0), 0), height)
    px1 = min(max(math.ceil(x1), 0), width)
    py1 = min(max(math.ceil(y1), 0), height)
    return px0, py0, px1, py1


def _default_face_box(width: int, height: int) -> np.ndarray:
    """A centred square in the upper third of the frame, for clips where no face is ever seen."""
    side = min(width, height / 3)
    centre_x, centre_y = width / 2, height / 6
    return np.array([centre_x - side / 2, centre_y - side / 2, centre_x + side / 2, centre_y + side / 2], dtype=np.float32)


def fill_missing_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Replace NaN rows by the most recent valid box; leading NaN rows take the first valid box,
    and a clip with no valid box at all takes a centred square in the upper third of the frame."""
    boxes = np.asarray(boxes, dtype=np.float32).copy()
    valid = np.isfinite(boxes).all(axis=1)
    if not valid.any():
        boxes[:] = _default_face_box(width, height)
        return boxes
    last = boxes[np.argmax(valid)]
    for t in range(len(boxes)):
        if valid[t]:
            last = boxes[t]
        else:
            boxes[t] = last
    return boxes


def crop_faces(frames: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Cut ``boxes (T, 4)`` out of ``frames uint8 (T, H, W, 3)`` as ``uint8 (T, size, size, 3)``.

    Each box is taken as its outward-rounded pixel region (floor x0, y0; ceil x1, y1), padded with
    black where it leaves the frame, and resized with Pillow's bilinear filter (which widens its
    support when shrinking, so it also averages like an area filter). NaN boxes are filled as in
    :func:`fill_missing_boxes`: the most recent valid box, the first valid one at the start, or a
    centred upper-third square when the clip has no face at all.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if len(boxes) != len(frames):
        raise ValueError(f"{len(boxes)} boxes for {len(frames)} frames")
    height, width = frames.shape[1:3]
    boxes = fill_missing_boxes(boxes, width, height)
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for t, (frame, box) in enumerate(zip(frames, boxes)):
        x0, y0 = math.floor(box[0]), math.floor(box[1])
        x1, y1 = max(math.ceil(box[2]), x0 + 1), max(math.ceil(box[3]), y0 + 1)
        patch = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = frame[sy0:sy1, sx0:sx1]
        out[t] = np.asarray(Image.fromarray(patch).resize((size, size), Image.Resampling.BILINEAR))
    return out
