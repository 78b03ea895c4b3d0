"""The RGB stream's person-centred crop, in one place for training windows and the live ring buffer.

People can be small in the frame (about a third of its height in BIISC), so the RGB stream sees a
crop around the person instead of the whole frame. One box size per window, from the visible joints
of all its frames, grown by a margin and given the model's aspect ratio; its centre follows the
person along a straight line (a standing person's crop stays put, a walking person stays centred
and large: a smooth camera pan, no frame-to-frame jitter). Each box is shifted inside the frame
where it fits and padded with the Kinetics mean colour (0 after normalisation) where it does not.
Since the crop follows the person, an RGB model sees their movement across the frame neither in the
pixels nor in the keypoints (mapped into the crop); pose-only models get the whole frame's
keypoints. The crops are resized to the model's input size and the keypoints mapped into their pixels.

The box is drawn around the joints of a *crop region* (:data:`CROP_REGIONS`): the whole body, or the
upper body for actions told apart at the hands and face (a phone, a cup, glasses: at 64 px a
whole-body crop leaves the head a few pixels wide); a checkpoint records the region it was trained
on (``meta["crop_region"]``) and the live ring buffer crops the same way.

Before cropping, each frame is reduced to a working copy (by an integer factor, keeping its shorter
side at least ``WORKING_FACTOR`` x the input size): the ring buffer keeps such copies (a full-HD frame
per buffer entry would cost gigabytes), and training reduces the same way, so both crop from
identical pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from star_har.errors import InvalidInputError
from star_har.model.backbone import KINETICS_MEAN, normalize_video
from star_har.model.skeleton import get_layout

WORKING_FACTOR = 3        # working copy: shorter side >= 3 x the model's input size
CROP_MARGIN = 0.25        # added on each side, as a fraction of the joints' box
MIN_BOX_FRACTION = 0.25   # the box is at least this share of the frame's height (a lone joint)
MIN_CONFIDENCE = 0.2      # joints at or below this confidence do not shape the box
_PAD_BGR = tuple(round(255 * m) for m in reversed(KINETICS_MEAN))

#: The joints each crop region's box is drawn around (None: every joint of the layout).
CROP_REGIONS: dict[str, tuple[str, ...] | None] = {
    "body": None,
    "upper_body": ("head", "nose", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                   "left_wrist", "right_wrist", "left_hand", "right_hand"),
}


def crop_joints(region: str, layout: str) -> np.ndarray | None:
    """Indices into ``layout`` of the joints the ``region``'s box is drawn around (None: all)."""
    if region not in CROP_REGIONS:
        raise InvalidInputError(f"unknown crop region {region!r}; known: {', '.join(CROP_REGIONS)}")
    names = CROP_REGIONS[region]
    if names is None:
        return None
    joints = get_layout(layout)
    indices = [joints.index(name) for name in names if name in joints.joint_names]
    if not indices:
        raise InvalidInputError(f"layout {layout} has none of the {region} crop's joints")
    return np.array(indices, np.int64)


def working_frame(image: np.ndarray, keypoints: np.ndarray, size: tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (H, W, 3) and its ``keypoints`` (..., 3) in pixels, reduced (INTER_AREA) by the
    largest integer factor that keeps the shorter side at least ``WORKING_FACTOR * max(size)``;
    unchanged when that factor is 1. (Integer factors are exact box averages and fast.)"""
    height, width = image.shape[:2]
    factor = min(height, width) // (WORKING_FACTOR * max(size))
    if factor < 2:
        return image, keypoints
    reduced = cv2.resize(image, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
    scale = np.array([reduced.shape[1] / width, reduced.shape[0] / height, 1.0], np.float32)
    return reduced, (keypoints * scale).astype(np.float32)


def person_boxes(keypoints: np.ndarray, frame_size: tuple[int, int], size: tuple[int, int],
                 jitter: float = 0.0, rng: np.random.Generator | None = None,
                 box_joints: np.ndarray | None = None) -> np.ndarray:
    """Crop boxes ``(T, 4)`` int ``(x0, y0, width, height)`` in pixels (they may reach past the frame)
    for one window: one size for the whole window, the centre moving along a straight line.

    keypoints: ``(T, J, 3)`` in pixels of frames of ``frame_size`` (H, W). size: the model's input
    (H, W); the boxes have its aspect ratio. The centre is the least-squares line through the
    frames' joint-box centres, so a person walking across the frame stays in the middle of the
    crop and as large as when standing (one box around the whole path made them a few pixels tall
    in a 64 px crop: BIISC's walking clips), while a standing person's crop does not move at all.
    The size is the largest extent of a frame's joints around that line, plus the margin, so every
    visible joint is inside. Without a visible joint the box is the whole frame, padded to that
    aspect ratio. ``jitter`` > 0 (training: the paper's random crops) scales the boxes by up to
    ``1 +- jitter`` and shifts them by up to ``jitter`` x their size, drawn from ``rng``.
    ``box_joints``: only these joints shape the box (:func:`crop_joints`; None: all).
    """
    frame_h, frame_w = frame_size
    if box_joints is not None:
        keypoints = keypoints[:, box_joints]
    num_frames = len(keypoints)
    aspect = size[1] / size[0]                                    # width / height of the box
    visible = (keypoints[..., 2] > MIN_CONFIDENCE) & np.isfinite(keypoints[..., :2]).all(-1)
    seen = np.flatnonzero(visible.any(axis=1))
    if len(seen) == 0:
        centres = np.tile([frame_w / 2, frame_h / 2], (num_frames, 1))
        height = max(frame_h, frame_w / aspect)
    else:
        points = np.where(visible[..., None], keypoints[..., :2], np.nan)
        middles = (np.nanmin(points[seen], axis=1) + np.nanmax(points[seen], axis=1)) / 2   # (S, 2)
        times = np.arange(num_frames, dtype=np.float64)
        if len(seen) > 1:
            slope, offset = np.polyfit(seen.astype(np.float64), middles, 1)                # (2,), (2,)
            centres = np.round(offset + times[:, None] * slope, 6)  # a still person's fit: exactly still
        else:
            centres = np.tile(middles[0], (num_frames, 1))
        reach = np.abs(points[seen] - centres[seen, None])                                 # (S, J, 2)
        height = 2 * max(np.nanmax(reach[..., 1]), np.nanmax(reach[..., 0]) / aspect) * (1 + 2 * CROP_MARGIN)
        height = max(height, MIN_BOX_FRACTION * frame_h)
    if jitter > 0:
        height *= float(np.exp(rng.uniform(np.log1p(-jitter), np.log1p(jitter))))
        centres = centres + rng.uniform(-jitter, jitter, 2) * np.array([height * aspect, height])
    box_h = max(1, round(height))
    box_w = max(1, round(height * aspect))
    return np.array([(_place(cx - box_w / 2, box_w, frame_w), _place(cy - box_h / 2, box_h, frame_h), box_w, box_h)
                     for cx, cy in centres], dtype=np.int64)


def _place(start: float, length: int, limit: int) -> int:
    """Shift a span inside ``[0, limit)`` when it fits, else centre it (padded on both sides)."""
    if length <= limit:
        return int(min(max(round(start), 0), limit - length))
    return (limit - length) // 2


def crop_window(frames: np.ndarray, keypoints: np.ndarray, size: tuple[int, int],
                boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut each frame's box from it and resize it to ``size`` (H, W).

    frames: ``(T, H, W, 3)`` uint8 BGR (OpenCV order). keypoints: ``(T, J, 3)`` in their pixels.
    boxes: ``(T, 4)`` ``(x0, y0, width, height)`` of one size (:func:`person_boxes`).
    Returns the video ``(3, T, H', W')`` float32 RGB normalised by
    :func:`~model.backbone.normalize_video`, and the keypoints in its pixels (confidence kept).
    """
    frame_h, frame_w = frames.shape[1:3]
    crops = []
    for image, (x0, y0, box_w, box_h) in zip(frames, boxes):
        left, top = max(0, -x0), max(0, -y0)
        right, bottom = max(0, x0 + box_w - frame_w), max(0, y0 + box_h - frame_h)
        piece = image[max(y0, 0):y0 + box_h, max(x0, 0):x0 + box_w]
        if left or top or right or bottom:
            piece = cv2.copyMakeBorder(piece, top, bottom, left, right, cv2.BORDER_CONSTANT, value=_PAD_BGR)
        crops.append(cv2.resize(piece, (size[1], size[0]), interpolation=cv2.INTER_AREA))
    boxes = np.asarray(boxes, np.float32)
    scale = np.array([size[1], size[0]], np.float32) / boxes[:, 2:]                    # (T, 2)
    mapped = np.array(keypoints, np.float32, copy=True)
    mapped[..., :2] = (mapped[..., :2] - boxes[:, None, :2]) * scale[:, None]
    return normalize_video(np.stack(crops)[..., ::-1]), mapped


def person_crop(frames: np.ndarray, keypoints: np.ndarray, size: tuple[int, int], jitter: float = 0.0,
                rng: np.random.Generator | None = None, box_joints: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`person_boxes` then :func:`crop_window` for one window of working frames ``(T, H, W, 3)``
    BGR and keypoints ``(T, J, 3)`` in their pixels -> (video ``(3, T, H', W')``, keypoints)."""
    boxes = person_boxes(keypoints, frames.shape[1:3], size, jitter, rng, box_joints)
    return crop_window(frames, keypoints, size, boxes)
