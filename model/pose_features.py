"""Skeleton inputs for the pose-only STAR model: what each joint token carries besides Eq. 1.

The STAR paper builds a joint token from an RGB feature map under the joint's Gaussian (Eq. 1);
without RGB, that token only says *where* the joint is. Skeleton networks owe much of their
accuracy to giving every joint its position, its bone and its motion explicitly ("joint / bone /
motion" streams). :class:`JointKinematics` computes those per joint and frame, and
:class:`TemporalStem` mixes each joint's neighbouring frames before the transformer, so the
first FAttn already compares movements rather than single poses.
"""

from __future__ import annotations

import torch
from torch import nn

from star_har.model.skeleton import DEPTH_CHANNEL, get_layout

#: Features per joint and frame produced by :class:`JointKinematics`, and the ones it appends
#: with depth (the joint's depth, its bone's and its motion's depth components).
KINEMATIC_FEATURES = 7
DEPTH_FEATURES = 3

# Scales that bring each feature to roughly unit spread on Penn Action windows (measured on the
# training split: std of positions 0.2, of bones 0.09, of one-step motion 0.03 in box units).
_POSITION_SCALE, _BONE_SCALE, _MOTION_SCALE = 4.0, 8.0, 24.0


def neighbour_matrix(layout: str) -> torch.Tensor:
    """``(J, J)`` symmetric 0/1 adjacency of the layout's skeleton graph (its bones)."""
    joints = get_layout(layout)
    adjacency = torch.zeros(joints.num_joints, joints.num_joints)
    for a, b in joints.bones:
        adjacency[a, b] = adjacency[b, a] = 1.0
    return adjacency


class JointKinematics(nn.Module):
    """Position, bone and motion of every joint, zero wherever the joint is not seen.

    forward(boxed (B, T, J, 3 or 4), visible (B, T, J)) -> (B, T, J, 7), or (B, T, J, 10) with ``depth``:
        boxed: x, y in the person box (:func:`~star_har.model.heatmaps.normalize_to_person_box`)
        and, with ``depth``, the boxed depth as channel 3.
        * position: (x, y) - 0.5, the joint relative to the box centre;
        * bone: the joint minus the mean of its *visible* graph neighbours. Using all neighbours
          instead of a parent in a tree keeps the feature mirror-symmetric (a flip maps it to the
          twin joint's feature with x negated), and a missing neighbour is simply left out;
        * motion: displacement to the next frame of the window (0 in the last frame);
        * visibility (1/0);
        * with ``depth``: the depth of the position, the bone and the motion, appended after the
          seven 2-D features so that a model without depth widens by new input columns only.
    Every feature of an invisible joint is 0, and bones and motions only use visible endpoints,
    so a joint that is not seen contributes nothing but its "missing" flag.
    """

    def __init__(self, layout: str, depth: bool = False) -> None:
        super().__init__()
        self.depth = depth
        self.register_buffer("adjacency", neighbour_matrix(layout), persistent=False)

    @property
    def num_features(self) -> int:
        return KINEMATIC_FEATURES + (DEPTH_FEATURES if self.depth else 0)

    def forward(self, boxed: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        seen = visible.to(boxed.dtype)[..., None]                       # (B, T, J, 1)
        centred = boxed[..., :2] - 0.5
        if self.depth:  # the boxed depth is already centred on the window's mean depth
            centred = torch.cat((centred, boxed[..., DEPTH_CHANNEL:DEPTH_CHANNEL + 1]), dim=-1)
        position = centred * seen
        neighbours = torch.einsum("jk,btkc->btjc", self.adjacency, seen)
        neighbour_mean = torch.einsum("jk,btkc->btjc", self.adjacency, position) / neighbours.clamp_min(1.0)
        bone = (position - neighbour_mean) * (neighbours > 0).to(position.dtype) * seen
        both = seen[:, 1:] * seen[:, :-1]
        motion = torch.cat(((position[:, 1:] - position[:, :-1]) * both, torch.zeros_like(position[:, :1])), dim=1)
        planar = (position[..., :2] * _POSITION_SCALE, bone[..., :2] * _BONE_SCALE,
                  motion[..., :2] * _MOTION_SCALE, seen)
        if not self.depth:
            return torch.cat(planar, dim=-1)
        return torch.cat((*planar, position[..., 2:] * _POSITION_SCALE, bone[..., 2:] * _BONE_SCALE,
                          motion[..., 2:] * _MOTION_SCALE), dim=-1)


class TemporalStem(nn.Module):
    """Per-joint temporal mixing before the transformer: a residual depth-wise convolution over
    the window's frames (one filter per channel, shared by all joints), then a channel MLP.

    forward(tokens (B, T, J, D)) -> (B, T, J, D). ``kernel`` frames wide, odd, zero-padded.
    """

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.mix = nn.Sequential(nn.GELU(), nn.Linear(dim, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, frames, joints, dim = tokens.shape
        x = self.norm(tokens).permute(0, 2, 3, 1).reshape(batch * joints, dim, frames)
        x = self.conv(x).reshape(batch, joints, dim, frames).permute(0, 3, 1, 2)
        return tokens + self.mix(x)
