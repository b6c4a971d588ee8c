"""The skeleton: forward kinematics from the joint angles, the body placed on the floor and inside
the frame, and the COCO-WholeBody keypoints taken from the same geometry that is drawn, so they are
exact. :func:`clip_motion` gives a whole clip's keypoints, face boxes and yaw without a pixel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...pose import face_boxes_from_keypoints
from ..manifest import FACE, NUM_KEYPOINTS
from .look import HAIR_BACK, Look, make_look
from .motion import ARM_CHANNELS, LEG_CHANNELS, make_motion
from .primitives import normalise, rotate, rotation_about
from .spec import SyntheticSpec, random_streams

# Body proportions in units of standing height.
TORSO, _NECK, _SHOULDER, _HIP = 0.29, 0.035, 0.105, 0.06
_UPPER_ARM, _FOREARM, _HAND = 0.165, 0.145, 0.075
_THIGH, _SHIN, _ANKLE, _FOOT, _SOLE = 0.235, 0.215, 0.035, 0.085, 0.02
HEAD = np.array([0.062, 0.078, 0.066])  # head ellipsoid radii x, y, z
_MARGIN = 1.5  # pixels kept between keypoints (and face boxes) and the frame's edge
_DOWN = np.array([0.0, -1.0, 0.0])
_FORWARD = np.array([0.0, 0.0, 1.0])
_JAW_ANGLES = np.linspace(np.pi, 2 * np.pi, 17)
# Eye landmarks around each eye's centre: corner, two upper-lid points, corner, two lower-lid points.
_EYE_DX = np.array([-0.17, -0.06, 0.06, 0.17, 0.06, -0.06])
_EYE_DY = np.array([0.0, 1.0, 1.0, 0.0, -1.0, -1.0])
EYE_CENTRES = ((-0.36, 0.08), (0.36, 0.08))  # the person's right eye, then left
MOUTH_Y = -0.48


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
    for start, (cx, cy) in zip((36, 42), EYE_CENTRES):
        points[:, start : start + 6, 0] = cx + _EYE_DX
        points[:, start : start + 6, 1] = cy + _EYE_DY * lid
    opening = 0.12 * mouth[:, None]
    outer_x = np.array([-0.26, -0.17, -0.07, 0.0, 0.07, 0.17, 0.26, 0.17, 0.07, 0.0, -0.07, -0.17])
    outer_up = np.array([0, 0.05, 0.07, 0.06, 0.07, 0.05, 0, 0, 0, 0, 0, 0])
    outer_down = np.array([0, 0, 0, 0, 0, 0, 0, 0.05, 0.07, 0.075, 0.07, 0.05])
    points[:, 48:60, 0] = outer_x
    points[:, 48:60, 1] = MOUTH_Y + outer_up - outer_down - opening * (outer_down > 0)
    inner_low = np.array([0, 0, 0, 0, 0, 1, 1, 1], dtype=float)
    points[:, 60:68, 0] = np.array([-0.2, -0.08, 0.0, 0.08, 0.2, 0.08, 0.0, -0.08])
    points[:, 60:68, 1] = MOUTH_Y + 0.01 * (1 - inner_low) - opening * inner_low
    points[:, 48:68, 2] = 0.04
    return points


def _on_head(layout: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Head-frame points in pixels for layout entries ``(..., 3)`` on the ellipsoid's front."""
    x, y, extra = layout[..., 0], layout[..., 1], layout[..., 2]
    z = np.sqrt(np.clip(1 - x**2 - y**2, 0.0, 1.0)) + extra
    return np.stack([x * radii[0], y * radii[1], z * radii[2]], -1)


def _forward_kinematics(angles: dict[str, np.ndarray], look: Look) -> dict[str, np.ndarray]:
    """Joints relative to the pelvis, ``(T, 3)`` pixels in a y-up frame with z towards the camera,
    and the rotations ``(T, 3, 3)`` of body, torso, head and hands."""
    h = look.height
    body = rotation_about("y", angles["yaw"])
    torso = body @ rotation_about("z", angles["torso_roll"]) @ rotation_about("x", angles["torso_pitch"])
    head = torso @ rotation_about("y", angles["head_yaw"]) @ rotation_about("x", -angles["head_pitch"]) @ rotation_about("z", angles["head_roll"])
    out = {"body_rotation": body, "torso_rotation": torso, "head_rotation": head, "pelvis": np.zeros((len(angles["yaw"]), 3))}
    out["neck"] = rotate(torso, np.array([0.0, TORSO * h, 0.0]))
    out["neck_top"] = out["neck"] + rotate(torso, np.array([0.0, _NECK * h, 0.0]))
    out["head"] = out["neck_top"] + rotate(head, np.array([0.0, 0.8 * HEAD[1], 0.12 * HEAD[2]]) * h)
    for s, (name, side) in enumerate((("left", 1.0), ("right", -1.0))):
        a = {key: angles[key][s] for key in ARM_CHANNELS + LEG_CHANNELS}
        shoulder = np.array([side * _SHOULDER * h * (0.9 + 0.1 * look.build), -0.025 * h, 0.0])
        out[f"{name}_shoulder"] = out["neck"] + rotate(torso, shoulder)
        upper = torso @ rotation_about("x", -a["arm_flex"]) @ rotation_about("z", side * a["arm_abd"])
        bend_flex, bend_abd = a["arm_flex"] + a["elbow_flex"], side * (a["arm_abd"] + a["elbow_up"])
        fore = torso @ rotation_about("x", -bend_flex) @ rotation_about("z", bend_abd)
        out[f"{name}_hand_rotation"] = torso @ rotation_about("x", -(bend_flex + a["wrist"])) @ rotation_about("z", bend_abd)
        out[f"{name}_curl"] = a["curl"]
        out[f"{name}_elbow"] = out[f"{name}_shoulder"] + _UPPER_ARM * h * rotate(upper, _DOWN)
        out[f"{name}_wrist"] = out[f"{name}_elbow"] + _FOREARM * h * rotate(fore, _DOWN)

        out[f"{name}_hip"] = rotate(body, np.array([side * _HIP * h * look.build, 0.0, 0.0]))
        thigh = body @ rotation_about("x", -a["hip_flex"]) @ rotation_about("z", side * a["hip_abd"])
        shin = body @ rotation_about("x", -(a["hip_flex"] - a["knee"])) @ rotation_about("z", side * 0.7 * a["hip_abd"])
        out[f"{name}_knee"] = out[f"{name}_hip"] + _THIGH * h * rotate(thigh, _DOWN)
        out[f"{name}_ankle"] = out[f"{name}_knee"] + _SHIN * h * rotate(shin, _DOWN)
        # The foot points forward and a little outward, and follows the shin a little.
        foot = body @ rotation_about("y", side * 0.25) @ rotation_about("x", -0.4 * (a["hip_flex"] - a["knee"]))
        forward, outward = rotate(foot, _FORWARD), rotate(foot, np.array([side, 0.0, 0.0]))
        sole = out[f"{name}_ankle"] + rotate(body, np.array([0.0, -(_ANKLE - _SOLE) * h, 0.0]))
        out[f"{name}_heel"] = sole - 0.22 * _FOOT * h * forward
        out[f"{name}_toe"] = sole + _FOOT * h * forward
        out[f"{name}_big_toe"] = sole + _FOOT * h * forward - 0.16 * _FOOT * h * outward
        out[f"{name}_small_toe"] = sole + 0.8 * _FOOT * h * forward + 0.22 * _FOOT * h * outward
    return out


def _hand_points(wrist: np.ndarray, rotation: np.ndarray, curl: np.ndarray, side: float, size: float) -> np.ndarray:
    """The 21 hand keypoints ``(T, 21, 3)``: wrist, then thumb, index, middle, ring and little
    finger, base to tip. The hand's frame follows the forearm's rotations, so it never flips."""
    along = rotate(rotation, _DOWN)
    across = rotate(rotation, _FORWARD)  # towards the thumb: forward when the arm hangs
    palm = side * np.cross(along, across)  # the way the fingers curl
    points = [wrist]
    thumb_base = wrist + 0.12 * size * along + 0.28 * size * across
    thumb = normalise(0.6 * along + 0.8 * across + 0.3 * palm)
    points += [thumb_base + 0.16 * size * k * thumb for k in range(4)]
    for offset, length in ((0.24, 0.5), (0.08, 0.56), (-0.08, 0.52), (-0.23, 0.42)):
        point = wrist + 0.5 * size * along + offset * size * across
        direction = normalise(along + 0.25 * offset * across)
        points.append(point)
        for k in range(1, 4):
            bend = curl[:, None] * k
            point = point + length / 3 * size * (np.cos(bend) * direction + np.sin(bend) * palm)
            points.append(point)
    return np.stack(points, 1)


@dataclass
class Rig:
    """A clip's geometry in frame pixels: points ``(T, ..., 3)`` as x right, y down, z towards the
    camera; rotations ``(T, 3, 3)`` in the y-up frame."""

    points: dict[str, np.ndarray]
    rotations: dict[str, np.ndarray]
    yaw: np.ndarray
    keypoints: np.ndarray
    face_visible: np.ndarray
    mouth: np.ndarray
    blink: np.ndarray


def _limit_reach(angles: dict[str, np.ndarray], look: Look, width: int) -> None:
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


def build_rig(angles: dict[str, np.ndarray], look: Look, width: int) -> Rig:
    """Pose the body, put the lowest sole on the floor and everything inside the frame, and
    collect the keypoints from the same geometry that is drawn."""
    h = look.height
    _limit_reach(angles, look, width)
    joints = _forward_kinematics(angles, look)
    frames = len(angles["yaw"])
    head_rotation = joints["head_rotation"]
    radii = HEAD * h
    face = joints["head"][:, None] + np.einsum("tij,tkj->tki", head_rotation, _on_head(_face_layout(angles["mouth"], angles["blink"]), radii))
    face_visible = rotate(head_rotation, _FORWARD)[:, 2] > -0.1
    eyes = joints["head"][:, None] + np.einsum("tij,kj->tki", head_rotation, _on_head(np.array([[0.36, 0.08, 0.0], [-0.36, 0.08, 0.0]]), radii))
    ear_axes = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    ears = joints["head"][:, None] + np.einsum("tij,kj->tki", head_rotation, ear_axes * radii)
    ears_visible = np.einsum("tij,kj->tki", head_rotation, ear_axes)[..., 2] > -0.5
    if look.hair_style in HAIR_BACK:  # hair hanging behind the head moves with it
        start, end, _, _ = HAIR_BACK[look.hair_style]
        joints["hair_start"] = joints["head"] + rotate(head_rotation, np.array(start) * radii)
        joints["hair_end"] = joints["head"] + rotate(head_rotation, np.array(end) * radii)
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
    return Rig(points, rotations, angles["yaw"], keypoints.astype(np.float32), face_visible, angles["mouth"], angles["blink"])


@dataclass
class ClipMotion:
    """The motion of a clip without any rendering: cheap, for checks over whole 90 s clips."""

    keypoints: np.ndarray  # float32 (T, 133, 3)
    face_boxes: np.ndarray  # float32 (T, 4)
    yaw: np.ndarray  # float32 (T,)
    face_visible: np.ndarray  # bool (T,)


def prepare(spec: SyntheticSpec, index: int) -> tuple[dict[str, np.random.Generator], Look, Rig]:
    """Clip ``index``'s random streams, look and rig: everything the room and the pixels need."""
    streams = random_streams(spec, index)
    look = make_look(streams["look"], spec)
    angles = make_motion(streams, spec.num_frames, spec.fps, look.height)
    return streams, look, build_rig(angles, look, spec.width)


def clip_motion(spec: SyntheticSpec, index: int) -> ClipMotion:
    """Keypoints, face boxes and yaw of clip ``index`` without rendering a pixel."""
    _, _, rig = prepare(spec, index)
    return ClipMotion(rig.keypoints, face_boxes_from_keypoints(rig.keypoints), rig.yaw.astype(np.float32), rig.face_visible)


def view_names(yaw: np.ndarray) -> np.ndarray:
    """``front``, ``three-quarter``, ``side``, ``back`` or ``between`` per frame, from the yaw."""
    angle = np.abs(np.degrees((np.asarray(yaw) + np.pi) % (2 * np.pi) - np.pi))
    names = np.full(angle.shape, "between", dtype=object)
    names[angle < 20] = "front"
    names[(angle > 25) & (angle < 60)] = "three-quarter"
    names[(angle > 70) & (angle < 110)] = "side"
    names[angle > 160] = "back"
    return names
