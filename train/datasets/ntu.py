"""NTU RGB+D 60/120 (Shahroudy et al. 2016; Liu et al. 2019): ``SsssCcccPpppRrrrAaaa.skeleton``.

Text format: frame count; per frame a body count; per body a line of 10 body fields, the joint
count (25) and one line per joint ``x y z depthX depthY colorX colorY orientW orientX orientY
orientZ trackingState``. We keep the 2D colour-space coordinates (1920 x 1080 pixels) of one
person: the body tracked in most frames, ties broken by how much it moves (the actor rather than
a bystander). trackingState 2 / 1 / 0 (tracked / inferred / not tracked) becomes confidence
1 / 0.5 / 0. RGB videos ``<name>_rgb.avi`` are used when found next to the skeletons, in
``rgb/`` or in a sibling ``nturgb+d_rgb/`` folder.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from star_har.errors import InvalidInputError, MissingFileError
from star_har.train.datasets.base import Sequence, require_dir

log = logging.getLogger(__name__)

NTU_FPS = 30.0
NTU_SIZE = (1920.0, 1080.0)
NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
# Cross-subject training subjects (NTU 60, then the additions of NTU 120).
XSUB_TRAIN = {1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38, 45, 46, 47, 49,
              50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93,
              94, 95, 97, 98, 100, 103}
XVIEW_TRAIN = {2, 3}  # cameras; camera 1 is the test view
NTU60_ACTIONS = (
    "drink_water", "eat_meal", "brush_teeth", "brush_hair", "drop", "pick_up", "throw", "sit_down",
    "stand_up", "clapping", "reading", "writing", "tear_up_paper", "wear_jacket", "take_off_jacket",
    "wear_shoe", "take_off_shoe", "wear_glasses", "take_off_glasses", "put_on_hat", "take_off_hat",
    "cheer_up", "hand_waving", "kicking_something", "reach_into_pocket", "hopping", "jump_up",
    "phone_call", "play_with_phone", "typing_on_keyboard", "pointing", "taking_selfie", "check_time",
    "rub_hands", "nod_head", "shake_head", "wipe_face", "salute", "palms_together", "cross_hands",
    "sneeze_cough", "staggering", "falling", "touch_head", "touch_chest", "touch_back", "touch_neck",
    "nausea_vomiting", "fan_self", "punch_slap", "kick_person", "push_person", "pat_on_back",
    "point_at_person", "hug", "give_object", "touch_pocket", "handshake", "walk_towards", "walk_apart")


def action_name(action: int) -> str:
    """Readable label for NTU action ``A{action}`` (NTU 120's extra classes keep their code)."""
    return NTU60_ACTIONS[action - 1] if 1 <= action <= len(NTU60_ACTIONS) else f"A{action:03d}"


def split_of(name: str, protocol: str) -> str:
    """``train`` or ``test`` for a sequence name under ``xsub``, ``xview`` or ``xset``."""
    setup, camera, subject, _, _ = (int(v) for v in NAME.search(name).groups())
    if protocol == "xsub":
        return "train" if subject in XSUB_TRAIN else "test"
    if protocol == "xview":
        return "train" if camera in XVIEW_TRAIN else "test"
    if protocol == "xset":
        return "train" if setup % 2 == 0 else "test"
    raise InvalidInputError(f"unknown NTU protocol {protocol!r}; use xsub, xview or xset")


def read_skeleton(path: str | Path) -> np.ndarray:
    """The main person of one ``.skeleton`` file as ``(T, 25, 3)`` colour-space keypoints."""
    path = Path(path)
    try:
        tokens = path.read_text().split("\n")
        pos = 0

        def line() -> list[str]:
            nonlocal pos
            pos += 1
            return tokens[pos - 1].split()

        num_frames = int(line()[0])
        bodies: dict[str, np.ndarray] = {}
        for t in range(num_frames):
            for _ in range(int(line()[0])):
                body_id = line()[0]
                joints = np.array([line() for _ in range(int(line()[0]))], dtype=np.float64)
                track = bodies.setdefault(body_id, np.zeros((num_frames, 25, 3), np.float32))
                track[t, :, :2] = joints[:25, 5:7]
                track[t, :, 2] = np.choose(joints[:25, 11].astype(int).clip(0, 2), (0.0, 0.5, 1.0))
    except (ValueError, IndexError) as exc:
        raise InvalidInputError(f"corrupt NTU skeleton file {path}: {exc}") from None
    if not bodies:
        raise InvalidInputError(f"no body in NTU skeleton file {path}")

    def rank(track: np.ndarray) -> tuple[int, float]:
        present = track[..., 2].max(axis=1) > 0
        return int(present.sum()), float(track[present, :, :2].std(axis=0).sum()) if present.any() else 0.0

    return max(bodies.values(), key=rank)


def _rgb_video(root: Path, name: str) -> Path | None:
    for folder in (root, root / "rgb", root.parent / "nturgb+d_rgb"):
        video = folder / f"{name}_rgb.avi"
        if video.is_file():
            return video
    return None


def load_ntu(root: str | Path, protocol: str = "xsub", skip_corrupt: bool = True) -> list[Sequence]:
    """All ``.skeleton`` files under ``root`` with their ``protocol`` split (train / test)."""
    root = require_dir(root, "NTU RGB+D skeleton")
    files = sorted(p for p in root.rglob("*.skeleton") if NAME.search(p.name))
    if not files:
        raise MissingFileError(f"no NTU RGB+D .skeleton files (named SsssCcccPpppRrrrAaaa) in {root}")
    sequences, bad = [], 0
    for path in tqdm(files, desc="NTU skeletons", leave=False, disable=len(files) < 200):
        try:
            keypoints = read_skeleton(path)
        except ValueError as exc:
            if not skip_corrupt:
                raise
            bad += 1
            log.warning("%s", exc)
            continue
        name = path.name.split(".")[0]
        action = int(NAME.search(name).group(5))
        sequences.append(Sequence(name=name, label=action_name(action), keypoints=keypoints, layout="ntu25",
                                  fps=NTU_FPS, width=NTU_SIZE[0], height=NTU_SIZE[1],
                                  split=split_of(name, protocol), frames=_rgb_video(root, name)))
    if bad:
        log.warning("skipped %d unreadable NTU skeleton files of %d", bad, len(files))
    if not sequences:
        raise InvalidInputError(f"no readable NTU RGB+D skeleton in {root}")
    return sequences
