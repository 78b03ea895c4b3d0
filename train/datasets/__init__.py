"""Dataset loaders. Each returns a list of :class:`Sequence`; :func:`load_splits` turns a config's
``data`` section into training and validation sequences plus the class list."""

from __future__ import annotations

import logging
from typing import Any

from star_har.errors import InvalidInputError
from star_har.train.datasets.base import Sequence, class_names_of, stratified_split, subject_split

log = logging.getLogger(__name__)

KINDS = ("penn_action", "ntu", "clips", "npz", "utd_mhad", "msr_action3d", "everyday")


def load_sequences(data: dict[str, Any], root: str | None, skip_corrupt: bool = False) -> list[Sequence]:
    """All sequences of the dataset at ``root`` described by a config ``data`` section
    (``skip_corrupt``: skip and count unreadable Penn Action files instead of failing)."""
    kind = data["kind"]
    if kind == "penn_action":
        from star_har.train.datasets.penn import load_penn_action
        return load_penn_action(root, skip_corrupt=skip_corrupt)
    if kind == "ntu":
        from star_har.train.datasets.ntu import load_ntu
        return load_ntu(root, protocol=data.get("protocol", "xsub"))
    if kind == "clips":
        from star_har.train.datasets.clips import load_clip_folder
        return load_clip_folder(root, pose_model=data.get("pose_model"), pose_cache=data.get("pose_cache"))
    if kind == "npz":
        from star_har.train.datasets.npz import load_npz_folder
        return load_npz_folder(root)
    if kind == "utd_mhad":
        from star_har.train.datasets.kinect import load_utd_mhad
        return load_utd_mhad(root)
    if kind == "msr_action3d":
        from star_har.train.datasets.kinect import load_msr_action3d
        return load_msr_action3d(root, dims=str(data.get("dims", "3d")))
    if kind == "everyday":
        from star_har.train.datasets.everyday import load_everyday
        return load_everyday(data)
    raise InvalidInputError(f"unknown dataset kind {kind!r}; known: {', '.join(KINDS)}")


def load_splits(data: dict[str, Any], skip_corrupt: bool = False) -> tuple[list[Sequence], list[Sequence], list[str]]:
    """(train, validation, class_names) for a config ``data`` section.

    Validation comes from ``val_root`` when given, else from the subjects ``val_subjects``, else
    from the sequences marked ``val``/``test`` by the dataset's own split (``everyday`` marks each
    source's validation subjects), else from a stratified ``val_fraction`` held out with
    ``split_seed``. ``classes`` keeps (and orders) only the listed classes.
    """
    if not data.get("root") and data.get("kind") != "everyday":
        raise InvalidInputError("no dataset given: set data.root in the config or pass --data")
    sequences = load_sequences(data, data.get("root"), skip_corrupt)
    if data.get("val_root"):
        train, val = sequences, load_sequences(data, data["val_root"], skip_corrupt)
    elif data.get("val_subjects") and data.get("kind") != "everyday":
        train, val = subject_split(sequences, data["val_subjects"])
    elif any(s.split in ("val", "test") for s in sequences):
        train = [s for s in sequences if s.split not in ("val", "test")]
        val = [s for s in sequences if s.split in ("val", "test")]
    else:
        train, val = stratified_split(sequences, float(data["val_fraction"]), int(data["split_seed"]))
    classes = list(data["classes"]) if data.get("classes") else class_names_of(train)
    if data.get("classes"):
        missing = sorted(set(classes) - {s.label for s in train})
        if missing:
            raise InvalidInputError(f"class(es) {', '.join(missing)} have no training sequence")
        train = [s for s in train if s.label in classes]
        val = [s for s in val if s.label in classes]
    if not train:
        raise InvalidInputError(f"no training sequences in {data.get('root') or 'data.sources'}")
    log.info("%d training and %d validation sequences, %d classes", len(train), len(val), len(classes))
    return train, val, classes
