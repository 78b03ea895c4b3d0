"""Penn Action (Zhang, Zhu, Derpanis, ICCV 2013): one ``NNNN.mat`` per video.

Fields used: ``x``, ``y`` (T, 13) pixels, ``visibility`` (T, 13) 0/1, ``action``, ``train`` (1/-1),
``dimensions`` [H, W, T]. Invisible joints may sit at (0, 0) or (1, 1), so they get confidence 0.
When the RGB frames are present (``frames/NNNN/NNNNNN.jpg`` next to ``labels/`` or next to the
.mat folder), the sequence records them for the ``rgb+pose`` modality.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.io

from star_har.errors import InvalidInputError, MissingFileError
from star_har.model.skeleton import get_layout
from star_har.train.datasets.base import Sequence, require_dir

log = logging.getLogger(__name__)

PENN_FPS = 30.0
PENN_CLASSES = ("baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk",
                "golf_swing", "jump_rope", "jumping_jacks", "pullup", "pushup", "situp", "squat",
                "strum_guitar", "tennis_forehand", "tennis_serve")


def _scalar(value: np.ndarray) -> object:
    return np.asarray(value).reshape(-1)[0]


def load_penn_mat(path: str | Path, frames_root: Path | None = None) -> Sequence:
    """Read one Penn Action annotation file; ValueError (one line) when it is corrupt."""
    path = Path(path)
    try:
        mat = scipy.io.loadmat(path)
        x, y = (np.asarray(mat[k], dtype=np.float32) for k in ("x", "y"))
        visibility = np.asarray(mat["visibility"], dtype=np.float32)
        action = str(_scalar(mat["action"]))
        height, width = (float(v) for v in np.asarray(mat["dimensions"]).reshape(-1)[:2])
        official = int(_scalar(mat["train"])) if "train" in mat else 0
    except Exception as exc:  # scipy raises many types on truncated or foreign files
        raise InvalidInputError(f"corrupt Penn Action file {path}: {str(exc).splitlines()[0][:160] or type(exc).__name__}") from None
    if x.ndim != 2 or x.shape[1] != 13 or x.shape != y.shape or x.shape != visibility.shape or len(x) == 0:
        raise InvalidInputError(f"corrupt Penn Action file {path}: x/y/visibility must be (T, 13), got "
                         f"{x.shape}/{y.shape}/{visibility.shape}")
    keypoints = np.stack((x, y, (visibility > 0).astype(np.float32)), axis=-1)
    keypoints[keypoints[..., 2] == 0, :2] = 0  # invisible joints carry no position
    # Penn's "l_*" joints are the person's RIGHT (front views show them on the image's left in
    # every sequence): swap them so left/right are anatomical, as MediaPipe's are at run time.
    keypoints = keypoints[:, get_layout("penn13").flip_permutation]
    split = {1: "train", -1: "test"}.get(official)
    frames = frames_root / path.stem if frames_root is not None and (frames_root / path.stem).is_dir() else None
    return Sequence(name=path.stem, label=action, keypoints=keypoints, layout="penn13", fps=PENN_FPS,
                    width=width, height=height, split=split, frames=frames)


def load_penn_action(root: str | Path, skip_corrupt: bool = False) -> list[Sequence]:
    """All sequences under ``root``: the folder of ``.mat`` files, or the dataset root holding
    ``labels/`` (and optionally ``frames/``)."""
    root = require_dir(root, "Penn Action")
    labels = root / "labels" if (root / "labels").is_dir() else root
    frames_root = next((p for p in (root / "frames", labels.parent / "frames") if p.is_dir()), None)
    files = sorted(labels.glob("*.mat"))
    if not files:
        raise MissingFileError(f"no Penn Action .mat files in {labels}")
    sequences, corrupt = [], 0
    for path in files:
        try:
            sequences.append(load_penn_mat(path, frames_root))
        except ValueError as exc:
            if not skip_corrupt:
                raise
            corrupt += 1
            log.warning("%s", exc)
    if corrupt:
        log.warning("skipped %d corrupt Penn Action files of %d", corrupt, len(files))
    return sequences
