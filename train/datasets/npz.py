"""The star-har skeleton format: one ``.npz`` per sequence, for any skeleton dataset.

Arrays: ``keypoints`` (T, J, 3) float (x, y in pixels, confidence in [0, 1], 0 = missing; or
(T, J, 4) with a depth channel, :data:`~star_har.model.skeleton.DEPTH_CHANNEL`),
``layout`` (a joint layout name of ``model.skeleton``: penn13, coco17, mediapipe33, ntu25,
openpose25), ``label`` (class name); optional ``fps`` (default 30), ``width``/``height`` (default:
the keypoints' extent) and ``split`` (train / val / test). Write one with :func:`save_npz`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from star_har.errors import InvalidInputError, MissingFileError
from star_har.files import atomic_write
from star_har.model import get_layout
from star_har.model.skeleton import DEPTH_CHANNEL
from star_har.train.datasets.base import Sequence, require_dir

log = logging.getLogger(__name__)


def save_npz(path: str | Path, keypoints: np.ndarray, layout: str, label: str, fps: float = 30.0,
             width: float | None = None, height: float | None = None, split: str | None = None) -> None:
    """Write one sequence in the star-har ``.npz`` skeleton format (atomically: a crash never
    leaves a half-written file that a resumed extraction would take for a cached one)."""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if not _well_formed(keypoints, layout):
        raise InvalidInputError(f"keypoints must be (T, {get_layout(layout).num_joints}, 3 or 4) for {layout}, "
                                f"got {keypoints.shape}")
    extra = {k: v for k, v in (("width", width), ("height", height), ("split", split)) if v is not None}
    atomic_write(path, lambda handle: np.savez_compressed(handle, keypoints=keypoints, layout=layout,
                                                          label=label, fps=fps, **extra))


def load_npz(path: str | Path) -> Sequence:
    """Read one ``.npz`` sequence; ValueError (one line) when fields are missing or malformed."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            keypoints = np.asarray(npz["keypoints"], dtype=np.float32)
            layout, label = str(npz["layout"]), str(npz["label"])
            fps = float(npz["fps"]) if "fps" in npz else 30.0
            split = str(npz["split"]) if "split" in npz else None
            size = [float(npz[k]) if k in npz else None for k in ("width", "height")]
    except KeyError as exc:
        raise InvalidInputError(f"{path}: missing array {exc.args[0]} (need keypoints, layout, label)") from None
    except Exception as exc:  # numpy raises several types on truncated or foreign files
        raise InvalidInputError(f"unreadable skeleton file {path}: {exc}") from None
    if not _well_formed(keypoints, layout) or len(keypoints) == 0:
        raise InvalidInputError(f"{path}: keypoints must be (T, {get_layout(layout).num_joints}, 3 or 4) "
                                f"for layout {layout}, got {keypoints.shape}")
    visible = keypoints[..., 2] > 0
    extent = keypoints[..., :2][visible].max(axis=0) if visible.any() else np.ones(2)
    width, height = (s if s is not None else float(e) for s, e in zip(size, extent))
    return Sequence(name=path.stem, label=label, keypoints=keypoints, layout=layout, fps=fps,
                    width=width, height=height, split=split)


def _well_formed(keypoints: np.ndarray, layout: str) -> bool:
    """(T, J, 3), or (T, J, 4) with depth, for ``layout``'s J."""
    return (keypoints.ndim == 3 and keypoints.shape[1] == get_layout(layout).num_joints
            and keypoints.shape[2] in (DEPTH_CHANNEL, DEPTH_CHANNEL + 1))


def load_npz_folder(root: str | Path) -> list[Sequence]:
    """Every ``*.npz`` under ``root`` (recursively)."""
    root = require_dir(root, "skeleton (.npz)")
    files = sorted(root.rglob("*.npz"))
    if not files:
        raise MissingFileError(f"no .npz skeleton files in {root}")
    return [load_npz(path) for path in files]
