"""The RGB stream's person-centred crop, in one place for training windows and the live ring buffer.

People can be small in the frame (about a third of its height in BIISC), so the RGB stream sees a
crop around the person instead of the whole frame. One box per window, from the visible joints of
all its frames (so the crop is stable over the window and motion stays motion), grown by a margin,
given the model's aspect ratio, shifted inside the frame where it fits and padded with the
Kinetics mean colour (0 after normalisation) where it does not. The crop is resized to the model's
input size and the keypoints are mapped into its pixels.

Before cropping, each frame is reduced to a working copy (by an integer factor, keeping its shorter
side at least ``WORKING_FACTOR`` x the input size): the ring buffer keeps such copies (a full-HD frame
per buffer entry would cost gigabytes), and training reduces the same way, so both crop from
identical pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from star_har.model.backbone import KINETICS_MEAN, normalize_video

WORKING_FACTOR = 3        # working copy: shorter side >= 3 x the model's input size
CROP_MARGIN = 0.25        # added on each side, as a fraction of the joints' box
MIN_BOX_FRACTION = 0.25   # the box is at least this share of the frame's height (a lone joint)
MIN_CONFIDENCE = 0.2      # joints at or below this confidence do not shape the box
_PAD_BGR = tuple(round(255 * m) for m in reversed(KINETICS_MEAN))


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


def person_box(keypoints: np.ndarray, frame_size: tuple[int, int], size: tuple[int, int],
               jitter: float = 0.0, rng: np.random.Generator | None = None) -> tuple[int, int, int, int]:
    """Crop box ``(x0, y0, width, height)`` in pixels (it may reach past the frame) for one window.

    keypoints: ``(T, J, 3)`` in pixels of frames of ``frame_size`` (H, W). size: the model's input
    (H, W); the box has its aspect ratio. Without a visible joint the box is the whole frame,
    padded to that aspect ratio. ``jitter`` > 0 (training: the paper's random crops) scales the
    box by up to ``1 +- jitter`` and shifts it by up to ``jitter`` x its size, drawn from ``rng``.
    """
    frame_h, frame_w = frame_size
    aspect = size[1] / size[0]                                    # width / height of the box
    points = keypoints[..., :2][(keypoints[..., 2] > MIN_CONFIDENCE)
                                & np.isfinite(keypoints[..., :2]).all(-1)]
    if len(points) == 0:
        centre, height = np.array([frame_w / 2, frame_h / 2]), max(frame_h, frame_w / aspect)
    else:
        low, high = points.min(axis=0), points.max(axis=0)
        centre = (low + high) / 2
        height = max(high[1] - low[1], (high[0] - low[0]) / aspect) * (1 + 2 * CROP_MARGIN)
        height = max(height, MIN_BOX_FRACTION * frame_h)
    if jitter > 0:
        height *= float(np.exp(rng.uniform(np.log1p(-jitter), np.log1p(jitter))))
        centre = centre + rng.uniform(-jitter, jitter, 2) * np.array([height * aspect, height])
    box_h = max(1, round(height))
    box_w = max(1, round(height * aspect))
    x0 = _place(centre[0] - box_w / 2, box_w, frame_w)
    y0 = _place(centre[1] - box_h / 2, box_h, frame_h)
    return x0, y0, box_w, box_h


def _place(start: float, length: int, limit: int) -> int:
    """Shift a span inside ``[0, limit)`` when it fits, else centre it (padded on both sides)."""
    if length <= limit:
        return int(min(max(round(start), 0), limit - length))
    return (limit - length) // 2


def crop_window(frames: np.ndarray, keypoints: np.ndarray, size: tuple[int, int],
                box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``box`` from every frame and resize it to ``size`` (H, W).

    frames: ``(T, H, W, 3)`` uint8 BGR (OpenCV order). keypoints: ``(T, J, 3)`` in their pixels.
    Returns the video ``(3, T, H', W')`` float32 RGB normalised by
    :func:`~model.backbone.normalize_video`, and the keypoints in its pixels (confidence kept).
    """
    x0, y0, box_w, box_h = box
    frame_h, frame_w = frames.shape[1:3]
    left, top = max(0, -x0), max(0, -y0)
    right, bottom = max(0, x0 + box_w - frame_w), max(0, y0 + box_h - frame_h)
    crops = []
    for image in frames:
        piece = image[max(y0, 0):y0 + box_h, max(x0, 0):x0 + box_w]
        if left or top or right or bottom:
            piece = cv2.copyMakeBorder(piece, top, bottom, left, right, cv2.BORDER_CONSTANT, value=_PAD_BGR)
        crops.append(cv2.resize(piece, (size[1], size[0]), interpolation=cv2.INTER_AREA))
    scale = np.array([size[1] / box_w, size[0] / box_h], np.float32)
    mapped = np.array(keypoints, np.float32, copy=True)
    mapped[..., :2] = (mapped[..., :2] - np.array([x0, y0], np.float32)) * scale
    return normalize_video(np.stack(crops)[..., ::-1]), mapped


def person_crop(frames: np.ndarray, keypoints: np.ndarray, size: tuple[int, int], jitter: float = 0.0,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`person_box` then :func:`crop_window` for one window of working frames ``(T, H, W, 3)``
    BGR and keypoints ``(T, J, 3)`` in their pixels -> (video ``(3, T, H', W')``, keypoints)."""
    box = person_box(keypoints, frames.shape[1:3], size, jitter, rng)
    return crop_window(frames, keypoints, size, box)
