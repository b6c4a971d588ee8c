"""Pose rendering, face boxes and face crops on hand-made keypoints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.pose import (
    BODY_COLOURS,
    FACE,
    LEFT_HAND,
    LIMB_COLOURS,
    MIN_FACE_POINTS,
    OPENPOSE_LIMBS,
    crop_faces,
    face_box_pixels,
    face_boxes_from_keypoints,
    fill_missing_boxes,
    openpose_body,
    render_pose,
)

COCO_NOSE, COCO_L_SHOULDER, COCO_R_SHOULDER, COCO_L_ELBOW = 0, 5, 6, 7


def empty(frames: int = 1) -> np.ndarray:
    return np.zeros((frames, 133, 3), np.float32)


def coloured(image: np.ndarray) -> np.ndarray:
    return image.max(axis=-1) > 0


@pytest.mark.parametrize("width,height", [(64, 96), (480, 832)])
def test_nothing_to_draw_is_black(width, height):
    out = render_pose(empty(3), width, height)
    assert out.shape == (3, height, width, 3) and out.dtype == np.uint8
    assert not out.any()


@pytest.mark.parametrize("width,height,max_width", [(64, 96, 3), (480, 832, 12)])
def test_a_limb_is_drawn_in_its_colour(width, height, max_width):
    keypoints = empty()
    keypoints[0, COCO_L_SHOULDER] = (0.3 * width, 0.3 * height, 0.9)
    keypoints[0, COCO_L_ELBOW] = (0.3 * width, 0.6 * height, 0.9)
    image = render_pose(keypoints, width, height)[0]
    # Left shoulder -> left elbow is OpenPose limb (5, 6), the fifth in the drawing order.
    limb = OPENPOSE_LIMBS.index((5, 6))
    middle = image[int(0.45 * height), :]
    drawn = np.flatnonzero(middle.max(axis=-1))
    assert len(drawn) >= 1 and len(drawn) <= max_width
    assert abs(drawn.mean() - 0.3 * width) <= 1.5
    assert tuple(middle[drawn[len(drawn) // 2]]) == LIMB_COLOURS[limb]
    # The shoulder joint is a dot of its OpenPose joint colour (joint 5).
    x, y = int(0.3 * width), int(0.3 * height)
    assert tuple(image[y, x]) == BODY_COLOURS[5]
    # Far from the limb, nothing.
    assert not image[:, int(0.7 * width) :].any()


def test_low_score_points_are_not_drawn():
    keypoints = empty()
    keypoints[0, COCO_L_SHOULDER] = (20, 30, 0.9)
    keypoints[0, COCO_L_ELBOW] = (20, 60, 0.1)
    image = render_pose(keypoints, 64, 96)[0]
    assert coloured(image)[28:33, 18:23].any()  # the confident shoulder
    assert not coloured(image)[40:96].any()  # neither the elbow nor the limb to it
    assert not render_pose(keypoints, 64, 96, min_score=0.95).any()


def test_neck_is_the_shoulder_midpoint_and_hands_and_face_draw():
    keypoints = empty()
    keypoints[0, COCO_L_SHOULDER] = (40, 30, 0.8)
    keypoints[0, COCO_R_SHOULDER] = (20, 30, 0.6)
    body = openpose_body(keypoints)
    assert np.allclose(body[0, 1], (30, 30, 0.6))
    keypoints[0, LEFT_HAND] = (10, 80, 0.9)
    keypoints[0, LEFT_HAND.start + 1] = (10, 90, 0.9)
    keypoints[0, FACE] = (50, 10, 0.9)
    image = render_pose(keypoints, 64, 96)[0]
    assert coloured(image)[82:88, 9:12].any()  # the wrist -> thumb edge
    assert (image[10, 50] == 255).all()  # face landmarks are white


def test_a_long_clip_renders_each_frame_from_its_own_keypoints():
    """Rendering many frames at once gives, frame by frame, what rendering that frame alone gives."""
    keypoints = np.tile(empty(), (50, 1, 1))
    rng = np.random.default_rng(0)
    keypoints[..., 0] = rng.uniform(0, 64, keypoints.shape[:2])
    keypoints[..., 1] = rng.uniform(0, 96, keypoints.shape[:2])
    keypoints[..., 2] = 0.9
    frames = render_pose(keypoints, 64, 96)
    assert frames.shape == (50, 96, 64, 3) and frames.dtype == np.uint8
    for index in (0, 17, 49):
        assert np.array_equal(frames[index], render_pose(keypoints[index : index + 1], 64, 96)[0])
    assert all(frame.any() for frame in frames) and not np.array_equal(frames[0], frames[1])


def face_keypoints(centre=(30.0, 40.0), half=(5.0, 3.0), score=0.9, frames: int = 1) -> np.ndarray:
    keypoints = empty(frames)
    angles = np.linspace(0, 2 * np.pi, FACE.stop - FACE.start, endpoint=False)
    keypoints[:, FACE, 0] = centre[0] + half[0] * np.cos(angles)
    keypoints[:, FACE, 1] = centre[1] + half[1] * np.sin(angles)
    keypoints[:, FACE, 2] = score
    return keypoints


def test_face_box_is_scaled_square_and_centred():
    (box,) = face_boxes_from_keypoints(face_keypoints(), scale=1.3)
    assert box.dtype == np.float32
    side = 2 * 5.0 * 1.3  # the wider side, scaled
    assert np.allclose(box, (30 - side / 2, 40 - side / 2, 30 + side / 2, 40 + side / 2), atol=1e-4)
    (plain,) = face_boxes_from_keypoints(face_keypoints(), scale=1.0)
    assert np.allclose(plain[2] - plain[0], 10.0, atol=1e-4)


def test_face_box_ignores_unconfident_points_and_needs_enough():
    keypoints = face_keypoints(frames=3)
    keypoints[1, FACE.start] = (500, 500, 0.1)  # an outlier with a low score
    keypoints[2, FACE, 2] = 0.1
    keypoints[2, FACE.start : FACE.start + MIN_FACE_POINTS - 1, 2] = 0.9
    boxes = face_boxes_from_keypoints(keypoints)
    assert np.allclose(boxes[0], boxes[1], atol=0.1)  # without the outlier, only one landmark fewer
    assert np.isnan(boxes[2]).all()
    assert np.isnan(face_boxes_from_keypoints(empty(2))).all()


def test_face_box_pixels_rounds_outward_and_clips():
    assert face_box_pixels((1.2, 2.7, 10.1, 11.0), 64, 96) == (1, 2, 11, 11)
    assert face_box_pixels(np.array([-5.5, -1.0, 70.2, 99.9]), 64, 96) == (0, 0, 64, 96)
    x0, y0, x1, y1 = face_box_pixels((100, 100, 120, 120), 64, 96)
    assert x1 <= x0 or y1 <= y0  # entirely outside: empty
    with pytest.raises(ValueError):
        face_box_pixels((math.nan,) * 4, 64, 96)


def gradient_frames(frames: int = 4, height: int = 40, width: int = 60) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 4, yy * 6, np.full_like(xx, 200)], -1).astype(np.uint8)
    return np.repeat(image[None], frames, 0)


def test_crop_faces_crops_and_resizes():
    frames = gradient_frames()
    boxes = np.array([[10, 10, 20, 20]] * 4, np.float32)
    crops = crop_faces(frames, boxes, 10)
    assert crops.shape == (4, 10, 10, 3) and crops.dtype == np.uint8
    assert np.array_equal(crops[0], frames[0, 10:20, 10:20])  # same size: an exact cut
    assert crop_faces(frames, boxes, 32).shape == (4, 32, 32, 3)


def test_crop_faces_pads_with_black_outside_the_frame():
    frames = gradient_frames(1)
    crops = crop_faces(frames, np.array([[-10, -10, 10, 10]], np.float32), 20)
    assert not crops[0, :10].any() and not crops[0, :, :10].any()
    assert np.array_equal(crops[0, 10:, 10:], frames[0, :10, :10])


def test_nan_boxes_take_the_last_valid_one_or_the_next_at_the_start():
    frames = gradient_frames(5)
    a, b = [10, 10, 20, 20], [30, 5, 40, 15]
    boxes = np.array([[np.nan] * 4, a, [np.nan] * 4, b, [np.nan] * 4], np.float32)
    filled = fill_missing_boxes(boxes, 60, 40)
    assert np.allclose(filled, [a, a, a, b, b])
    crops = crop_faces(frames, boxes, 10)
    assert np.array_equal(crops[0], crops[1]) and np.array_equal(crops[2], crops[1])
    assert np.array_equal(crops[4], frames[0, 5:15, 30:40])
    default = fill_missing_boxes(np.full((2, 4), np.nan), 60, 90)
    assert np.isfinite(default).all()
    assert default[0, 1] >= 0 and default[0, 3] <= 90 / 3 + 1e-4  # the upper third
    assert np.isclose((default[0, 0] + default[0, 2]) / 2, 30)
