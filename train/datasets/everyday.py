"""Several datasets trained as one: ``data.kind: everyday``.

``data.sources`` maps a source name to that dataset's own ``data`` section (``kind``, ``root``,
``val_subjects``, ``dims``, ``pose_model`` ...; window sampling stays in the top section). Each
source is split by subject (``val_subjects``), never by clip, so validation measures people the
model has not seen; a source without subjects (Penn Action) may name its own ``val_fraction``
and ``split_seed`` instead (a stratified split by video, the one its single-dataset config uses). ``data.merge`` maps one class of the shared vocabulary to the source classes
that mean the same thing (``wave: [wave_hand, wave, high_arm_wave]``); classes not listed keep
their names, and identical names from two sources are one class anyway. Classes listed in
``data.background`` are trained as the single :data:`~model.openset.BACKGROUND` class: actions
outside the vocabulary that the model should learn to answer "none of mine" to. A source's
``skip_classes`` are left out of both splits, so the model never sees them: held back as actions
that are really unknown, to measure the open set on.
Every sequence records its ``source``, for per-source metrics.
"""

from __future__ import annotations

from typing import Any

from star_har.errors import InvalidInputError
from star_har.model.openset import BACKGROUND
from star_har.train.datasets.base import Sequence, stratified_split, subject_split


def merge_map(merge: dict[str, list[str]] | None) -> dict[str, str]:
    """Source class -> vocabulary class, from a ``data.merge`` table."""
    rename: dict[str, str] = {}
    for target, members in (merge or {}).items():
        for member in members:
            if rename.get(member, target) != target:
                raise InvalidInputError(f"class {member!r} is merged into both {rename[member]!r} and {target!r}")
            rename[member] = target
    return rename


def load_everyday(data: dict[str, Any]) -> list[Sequence]:
    """The sequences of every source, relabelled into one vocabulary, each with ``split`` set."""
    from star_har.train.datasets import load_sequences

    sources = data.get("sources")
    if not sources:
        raise InvalidInputError("data.kind everyday needs data.sources: {name: {kind, root, val_subjects}}")
    rename = merge_map(data.get("merge"))
    background = set(data.get("background") or ())
    sequences: list[Sequence] = []
    for name, source in sources.items():
        options = {**data, "kind": None, "sources": None, **source}  # a source's own section
        if not options.get("root") or options.get("kind") in (None, "everyday"):
            raise InvalidInputError(f"data.sources.{name} needs a root and a dataset kind other than everyday")
        loaded = load_sequences(options, options["root"])
        skipped = set(source.get("skip_classes") or ())
        unknown = sorted(skipped - {seq.label for seq in loaded})
        if unknown:
            raise InvalidInputError(f"data.sources.{name}.skip_classes: no class {', '.join(unknown)} in {options['root']}")
        loaded = [seq for seq in loaded if seq.label not in skipped]
        if options.get("val_subjects"):
            train, val = subject_split(loaded, options["val_subjects"])
        elif "val_fraction" in source:  # the top section's default fraction is not the source's choice
            train, val = stratified_split(loaded, float(source["val_fraction"]), int(source.get("split_seed", 0)))
        else:
            train, val = loaded, []
        for split, members in (("train", train), ("val", val)):
            for seq in members:
                label = rename.get(seq.label, seq.label)
                seq.label = BACKGROUND if label in background else label
                seq.split, seq.source = split, name
        sequences += loaded
    return sequences
