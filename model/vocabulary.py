"""What a model needs to know about its class names: which class a mirror image shows."""

from __future__ import annotations

from collections.abc import Sequence

#: Words whose meaning a horizontal flip swaps, in class names split at ``_``.
MIRROR_WORDS = {"left": "right", "right": "left", "cw": "ccw", "ccw": "cw"}


def mirror_classes(class_names: Sequence[str]) -> list[int]:
    """For each class, the class its mirror image shows: ``swipe_left`` <-> ``swipe_right``,
    ``draw_circle_cw`` <-> ``draw_circle_ccw`` (names that differ in :data:`MIRROR_WORDS` only);
    every other class is its own mirror image. A flipped training window takes its mirror's
    label, and a test-time flip reads the mirrored window's scores through the same table."""
    index = {name: i for i, name in enumerate(class_names)}
    mirrored = ["_".join(MIRROR_WORDS.get(word, word) for word in name.split("_")) for name in class_names]
    return [index.get(name, i) for i, name in enumerate(mirrored)]
