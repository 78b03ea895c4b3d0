"""Synthetic data in every format the train module reads, generated on the fly for its tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from star_har.train.datasets.npz import save_npz

# A standing person in Penn's 13-joint order (pixels of a 200 x 200 frame).
STANDING = np.array([[100, 30], [80, 55], [120, 55], [75, 85], [125, 85], [72, 115], [128, 115],
                     [88, 120], [112, 120], [88, 160], [112, 160], [88, 195], [112, 195]], np.float32)
MOTIONS = ("arms_up", "squat", "wave")  # distinct under a horizontal flip too


def moving_skeleton(motion: str, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """``(T, 13, 3)`` penn13 keypoints of one of :data:`MOTIONS`, with random phase, rate and noise."""
    t = np.arange(num_frames) / 30.0
    phase = np.sin(2 * np.pi * rng.uniform(0.8, 1.2) * t + rng.uniform(0, 2 * np.pi))
    kps = np.repeat(STANDING[None], num_frames, axis=0).copy()
    if motion == "arms_up":
        kps[:, 3:7, 1] -= (40 + 30 * phase)[:, None]
    elif motion == "wave":
        kps[:, 6, 1] -= 60 + 25 * phase
        kps[:, 4, 1] -= 30
    else:
        kps[:, :11, 1] += (20 + 20 * phase)[:, None]
    kps = kps * rng.uniform(0.7, 1.3) + rng.uniform(-20, 20, 2)
    kps += rng.normal(0, 1.5, kps.shape)
    return np.concatenate((kps, np.ones((num_frames, 13, 1), np.float32)), axis=-1).astype(np.float32)


def make_npz_dataset(root: Path, per_class: int = 10, seed: int = 0, motions=MOTIONS) -> Path:
    """``root/<motion>_<i>.npz`` sequences of 30 to 60 frames."""
    rng = np.random.default_rng(seed)
    for motion in motions:
        for i in range(per_class):
            save_npz(root / f"{motion}_{i}.npz", moving_skeleton(motion, int(rng.integers(30, 60)), rng),
                     "penn13", motion, fps=30.0, width=260, height=260)
    return root


def write_penn_mat(path: Path, action: str = "squat", num_frames: int = 20, seed: int = 0) -> np.ndarray:
    """A Penn Action style .mat; joint 2 is invisible (at (1, 1)) in every frame. Returns (T, 13, 3)."""
    kps = moving_skeleton("squat", num_frames, np.random.default_rng(seed))
    x, y = np.round(kps[..., 0]), np.round(kps[..., 1])
    visibility = np.ones((num_frames, 13), np.uint8)
    visibility[:, 2] = 0
    x[:, 2] = y[:, 2] = 1
    scipy.io.savemat(path, {"x": x, "y": y, "visibility": visibility, "action": action, "pose": "front",
                            "train": np.array([[1]], np.int32), "bbox": np.zeros((num_frames, 4)),
                            "dimensions": np.array([[240, 320, num_frames]], np.uint16),
                            "nframes": np.array([[num_frames]])})
    return kps


def skeleton_text(num_frames: int, bodies: dict[str, np.ndarray]) -> str:
    """NTU ``.skeleton`` text; ``bodies`` maps body id -> (T, 25, 2) colour x, y (NaN rows = absent)."""
    lines = [str(num_frames)]
    for t in range(num_frames):
        present = [(b, xy[t]) for b, xy in bodies.items() if not np.isnan(xy[t]).any()]
        lines.append(str(len(present)))
        for body_id, xy in present:
            lines.append(f"{body_id} 0 1 1 1 1 0 0.1 0.1 2")
            lines.append("25")
            for j, (x, y) in enumerate(xy):
                state = 1 if j == 3 else 2
                lines.append(f"0.1 0.2 3.0 250.0 200.0 {x:.3f} {y:.3f} 0 0 0 0 {state}")
    return "\n".join(lines) + "\n"
