"""Live pose for the pipeline: the MediaPipe estimator lives in :mod:`star_har.pose` (shared with
``train``, which must not import ``realtime``); re-exported here for the realtime stages."""

from star_har.pose import (
    MEDIAPIPE_LAYOUT,
    POSE_MODEL_ENV,
    POSE_MODEL_NAME,
    POSE_MODEL_URL,
    PoseEstimator,
    PoseResult,
    person_boxes,
    resolve_pose_model,
    select_main_person,
)

__all__ = ["MEDIAPIPE_LAYOUT", "POSE_MODEL_ENV", "POSE_MODEL_NAME", "POSE_MODEL_URL", "PoseEstimator",
           "PoseResult", "person_boxes", "resolve_pose_model", "select_main_person"]
