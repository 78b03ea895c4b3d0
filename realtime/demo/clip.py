"""The demo clip: several exercises performed by the procedural body, rendered to a video file.

The clip is made by this project's own code (no third-party media), deterministically, and cached:
the file name carries a hash of everything that shapes the pixels, so a cached clip is reused
only when it would come out the same. Next to the video go

* ``<name>.json``: the segments (which action occupies which frames), fps and size;
* ``<name>.pose.npz``: the generator's ground-truth skeleton, ``keypoints`` (T, 13, 3) in the
  ``penn13`` layout (x, y in pixels, confidence 1), used to check live pose estimation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from star_har.errors import InvalidInputError
from star_har.files import cache_dir
from star_har.model.skeleton import get_layout
from star_har.realtime.demo.body import ACTIONS, JOINT_INDEX
from star_har.realtime.demo.render import frame_camera, render_frame

log = logging.getLogger(__name__)

# Bump when the body, the actions or the renderer change what the clip looks like.
RENDER_VERSION = 4
DEFAULT_ACTIONS: tuple[str, ...] = ("jumping_jacks", "squat", "pushup", "situp", "pullup", "bench_press")
GT_LAYOUT = "penn13"


@dataclass(frozen=True)
class Segment:
    """Frames ``[start, end)`` of the clip show ``action``."""

    action: str
    start: int
    end: int


@dataclass(frozen=True)
class DemoClip:
    video: Path
    manifest: Path
    pose: Path
    segments: tuple[Segment, ...]
    fps: float
    size: tuple[int, int]

    def action_at(self, frame: int) -> str | None:
        """The action shown in ``frame``, or None past the end."""
        return next((s.action for s in self.segments if s.start <= frame < s.end), None)

    def ground_truth(self) -> np.ndarray:
        """The generator's skeleton (T, 13, 3) in the ``penn13`` layout."""
        with np.load(self.pose) as data:
            return data["keypoints"]


def penn13_from_body(uv: np.ndarray) -> np.ndarray:
    """Projected body joints (Jbody, 2) -> ``penn13`` keypoints (13, 3) with confidence 1."""
    names = get_layout(GT_LAYOUT).joint_names
    out = np.ones((len(names), 3), np.float32)
    out[:, :2] = uv[[JOINT_INDEX[n] for n in names]]
    return out


def render_clip(actions: Sequence[str], seconds_per_action: float, fps: float,
                size: tuple[int, int]) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    """Yield (BGR frame (H, W, 3) uint8, penn13 keypoints (13, 3), action) for every frame.

    Each action is its own shot, filmed from where Penn Action usually films it.
    """
    for name in actions:
        if name not in ACTIONS:
            raise InvalidInputError(f"no demo animation for action {name!r}; choose from {', '.join(ACTIONS)}")
        action = ACTIONS[name]
        camera = frame_camera(action, size)
        for k in range(round(seconds_per_action * fps)):
            image, uv = render_frame(action, k / fps, camera)
            yield image, penn13_from_body(uv), name


def _clip_key(actions: Sequence[str], seconds_per_action: float, fps: float, size: tuple[int, int]) -> str:
    spec = json.dumps([RENDER_VERSION, list(actions), seconds_per_action, fps, list(size)])
    return hashlib.sha256(spec.encode()).hexdigest()[:10]


def _load_manifest(path: Path, video: Path, pose: Path) -> DemoClip:
    data = json.loads(path.read_text())
    return DemoClip(video, path, pose, tuple(Segment(**s) for s in data["segments"]),
                    float(data["fps"]), tuple(data["size"]))


def generate_demo_clip(output_dir: str | os.PathLike | None = None,
                       actions: Sequence[str] = DEFAULT_ACTIONS, seconds_per_action: float = 4.0,
                       fps: float = 30.0, size: tuple[int, int] = (640, 480),
                       force: bool = False) -> DemoClip:
    """Render the demo clip into ``output_dir`` (default ``<cache>/demo``), or reuse a cached one.

    Returns paths of the video (mp4), its manifest (json) and ground-truth skeleton (npz).
    """
    directory = Path(output_dir) if output_dir is not None else cache_dir("demo")
    stem = f"star_har_demo_{_clip_key(actions, seconds_per_action, fps, size)}"
    video, manifest, pose = (directory / f"{stem}{ext}" for ext in (".mp4", ".json", ".pose.npz"))
    if not force and video.is_file() and manifest.is_file() and pose.is_file():
        log.info("using cached demo clip %s", video)
        return _load_manifest(manifest, video, pose)

    directory.mkdir(parents=True, exist_ok=True)
    tmp_video = video.with_name(video.stem + ".part.mp4")
    writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an mp4 video to {tmp_video}")
    per_action = round(seconds_per_action * fps)
    segments = [Segment(name, i * per_action, (i + 1) * per_action) for i, name in enumerate(actions)]
    keypoints = []
    try:
        for image, kps, _ in tqdm(render_clip(actions, seconds_per_action, fps, size),
                                  total=per_action * len(actions), desc="rendering demo clip", unit="frame"):
            writer.write(image)
            keypoints.append(kps)
    finally:
        writer.release()
    np.savez_compressed(pose, keypoints=np.stack(keypoints), layout=GT_LAYOUT, fps=fps)
    manifest.write_text(json.dumps({
        "video": video.name, "fps": fps, "size": list(size), "render_version": RENDER_VERSION,
        "segments": [vars(s) for s in segments],
    }, indent=1))
    os.replace(tmp_video, video)  # last: a cached video always has its manifest and skeleton
    return _load_manifest(manifest, video, pose)
