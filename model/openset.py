"""Open-set recognition: when a window shows an action outside the checkpoint's vocabulary, the
answer should be "no confident action", not the nearest known class.

Two mechanisms, both stored with the checkpoint (``meta["open_set"]``) so that every consumer
applies the same rule:

- an explicit :data:`BACKGROUND` class, trained on other datasets' actions; windows whose best
  class is the background are not confident, whatever its probability;
- a temperature ``T`` and a threshold: probabilities are ``softmax(logits / T)`` and the best
  class is shown only when its probability reaches the threshold. Both are calibrated on
  held-out subjects after training (``train.openset``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Class name of the trained "none of the vocabulary" class.
BACKGROUND = "background"


@dataclass(frozen=True)
class OpenSet:
    """How confident a window must be to name an action (``meta["open_set"]`` of a checkpoint)."""

    temperature: float = 1.0
    threshold: float = 0.5

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Temperature-scaled softmax over the last axis."""
        scaled = np.asarray(logits, dtype=np.float64) / self.temperature
        scaled -= scaled.max(axis=-1, keepdims=True)
        exp = np.exp(scaled)
        return exp / exp.sum(axis=-1, keepdims=True)

    def confident(self, probabilities: np.ndarray, class_names: list[str]) -> np.ndarray:
        """Whether the best class of each row of ``probabilities`` is shown as an action."""
        best = np.asarray(probabilities).argmax(axis=-1)
        names = np.asarray(class_names, dtype=object)
        return (np.asarray(probabilities).max(axis=-1) >= self.threshold) & (names[best] != BACKGROUND)

    def to_meta(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_meta(cls, meta: dict) -> OpenSet | None:
        """The calibration stored in a checkpoint's meta, or None when it has none."""
        stored = meta.get("open_set")
        return cls(float(stored["temperature"]), float(stored["threshold"])) if stored else None
