"""ResNet MC18 (torchvision ``mc3_18``) as a two-level feature extractor that keeps every frame."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from star_har.errors import InvalidInputError, MissingFileError

# Normalisation the torchvision video models were trained with (RGB, values in [0, 1] first).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)



def normalize_video(frames: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB -> ``(3, T, H, W)`` float32 in the layout and normalisation the
    backbone expects. Training and the real-time ring buffer both call this, so they cannot drift."""
    mean = np.asarray(KINETICS_MEAN, dtype=np.float32).reshape(3, 1, 1, 1)
    std = np.asarray(KINETICS_STD, dtype=np.float32).reshape(3, 1, 1, 1)
    video = np.asarray(frames).transpose(3, 0, 1, 2).astype(np.float32) / 255.0
    return (video - mean) / std


# Channels and spatial stride of each stage's output.
STAGE_CHANNELS = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
STAGE_STRIDE = {"layer1": 2, "layer2": 4, "layer3": 8, "layer4": 16}


def load_mc3_18(weights: str | os.PathLike | None) -> nn.Module:
    """Build torchvision's ``mc3_18``.

    weights: None for random initialisation, ``"kinetics400"`` for torchvision's Kinetics-400
        weights (downloaded to the torch hub cache on first use), or a path to a local
        ``state_dict`` file of ``mc3_18`` (loaded with ``weights_only=True``).
    """
    from torchvision.models.video import MC3_18_Weights, mc3_18

    if weights is None:
        return mc3_18(weights=None)
    if str(weights).lower() in {"kinetics400", "kinetics400_v1", "default"}:
        return mc3_18(weights=MC3_18_Weights.KINETICS400_V1, progress=True)
    path = Path(weights)
    if not path.is_file():
        raise MissingFileError(f"backbone weights not found: {path} (use 'kinetics400' or a state_dict file)")
    net = mc3_18(weights=None)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net


class MC18Features(nn.Module):
    """``mc3_18`` up to ``last_stage``, returning the ``middle_stage`` and ``last_stage`` maps.

    MC18 convolves in 3-D only in its first stage and uses 2-D (1 x 3 x 3) convolutions with
    stride (1, 2, 2) afterwards, so every stage keeps all T input frames.

    Weights and activations are kept channels-last (``torch.channels_last_3d``): the same
    arithmetic in another memory order (outputs agree to float rounding, ~1e-5), which oneDNN's
    CPU convolutions run a few per cent faster (README, "RGB stream speed on CPU").

    Input ``(B, 3, T, H, W)`` normalised with ``KINETICS_MEAN`` / ``KINETICS_STD``.
    Output ``(middle, last)`` of shapes ``(B, C_mid, T, H/s_mid, W/s_mid)`` and
    ``(B, C_last, T, H/s_last, W/s_last)`` (channels and strides in ``STAGE_*``).
    """

    def __init__(self, weights: str | os.PathLike | None = None, middle_stage: str = "layer2",
                 last_stage: str = "layer4") -> None:
        super().__init__()
        stages = list(STAGE_CHANNELS)
        if stages.index(middle_stage) >= stages.index(last_stage):
            raise InvalidInputError(f"middle stage {middle_stage} must come before last stage {last_stage}")
        net = load_mc3_18(weights)
        self.stem = net.stem
        self.middle_stage, self.last_stage = middle_stage, last_stage
        kept = stages[: stages.index(last_stage) + 1]
        self.stages = nn.ModuleDict({name: getattr(net, name) for name in kept})
        self.to(memory_format=torch.channels_last_3d)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(frames.contiguous(memory_format=torch.channels_last_3d))
        middle = x
        for name, stage in self.stages.items():
            x = stage(x)
            if name == self.middle_stage:
                middle = x
        return middle, x
