"""STAR-Transformer (Ahn, Kim, Hong, Ko, WACV 2023): spatio-temporal cross attention over
global-grid and joint-map tokens.

Token sets (per window of T frames):

* global-grid (GG) tokens: the last MC18 stage, one token per cell and frame (Eq. 2, with CLS_glob);
* joint-map (JM) tokens: a middle MC18 stage summed under each joint's Gaussian heatmap (Eq. 1),
  plus ``pos`` (Eq. 3, with CLS_joint). ``pos`` = a learned per-joint embedding + a fixed
  sinusoidal encoding of the frame index, so joint tokens know which joint and which moment
  they describe; GG tokens get no position, as in the paper;
* CLS_total (Eq. 4). The three class tokens are the model's "multi-class token".

Layers (Eqs. 11-14), ``z`` = class tokens + all frame tokens::

    z1 = LN(FAttn(z) + z)                      # full spatio-temporal self-attention
    z2 = LN(STA(z1) + z1)                      # ZAttn in encoder layers, BAttn in decoder layers
    z3 = LN(MLP(z2) + z2)

ZAttn splits the frames into odd (1st, 3rd, ...) and even ones: a' = attention with queries from
the odd frames and keys/values from the even frames, a'' the reverse; the outputs go back to
their frames' places. BAttn does the same with the front and back halves of the window (b', b'').

How the class tokens take part in the split attentions (the paper leaves this open): they join
*both* the query set and the key/value set of each direction, so they read from and are read
by both halves; their two outputs are averaged. Frame tokens of one half therefore never see
another token of their own half inside STA, which is what the tests check by perturbation.

The ``pose`` modality keeps the same transformer and Eq. 1, with a learned spatial feature field
``(C_f, S, S)`` in place of the CNN map: each joint token is the field integrated under the joint's
Gaussian, i.e. a smooth learned embedding of where the joint is. Keypoints are first mapped into
a person-centred box per window (translation and scale invariance). There are no GG tokens and so
no CLS_glob in this mode.

Additions to the paper (all off by default, so the defaults are the paper's model; the shipped
pose checkpoints switch them on, see ``configs/star_pose_penn.yaml``):

* ``joint_features=("field", "kinematics")``: each joint token also embeds the joint's position,
  bone and motion (:class:`~star_har.model.pose_features.JointKinematics`), the inputs skeleton
  networks rely on; Eq. 1 alone tells the transformer where a joint is, not how it moves;
* ``joint_depth=True``: the keypoints carry each joint's depth (channel
  :data:`~star_har.model.skeleton.DEPTH_CHANNEL`: Kinect depth through the virtual camera, or
  MediaPipe's world depth, :func:`star_har.pose.world_depth`) and the kinematics add its position, bone and motion components.
  The paper's inputs are 2-D; motions towards the camera (push, knock, catch) barely move a joint
  in a frontal 2-D view, and depth is what tells them apart;
* ``temporal_kernel=k``: a per-joint depth-wise temporal convolution before the first layer
  (:class:`~star_har.model.pose_features.TemporalStem`);
* ``flip_test=True``: in eval mode the window and its mirror image are classified together and
  their logits averaged (test-time flip, one batched call). ``mirror_classes`` says which class a
  mirror image shows (``swipe_left`` <-> ``swipe_right``, :func:`~star_har.model.vocabulary.mirror_classes`,
  the table the flipped training windows take their labels from): the mirrored window's logits are
  read through it before the average.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from star_har.errors import InvalidInputError
from star_har.model.attention import FeedForward, MultiHeadAttention, sinusoidal_encoding
from star_har.model.backbone import STAGE_CHANNELS, MC18Features
from star_har.model.heatmaps import gaussian_heatmaps, joint_map_tokens, normalize_to_person_box
from star_har.model.importance import ImportanceHead, interpolation_residuals
from star_har.model.openset import NoveltyHead
from star_har.model.pose_features import JointKinematics, TemporalStem
from star_har.model.registry import ActionOutput, register_model
from star_har.model.skeleton import DEPTH_CHANNEL, get_layout

Modality = Literal["rgb+pose", "pose"]
JOINT_FEATURES = ("field", "kinematics")
SplitMode = Literal["zigzag", "binary"]


class SplitTemporalAttention(nn.Module):
    """ZAttn (``zigzag``: odd vs even frames) or BAttn (``binary``: front vs back half).

    forward(frames (B, T, P, D), cls (B, C, D)) -> (frames (B, T, P, D), cls (B, C, D)).
    T must be even. Each half attends to the other half (plus the class tokens) only.
    """

    def __init__(self, dim: int, num_heads: int, mode: SplitMode, dropout: float = 0.0) -> None:
        super().__init__()
        if mode not in ("zigzag", "binary"):
            raise InvalidInputError(f"split mode must be 'zigzag' or 'binary', not {mode!r}")
        self.mode = mode
        self.attn = MultiHeadAttention(dim, num_heads, dropout)

    def split(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "zigzag":
            return frames[:, 0::2], frames[:, 1::2]
        half = frames.shape[1] // 2
        return frames[:, :half], frames[:, half:]

    def merge(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        if self.mode == "zigzag":  # interleave back: first[0], second[0], first[1], ...
            return torch.stack((first, second), dim=2).flatten(1, 2)
        return torch.cat((first, second), dim=1)

    def forward(self, frames: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        num_cls = cls.shape[1]
        first, second = self.split(frames)
        first_seq = torch.cat((cls, first.flatten(1, 2)), dim=1)
        second_seq = torch.cat((cls, second.flatten(1, 2)), dim=1)
        out_first, _ = self.attn(first_seq, second_seq)   # a' / b'
        out_second, _ = self.attn(second_seq, first_seq)  # a'' / b''
        cls_out = (out_first[:, :num_cls] + out_second[:, :num_cls]) / 2
        first_out = out_first[:, num_cls:].reshape(first.shape)
        second_out = out_second[:, num_cls:].reshape(second.shape)
        return self.merge(first_out, second_out), cls_out


class STARLayer(nn.Module):
    """One encoder (``zigzag``) or decoder (``binary``) layer, Eqs. 11-14.

    forward(frames (B, T, P, D), cls (B, C, D)) -> (frames, cls, frame_attention (B, T)),
    ``frame_attention`` = FAttn weight from the class tokens to each frame's tokens.
    """

    def __init__(self, dim: int, num_heads: int, mode: SplitMode, mlp_ratio: float = 4.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.full_attn = MultiHeadAttention(dim, num_heads, dropout)
        self.split_attn = SplitTemporalAttention(dim, num_heads, mode, dropout)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), dropout)
        self.norm_full, self.norm_split, self.norm_mlp = (nn.LayerNorm(dim) for _ in range(3))

    def forward(self, frames: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, num_frames, per_frame, dim = frames.shape
        num_cls = cls.shape[1]
        z = torch.cat((cls, frames.flatten(1, 2)), dim=1)
        full, attn = self.full_attn(z, z, rows=num_cls)
        z = self.norm_full(full + z)                                          # Eq. 11
        cls, frames = z[:, :num_cls], z[:, num_cls:].reshape(batch, num_frames, per_frame, dim)
        split_frames, split_cls = self.split_attn(frames, cls)
        z = self.norm_split(torch.cat((split_cls, split_frames.flatten(1, 2)), dim=1) + z)  # Eqs. 12-13
        z = self.norm_mlp(self.mlp(z) + z)                                    # Eq. 14
        frame_attention = attn[:, :, num_cls:].reshape(batch, num_cls, num_frames, per_frame).sum(-1).mean(1)
        return z[:, num_cls:].reshape(batch, num_frames, per_frame, dim), z[:, :num_cls], frame_attention


@register_model("star")
class STARTransformer(nn.Module):
    """STAR-Transformer action classifier.

    Args:
        num_classes: number of actions.
        modality: ``"rgb+pose"`` (the paper) or ``"pose"`` (skeleton only, no CNN).
        num_joints: joints per person in the keypoint input (13 for Penn Action).
        dim, num_heads, mlp_ratio, dropout: transformer width and regularisation.
        depth: L, the number of encoder layers and, again, of decoder layers (2L in total).
        sigma: Gaussian heatmap std in cells of the joint feature grid.
        min_confidence: joints at or below this confidence count as invisible.
        backbone_weights: None (random), ``"kinetics400"`` or a ``mc3_18`` state_dict path.
        joint_stage / global_grid: MC18 stage for JM tokens; GG grid side (the last map is
            average-pooled to ``global_grid x global_grid`` per frame, None keeps it as is).
        field_size / field_channels: the pose-only feature field's side and channels.
        layout: the joint layout's name (needed by ``kinematics`` and ``flip_test``).
        joint_features: what a joint token embeds, a subset of ``("field", "kinematics")``;
            "field" is Eq. 1 (the CNN map, or the learned field in the ``pose`` modality).
        temporal_kernel: frames of the per-joint temporal stem; 0 = none (the paper).
        joint_depth: the keypoints have a depth channel and the kinematics use it (``pose``
            modality with ``kinematics`` only: RGB crops rescale x and y, not depth).
        flip_test: average the logits of the window and its mirror image in eval mode.
        mirror_classes: for each class, the class its mirror image shows (None: itself), for
            ``flip_test``.
        importance_head: report frame importance from an :class:`ImportanceHead` fitted to
            occlusion (``star-har importance``) instead of the class tokens' FAttn rows.
        novelty_head: report a :class:`~star_har.model.openset.NoveltyHead` score fitted to the
            training windows' features (``star-har calibrate``) instead of zeros.

    forward(frames, keypoints) -> ActionOutput(logits (B, K), frame_importance (B, T), novelty (B,)):
        frames: ``(B, 3, T, H, W)`` RGB normalised with the Kinetics mean/std, or None in the
            ``pose`` modality; H and W multiples of 16.
        keypoints: ``(B, T, J, 3)``: x, y in pixels of ``frames`` (any pixel frame in ``pose``
            mode) and a confidence in [0, 1]; ``(B, T, J, 4)`` with ``joint_depth``, the depth
            last (a model without it ignores a fourth channel). T must be even.
    """

    #: Parameters with one row per joint of the layout (fine-tuning into another layout carries
    #: each row to the joint that stands in for it, see ``skeleton.joint_stand_ins``).
    joint_parameters: tuple[str, ...] = ("joint_embed",)
    #: Parameters that read the kinematic features: switching ``joint_depth`` on appends input
    #: columns to them (fine-tuning starts them at zero, so the model starts as it was).
    widened_parameters: tuple[str, ...] = ("kinematics_embed.0.weight",)

    def __init__(self, num_classes: int, modality: Modality = "rgb+pose", num_joints: int = 13,
                 dim: int = 256, depth: int = 3, num_heads: int = 8, mlp_ratio: float = 4.0,
                 dropout: float = 0.1, sigma: float = 1.0, min_confidence: float = 0.2,
                 backbone_weights: str | os.PathLike | None = None, joint_stage: str = "layer2",
                 global_grid: int | None = None, field_size: int = 16, field_channels: int = 64,
                 layout: str | None = None, joint_features: Sequence[str] = ("field",),
                 temporal_kernel: int = 0, joint_depth: bool = False, flip_test: bool = False,
                 mirror_classes: Sequence[int] | None = None,
                 importance_head: bool = False, novelty_head: bool = False) -> None:
        super().__init__()
        if modality not in ("rgb+pose", "pose"):
            raise InvalidInputError(f"modality must be 'rgb+pose' or 'pose', not {modality!r}")
        if dim % 2:  # the sinusoidal frame encoding needs an even width
            raise InvalidInputError(f"dim must be even, got {dim}")
        joint_features = tuple(joint_features)
        if not joint_features or set(joint_features) - set(JOINT_FEATURES):
            raise InvalidInputError(f"joint_features must be a non-empty subset of {JOINT_FEATURES}, "
                                    f"got {joint_features}")
        if temporal_kernel < 0 or (temporal_kernel and temporal_kernel % 2 == 0):
            raise InvalidInputError(f"temporal_kernel must be 0 or odd, got {temporal_kernel}")
        if joint_depth and ("kinematics" not in joint_features or modality != "pose"):
            # RGB crops rescale x and y but not depth: depth is for skeletons only
            raise InvalidInputError("joint_depth needs the pose modality and the 'kinematics' joint features")
        if layout is None and ("kinematics" in joint_features or flip_test):
            raise InvalidInputError("joint_features 'kinematics' and flip_test need the joint layout")
        if layout is not None and get_layout(layout).num_joints != num_joints:
            raise InvalidInputError(f"layout {layout} has {get_layout(layout).num_joints} joints, "
                                    f"not num_joints={num_joints}")
        mirror = list(range(num_classes)) if mirror_classes is None else [int(c) for c in mirror_classes]
        if sorted(mirror) != list(range(num_classes)) or any(mirror[c] != i for i, c in enumerate(mirror)):
            raise InvalidInputError(f"mirror_classes must pair each of the {num_classes} classes with itself "
                                    f"or with a class that pairs back, got {mirror_classes}")
        self.hparams = dict(num_classes=num_classes, modality=modality, num_joints=num_joints,
                            dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                            dropout=dropout, sigma=sigma, min_confidence=min_confidence,
                            backbone_weights=None if backbone_weights is None else str(backbone_weights),
                            joint_stage=joint_stage, global_grid=global_grid,
                            field_size=field_size, field_channels=field_channels, layout=layout,
                            joint_features=list(joint_features), temporal_kernel=temporal_kernel,
                            joint_depth=joint_depth, flip_test=flip_test, mirror_classes=None if mirror_classes is None else mirror,
                            importance_head=importance_head, novelty_head=novelty_head)
        self.modality, self.sigma, self.min_confidence = modality, sigma, min_confidence
        self.global_grid = global_grid
        self.flip_test = flip_test
        if flip_test:
            self.register_buffer("flip_permutation", torch.as_tensor(get_layout(layout).flip_permutation),
                                 persistent=False)
            self.register_buffer("class_mirror", torch.as_tensor(mirror), persistent=False)
        if modality == "rgb+pose":
            self.backbone = MC18Features(backbone_weights, middle_stage=joint_stage)
            joint_channels = STAGE_CHANNELS[joint_stage]
            self.grid_proj = nn.Sequential(nn.Linear(STAGE_CHANNELS["layer4"], dim), nn.LayerNorm(dim))
            num_cls = 3  # CLS_glob, CLS_joint, CLS_total
        else:
            if "field" in joint_features:
                self.feature_field = nn.Parameter(torch.randn(field_channels, field_size, field_size))
            joint_channels = field_channels
            num_cls = 2  # CLS_joint, CLS_total
        self.joint_proj = (nn.Sequential(nn.Linear(joint_channels, dim), nn.LayerNorm(dim))
                           if "field" in joint_features else None)
        self.joint_depth = joint_depth
        self.kinematics = JointKinematics(layout, joint_depth) if "kinematics" in joint_features else None
        self.kinematics_embed = nn.Sequential(
            nn.Linear(self.kinematics.num_features, dim), nn.GELU(), nn.Linear(dim, dim), nn.LayerNorm(dim)
        ) if self.kinematics is not None else None
        self.stem = TemporalStem(dim, temporal_kernel) if temporal_kernel else None
        self.joint_embed = nn.Parameter(torch.zeros(num_joints, dim))
        self.cls_tokens = nn.Parameter(torch.zeros(num_cls, dim))
        nn.init.trunc_normal_(self.joint_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_tokens, std=0.02)
        self.layers = nn.ModuleList(
            [STARLayer(dim, num_heads, "zigzag", mlp_ratio, dropout) for _ in range(depth)]
            + [STARLayer(dim, num_heads, "binary", mlp_ratio, dropout) for _ in range(depth)])
        self.importance_head = ImportanceHead(dim, num_joints) if importance_head else None
        self.novelty_head = NoveltyHead(dim, num_classes) if novelty_head else None
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(),
                                  nn.Dropout(dropout), nn.Linear(dim, num_classes))

    def joint_tokens(self, features: torch.Tensor | None, keypoints: torch.Tensor,
                     boxed: torch.Tensor) -> torch.Tensor:
        """Eq. 1 (+ kinematics) + pos (+ stem): ``(B, T, J, D)``.

        features: the CNN map ``(B, C, T, h, w)`` or the pose field ``(C, S, S)``, with
        ``keypoints`` normalised to its extent; ``boxed``: keypoints in the person box.
        """
        tokens = torch.zeros((), dtype=keypoints.dtype, device=keypoints.device)
        if self.joint_proj is not None:
            heatmaps = gaussian_heatmaps(keypoints, features.shape[-2], features.shape[-1],
                                         self.sigma, self.min_confidence)
            tokens = self.joint_proj(joint_map_tokens(features, heatmaps))
        if self.kinematics is not None:
            visible = keypoints[..., 2] > self.min_confidence
            tokens = tokens + self.kinematics_embed(self.kinematics(boxed, visible))
        frame_index = torch.arange(keypoints.shape[1], device=keypoints.device)
        frame_pos = sinusoidal_encoding(frame_index, self.joint_embed.shape[-1]).to(keypoints.dtype)
        tokens = tokens + self.joint_embed + frame_pos[:, None, :]
        return tokens if self.stem is None else self.stem(tokens)

    def mirrored(self, frames: torch.Tensor | None, keypoints: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The window as a horizontally mirrored camera would show it (left/right joints swapped)."""
        width = frames.shape[-1] if frames is not None else 0  # pose-only: any mirror axis will do
        flipped = keypoints[:, :, self.flip_permutation]
        flipped = torch.cat((width - flipped[..., :1], flipped[..., 1:]), dim=-1)
        return (None if frames is None else frames.flip(-1)), flipped

    def forward(self, frames: torch.Tensor | None, keypoints: torch.Tensor) -> ActionOutput:
        # torch._check rather than `raise` keeps the time dimension symbolic for export.
        torch._check(keypoints.shape[1] % 2 == 0,
                     lambda: "STAR needs an even number of frames per window")
        if not (self.flip_test and not self.training):
            return self.classify(frames, keypoints)
        batch = keypoints.shape[0]
        mirror_frames, mirror_keypoints = self.mirrored(frames, keypoints)
        both = self.classify(None if frames is None else torch.cat((frames, mirror_frames)),
                             torch.cat((keypoints, mirror_keypoints)))
        mirror_logits = both.logits[batch:][:, self.class_mirror]  # what the mirror image shows, per class
        return ActionOutput((both.logits[:batch] + mirror_logits) / 2,
                            *((value[:batch] + value[batch:]) / 2 for value in both[1:]))

    def classify(self, frames: torch.Tensor | None, keypoints: torch.Tensor) -> ActionOutput:
        """One pass of the model (``forward`` adds the test-time flip)."""
        channels = DEPTH_CHANNEL + 1 if self.joint_depth else DEPTH_CHANNEL
        if keypoints.shape[-1] < channels:
            raise InvalidInputError(f"this model reads {channels} keypoint channels (x, y, confidence"
                                    f"{', depth' if self.joint_depth else ''}), got {keypoints.shape[-1]}")
        keypoints = keypoints[..., :channels]
        boxed = normalize_to_person_box(keypoints, self.min_confidence)
        frame_tokens, cls, attention = self.encode(frames, keypoints, boxed)
        if self.importance_head is not None:
            residuals = interpolation_residuals(boxed, self.min_confidence)
            importance = self.importance_head(frame_tokens, cls, residuals)
        else:
            importance = attention / attention.sum(dim=1, keepdim=True)
        features = cls.mean(dim=1)
        # zeros_like of a slice keeps the batch dimension symbolic for export (new_zeros(len(...)) would not)
        novelty = self.novelty_head(features) if self.novelty_head is not None else torch.zeros_like(features[:, 0])
        return ActionOutput(self.head(features), importance, novelty)

    def encode(self, frames: torch.Tensor | None, keypoints: torch.Tensor,
               boxed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The transformer's outputs: frame tokens ``(B, T, P, D)``, class tokens ``(B, C, D)``
        and the class tokens' FAttn weight on each frame summed over layers ``(B, T)``;
        ``boxed`` is ``keypoints`` in the person box (:func:`normalize_to_person_box`)."""
        if self.modality == "pose":
            field = self.feature_field.to(keypoints.dtype) if self.joint_proj is not None else None
            frame_tokens = self.joint_tokens(field, boxed, boxed)
        else:
            if frames is None:
                raise InvalidInputError("the rgb+pose modality needs frames (B, 3, T, H, W)")
            middle, last = self.backbone(frames)
            height, width = frames.shape[-2:]
            scale = torch.tensor([1.0 / width, 1.0 / height, 1.0], dtype=keypoints.dtype,
                                 device=keypoints.device)
            joints = self.joint_tokens(middle, keypoints * scale, boxed)
            if self.global_grid is not None:
                batch, channels, num_frames = last.shape[:3]
                pooled = F.adaptive_avg_pool2d(last.transpose(1, 2).flatten(0, 1), self.global_grid)
                last = pooled.reshape(batch, num_frames, channels, -1).transpose(1, 2)
            grid = self.grid_proj(last.flatten(3).permute(0, 2, 3, 1))      # (B, T, G, D)
            frame_tokens = torch.cat((grid, joints), dim=2)
        cls = self.cls_tokens.expand(keypoints.shape[0], -1, -1)
        attention = torch.zeros(keypoints.shape[:2], dtype=frame_tokens.dtype, device=keypoints.device)
        for layer in self.layers:
            frame_tokens, cls, frame_attention = layer(frame_tokens, cls)
            attention = attention + frame_attention
        return frame_tokens, cls, attention
