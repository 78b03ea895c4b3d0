"""Gaussian joint heatmaps and joint-map tokens (STAR-Transformer Eq. 1), shared by both models."""

from __future__ import annotations

import torch

from star_har.model.skeleton import DEPTH_CHANNEL


def normalize_to_person_box(keypoints: torch.Tensor, min_confidence: float, margin: float = 0.1) -> torch.Tensor:
    """Map pixel keypoints ``(B, T, J, 3)`` into a person-centred unit square, per window.

    The box spans the visible joints of the whole window (so motion inside the window is kept),
    its longer side maps to ``1 / (1 + 2 * margin)`` and its centre to (0.5, 0.5). This makes
    pose-only models invariant to where the person stands and how large they appear, which is
    what lets a model trained on dataset annotations run on webcam skeletons. Returns
    ``(B, T, J, 3)`` with x, y in [0, 1] and the confidence unchanged; keypoints with a depth
    channel ``(B, T, J, 4)`` keep it, minus the mean depth of the window's visible joints and in
    units of the same box side.
    """
    xy, conf = keypoints[..., :2], keypoints[..., 2:3]
    visible = conf > min_confidence
    big = torch.finfo(xy.dtype).max
    lo = torch.where(visible, xy, torch.full_like(xy, big)).amin(dim=(1, 2), keepdim=True)
    hi = torch.where(visible, xy, torch.full_like(xy, -big)).amax(dim=(1, 2), keepdim=True)
    any_visible = visible.any(dim=2, keepdim=True).any(dim=1, keepdim=True)
    lo = torch.where(any_visible, lo, torch.zeros_like(lo))
    hi = torch.where(any_visible, hi, torch.ones_like(hi))
    centre = (lo + hi) / 2
    side = (hi - lo).amax(dim=-1, keepdim=True).clamp_min(1e-3) * (1 + 2 * margin)
    boxed = ((xy - centre) / side + 0.5, conf)
    if keypoints.shape[-1] <= DEPTH_CHANNEL:
        return torch.cat(boxed, dim=-1)
    depth, seen = keypoints[..., DEPTH_CHANNEL:DEPTH_CHANNEL + 1], visible.to(xy.dtype)
    mean_depth = (depth * seen).sum(dim=(1, 2), keepdim=True) / seen.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)
    return torch.cat((*boxed, (depth - mean_depth) * seen / side[..., :1]), dim=-1)


def gaussian_heatmaps(keypoints: torch.Tensor, height: int, width: int, sigma: float,
                      min_confidence: float) -> torch.Tensor:
    """Render one Gaussian per joint on a ``height x width`` grid.

    keypoints: ``(B, T, J, 3)`` with x, y normalised to [0, 1] over the grid's extent (0 = left
        edge of the first cell, 1 = right edge of the last) and a confidence.
    Returns ``(B, T, J, height, width)``: peak 1 at the joint's cell, ``sigma`` in cells, and all
    zeros for joints whose confidence is not above ``min_confidence`` (invisible or missing).
    """
    dtype, device = keypoints.dtype, keypoints.device
    # Cell centres sit at (i + 0.5) / size in normalised coordinates.
    cols = (torch.arange(width, device=device, dtype=dtype) + 0.5)
    rows = (torch.arange(height, device=device, dtype=dtype) + 0.5)
    x = keypoints[..., 0:1] * width   # (B, T, J, 1)
    y = keypoints[..., 1:2] * height
    gx = torch.exp(-((cols - x) ** 2) / (2 * sigma ** 2))  # (B, T, J, W)
    gy = torch.exp(-((rows - y) ** 2) / (2 * sigma ** 2))  # (B, T, J, H)
    visible = (keypoints[..., 2] > min_confidence).to(dtype)[..., None, None]
    return gy[..., :, None] * gx[..., None, :] * visible


def joint_map_tokens(features: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
    """Eq. 1: a token per joint and frame, the feature map summed under the joint's heatmap.

    features: ``(B, C, T, H, W)`` per-frame feature maps, or ``(C, H, W)`` one map shared by all
        frames and samples (the pose-only feature field).
    heatmaps: ``(B, T, J, H, W)``.
    Returns ``(B, T, J, C)``.
    """
    if features.dim() == 3:
        return torch.einsum("chw,btjhw->btjc", features, heatmaps)
    return torch.einsum("bcthw,btjhw->btjc", features, heatmaps)
