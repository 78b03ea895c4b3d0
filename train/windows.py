"""Torch datasets of windows cut from :class:`~train.datasets.base.Sequence` objects.

Each item is a dict: ``keypoints`` ``(F, J, 3)`` float32 in the model's joint layout (``(F, J, 4)``
with the depth channel for models with ``joint_depth``), ``label``
(int), ``sequence`` (index of its sequence, for multi-window averaging) and, for the ``rgb+pose``
modality, ``frames`` ``(3, F, S, S)``: the person-centred crop of :mod:`model.crop` (the one the
live ring buffer uses), normalised with the Kinetics mean/std; keypoints are then in its pixels.

Randomness is drawn from a generator seeded by (seed, epoch, item), so an epoch's windows do not
depend on worker count, process rank or whether training was resumed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from star_har.errors import InvalidInputError
from star_har.model import Checkpoint, TemporalSampling, convert_keypoints
from star_har.model.checkpoint import DEFAULT_INPUT_SIZE
from star_har.model.crop import crop_joints, person_crop, working_frame
from star_har.model.skeleton import DEPTH_CHANNEL, convert_pose
from star_har.model.vocabulary import mirror_classes
from star_har.train.augment import AugmentConfig, augment_keypoints
from star_har.train.camera import CameraRanges, render_window
from star_har.train.datasets.base import Sequence
from star_har.train.sampling import balanced_repeats, evaluation_windows, item_sequences, random_window

# Training crops: the paper's random crops, here around the person (box scale and shift +- 10 %).
CROP_JITTER = 0.1


def read_frames(source: Path, indices: np.ndarray) -> list[np.ndarray]:
    """BGR frames ``(H, W, 3)`` uint8 at ``indices`` (repeats allowed) from a folder of images or a video."""
    wanted = sorted(set(int(i) for i in indices))
    images: dict[int, np.ndarray] = {}
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        for i in wanted:
            image = cv2.imread(str(files[min(i, len(files) - 1)]))
            if image is None:
                raise InvalidInputError(f"unreadable frame {files[min(i, len(files) - 1)]}")
            images[i] = image
    else:
        capture = cv2.VideoCapture(str(source))
        capture.set(cv2.CAP_PROP_POS_FRAMES, wanted[0])
        position, last = wanted[0], None
        for i in wanted:
            while position <= i:
                ok, frame = capture.read()
                last = frame if ok else last
                position += 1
            if last is None:
                raise InvalidInputError(f"unreadable video {source}")
            images[i] = last
        capture.release()
    return [images[int(i)] for i in indices]


class WindowDataset(Dataset):
    """Windows of labelled sequences for training (random) or evaluation (fixed).

    Args:
        sequences: the dataset's sequences (any joint layout; converted to ``layout`` once).
        class_names: label order; a sequence with another label raises ValueError.
        layout: the model's joint layout.
        sampling: frames per window and their span in seconds.
        augment: augmentation for training windows; None for evaluation.
        windows_per_sequence: evaluation windows per sequence (ignored in training, where each
            item is one random window of a sequence, round-robin over them).
        repeats: training items per sequence and epoch (on average, with ``class_balance``).
        class_balance: 0 gives every sequence ``repeats`` items; up to 1, a small class of a source
            gets more of the epoch and a large one less (:func:`~train.sampling.balanced_repeats`).
        modality: ``"pose"`` or ``"rgb+pose"`` (then sequences must have ``frames``).
        cameras: where the random virtual cameras that render training windows of 3-D sequences
            (``points3d``) stand; evaluation keeps the recording camera's view.
        depth: give the keypoints their depth channel (zeros for a sequence without depth).
    """

    def __init__(self, sequences: list[Sequence], class_names: list[str], layout: str,
                 sampling: TemporalSampling, augment: AugmentConfig | None = None,
                 windows_per_sequence: int = 1, repeats: int = 1, modality: str = "pose",
                 image_size: int = 112, seed: int = 0, cameras: CameraRanges = CameraRanges(),
                 crop_region: str = "body", class_balance: float = 0.0, depth: bool = False) -> None:
        index = {name: i for i, name in enumerate(class_names)}
        unknown = sorted({s.label for s in sequences} - set(index))
        if unknown:
            raise InvalidInputError(f"unknown class(es) {', '.join(unknown)}; the class list is {', '.join(class_names)}")
        if modality == "rgb+pose":
            missing = [s.name for s in sequences if s.frames is None]
            if missing:
                raise InvalidInputError(f"the rgb+pose modality needs RGB frames; {len(missing)} sequences have none "
                                 f"(e.g. {missing[0]})")
        self.sequences = sequences
        self.channels = DEPTH_CHANNEL + 1 if depth else DEPTH_CHANNEL
        self.keypoints = [with_channels(convert_pose(s.keypoints, s.layout, layout), self.channels) for s in sequences]
        self.points3d = [None if s.points3d is None else convert_keypoints(s.points3d, s.layout, layout)
                         for s in sequences]
        self.cameras = cameras
        self.labels = [index[s.label] for s in sequences]
        self.mirror = mirror_classes(class_names)
        self.layout, self.sampling, self.augment = layout, sampling, augment
        self.modality, self.image_size, self.seed = modality, image_size, seed
        self.box_joints = crop_joints(crop_region, layout)
        # training item -> its sequence (unbalanced: sequence i % N, the windows of earlier runs)
        self.item_sequence = item_sequences(balanced_repeats([(s.source, s.label) for s in sequences], repeats,
                                                             class_balance))
        self.epoch = 0
        self.windows = None if augment is not None else [
            (s, w) for s, seq in enumerate(sequences)
            for w in evaluation_windows(seq.num_frames, seq.fps, sampling, windows_per_sequence)]

    @classmethod
    def for_checkpoint(cls, checkpoint: Checkpoint, sequences: list[Sequence], windows_per_sequence: int,
                       class_names: list[str] | None = None) -> WindowDataset:
        """Evaluation windows in the inputs ``checkpoint`` takes (its layout, sampling, modality,
        crop size and region); ``class_names`` default to the checkpoint's."""
        return cls(sequences, checkpoint.class_names if class_names is None else class_names,
                   checkpoint.joint_layout, checkpoint.sampling, None, windows_per_sequence=windows_per_sequence,
                   modality=checkpoint.hparams.get("modality", "pose"), image_size=(checkpoint.input_size or DEFAULT_INPUT_SIZE)[0],
                   crop_region=checkpoint.crop_region, depth=checkpoint.joint_depth)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.item_sequence) if self.windows is None else len(self.windows)

    def _recorded_view(self, rng: np.random.Generator) -> bool:
        """Whether a training window of a 3-D sequence keeps the recording camera's view; no draw
        when the share is 0, so that runs without it see the same random windows as before."""
        share = self.augment.recorded_view
        return share > 0 and bool(rng.uniform() < share)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        if self.windows is None:
            rng = np.random.default_rng((self.seed, self.epoch, item))
            seq_index = int(self.item_sequence[item])
            seq = self.sequences[seq_index]
            indices = random_window(seq.num_frames, seq.fps, self.sampling, rng, self.augment.speed)
            flip = bool(rng.uniform() < self.augment.flip)
        else:
            seq_index, indices = self.windows[item]
            seq, rng, flip = self.sequences[seq_index], None, False
        keypoints = self.keypoints[seq_index][indices]
        label = self.labels[seq_index]
        out = {"label": torch.tensor(self.mirror[label] if flip else label), "sequence": torch.tensor(seq_index)}
        if self.modality == "rgb+pose":
            size = (self.image_size, self.image_size)
            work = [working_frame(image, kp, size) for image, kp in zip(read_frames(seq.frames, indices), keypoints)]
            video, keypoints = person_crop(np.stack([w[0] for w in work]), np.stack([w[1] for w in work]), size,
                                           CROP_JITTER if rng is not None else 0.0, rng, self.box_joints)
            if flip:
                video = video[..., ::-1]
            out["frames"] = torch.from_numpy(np.ascontiguousarray(video))
            width = float(self.image_size)
        elif rng is not None and self.points3d[seq_index] is not None and not self._recorded_view(rng):
            camera = self.cameras.sample(rng)
            keypoints, width = render_window(self.points3d[seq_index][indices], camera), camera.width
        else:
            width = seq.width
        if rng is not None:
            keypoints = augment_keypoints(keypoints, self.layout, width, self.augment, rng, flip,
                                          geometric=self.modality == "pose")
        keypoints = with_channels(keypoints, self.channels)  # a rendered window always has depth
        out["keypoints"] = torch.from_numpy(np.ascontiguousarray(keypoints, dtype=np.float32))
        return out


def with_channels(keypoints: np.ndarray, channels: int) -> np.ndarray:
    """Pixel keypoints ``(..., J, 3 or 4)`` with exactly ``channels`` channels: the depth channel
    dropped, or added as zeros (no depth differences: a flat person)."""
    if keypoints.shape[-1] >= channels:
        return keypoints[..., :channels]
    return np.concatenate((keypoints, np.zeros(keypoints.shape[:-1] + (channels - keypoints.shape[-1],),
                                               keypoints.dtype)), axis=-1)
