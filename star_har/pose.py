"""2-D pose with MediaPipe's PoseLandmarker (Tasks API, VIDEO mode), for live video and training.

A bottom-level module (it imports only ``star_har.model.skeleton`` and the other bottom modules)
so that ``train`` extracts poses from clips without importing ``realtime``.

:class:`PoseEstimator` turns a BGR frame into the main person's keypoints in the checkpoint's
joint layout (pixels of the frame, confidence = MediaPipe visibility). With ``num_poses`` > 1 it
follows the same person from frame to frame (the one nearest to where the main person was, the
largest one at the start). A frame without anybody gives ``person_found=False`` and zeros:
missing people are reported, never invented.

The model file is found by :func:`resolve_pose_model`: an explicit path, then
``$STAR_HAR_POSE_MODEL``, then the cache (:func:`star_har.files.cache_dir`), then the official
download. Whatever the origin, the file is checked before MediaPipe sees it (:func:`check_pose_model`:
a zip bundle of the two TFLite flatbuffers, every member's CRC intact). The download goes to a
temporary file, must deliver the announced Content-Length and pass the same check before it takes
the cache's name. No sha256 is pinned: Google publishes none for this file, "latest" in its URL can
change, and the copy the team has is not known to be byte-identical to Google's, so a pinned value
could not be justified; length, structure and CRCs catch truncated and corrupt downloads.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from star_har.errors import InvalidInputError, MissingFileError
from star_har.files import cache_dir
from star_har.model.skeleton import convert_pose, get_layout

log = logging.getLogger(__name__)

POSE_MODEL_ENV = "STAR_HAR_POSE_MODEL"
POSE_MODEL_NAME = "pose_landmarker_full.task"
POSE_MODEL_URL = ("https://storage.googleapis.com/mediapipe-models/pose_landmarker/"
                  "pose_landmarker_full/float16/latest/pose_landmarker_full.task")
MEDIAPIPE_LAYOUT = "mediapipe33"
#: The TFLite models inside a PoseLandmarker bundle.
TASK_MEMBERS = ("pose_detector.tflite", "pose_landmarks_detector.tflite")


def check_pose_model(path: str | os.PathLike) -> None:
    """Raise InvalidInputError (the reason, one line) unless ``path`` is a PoseLandmarker bundle: a
    zip holding :data:`TASK_MEMBERS`, each a TFLite flatbuffer (identifier ``TFL3``), all CRCs intact."""
    try:
        with zipfile.ZipFile(path) as bundle:
            missing = [name for name in TASK_MEMBERS if name not in bundle.namelist()]
            if missing:
                raise InvalidInputError(f"no {', '.join(missing)} inside")
            for name in TASK_MEMBERS:
                with bundle.open(name) as member:
                    if member.read(8)[4:8] != b"TFL3":
                        raise InvalidInputError(f"{name} is not a TFLite model")
            damaged = bundle.testzip()
            if damaged is not None:
                raise InvalidInputError(f"{damaged} is damaged (CRC mismatch)")
    except (zipfile.BadZipFile, EOFError) as exc:
        raise InvalidInputError(f"not a .task bundle, or cut short ({exc})") from None


def download(url: str, destination: Path, timeout: float = 30.0,
             validate: Callable[[Path], None] | None = None) -> Path:
    """Download ``url`` to ``destination`` with a progress bar, through a temporary file that gets
    the final name only when all announced bytes arrived and ``validate`` (if given) accepts it:
    a short or corrupt download never remains."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=destination.name + ".", suffix=".part", dir=destination.parent)
    try:
        received = 0
        with urllib.request.urlopen(url, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {destination.name}") as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:  # urllib returns a cut connection as a short body
            raise OSError(f"the download stopped after {received} of {total} bytes")
        if validate is not None:
            validate(Path(tmp))
        os.replace(tmp, destination)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return destination


def resolve_pose_model(path: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """The PoseLandmarker ``.task`` file: ``path`` > ``$STAR_HAR_POSE_MODEL`` > cache > download.

    Raises FileNotFoundError (one line, saying how to provide the file) when an explicit path is
    missing or the download fails.
    """
    for explicit, origin in ((path, "--pose-model"), (os.environ.get(POSE_MODEL_ENV), f"${POSE_MODEL_ENV}")):
        if explicit:
            explicit = Path(explicit).expanduser()
            if not explicit.is_file():
                raise MissingFileError(f"pose model not found: {explicit} (from {origin})")
            try:
                check_pose_model(explicit)
            except InvalidInputError as exc:
                raise InvalidInputError(f"{explicit} (from {origin}) is not a MediaPipe pose model: {exc}") from None
            return explicit
    cached = cache_dir() / POSE_MODEL_NAME
    if cached.is_file():
        try:
            check_pose_model(cached)
        except InvalidInputError as exc:
            raise InvalidInputError(f"the cached pose model {cached} is damaged ({exc}): delete it to download "
                                    "it again, or pass --pose-model PATH") from None
        return cached
    how = (f"download {POSE_MODEL_URL} to {cached}, or pass --pose-model PATH, "
           f"or set {POSE_MODEL_ENV}=PATH")
    if not allow_download:
        raise MissingFileError(f"pose model {POSE_MODEL_NAME} not found: {how}")
    log.info("downloading the MediaPipe pose model to %s", cached)
    try:
        return download(POSE_MODEL_URL, cached, validate=check_pose_model)
    except (urllib.error.URLError, OSError, InvalidInputError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MissingFileError(f"cannot download the pose model ({reason}); {how}") from None


@dataclass(frozen=True)
class PoseResult:
    """Pose of one frame.

    keypoints: ``(J, 3)`` float32 main person in the requested layout: x, y in pixels of the frame,
        confidence in [0, 1] (``(J, 4)`` with MediaPipe's depth as channel
        :data:`~star_har.model.skeleton.DEPTH_CHANNEL` when the estimator has ``depth``); all zeros
        when ``person_found`` is False.
    people: ``(P, 33, 3)`` (or ``(P, 33, 4)``) everybody MediaPipe found (its 33-joint layout,
        pixels), P >= 0.
    main_index: which of ``people`` is the main person (None when nobody).
    inference_ms: time MediaPipe took on this frame.
    """

    keypoints: np.ndarray
    person_found: bool
    people: np.ndarray
    main_index: int | None
    inference_ms: float


def person_boxes(people: np.ndarray, min_confidence: float = 0.5) -> np.ndarray:
    """``(P, 4)`` boxes x1, y1, x2, y2 around each ``(P, J, 3)`` person's joints above
    ``min_confidence`` (all joints where none are)."""
    people = np.asarray(people, dtype=np.float32)
    confident = people[..., 2] > min_confidence
    confident[~confident.any(axis=1)] = True
    xy = people[..., :2]
    low = np.where(confident[..., None], xy, np.inf).min(axis=1)
    high = np.where(confident[..., None], xy, -np.inf).max(axis=1)
    return np.concatenate([low, high], axis=1).astype(np.float32)


def world_depth(people: np.ndarray, world: np.ndarray, min_confidence: float = 0.5) -> np.ndarray:
    """``(P, J)`` depth in pixels of each ``(P, J, 3)`` person from MediaPipe's world landmarks
    ``(P, J, 3)`` (metres, hip-centred, z larger = farther): ``z`` times the person's pixels per
    metre (the spread of the confident joints in the image over their spread in the world).

    MediaPipe's image landmarks also carry a ``z``, in units of the image width, but on a BIISC
    clip it was 3.4-3.5 times too large against x and y; the world landmarks are metric, the scale of
    the Kinect skeletons' depth that models also train on."""
    confident = people[..., 2] > min_confidence
    confident[confident.sum(axis=1) < 2] = True
    weights = confident[..., None].astype(np.float32)
    pixels_per_metre = _spread(people[..., :2], weights) / np.maximum(_spread(world[..., :2], weights), 1e-6)
    return (world[..., 2] * pixels_per_metre[:, None]).astype(np.float32)


def _spread(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(P,)`` RMS distance of ``(P, J, 2)`` points from their weighted mean (weights ``(P, J, 1)``)."""
    mean = (points * weights).sum(axis=1, keepdims=True) / weights.sum(axis=1, keepdims=True)
    return np.sqrt((((points - mean) ** 2) * weights).sum(axis=(1, 2)) / weights.sum(axis=(1, 2)))


def select_main_person(people: np.ndarray, previous_centre: np.ndarray | None) -> int:
    """Index of the main person in ``(P, J, 3)``: nearest to ``previous_centre`` (x, y) when
    following someone, else the largest. P must be >= 1."""
    boxes = person_boxes(people)
    if previous_centre is None:
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return int(np.argmax(areas))
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return int(np.argmin(np.linalg.norm(centres - previous_centre, axis=1)))


class PoseEstimator:
    """MediaPipe PoseLandmarker in VIDEO mode, following one main person.

    model_path: the ``.task`` file (resolved with :func:`resolve_pose_model` when None).
    layout: joint layout of :attr:`PoseResult.keypoints` (the checkpoint's, e.g. ``penn13``).
    num_poses: how many people MediaPipe looks for; the main one is followed among them.
    depth: also report each joint's depth (:func:`world_depth`), for models trained with depth.
    Frames must come with increasing timestamps (VIDEO mode tracks between them). Not
    thread-safe: use it from one thread, and :meth:`close` it (or use ``with``).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, layout: str = "penn13",
                 num_poses: int = 1, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, depth: bool = False) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        self.layout = get_layout(layout)
        self.depth = depth
        self.model_path = resolve_pose_model(model_path)
        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO, num_poses=num_poses,
            min_pose_detection_confidence=min_detection_confidence,
            min_pose_presence_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence)
        try:
            self._landmarker = vision.PoseLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as exc:  # a bundle that passed the checks but MediaPipe refuses
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidInputError(f"MediaPipe cannot load the pose model {self.model_path}: {reason}") from None
        self._last_ms = -1
        self._centre: np.ndarray | None = None

    def process(self, image: np.ndarray, timestamp: float) -> PoseResult:
        """Pose of ``image`` ``(H, W, 3)`` uint8 BGR taken at ``timestamp`` seconds."""
        import mediapipe as mp

        height, width = image.shape[:2]
        # VIDEO mode needs strictly increasing integer milliseconds.
        self._last_ms = max(self._last_ms + 1, int(round(timestamp * 1000)))
        start = time.perf_counter()
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        result = self._landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb),
                                                   self._last_ms)
        elapsed = (time.perf_counter() - start) * 1000
        people = np.array([[(p.x * width, p.y * height, p.visibility or 0.0) for p in person]
                           for person in result.pose_landmarks], dtype=np.float32).reshape(-1, 33, 3)
        if self.depth:
            world = np.array([[(p.x, p.y, p.z) for p in person] for person in result.pose_world_landmarks],
                             dtype=np.float32).reshape(-1, 33, 3)
            people = np.concatenate((people, world_depth(people, world)[..., None]), axis=-1)
        if len(people) == 0:
            self._centre = None
            nobody = np.zeros((self.layout.num_joints, people.shape[-1]), np.float32)
            return PoseResult(nobody, False, people, None, elapsed)
        main = select_main_person(people, self._centre)
        box = person_boxes(people[main:main + 1])[0]
        self._centre = (box[:2] + box[2:]) / 2
        keypoints = convert_pose(people[main], MEDIAPIPE_LAYOUT, self.layout)
        return PoseResult(keypoints, True, people, main, elapsed)

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
