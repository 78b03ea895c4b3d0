"""Skeleton augmentation that closes the gap between dataset annotations and webcam poses.

Annotated skeletons are clean, complete and drawn by people; MediaPipe skeletons from a webcam
jitter, miss joints (often the whole lower body), place joints slightly differently (its "head"
is the mean of the ears) and come mirrored. Each transform mimics one of these; all operate on
``(T, J, 3)`` pixel keypoints of one window (or ``(T, J, 4)`` with depth: the 2-D warp leaves
depth as it is, so its scale against x and y varies with the warp's scale, as MediaPipe's estimated
depth's does) and keep invisible joints invisible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from annotated_types import Ge, Interval

from star_har.errors import InvalidInputError
from star_har.model.skeleton import DEPTH_CHANNEL, flip_keypoints, get_layout

#: Limits the training-config schema (train/config.py) checks, so ``--set augment.flip=5`` is a
#: one-line error before training rather than a silently saturated probability.
Probability = Annotated[float, Interval(ge=0.0, le=1.0)]
Magnitude = Annotated[float, Ge(0.0)]
Factor = Annotated[float, Interval(gt=0.0)]


@dataclass
class AugmentConfig:
    """Probabilities and magnitudes; sizes are fractions of the person's size in the window."""

    flip: Probability = 0.5
    scale: tuple[Factor, Factor] = (0.8, 1.25)   # isotropic, before the model's box normalisation
    aspect: Magnitude = 0.15                      # x/y stretch, log-uniform +-
    rotation_degrees: Magnitude = 15.0
    shear: Magnitude = 0.15
    joint_offset: Magnitude = 0.03                # constant per joint and window (annotation style)
    jitter: Magnitude = 0.025                     # per joint and frame: each window draws its std in [0, jitter]
    joint_dropout: Probability = 0.06             # a joint missing for the whole window
    point_dropout: Probability = 0.04             # a joint missing in one frame
    frame_dropout: Probability = 0.03             # no person found in a frame
    lower_body_dropout: Probability = 0.1         # legs out of the camera's view
    speed: tuple[Factor, Factor] = (0.75, 1.33)  # temporal speed jitter (used by the sampler)
    recorded_view: Probability = 0.0              # 3-D sequences: share of windows from the recording camera, not a random one


def _person_size(keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, float]:
    points = keypoints[..., :2][visible]
    if len(points) == 0:
        return np.zeros(2, np.float32), 1.0
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (lo + hi) / 2, float(max((hi - lo).max(), 1.0))


def augment_keypoints(keypoints: np.ndarray, layout: str, width: float, cfg: AugmentConfig,
                      rng: np.random.Generator, flip: bool, geometric: bool = True,
                      min_confidence: float = 0.2) -> np.ndarray:
    """Randomly transform one window ``(T, J, 3)`` of pixel keypoints; returns a new array.

    ``flip`` is decided by the caller (it must mirror the RGB frames too); ``geometric=False``
    skips the affine warp, for the ``rgb+pose`` modality where joints must stay on the image.
    """
    layout_ = get_layout(layout)
    kps = flip_keypoints(keypoints, layout_, width) if flip else np.array(keypoints, np.float32)
    visible = kps[..., 2] > min_confidence
    centre, size = _person_size(kps, visible)
    if geometric:
        kps[..., :2] = _warp(kps[..., :2], centre, cfg, rng)
    num_frames, num_joints = kps.shape[:2]
    kps[..., :2] += rng.normal(0.0, cfg.joint_offset * size, (1, num_joints, 2))
    # Pose estimators jitter more on some footage than on other: a random strength per window
    # trains both the clean and the noisy end.
    strength = rng.uniform(0.0, cfg.jitter)
    kps[..., :2] += rng.normal(0.0, strength * size, (num_frames, num_joints, 2))
    if kps.shape[-1] > DEPTH_CHANNEL:  # estimated depth is as noisy as x and y (no draw without it)
        kps[..., DEPTH_CHANNEL] += (rng.normal(0.0, cfg.joint_offset * size, (1, num_joints))
                                    + rng.normal(0.0, strength * size, (num_frames, num_joints)))

    drop = np.zeros((num_frames, num_joints), dtype=bool)
    drop |= rng.uniform(size=(1, num_joints)) < cfg.joint_dropout
    drop |= rng.uniform(size=(num_frames, num_joints)) < cfg.point_dropout
    drop |= rng.uniform(size=(num_frames, 1)) < cfg.frame_dropout
    if rng.uniform() < cfg.lower_body_dropout:
        drop[:, _leg_joints(layout_.joint_names)] = True
    drop |= ~visible
    if not drop.all():  # an empty window teaches nothing: then keep every joint
        kps[drop] = 0.0
    else:
        kps[~visible] = 0.0
    return kps


def _leg_joints(joint_names: tuple[str, ...]) -> list[int]:
    parts = ("knee", "ankle", "foot", "heel", "toe", "foot_index")
    return [i for i, name in enumerate(joint_names) if any(name.endswith(p) for p in parts)]


def _warp(xy: np.ndarray, centre: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Random scale, aspect stretch, rotation and shear of ``(..., 2)`` points about ``centre``."""
    angle = np.deg2rad(rng.uniform(-cfg.rotation_degrees, cfg.rotation_degrees))
    stretch = np.exp(rng.uniform(-cfg.aspect, cfg.aspect))
    scale = rng.uniform(*cfg.scale)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shear = np.array([[1.0, rng.uniform(-cfg.shear, cfg.shear)], [0.0, 1.0]])
    matrix = scale * rotation @ shear @ np.diag([stretch, 1.0 / stretch])
    return ((xy - centre) @ matrix.T + centre).astype(np.float32)


#: Webcam-like corruptions ``star-har eval --perturb`` measures robustness against (one window each).
PERTURBATIONS = ("legs", "jitter", "mediapipe")


def perturb_keypoints(keypoints: np.ndarray, layout: str, kind: str, rng: np.random.Generator,
                      min_confidence: float = 0.2) -> np.ndarray:
    """One evaluation window ``(T, J, 3)`` corrupted the way a webcam pose estimator does:

    * ``legs``: knees, ankles and feet missing in every frame (legs out of view);
    * ``jitter``: per-joint, per-frame noise with a std of 5 % of the person's size;
    * ``mediapipe``: 3 % jitter, a 3 % constant offset per joint and 10 % of the joints missing.
    """
    if kind not in PERTURBATIONS:
        raise InvalidInputError(f"unknown perturbation {kind!r}; choose from {', '.join(PERTURBATIONS)}")
    kps = np.array(keypoints, np.float32)
    visible = kps[..., 2] > min_confidence
    _, size = _person_size(kps, visible)
    num_frames, num_joints = kps.shape[:2]
    if kind == "legs":
        kps[:, _leg_joints(get_layout(layout).joint_names)] = 0.0
        return kps
    jitter = 0.05 if kind == "jitter" else 0.03
    kps[..., :2] += rng.normal(0.0, jitter * size, (num_frames, num_joints, 2))
    if kind == "mediapipe":
        kps[..., :2] += rng.normal(0.0, 0.03 * size, (1, num_joints, 2))
        visible &= rng.uniform(size=(num_frames, num_joints)) >= 0.1
    kps[~visible] = 0.0
    return kps
