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

from star_har.model.registry import ActionOutput


def occlusion_fill(window: torch.Tensor, axis: int, confidence: bool = False,
                   min_confidence: float = 0.0) -> torch.Tensor:
    """What occlusion puts in place of each frame, for every frame at once: frame ``t`` (along
    ``axis``) of the result is the mean of frames ``t - 1`` and ``t + 1`` of ``window`` (the first
    and last frames have one neighbour: both sides read it).

    With ``confidence=True`` the tensor is keypoints ``(..., J, 3)`` (or ``(..., J, 4)``, the depth
    interpolated like x and y): a joint is interpolated from
    the neighbours that see it (confidence > ``min_confidence``), copied from the one that does,
    and gets confidence 0 where neither does. Occluding frame ``t`` changes frame ``t`` only, so
    ``fill - window`` holds every frame's occlusion displacement.
    """
    index = torch.arange(window.shape[axis], device=window.device)
    last = window.shape[axis] - 1
    before = window.index_select(axis, torch.where(index > 0, index - 1, index + 1))
    after = window.index_select(axis, torch.where(index < last, index + 1, index - 1))
    if not confidence:
        return (before + after) / 2
    seen_before, seen_after = before[..., 2:3] > min_confidence, after[..., 2:3] > min_confidence
    filled = torch.where(seen_before & seen_after, (before + after) / 2, torch.where(seen_before, before, after))
    conf = torch.where(seen_before | seen_after, torch.maximum(before[..., 2:3], after[..., 2:3]),
                       torch.zeros_like(before[..., 2:3]))
    return torch.cat((filled[..., :2], conf, filled[..., 3:]), dim=-1)


def occlude_frame(window: np.ndarray, index: int, axis: int, confidence: bool = False) -> np.ndarray:
    """``window`` with frame ``index`` (along ``axis``) replaced as :func:`occlusion_fill` says."""
    fill = occlusion_fill(torch.from_numpy(window), axis, confidence).numpy()
    out = window.copy()
    slices = [slice(None)] * window.ndim
    slices[axis] = index
    out[tuple(slices)] = fill[tuple(slices)]
    return out


def occluded_windows(frames: np.ndarray | None, keypoints: np.ndarray,
                     indices: list[int] | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """One window ``(1, ...)`` -> one copy per occluded frame: keypoints ``(n, T, J, 3)`` and
    frames ``(n, 3, T, H, W)`` (or None), frame ``indices[i]`` removed in copy ``i`` (all frames
    by default)."""
    indices = list(range(keypoints.shape[1])) if indices is None else indices

    def copies(window: np.ndarray, axis: int, confidence: bool) -> np.ndarray:
        fill = occlusion_fill(torch.from_numpy(window), axis, confidence).numpy()
        out = np.repeat(window, len(indices), axis=0)
        for i, t in enumerate(indices):
            slices = [i] + [slice(None)] * (window.ndim - 1)
            slices[axis] = t
            out[tuple(slices)] = fill[(0, *slices[1:])]
        return out

    return None if frames is None else copies(frames, 2, False), copies(keypoints, 1, True)


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
    filled = occlusion_fill(boxed, axis=1, confidence=True, min_confidence=min_confidence)
    filled_seen = filled[..., 2] > min_confidence
    distance = (boxed[..., :2] - filled[..., :2]).norm(dim=-1)
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


class GradientImportance(nn.Module):
    """An action model whose importance is the first-order estimate of the occlusion drop.

    forward(frames (B, 3, T, H, W) or None, keypoints (B, T, J, 3)) -> the wrapped model's
    :class:`~star_har.model.registry.ActionOutput` with ``frame_importance`` (B, T) replaced: the
    shown class's log probability loses, when frame ``t`` is occluded, about
    ``-grad_x log p . (fill_t - x_t)``, the gradient at the window times the change occlusion makes
    to frame ``t`` (:func:`occlusion_fill`; its joints, and its pixels for RGB models). One backward
    pass (about 2.5 forwards on a CPU) instead of the T extra windows of measured occlusion; on the
    shipped Penn checkpoint its bars rank frames like occlusion does with a median Spearman of 0.66
    (README "Frame importance"). Windows of a batch are independent (eval mode), so one backward of
    the summed log probabilities serves the whole batch. The graph holds its own backward pass, so
    it exports to ONNX like any model (``realtime.export``). An inference wrapper: it freezes the
    wrapped model's parameters, whose gradients it never needs.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.requires_grad_(False)

    def forward(self, frames: torch.Tensor | None, keypoints: torch.Tensor) -> ActionOutput:
        with torch.enable_grad():
            keypoints = keypoints.detach().requires_grad_(True)
            frames = None if frames is None else frames.detach().requires_grad_(True)
            out = self.net(frames, keypoints)
            shown = out.logits.float().log_softmax(dim=-1).max(dim=-1).values.sum()
            inputs = [keypoints] if frames is None else [keypoints, frames]
            grads = torch.autograd.grad(shown, inputs)
        with torch.no_grad():
            drops = -(grads[0] * (occlusion_fill(keypoints, 1, confidence=True) - keypoints)).sum(dim=(2, 3))
            if frames is not None:
                drops = drops - (grads[1] * (occlusion_fill(frames, 2) - frames)).sum(dim=(1, 3, 4))
            return ActionOutput(out.logits.detach(), bars_from_drops(drops.float()), out.novelty.detach())
