"""Frame importance that means something: what each frame of a window contributed to the prediction.

The ground truth is occlusion: remove frame ``t`` (replace its joints, and its pixels, by the
interpolation of its neighbours) and measure how much the shown class loses. Computing it takes
``T`` extra windows per window, so models learn to predict it instead: :class:`ImportanceHead`
reads each frame's final tokens and the class tokens and is fitted, with the classifier frozen,
to the occlusion drops of training windows (``star-har importance``). The occlusion helpers work
on numpy arrays, so live occlusion serves every inference engine alike.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
import torch
from torch import nn


def occlude_frame(window: np.ndarray, index: int, axis: int, confidence: bool = False) -> np.ndarray:
    """``window`` with frame ``index`` (along ``axis``) replaced by the mean of its neighbours.

    With ``confidence=True`` the array is keypoints ``(..., J, 3)``: a joint is interpolated from
    the neighbours where it is visible (confidence > 0), copied from the one that sees it, and
    left invisible where neither does.
    """
    frames = window.shape[axis]
    # the first and last frames have one neighbour: both sides read it
    before = np.take(window, index - 1 if index > 0 else index + 1, axis=axis)
    after = np.take(window, index + 1 if index < frames - 1 else index - 1, axis=axis)
    if confidence:
        seen_before, seen_after = before[..., 2:] > 0, after[..., 2:] > 0
        both = seen_before & seen_after
        xy = np.where(both, (before[..., :2] + after[..., :2]) / 2,
                      np.where(seen_before, before[..., :2], after[..., :2]))
        conf = np.where(seen_before | seen_after, np.maximum(before[..., 2:], after[..., 2:]), 0)
        filled = np.concatenate((xy, conf), axis=-1)
    else:
        filled = (before + after) / 2
    out = window.copy()
    slices = [slice(None)] * window.ndim
    slices[axis] = index
    out[tuple(slices)] = filled
    return out


def occluded_windows(frames: np.ndarray | None, keypoints: np.ndarray,
                     indices: list[int] | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """One window ``(1, ...)`` -> one copy per occluded frame: keypoints ``(n, T, J, 3)`` and
    frames ``(n, 3, T, H, W)`` (or None), frame ``indices[i]`` removed in copy ``i`` (all frames
    by default)."""
    indices = list(range(keypoints.shape[1])) if indices is None else indices
    kp = np.concatenate([occlude_frame(keypoints, t, axis=1, confidence=True) for t in indices])
    rgb = None if frames is None else np.concatenate([occlude_frame(frames, t, axis=2) for t in indices])
    return rgb, kp


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def occlusion_drops(logits: np.ndarray, occluded_logits: np.ndarray, target: int) -> np.ndarray:
    """How much removing each frame costs class ``target``: ``log p(target) - log p_t(target)``,
    ``(T,)`` from the window's logits ``(K,)`` and the occluded copies' ``(T, K)``. Ranks frames
    exactly as the drop in probability does (same order), on a scale that does not vanish when
    the model is confident."""
    return log_softmax(logits[None])[0, target] - log_softmax(occluded_logits)[:, target]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two ``(T,)`` vectors (average ranks for ties); 0 if either is
    constant (no ranking to agree with)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(scipy.stats.spearmanr(a, b).statistic)


def interpolation_residuals(boxed: torch.Tensor, min_confidence: float) -> torch.Tensor:
    """How far occlusion would move each joint: ``(B, T, J)`` distances between every joint
    ``(B, T, J, 3)`` (person-box units) and the interpolation of its neighbouring frames that
    :func:`occlude_frame` puts in its place; 1 where occlusion would make the joint appear or
    vanish, 0 where it stays unseen. Removing a frame changes the input by exactly this much."""
    seen = boxed[..., 2] > min_confidence
    index = torch.arange(boxed.shape[1], device=boxed.device)
    last = boxed.shape[1] - 1
    before = torch.where(index > 0, index - 1, index + 1)
    after = torch.where(index < last, index + 1, index - 1)
    xy_b, xy_a, seen_b, seen_a = boxed[:, before, :, :2], boxed[:, after, :, :2], seen[:, before], seen[:, after]
    both = (seen_b & seen_a)[..., None]
    filled = torch.where(both, (xy_b + xy_a) / 2, torch.where(seen_b[..., None], xy_b, xy_a))
    filled_seen = seen_b | seen_a
    distance = (boxed[..., :2] - filled).norm(dim=-1)
    return torch.where(seen & filled_seen, distance, (seen != filled_seen).to(boxed.dtype))


class ImportanceHead(nn.Module):
    """Predicts each frame's occlusion importance from the model's own final tokens.

    forward(frame_tokens (B, T, P, D), cls (B, C, D), residuals (B, T, J)) -> (B, T) non-negative,
    summing to 1: the predicted drops made into bars exactly as measured drops are
    (:func:`bars_from_drops`), so the head and live occlusion draw on one scale. A frame's score
    depends on its tokens, on what the class tokens concluded (the same frame can matter for one
    action and not another) and on how much removing it would change each joint
    (:func:`interpolation_residuals`): occlusion importance is, to first order, sensitivity times
    that change.
    """

    def __init__(self, dim: int, num_joints: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Sequential(nn.Linear(3 * dim + num_joints, dim), nn.GELU(), nn.Linear(dim, 1))

    def scores(self, frame_means: torch.Tensor, cls_mean: torch.Tensor, residuals: torch.Tensor) -> torch.Tensor:
        """Predicted occlusion drops ``(B, T)`` (log-probability units) from pooled tokens:
        ``frame_means`` ``(B, T, D)`` (each frame's tokens averaged), ``cls_mean`` ``(B, D)`` and
        ``residuals`` ``(B, T, J)``."""
        frame = self.norm(frame_means)
        summary = self.norm(cls_mean)[:, None].expand_as(frame)
        change = torch.log1p(residuals * 50.0)  # residuals span 0.001-0.3 box units: compress
        return self.score(torch.cat((frame, frame * summary, summary, change), dim=-1))[..., 0]

    def forward(self, frame_tokens: torch.Tensor, cls: torch.Tensor, residuals: torch.Tensor) -> torch.Tensor:
        return bars_from_drops(self.scores(frame_tokens.mean(dim=2), cls.mean(dim=1), residuals))


def bars_from_drops(drops: torch.Tensor) -> torch.Tensor:
    """Occlusion drops ``(B, T)`` -> importance bars: each frame's share of the positive drops (a
    frame whose removal helps the shown class gets 0; no positive drop gives equal bars)."""
    positive = drops.clamp_min(0.0)
    total = positive.sum(dim=1, keepdim=True)
    return torch.where(total > 0, positive / total.clamp_min(1e-12), torch.full_like(positive, 1.0 / drops.shape[1]))
