"""The common currency of all datasets: a :class:`Sequence` of 2D skeletons with its label."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from star_har.errors import InvalidInputError, MissingFileError


@dataclass
class Sequence:
    """One labelled video, as skeletons (and optionally where its RGB frames live).

    keypoints: ``(T, J, 3)`` float32, x, y in pixels of the source video, confidence in [0, 1]
        (0 = invisible or missing), in joint layout ``layout``.
    fps: frame rate of the source, used to cut windows that span ``window_seconds``.
    width, height: source frame size in pixels (horizontal flips mirror around ``width``).
    split: ``"train"``, ``"val"``, ``"test"`` or None when the dataset does not say.
    frames: RGB source for the ``rgb+pose`` modality, a folder of ``NNNNNN.jpg`` or a video file.
    points3d: ``(T, J, 4)`` x, y, z in metres (camera space: x right, y up, z away from the camera)
        and confidence, for 3-D skeleton datasets; training renders them from random virtual
        cameras (:mod:`train.camera`), and ``keypoints`` is their view from the recording camera.
    subject: who performs it (as the dataset names subjects), for cross-subject splits.
    source: the dataset it comes from, when several are trained together (per-source metrics).
    """

    name: str
    label: str
    keypoints: np.ndarray
    layout: str
    fps: float
    width: float
    height: float
    split: str | None = None
    frames: Path | None = None
    points3d: np.ndarray | None = None
    subject: str | None = None
    source: str | None = None

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])


def class_names_of(sequences: list[Sequence]) -> list[str]:
    """Sorted class names present in ``sequences``."""
    return sorted({s.label for s in sequences})


def stratified_split(sequences: list[Sequence], fraction: float, seed: int) -> tuple[list[Sequence], list[Sequence]]:
    """Hold out ``fraction`` of each class (at least one when a class has 2+ sequences).

    Deterministic for a given seed and set of sequence names, whatever the input order.
    """
    by_class: dict[str, list[Sequence]] = defaultdict(list)
    for seq in sorted(sequences, key=lambda s: s.name):
        by_class[seq.label].append(seq)
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label in sorted(by_class):
        members = by_class[label]
        order = rng.permutation(len(members))
        count = int(round(len(members) * fraction))
        if fraction > 0 and len(members) > 1:
            count = min(max(count, 1), len(members) - 1)
        held += [members[i] for i in order[:count]]
        kept += [members[i] for i in order[count:]]
    return kept, held


def subject_split(sequences: list[Sequence], val_subjects: list) -> tuple[list[Sequence], list[Sequence]]:
    """(train, val): validation = the sequences of ``val_subjects`` (cross-subject, never by clip)."""
    held = {str(s) for s in val_subjects}
    unnamed = [s.name for s in sequences if s.subject is None]
    if unnamed:
        raise InvalidInputError(f"val_subjects needs subjects, but e.g. {unnamed[0]} has none")
    unknown = sorted(held - {s.subject for s in sequences})
    if unknown:
        raise InvalidInputError(f"validation subject(s) {', '.join(unknown)} not in the data; subjects: "
                                f"{', '.join(sorted({s.subject for s in sequences}))}")
    return [s for s in sequences if s.subject not in held], [s for s in sequences if s.subject in held]


def require_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or FileNotFoundError with a one-line message naming ``what``."""
    path = Path(path)
    if not path.is_dir():
        raise MissingFileError(f"{what} folder not found: {path}")
    return path
