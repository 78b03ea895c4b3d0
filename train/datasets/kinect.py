"""Kinect v1 skeleton datasets: UTD-MHAD (``.mat``) and MSR Action3D (text).

Both hold 20 joints per frame in metres, in the Kinect's skeleton space (y up, z away from the
camera), in their own joint orders (``utd20``, ``msr20`` in :mod:`model.skeleton`). That space is
mirrored: x grows towards the person's right (the actors' moving right hands have x > 0, and
``swipe_left`` moves to smaller x), as in a mirror, so the loaders negate x to get a true camera
view, where a person facing the camera shows their right side on the image's left, as a webcam and
MediaPipe see them (MSR's 2-D pixels are mirrored likewise: u becomes 320 - u).
Sequences carry the 3-D points (``points3d``, rendered from random virtual cameras in training)
and, as ``keypoints``, the recording camera's view of them (:func:`train.camera.recorded_view`).

UTD-MHAD: ``aA_sS_tT_skeleton.mat`` with ``d_skel`` (20, 3, T), 30 fps, subjects ``s1``..``s8``.
MSR Action3D: ``aAA_sSS_eEE_skeleton3D.txt`` (``skeleton3d/``, metres) or
``aAA_sSS_eEE_skeleton.txt`` (``skeleton2d/``, depth-image pixels on 320 x 240), lines
``x y z c``, 20 lines per frame, 15 fps, subjects ``s01``..``s10``. Known dirt: all-zero frames
(dropped, counted) and absurd values (files skipped, counted).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from star_har.errors import InvalidInputError, MissingFileError
from star_har.train.camera import recorded_view
from star_har.train.datasets.base import Sequence, require_dir

log = logging.getLogger(__name__)

UTD_ACTIONS = (
    "swipe_left", "swipe_right", "wave", "clap", "throw", "arm_cross", "basketball_shoot", "draw_x",
    "draw_circle_cw", "draw_circle_ccw", "draw_triangle", "bowling", "boxing", "baseball_swing",
    "tennis_swing", "arm_curl", "tennis_serve", "push", "knock", "catch", "pickup_throw", "jog", "walk",
    "sit_to_stand", "stand_to_sit", "lunge", "squat")
MSR_ACTIONS = (
    "high_arm_wave", "horizontal_arm_wave", "hammer", "hand_catch", "forward_punch", "high_throw",
    "draw_x", "draw_tick", "draw_circle", "hand_clap", "two_hand_wave", "side_boxing", "bend",
    "forward_kick", "side_kick", "jogging", "tennis_swing", "tennis_serve", "golf_swing", "pickup_throw")
UTD_FPS, MSR_FPS = 30.0, 15.0
MSR_2D_SIZE = (320.0, 240.0)
UNMIRROR = np.array([-1.0, 1.0, 1.0], np.float32)  # Kinect skeleton space -> camera space (module doc)
ABSURD = 1e9  # coordinates beyond this are corrupt (a few MSR 2D files)

_NAME = re.compile(r"a(\d+)_(s\d+)_[te](\d+)_skeleton", re.IGNORECASE)


def _parse_name(path: Path, actions: tuple[str, ...]) -> tuple[str, str]:
    """(action, subject) of a file named ``aA_sS_tT_...`` / ``aAA_sSS_eEE_...``."""
    match = _NAME.match(path.name)
    if not match or not 1 <= int(match.group(1)) <= len(actions):
        raise InvalidInputError(f"{path.name}: expected a name like a01_s01_e01_skeleton...")
    return actions[int(match.group(1)) - 1], match.group(2).lower()


def _sequence(path: Path, points: np.ndarray, layout: str, actions: tuple[str, ...], fps: float) -> Sequence:
    """A sequence from ``(T, 20, 3)`` Kinect skeleton-space metres, every joint visible."""
    action, subject = _parse_name(path, actions)
    points3d = np.concatenate([points * UNMIRROR, np.ones(points.shape[:2] + (1,))], axis=-1).astype(np.float32)
    return Sequence(name=path.stem, label=action, keypoints=recorded_view(points3d), layout=layout, fps=fps,
                    width=640.0, height=480.0, points3d=points3d, subject=subject)


def load_utd_mhad(root: str | Path) -> list[Sequence]:
    """Every ``*_skeleton.mat`` of UTD-MHAD under ``root``."""
    from scipy.io import loadmat

    root = require_dir(root, "UTD-MHAD")
    files = sorted(root.rglob("a*_s*_t*_skeleton.mat"))
    if not files:
        raise MissingFileError(f"no UTD-MHAD skeleton files (aA_sS_tT_skeleton.mat) in {root}")
    sequences = []
    for path in files:
        try:
            skeleton = np.asarray(loadmat(path)["d_skel"], dtype=np.float32)
        except (KeyError, ValueError, OSError) as exc:
            raise InvalidInputError(f"unreadable UTD-MHAD file {path}: {exc}") from None
        if skeleton.ndim != 3 or skeleton.shape[:2] != (20, 3) or skeleton.shape[2] == 0:
            raise InvalidInputError(f"{path}: d_skel must be (20, 3, T), got {skeleton.shape}")
        sequences.append(_sequence(path, skeleton.transpose(2, 0, 1), "utd20", UTD_ACTIONS, UTD_FPS))
    return sequences


def read_msr_file(path: Path) -> tuple[np.ndarray, int]:
    """``(T, 20, 3)`` coordinates of an MSR Action3D text file without its all-zero frames, and
    how many such frames were dropped. ValueError when the file is corrupt (absurd values, a line
    count that is not a multiple of 20, or no frame left)."""
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise InvalidInputError(f"not numeric ({exc})") from None
    if values.shape[1] != 4 or len(values) % 20:
        raise InvalidInputError(f"{len(values)} lines of {values.shape[1]} values (need 20 lines of x y z c a frame)")
    if not np.isfinite(values).all() or np.abs(values[:, :3]).max() > ABSURD:
        raise InvalidInputError("absurd coordinates (over 1e9)")
    frames = values[:, :3].reshape(-1, 20, 3)
    kept = np.abs(frames).sum(axis=(1, 2)) > 0
    if not kept.any():
        raise InvalidInputError("only all-zero frames")
    return frames[kept].astype(np.float32), int((~kept).sum())


def load_msr_action3d(root: str | Path, dims: str = "3d") -> list[Sequence]:
    """MSR Action3D under ``root`` (the folder holding ``skeleton3d/`` and ``skeleton2d/``, or one
    of them). ``dims``: ``3d`` (metres, rendered from virtual cameras) or ``2d`` (the depth
    camera's pixels). Corrupt files are skipped and counted, all-zero frames dropped and counted.

    The 4th value of a line is not a usable confidence (it is 0 for the torso joints of clean
    frames), so every joint of a kept frame counts as visible.
    """
    if dims not in ("2d", "3d"):
        raise InvalidInputError(f"MSR Action3D dims must be 2d or 3d, got {dims!r}")
    root = require_dir(root, "MSR Action3D")
    folder = root / f"skeleton{dims}" if (root / f"skeleton{dims}").is_dir() else root
    pattern = "a*_s*_e*_skeleton3D.txt" if dims == "3d" else "a*_s*_e*_skeleton.txt"
    files = sorted(folder.glob(pattern))
    if not files:
        raise MissingFileError(f"no MSR Action3D {dims} files ({pattern}) in {folder}")
    sequences, skipped, dropped = [], [], 0
    for path in files:
        try:
            frames, zero_frames = read_msr_file(path)
        except ValueError as exc:
            skipped.append(f"{path.name} ({exc})")
            continue
        dropped += zero_frames
        if dims == "3d":
            sequences.append(_sequence(path, frames, "msr20", MSR_ACTIONS, MSR_FPS))
        else:
            action, subject = _parse_name(path, MSR_ACTIONS)
            keypoints = np.concatenate([frames[..., :2], np.ones(frames.shape[:2] + (1,), np.float32)], axis=-1)
            keypoints[..., 0] = MSR_2D_SIZE[0] - keypoints[..., 0]  # un-mirror (module doc)
            sequences.append(Sequence(name=path.stem, label=action, keypoints=keypoints, layout="msr20", fps=MSR_FPS,
                                      width=MSR_2D_SIZE[0], height=MSR_2D_SIZE[1], subject=subject))
    if skipped or dropped:
        log.warning("MSR Action3D %s: skipped %d of %d files, dropped %d all-zero frames%s", dims, len(skipped),
                    len(files), dropped, ": " + "; ".join(skipped) if skipped else "")
    if not sequences:
        raise InvalidInputError(f"none of the {len(files)} MSR Action3D files in {folder} is usable")
    return sequences
