"""Your own clips: ``root/<class_name>/<clip>.(mp4|avi|mov|mkv|webm)``.

Poses are extracted once with MediaPipe (:class:`star_har.pose.PoseEstimator`, VIDEO mode, the
main person followed) and cached in the project's cache folder,
``cache_dir("poses", <root name>-<hash of its absolute path>-depth)/<class>/<clip>.npz`` (the
star-har ``.npz`` skeleton format, MediaPipe's 33 joints with their depth), or in ``pose_cache`` when given: never next to
the data, which may be read-only. Extraction is resumable: cached clips are not read again, and a clip that cannot be decoded or shows nobody is recorded as
``<clip>.skip`` with the reason, counted, reported and skipped, never a crash. The first
``_``-separated field of a clip's name is its subject (``S001_...`` in BIISC), for
cross-subject splits (``data.val_subjects``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from star_har.errors import InvalidInputError, MissingFileError
from star_har.files import atomic_write, cache_dir
from star_har.train.datasets.base import Sequence, require_dir
from star_har.train.datasets.npz import load_npz, save_npz

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
MIN_PERSON_FRACTION = 0.25  # clips where MediaPipe finds someone in fewer frames are skipped


def list_clips(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                  and not p.parent.name.startswith("."))


def extract_clip(path: Path, estimator) -> tuple[np.ndarray, float, float, float]:
    """``(T, 33, C)`` MediaPipe keypoints of ``path`` (C = 4 when ``estimator`` reports depth, else 3)
    with its fps, width and height.

    ValueError when the video cannot be decoded or too few frames show a person.
    """
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    fps = fps if 1.0 <= fps <= 240.0 else 30.0
    poses, found, size = [], 0, (0.0, 0.0)
    while True:
        ok, image = capture.read()
        if not ok:
            break
        size = (float(image.shape[1]), float(image.shape[0]))
        result = estimator.process(image, len(poses) / fps)
        poses.append(result.keypoints)
        found += result.person_found
    capture.release()
    if not poses:
        raise InvalidInputError("no decodable frame")
    if found < MIN_PERSON_FRACTION * len(poses):
        raise InvalidInputError(f"a person in only {found} of {len(poses)} frames")
    return np.stack(poses).astype(np.float32), fps, *size


def pose_cache_folder(root: Path) -> Path:
    """Default pose cache of the clips under ``root``: keyed by its absolute path, so two folders
    with the same name never share (or overwrite) each other's poses. ``-depth``: these caches hold
    each joint's depth, which caches without the suffix (older versions) lack."""
    resolved = root.resolve()
    return cache_dir("poses", f"{resolved.name}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:12]}-depth")


def load_clip_folder(root: str | Path, pose_model: str | None = None,
                     pose_cache: str | Path | None = None) -> list[Sequence]:
    """Sequences of every clip under ``root``, extracting (and caching) poses where needed.

    ``pose_cache``: folder for the extracted poses (default :func:`pose_cache_folder`).
    """
    root = require_dir(root, "clips")
    clips = list_clips(root)
    if not clips:
        raise MissingFileError(f"no video clips in {root} (expected {root}/<class_name>/<clip>.mp4)")
    cache = Path(pose_cache) if pose_cache else pose_cache_folder(root)
    log.info("MediaPipe poses of %s cached in %s", root, cache)
    todo = [c for c in clips if not _cached(cache, root, c)]
    if todo:
        from star_har.pose import PoseEstimator
        for clip in tqdm(todo, desc="MediaPipe poses", unit="clip"):
            target = cache / clip.relative_to(root).with_suffix(".npz")
            try:
                with PoseEstimator(pose_model, layout="mediapipe33", depth=True) as estimator:  # fresh tracker per clip
                    keypoints, fps, width, height = extract_clip(clip, estimator)
            except ValueError as exc:
                atomic_write(target.with_suffix(".skip"), f"{exc}\n")
                continue
            save_npz(target, keypoints, "mediapipe33", clip.parent.name, fps, width, height)
    sequences, skipped = [], []
    for clip in clips:
        target = cache / clip.relative_to(root).with_suffix(".npz")
        if target.is_file():
            seq = load_npz(target)
            seq.name, seq.label, seq.frames = str(clip.relative_to(root)), clip.parent.name, clip
            seq.subject = clip.stem.split("_")[0]
            sequences.append(seq)
        else:
            skipped.append(f"{clip.relative_to(root)} ({target.with_suffix('.skip').read_text().strip()})")
    if skipped:
        log.warning("skipped %d of %d clips: %s", len(skipped), len(clips), "; ".join(skipped))
    if not sequences:
        raise InvalidInputError(f"none of the {len(clips)} clips in {root} gave a usable pose sequence")
    return sequences


def _cached(cache: Path, root: Path, clip: Path) -> bool:
    target = cache / clip.relative_to(root).with_suffix(".npz")
    return target.is_file() or target.with_suffix(".skip").is_file()
