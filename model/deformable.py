"""3D deformable transformer (Kim, Ahn, Ko, "Cross-Modal Learning with 3D Deformable Attention for
Action Recognition", ICCV 2023): RGB and pose tokens fused through per-frame cross-modal tokens.

Tokens (per window of T frames, D = ``dim``):

* F_a, F_b: two MC18 (torchvision ``mc3_18``) stages. The paper asks for F_a = C x T x H/2 x W/2
  and F_b = 4C x T x H/8 x W/8; ``layer1`` (64 channels, stride 2) and ``layer3`` (256 = 4 x 64
  channels, stride 8) match both exactly, so C = 64 and ``layer4`` is never run.
* RGB tokens Z: F_b, one token per cell and frame, plus a fixed 3-D sinusoidal position encoding
  of (frame, row, column) (the paper adds "the position embedding" without saying which; a fixed
  one works for any T, H, W). Departure: the paper uses F_b itself (4C = D); we project it with
  Linear + LN to D so that ``dim`` need not be 256.
* Pose tokens P: Gaussian joint heatmaps on F_a's grid, P_t,r = sum over the map of F_a x H_t,r
  (the paper's Eqs. 1-2, code in :mod:`model.heatmaps`), linearly projected to D as in the paper
  (+ LN, ours), plus a learned embedding per joint slot and the sinusoidal frame encoding (ours).
* Cross-modal tokens M = (M_CLS, M_RGB, M_pose) in R^{D x T x 3} (per frame, as in the paper):
  three learned D-vectors shared by the frames, each frame's sinusoidal encoding added (ours: it
  works for any T).

One block (repeated L = ``depth`` times; the paper does not give L):

1. 3D deformable attention (RGB branch). 3D token search (:class:`TokenSearch3D`): Conv3D with
   the paper's kernel k = ``search_kernel`` = 7 and no padding -> LN -> GELU -> a 1 x 1 x 1
   Conv3D (a Linear) giving offsets (dt, dy, dx) through tanh, added to reference points on a
   regular 3-D grid. Z is sampled trilinearly at the moved points (the paper's Algorithm A3;
   :func:`trilinear_sample`, written with gathers so it exports to ONNX/TensorRT). Queries
   X = [M_CLS || M_RGB || Z], keys/values X~ = [M_CLS || M_RGB || Z~]; X + MSA, then
   [Z, M_RGB, M'_CLS] = X + FFN(LN X) (the paper's Eqs. 3-7).
2. Local joint-stride attention (pose branch, the paper's Algorithm A1): windows of
   ``joint_window`` joint tokens over all T frames (stride ``joint_window / 2``), each with the T
   M_pose tokens and the T memorised M'_CLS tokens of step 1 appended; outputs P, M_pose, M*_CLS.
3. [M'_CLS || M*_CLS] is projected (Linear 2D -> D) into one M_CLS.
4. Temporal-stride attention (the paper's Algorithm A2) over [Z || P || M_RGB || M_pose || M_CLS]
   in windows of ``temporal_window`` frames with stride ``temporal_window / 2`` (the paper's
   Fig. 7a: a stride of half the window works best), + FFN.

Head: the paper concatenates the final cross-modal tokens along channels and feeds them to the
classification head; we average them over frames first (the paper does not say how T is
reduced), then LN -> Linear.

Departures from the paper, each also noted where it is made:

* Pre-norm before attention: every sub-layer computes x + Attn(LN x); the paper's Eq. 6 and
  Algorithms A1/A2 add the attention of the un-normalised tokens (x + Attn(x)) and normalise only
  before the FFN (x + FFN(LN x), as we do). Pre-norm keeps the residual stream unnormalised, which
  trains more stably from scratch at our small batch sizes.
* The Linear + LN projection of the RGB tokens (above).
* Offset scale and borders: the paper's Algorithm A3 writes dp = tanh(f_off(Z)) with no scale or
  unit; we scale by ``offset_range * k`` cells (DAT's offset range factor). Points that leave the
  volume are clamped to its border (the paper's bilinear kernel g would give them zero weight,
  i.e. zero features); axes shorter than k are zero-padded up to k (:class:`TokenSearch3D`).
* Tokens in two overlapping windows (joint or temporal) get the mean of their outputs, and the
  cross-modal tokens the mean over all windows; the paper's algorithms do not say how overlapping
  windows are combined.

Where the paper is silent (our choices): the stride of the token search conv (1, the Conv3D
default), depth-wise first search conv (as in DAT), the position encodings, L = 2, window sizes
(4 joints, 4 frames; the paper ablates window sizes in Fig. 7a without stating its choice), the
padding of joint windows, and the frame reduction in the head. The paper does settle: k = 7 with
no padding, windows over all T frames for the joints, the M'_CLS hand-off, 12 frames, AdamW for
90 epochs with a cosine schedule and 5 warm-up epochs, random 224 x 224 crops for training and
centre crops for testing (``configs/deformable_paper.yaml``).

Frame importance (the paper's Fig. 5 idea, for the GUI): in every block the M_CLS queries'
attention mass on each deformed token is given to the frames around the token's sampled time
coordinate with the same linear weights the trilinear sampling uses; summed over blocks and
normalised over T. It comes from the forward pass itself (no second pass).

Multiple people: their joints are concatenated along J (J = ``num_persons`` x ``num_joints``,
person-major); joint windows slide over the concatenation, so neighbouring people's joints meet in
the window that straddles them, and the temporal windows see everyone.

Modality: only ``"rgb+pose"``. The 3D token search samples the video feature volume, and the
pose branch's tokens are pooled from F_a, so without frames the model loses its deformable
attention and its pose features; a pose-only variant would be a windowed skeleton transformer,
which STAR's ``pose`` modality already covers.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from star_har.errors import InvalidInputError
from star_har.model.attention import FeedForward, MultiHeadAttention, sinusoidal_encoding
from star_har.model.backbone import STAGE_CHANNELS, MC18Features
from star_har.model.heatmaps import gaussian_heatmaps, joint_map_tokens
from star_har.model.registry import ActionOutput, register_model

Modality = Literal["rgb+pose"]
POSE_STAGE, RGB_STAGE = "layer1", "layer3"  # F_a (C, stride 2) and F_b (4C, stride 8)


def trilinear_sample(volume: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Sample ``volume`` (B, T, H, W, D) at fractional ``points`` (B, S, 3) = (t, y, x) in cells.

    Cell (i, j, k) sits at the integer point (i, j, k); points outside the volume are clamped to
    its border (a departure: the paper's sampling kernel would give them zero features). Returns (B, S, D). One gather of the 8 corners per point, instead of
    ``grid_sample`` on 5-D inputs, so ONNX and TensorRT can run it.
    """
    batch, frames, height, width, dim = volume.shape
    t = points[..., 0].clamp(0, frames - 1)
    y = points[..., 1].clamp(0, height - 1)
    x = points[..., 2].clamp(0, width - 1)
    corners, weights = [], []
    for coord, size in ((t, frames), (y, height), (x, width)):
        low = coord.floor()
        frac = coord - low
        low = low.long()
        corners.append(torch.stack((low, (low + 1).clamp(max=size - 1)), dim=-1))   # (B, S, 2)
        weights.append(torch.stack((1 - frac, frac), dim=-1))
    index = (corners[0][..., :, None, None] * (height * width)
             + corners[1][..., None, :, None] * width + corners[2][..., None, None, :])
    weight = weights[0][..., :, None, None] * weights[1][..., None, :, None] * weights[2][..., None, None, :]
    num_points = points.shape[1]
    index = index.reshape(batch, num_points * 8, 1).expand(-1, -1, dim)
    values = volume.reshape(batch, frames * height * width, dim).gather(1, index)
    return (values.reshape(batch, num_points, 8, dim) * weight.reshape(batch, num_points, 8, 1)).sum(2)


def stride_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """Windows of ``window`` steps along dim 1 with stride ``window / 2``: (B, L, ...) ->
    (B, L / stride - 1, window, ...). ``window`` must be even and L a multiple of the stride."""
    stride = window // 2
    chunks = x.unflatten(1, (x.shape[1] // stride, stride))
    return torch.cat((chunks[:, :-1], chunks[:, 1:]), dim=2)


def merge_stride_windows(windows: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`stride_windows`: (B, N, window, ...) -> (B, (N + 1) * window / 2, ...),
    each step the mean of its outputs in the (one or two) windows that contain it."""
    stride = windows.shape[2] // 2
    first = windows[:, :, :stride].flatten(1, 2)    # steps 0 .. L - stride - 1
    second = windows[:, :, stride:].flatten(1, 2)   # steps stride .. L - 1
    edge = torch.zeros_like(first[:, :stride])
    total = torch.cat((first, edge), dim=1) + torch.cat((edge, second), dim=1)
    inner = torch.full((total.shape[1] - 2 * stride,), 2.0, dtype=total.dtype, device=total.device)
    ones = torch.ones(stride, dtype=total.dtype, device=total.device)
    count = torch.cat((ones, inner, ones)).reshape(1, -1, *([1] * (total.dim() - 2)))
    return total / count


def grid_position_encoding(frames: int, height: int, width: int, dim: int,
                           device: torch.device | None = None) -> torch.Tensor:
    """Fixed sinusoidal encoding (T, H, W, dim) of each cell's (frame, row, column); dim even."""
    spatial = 2 * (dim // 6)
    parts = [sinusoidal_encoding(torch.arange(size, device=device), part)
             for size, part in ((frames, dim - 2 * spatial), (height, spatial), (width, spatial))]
    return torch.cat((parts[0][:, None, None].expand(-1, height, width, -1),
                      parts[1][None, :, None].expand(frames, -1, width, -1),
                      parts[2][None, None, :].expand(frames, height, -1, -1)), dim=-1)


class TokenSearch3D(nn.Module):
    """3D token search (3DTS): where to sample the RGB volume.

    forward(z (B, T, H, W, D)) -> points (B, S, 3) as (t, y, x) in cells,
    S = T' H' W' with T' = max(T - k + 1, 1) (likewise H', W') for ``kernel`` k: the paper's
    Conv3D with kernel k and no padding (stride 1, the convolution's default; the paper gives no
    stride). One reference point per output cell, at the centre of its k x k x k receptive field
    (a regular 3-D grid), moved by ``tanh(offset) * offset_range * k`` cells along each axis.

    Departures: the paper writes dp = tanh(f_off(Z)) with no scale and no unit; the scale
    ``offset_range * k`` is DAT's offset range factor (``offset_range = 0.5`` lets a point reach
    anywhere in its own receptive field). An axis shorter than k (e.g. the paper's own sparse test
    frames, Fig. A1) is zero-padded up to k, on that axis only, so the search still runs.
    """

    def __init__(self, dim: int, kernel: int = 7, offset_range: float = 0.5) -> None:
        super().__init__()
        if kernel < 1:
            raise InvalidInputError(f"search kernel must be at least 1, got {kernel}")
        self.kernel, self.max_offset = kernel, offset_range * kernel
        # The paper's first Conv3D; depth-wise (as in DAT) is our choice, the paper is silent.
        self.conv = nn.Conv3d(dim, dim, kernel, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.to_offset = nn.Linear(dim, 3)  # the 1 x 1 x 1 Conv3D producing (dt, dy, dx)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        volume = z.permute(0, 4, 1, 2, 3)
        missing = [max(self.kernel - size, 0) for size in z.shape[1:4]]   # zero-pad short axes up to k
        before = [m // 2 for m in missing]
        if any(missing):
            volume = F.pad(volume, [side for b, m in reversed(list(zip(before, missing))) for side in (b, m - b)])
        hidden = self.conv(volume).permute(0, 2, 3, 4, 1)                        # (B, T', H', W', D)
        offsets = torch.tanh(self.to_offset(F.gelu(self.norm(hidden)))) * self.max_offset
        centre = (self.kernel - 1) / 2
        axes = [torch.arange(size, device=z.device, dtype=z.dtype) + (centre - pad)
                for size, pad in zip(hidden.shape[1:4], before)]
        reference = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (T', H', W', 3)
        return (reference + offsets).flatten(1, 3)


class _PreNormBlock(nn.Module):
    """Shared parts of the three attention sub-layers: LN -> MSA (+ residual), LN -> FFN (+ residual).

    The LN before the MSA is our departure (the paper: x + MSA(x)); see the module docstring."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), dropout)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm_mlp(x))


class DeformableAttention3D(_PreNormBlock):
    """3D deformable attention (RGB branch).

    forward(z (B, T, H, W, D), m_rgb (B, T, D), m_cls (B, T, D)) ->
    (z, m_rgb, m'_cls, frame_attention (B, T)): m'_cls is the memorised M'_CLS the pose branch
    reads; frame_attention the M_CLS queries' attention on the deformed tokens, given to frames by
    the tokens' sampled time coordinates (sums to at most 1). The token search reads LN(Z)
    (pre-norm, a departure: module docstring).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 kernel: int = 7, offset_range: float = 0.5) -> None:
        super().__init__(dim, num_heads, mlp_ratio, dropout)
        self.search = TokenSearch3D(dim, kernel, offset_range)

    def forward(self, z: torch.Tensor, m_rgb: torch.Tensor,
                m_cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        frames = z.shape[1]
        x = torch.cat((m_cls, m_rgb, z.flatten(1, 3)), dim=1)
        normed = self.norm(x)  # pre-norm: the paper attends from X itself (module docstring)
        z_normed = normed[:, 2 * frames:].reshape(z.shape)
        points = self.search(z_normed)
        deformed = trilinear_sample(z_normed, points)
        context = torch.cat((deformed, normed[:, frames:2 * frames], normed[:, :frames]), dim=1)
        out, attn = self.attn(normed, context, rows=frames)
        x = self.feed_forward(x + out)
        on_points = attn[:, :, :points.shape[1]].mean(dim=1)                     # (B, S)
        frame_index = torch.arange(frames, device=z.device, dtype=points.dtype)
        to_frame = (1 - (points[..., 0:1].clamp(0, frames - 1) - frame_index).abs()).clamp_min(0)
        frame_attention = torch.einsum("bs,bst->bt", on_points, to_frame)
        return (x[:, 2 * frames:].reshape(z.shape), x[:, frames:2 * frames], x[:, :frames],
                frame_attention)


class JointStrideAttention(_PreNormBlock):
    """Local joint-stride attention (pose branch), the paper's Algorithm A1.

    forward(p (B, T, J, D), m_pose (B, T, D), m_cls (B, T, D)) -> (p, m_pose, m_cls).
    Windows of ``window`` joints (stride ``window / 2``) over ALL T frames: each window attends
    among its T x window joint tokens plus the T M_pose and T M_CLS tokens, so the cost is
    O(T^2 window^2) per window (the paper's Table A1). ``m_cls`` is the memorised M'_CLS output by
    the 3D deformable attention. A token in two windows gets the mean of its two outputs; M_pose
    and M_CLS the mean over all windows (the paper does not say how overlaps are combined). If J
    is not a multiple of the stride (or is smaller than the window), learned padding tokens fill
    the last window (their outputs are dropped; the paper is silent on this case).
    """

    def __init__(self, dim: int, num_heads: int, num_joints: int, window: int = 4,
                 mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__(dim, num_heads, mlp_ratio, dropout)
        if window < 2 or window % 2:
            raise InvalidInputError(f"joint window must be even and at least 2, got {window}")
        self.window = window
        padded = max(window, -(-num_joints // (window // 2)) * (window // 2))  # whole strides, >= 1 window
        missing = padded - num_joints
        self.pad = nn.Parameter(torch.zeros(missing, dim)) if missing else None
        if self.pad is not None:
            nn.init.trunc_normal_(self.pad, std=0.02)

    def forward(self, p: torch.Tensor, m_pose: torch.Tensor,
                m_cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, frames, joints, dim = p.shape
        x = torch.cat((m_pose[:, :, None], m_cls[:, :, None], p), dim=2)         # (B, T, 2+J, D)
        normed = self.norm(x)
        extras, tokens = normed[:, :, :2], normed[:, :, 2:]
        if self.pad is not None:
            tokens = torch.cat((tokens, self.pad.to(tokens.dtype).expand(batch, frames, -1, -1)), dim=2)
        windows = stride_windows(tokens.transpose(1, 2), self.window)            # (B, N, w, T, D)
        num_windows = windows.shape[1]
        window_extras = extras.flatten(1, 2)[:, None].expand(-1, num_windows, -1, -1)  # (B, N, 2T, D)
        seq = torch.cat((window_extras, windows.flatten(2, 3)), dim=2).flatten(0, 1)
        out, _ = self.attn(seq, seq)
        out = out.unflatten(0, (batch, num_windows))
        extras_out = out[:, :, :2 * frames].mean(dim=1).unflatten(1, (frames, 2))   # (B, T, 2, D)
        joints_out = merge_stride_windows(out[:, :, 2 * frames:].unflatten(2, (self.window, frames)))
        update = torch.cat((extras_out, joints_out[:, :joints].transpose(1, 2)), dim=2)
        x = self.feed_forward(x + update)
        return x[:, :, 2:], x[:, :, 0], x[:, :, 1]


class TemporalStrideAttention(_PreNormBlock):
    """Temporal-stride attention: forward(x (B, T, K, D)) -> (B, T, K, D), self-attention among
    the tokens of ``window`` consecutive frames (stride ``window / 2``). T must be a multiple of
    the stride; windows longer than T shrink to T."""

    def __init__(self, dim: int, num_heads: int, window: int = 4, mlp_ratio: float = 4.0,
                 dropout: float = 0.0) -> None:
        super().__init__(dim, num_heads, mlp_ratio, dropout)
        if window < 2 or window % 2:
            raise InvalidInputError(f"temporal window must be even and at least 2, got {window}")
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window = min(self.window, x.shape[1])
        # A constant message: torch.compile cannot trace message closures that capture shapes.
        torch._check(x.shape[1] % (window // 2) == 0,
                     lambda: "the number of frames must be a multiple of temporal_window / 2")
        windows = stride_windows(self.norm(x), window)                            # (B, N, w, K, D)
        seq = windows.flatten(2, 3).flatten(0, 1)                                 # (B N, w K, D)
        out, _ = self.attn(seq, seq)
        out = out.reshape(windows.shape)
        return self.feed_forward(x + merge_stride_windows(out))


class DeformableBlock(nn.Module):
    """One transformer block: deformable (RGB) and joint-stride (pose) branches, the M_CLS merge,
    then temporal-stride attention over all tokens.

    forward(z (B, T, H, W, D), p (B, T, J, D), m (B, T, 3, D) as (CLS, RGB, pose)) ->
    (z, p, m, frame_attention (B, T)).
    """

    def __init__(self, dim: int, num_heads: int, num_joints: int, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, search_kernel: int = 7, offset_range: float = 0.5,
                 joint_window: int = 4, temporal_window: int = 4) -> None:
        super().__init__()
        self.deformable = DeformableAttention3D(dim, num_heads, mlp_ratio, dropout, search_kernel, offset_range)
        self.joint_stride = JointStrideAttention(dim, num_heads, num_joints, joint_window, mlp_ratio, dropout)
        self.merge_cls = nn.Linear(2 * dim, dim)
        self.temporal_stride = TemporalStrideAttention(dim, num_heads, temporal_window, mlp_ratio, dropout)

    def forward(self, z: torch.Tensor, p: torch.Tensor,
                m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        m_cls, m_rgb, m_pose = m.unbind(dim=2)
        z, m_rgb, cls_rgb, frame_attention = self.deformable(z, m_rgb, m_cls)
        p, m_pose, cls_pose = self.joint_stride(p, m_pose, cls_rgb)  # the memorised M'_CLS
        m_cls = self.merge_cls(torch.cat((cls_rgb, cls_pose), dim=-1))  # [M'_CLS || M*_CLS] -> M_CLS
        cells, joints = z.shape[2] * z.shape[3], p.shape[2]
        # [Z || P || M_RGB || M_pose || M_CLS] in the paper; self-attention ignores the order.
        m = torch.stack((m_cls, m_rgb, m_pose), dim=2)
        x = self.temporal_stride(torch.cat((z.flatten(2, 3), p, m), dim=2))
        z = x[:, :, :cells].reshape(z.shape)
        p = x[:, :, cells:cells + joints]
        m = x[:, :, cells + joints:]
        return z, p, m, frame_attention


@register_model("deformable")
class DeformableTransformer(nn.Module):
    """3D deformable transformer action classifier (see the module docstring).

    Args:
        num_classes: number of actions.
        modality: ``"rgb+pose"`` only (why: module docstring).
        num_joints: joints per person in the keypoint input (13 for Penn Action).
        num_persons: people per window; keypoints carry ``num_persons * num_joints`` joints,
            person after person.
        dim, depth, num_heads, mlp_ratio, dropout: token width D, number of blocks L, heads,
            FFN width ratio and dropout.
        sigma: Gaussian heatmap std in cells of F_a's grid (stride 2, so 2 cells = 4 pixels).
        min_confidence: joints at or below this confidence count as invisible.
        backbone_weights: None (random), ``"kinetics400"`` or a ``mc3_18`` state_dict path.
        search_kernel: kernel k of the 3D token search conv (no padding, stride 1): one sampled
            token per k x k x k neighbourhood of Z; the paper's k = 7.
        offset_range: largest offset along each axis, in multiples of ``search_kernel``.
        joint_window / temporal_window: even window sizes (joints / frames); stride = window / 2.

    forward(frames, keypoints) -> ActionOutput(logits (B, K), frame_importance (B, T), novelty (B,) zeros):
        frames: ``(B, 3, T, H, W)`` RGB normalised with the Kinetics mean/std; H, W multiples of
            16 (the paper: 224 and T = 12; below ``8 * search_kernel`` pixels or ``search_kernel``
            frames the token search pads, see :class:`TokenSearch3D`).
        keypoints: ``(B, T, num_persons * num_joints, 3)``: x, y in pixels of ``frames`` and a
            confidence in [0, 1]. T must be even (and a multiple of ``temporal_window / 2``).
    """

    def __init__(self, num_classes: int, modality: Modality = "rgb+pose", num_joints: int = 13,
                 num_persons: int = 1, dim: int = 256, depth: int = 2, num_heads: int = 8,
                 mlp_ratio: float = 4.0, dropout: float = 0.1, sigma: float = 2.0,
                 min_confidence: float = 0.2, backbone_weights: str | os.PathLike | None = None,
                 search_kernel: int = 7, offset_range: float = 0.5, joint_window: int = 4,
                 temporal_window: int = 4) -> None:
        super().__init__()
        if modality != "rgb+pose":
            raise InvalidInputError(f"the deformable model supports modality 'rgb+pose' only, not {modality!r} "
                             "(its 3D token search samples video features; use 'star' for pose only)")
        if dim % 2:
            raise InvalidInputError(f"dim must be even for the position encoding, got {dim}")
        self.hparams = dict(num_classes=num_classes, modality=modality, num_joints=num_joints,
                            num_persons=num_persons, dim=dim, depth=depth, num_heads=num_heads,
                            mlp_ratio=mlp_ratio, dropout=dropout, sigma=sigma,
                            min_confidence=min_confidence,
                            backbone_weights=None if backbone_weights is None else str(backbone_weights),
                            search_kernel=search_kernel, offset_range=offset_range,
                            joint_window=joint_window, temporal_window=temporal_window)
        self.modality, self.sigma, self.min_confidence = modality, sigma, min_confidence
        self.total_joints = num_joints * num_persons
        self.backbone = MC18Features(backbone_weights, middle_stage=POSE_STAGE, last_stage=RGB_STAGE)
        self.rgb_proj = nn.Sequential(nn.Linear(STAGE_CHANNELS[RGB_STAGE], dim), nn.LayerNorm(dim))
        self.pose_proj = nn.Sequential(nn.Linear(STAGE_CHANNELS[POSE_STAGE], dim), nn.LayerNorm(dim))
        self.joint_embed = nn.Parameter(torch.zeros(self.total_joints, dim))
        self.cross_modal = nn.Parameter(torch.zeros(3, dim))  # M = (CLS, RGB, pose)
        nn.init.trunc_normal_(self.joint_embed, std=0.02)
        nn.init.trunc_normal_(self.cross_modal, std=0.02)
        self.blocks = nn.ModuleList(
            DeformableBlock(dim, num_heads, self.total_joints, mlp_ratio, dropout, search_kernel,
                            offset_range, joint_window, temporal_window) for _ in range(depth))
        self.head = nn.Sequential(nn.LayerNorm(3 * dim), nn.Dropout(dropout), nn.Linear(3 * dim, num_classes))

    def tokens(self, frames: torch.Tensor, keypoints: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Z (B, T, H/8, W/8, D), P (B, T, J, D) and M (B, T, 3, D) for one window."""
        f_a, f_b = self.backbone(frames)
        num_frames, height, width = f_b.shape[2:]
        z = self.rgb_proj(f_b.permute(0, 2, 3, 4, 1))
        z = z + grid_position_encoding(num_frames, height, width, z.shape[-1], z.device).to(z.dtype)
        scale = torch.tensor([1.0 / frames.shape[-1], 1.0 / frames.shape[-2], 1.0],
                             dtype=keypoints.dtype, device=keypoints.device)
        heatmaps = gaussian_heatmaps(keypoints * scale, f_a.shape[-2], f_a.shape[-1], self.sigma,
                                     self.min_confidence)
        frame_pos = sinusoidal_encoding(torch.arange(num_frames, device=z.device), z.shape[-1]).to(z.dtype)
        p = self.pose_proj(joint_map_tokens(f_a, heatmaps)) + self.joint_embed + frame_pos[:, None]
        m = (self.cross_modal + frame_pos[:, None]).expand(frames.shape[0], -1, -1, -1)
        return z, p, m

    def forward(self, frames: torch.Tensor | None, keypoints: torch.Tensor) -> ActionOutput:
        if frames is None:
            raise InvalidInputError("the deformable model needs frames (B, 3, T, H, W)")
        if keypoints.shape[2] != self.total_joints:
            raise InvalidInputError(f"expected {self.total_joints} joints (num_persons x num_joints), "
                             f"got {keypoints.shape[2]}")
        torch._check(keypoints.shape[1] % 2 == 0, lambda: "the deformable model needs an even number of frames")
        z, p, m = self.tokens(frames, keypoints)
        importance = torch.zeros(keypoints.shape[:2], dtype=z.dtype, device=z.device)
        for block in self.blocks:
            z, p, m, frame_attention = block(z, p, m)
            importance = importance + frame_attention
        importance = importance / importance.sum(dim=1, keepdim=True)
        logits = self.head(m.mean(dim=1).flatten(1))
        return ActionOutput(logits, importance, torch.zeros_like(logits[:, 0]))  # no novelty head
