"""Whole-body keypoints from a pose model, for splits built from videos without keypoints of their own.

The model is rtmlib's YOLOX person detector and RTMPose/RTMW whole-body model run through onnxruntime
(the ``pose`` extra); mmpose does not install in a usable form on these machines. It is loaded only
when the build needs it, so a build with ``--keypoints`` needs neither rtmlib nor weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import BuildError
from .manifest import BODY, NUM_KEYPOINTS

POSE_MODEL_ENV = "EVERANIMATE_POSE_MODEL"
DET_MODEL_ENV = "EVERANIMATE_DET_MODEL"


class PoseEstimator(Protocol):
    """Whole-body pose for a batch of frames.

    Takes ``uint8 (B, H, W, 3)`` RGB frames and returns ``float32 (B, 133, 3)``: COCO-WholeBody
    keypoints of the one person of interest per frame, x and y in pixels of the given frames and a
    score in [0, 1] (0 where nothing was found).
    """

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


def select_person(keypoints: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """rtmlib output for one image (``keypoints (N, 133, 2)``, ``scores (N, 133)``) -> ``(133, 3)``
    of the person with the highest mean body score. Scores are clipped to [0, 1]: RTMPose's SimCC
    confidences can exceed 1."""
    keypoints = np.asarray(keypoints, dtype=np.float32).reshape(-1, NUM_KEYPOINTS, 2)
    scores = np.clip(np.asarray(scores, dtype=np.float32).reshape(-1, NUM_KEYPOINTS), 0.0, 1.0)
    if len(keypoints) == 0:
        return np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
    best = int(np.argmax(scores[:, BODY].mean(axis=1)))
    return np.concatenate([keypoints[best], scores[best, :, None]], axis=1)


class RtmlibWholebody:
    """COCO-WholeBody keypoints from rtmlib's YOLOX detector + RTMPose/RTMW whole-body model (onnxruntime).

    ``pose_model`` / ``det_model`` are local ``.onnx`` files or URLs; when not given they come from
    ``$EVERANIMATE_POSE_MODEL`` / ``$EVERANIMATE_DET_MODEL``, else rtmlib downloads its ``mode``
    defaults into its cache (``$TORCH_HOME`` or ``~/.cache/rtmlib``).
    """

    def __init__(self, pose_model: str | None = None, det_model: str | None = None, device: str = "cpu", mode: str = "performance"):
        pose_model = pose_model or os.environ.get(POSE_MODEL_ENV) or None
        det_model = det_model or os.environ.get(DET_MODEL_ENV) or None
        for label, model in (("pose", pose_model), ("detector", det_model)):
            if model and "://" not in model and not Path(model).is_file():
                raise BuildError(f"{label} model {model!r} is neither an existing file nor a URL")
        try:
            from rtmlib import Wholebody
        except ImportError as exc:
            raise BuildError("pose extraction needs rtmlib and onnxruntime: pip install 'everanimate-bench[pose]', or give keypoints computed elsewhere with --keypoints DIR") from exc
        if mode not in Wholebody.MODE:
            raise BuildError(f"unknown pose mode {mode!r}; rtmlib knows {sorted(Wholebody.MODE)}")
        defaults = Wholebody.MODE[mode]
        kwargs: dict = {"mode": mode, "backend": "onnxruntime", "device": device, "to_openpose": False}
        if pose_model:
            kwargs.update(pose=pose_model, pose_input_size=defaults["pose_input_size"])
        if det_model:
            kwargs.update(det=det_model, det_input_size=defaults["det_input_size"])
        try:
            self._model = Wholebody(**kwargs)
        except Exception as exc:  # rtmlib raises whatever its download or onnxruntime raises
            raise BuildError(
                f"could not load the whole-body pose models ({exc}). Without network access, download the "
                f"detector and pose ONNX files elsewhere and pass --det-model / --pose-model "
                f"(or set ${DET_MODEL_ENV} / ${POSE_MODEL_ENV})."
            ) from exc
        self._match_input_size()
        self.name = f"rtmlib Wholebody ({pose_model or defaults['pose']}; detector {det_model or defaults['det']})"

    def _match_input_size(self) -> None:
        """Take the pose model's input size from the ONNX graph, so a custom model cannot be fed
        crops of the wrong size."""
        session = getattr(getattr(self._model, "pose_model", None), "session", None)
        if session is None or not hasattr(session, "get_inputs"):
            return
        shape = session.get_inputs()[0].shape
        if len(shape) == 4 and all(isinstance(side, int) for side in shape[2:]):
            self._model.pose_model.model_input_size = (shape[3], shape[2])

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        out = np.zeros((len(frames), NUM_KEYPOINTS, 3), dtype=np.float32)
        for index, rgb in enumerate(frames):
            keypoints, scores = self._model(np.ascontiguousarray(rgb[..., ::-1]))
            out[index] = select_person(keypoints, scores)
        return out


def load_pose_estimator(pose_model: str | None = None, det_model: str | None = None, device: str = "cpu", mode: str = "performance") -> PoseEstimator:
    """The pose estimator the ``build`` command uses. It is the one place the CLI creates one, so
    tests replace this function to run the CLI without model weights."""
    return RtmlibWholebody(pose_model=pose_model, det_model=det_model, device=device, mode=mode)
