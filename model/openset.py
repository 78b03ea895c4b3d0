"""Open-set recognition: when a window shows an action outside the checkpoint's vocabulary, the
answer should be "no confident action", not the nearest known class.

Three mechanisms, stored with the checkpoint (``meta["open_set"]``, the novelty statistics in its
weights) so that every consumer applies the same rule:

- an explicit :data:`BACKGROUND` class, trained on other datasets' actions; windows whose best
  class is the background are not confident, whatever its probability;
- a temperature ``T`` and a threshold: probabilities are ``softmax(logits / T)`` and the best
  class is shown only when its probability reaches the threshold. Both are calibrated on
  held-out subjects after training (``train.openset``);
- a novelty score (:class:`NoveltyHead`, inside the model graph so every engine computes it): the
  squared Mahalanobis distance from the window's features to the nearest class mean of the
  training windows (one covariance shared by all classes), shown only up to ``max_novelty``.
  Measured on both shipped models, it tells unknown actions from known ones far better than the
  softmax probability does (README "Open set"), so ``star-har calibrate`` fits it and then sets
  no probability threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

#: Class name of the trained "none of the vocabulary" class.
BACKGROUND = "background"


@dataclass(frozen=True)
class OpenSet:
    """How confident a window must be to name an action (``meta["open_set"]`` of a checkpoint)."""

    temperature: float = 1.0
    threshold: float = 0.5
    max_novelty: float | None = None  # None: the model has no novelty head, nothing to compare

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Temperature-scaled softmax over the last axis."""
        scaled = np.asarray(logits, dtype=np.float64) / self.temperature
        scaled -= scaled.max(axis=-1, keepdims=True)
        exp = np.exp(scaled)
        return exp / exp.sum(axis=-1, keepdims=True)

    def confident(self, probabilities: np.ndarray, class_names: list[str],
                  novelty: np.ndarray | float | None = None) -> np.ndarray:
        """Whether the best class of each row of ``probabilities`` is shown as an action
        (``novelty``: the model's score per row, compared when :attr:`max_novelty` is set)."""
        best = np.asarray(probabilities).argmax(axis=-1)
        names = np.asarray(class_names, dtype=object)
        shown = (np.asarray(probabilities).max(axis=-1) >= self.threshold) & (names[best] != BACKGROUND)
        return shown & self.known(novelty)

    def known(self, novelty: np.ndarray | float | None) -> np.ndarray | bool:
        """Whether ``novelty`` is within :attr:`max_novelty` (True where either is unknown)."""
        if self.max_novelty is None or novelty is None:
            return True
        return np.asarray(novelty) <= self.max_novelty

    def to_meta(self) -> dict[str, float | None]:
        return {k: None if v is None else float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_meta(cls, meta: dict) -> OpenSet | None:
        """The calibration stored in a checkpoint's meta, or None when it has none."""
        stored = meta.get("open_set")
        if not stored:
            return None
        novelty = stored.get("max_novelty")
        return cls(float(stored["temperature"]), float(stored["threshold"]),
                   None if novelty is None else float(novelty))


class NoveltyHead(nn.Module):
    """How far a window's features lie from every class seen in training.

    forward(features (B, D)) -> (B,): ``min_k (f - mu_k)^T S^-1 (f - mu_k)``, the squared
    Mahalanobis distance to the nearest class mean ``mu_k`` under the within-class covariance ``S``
    shared by all classes (Lee et al., NeurIPS 2018, on the features the classifier reads). Stored
    whitened: ``whitening`` ``W`` with ``W^T W = S^-1`` and ``means`` ``W mu_k``, so the distance is
    a plain squared Euclidean one. Until :meth:`fit` both are neutral (identity, zero means).
    """

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("whitening", torch.eye(dim))
        self.register_buffer("means", torch.zeros(num_classes, dim))

    @torch.no_grad()
    def fit(self, features: torch.Tensor, labels: torch.Tensor, shrinkage: float = 1e-3) -> None:
        """Class means and shared covariance from training windows' ``features`` ``(N, D)`` and
        ``labels`` ``(N,)``; the covariance gets ``shrinkage`` x its mean variance on the diagonal
        (some feature directions barely vary). A class without windows can never be nearest."""
        features = features.double()
        dim = features.shape[1]
        classes = labels.unique().tolist()
        means = {k: features[labels == k].mean(dim=0) for k in classes}
        centred = torch.cat([features[labels == k] - means[k] for k in classes])
        covariance = centred.T @ centred / max(len(centred) - 1, 1)
        covariance += shrinkage * covariance.diagonal().mean() * torch.eye(dim, dtype=torch.float64)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        whitening = eigenvectors.T / eigenvalues.clamp_min(1e-12).sqrt()[:, None]
        self.whitening.copy_(whitening.float())
        # an absent class sits far beyond any window (finite, so the graph stays NaN-free)
        self.means.fill_(1e6)
        for k, mean in means.items():
            self.means[k] = (whitening @ mean).float()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = features @ self.whitening.T.to(features.dtype)
        means = self.means.to(features.dtype)
        distances = (z * z).sum(-1, keepdim=True) - 2 * z @ means.T + (means * means).sum(-1)
        return distances.min(dim=-1).values.clamp_min(0.0)
