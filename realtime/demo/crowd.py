"""A multi-person clip for the tracker: several procedural bodies doing exercises while they walk
sideways, crossing in front of each other (nearer people hide farther ones).

Like the demo clip it is made by this project's code, deterministically, and cached under a name
that hashes everything shaping its pixels. Next to the video, ``<name>.pose.npz`` holds the
ground truth: ``keypoints`` (T, N, 13, 3) per person in the ``penn13`` layout (x, y in pixels,
confidence 1 whether or not the person is hidden), which identity-switch counting compares with.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from star_har.files import cache_dir
from star_har.realtime.demo.body import ACTIONS
from star_har.realtime.demo.clip import RENDER_VERSION, penn13_from_body
from star_har.realtime.demo.render import Camera, render_scene

# Bump when the crowd's look changes (the renderer's own changes bump clip.RENDER_VERSION).
CROWD_VERSION = 1


@dataclass(frozen=True)
class Walker:
    """A body doing ``action`` (started ``phase`` s into it) while sliding along x at ``speed`` m/s
    from ``x`` at depth ``z`` (metres; +z is towards the camera)."""

    action: str
    x: float
    z: float
    speed: float = 0.0
    phase: float = 0.0

    def joints_at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        joints, frames = ACTIONS[self.action].joints_at(t + self.phase)
        return joints + np.array([self.x + self.speed * t, 0.0, self.z]), frames


#: Two people crossing in front of a third who stays in the middle: at t = 5 s all three overlap.
CROSSING: tuple[Walker, ...] = (
    Walker("jumping_jacks", x=-1.6, z=0.6, speed=0.32),
    Walker("squat", x=1.6, z=-0.3, speed=-0.32),
    Walker("jumping_jacks", x=0.0, z=-1.3, phase=0.5),
)

#: More scenes for the identity benchmark (``benchmarks/multi_person.py --scene``): the tracker was
#: tuned on ``crossing`` and ``passing``; ``overlap`` was first run after that, as a check.
SCENES: dict[str, tuple[Walker, ...]] = {
    "crossing": CROSSING,
    # two people passing each other, one squatting, one doing jumping jacks
    "passing": (Walker("squat", x=-1.8, z=0.4, speed=0.36),
                Walker("jumping_jacks", x=1.8, z=-0.5, speed=-0.36, phase=0.3)),
    # two crossing in front of and behind a third who squats in place, slightly off centre
    "overlap": (Walker("jumping_jacks", x=-1.4, z=-0.8, speed=0.28, phase=0.2),
                Walker("jumping_jacks", x=1.5, z=0.5, speed=-0.3),
                Walker("squat", x=0.3, z=-0.2, phase=1.0)),
}


def crowd_camera(size: tuple[int, int]) -> Camera:
    """A fixed camera 5 m in front of the scene's centre; people are about half the frame high."""
    return Camera(np.array([0.0, 0.9, 0.0]), 0.0, 5.0, 0.55 * size[1] / 1.9 * 5.0, size)


def render_crowd(walkers: Sequence[Walker], seconds: float, fps: float,
                 size: tuple[int, int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (BGR frame (H, W, 3) uint8, penn13 keypoints (N, 13, 3) per walker) for every frame."""
    camera = crowd_camera(size)
    for k in range(round(seconds * fps)):
        bodies = [(ACTIONS[w.action], *w.joints_at(k / fps)) for w in walkers]
        image, projected = render_scene(bodies, camera)
        yield image, np.stack([penn13_from_body(uv) for uv in projected])


@dataclass(frozen=True)
class CrowdClip:
    video: Path
    pose: Path
    fps: float

    def ground_truth(self) -> np.ndarray:
        """(T, N, 13, 3) penn13 keypoints of each walker."""
        with np.load(self.pose) as data:
            return data["keypoints"]


def generate_crowd_clip(output_dir: str | os.PathLike | None = None, walkers: Sequence[Walker] = CROSSING,
                        seconds: float = 10.0, fps: float = 30.0, size: tuple[int, int] = (640, 480),
                        force: bool = False) -> CrowdClip:
    """Render the crowd clip into ``output_dir`` (default ``<cache>/demo``), or reuse a cached one."""
    spec = json.dumps([RENDER_VERSION, CROWD_VERSION, [asdict(w) for w in walkers], seconds, fps, list(size)])
    directory = Path(output_dir) if output_dir is not None else cache_dir("demo")
    stem = f"star_har_crowd_{hashlib.sha256(spec.encode()).hexdigest()[:10]}"
    video, pose = directory / f"{stem}.mp4", directory / f"{stem}.pose.npz"
    if force or not (video.is_file() and pose.is_file()):
        directory.mkdir(parents=True, exist_ok=True)
        tmp_video = video.with_name(video.stem + ".part.mp4")
        writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write an mp4 video to {tmp_video}")
        keypoints = []
        try:
            for image, people in render_crowd(walkers, seconds, fps, size):
                writer.write(image)
                keypoints.append(people)
        finally:
            writer.release()
        np.savez_compressed(pose, keypoints=np.stack(keypoints), fps=fps)
        os.replace(tmp_video, video)  # last: a cached video always has its ground truth
    return CrowdClip(video, pose, fps)
