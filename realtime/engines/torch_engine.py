"""PyTorch eager (or ``torch.compile``) execution on CPU or CUDA, fp32, fp16 or bf16 autocast."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch
from torch import nn

from star_har.errors import InvalidInputError
from star_har.model.importance import GradientImportance
from star_har.realtime.engines.base import EngineUnavailable, InferenceEngine, ModelSpec
from star_har.realtime.engines.table import check_bf16, precision_name

log = logging.getLogger(__name__)


class TorchEngine(InferenceEngine):
    """Run the ``nn.Module`` directly.

    fp16 uses CUDA autocast (matmuls and convolutions in half precision, softmax, norms and the
    keypoint arithmetic in fp32), which keeps the pose normalisation exact. bf16 is the same with
    bfloat16 on either device: on a CPU with AVX-512 BF16 it takes about 40 % off an RGB window's
    3-D convolutions (README "RGB stream speed on CPU"); logits move by a few thousandths, so a
    checkpoint's accuracy should be checked with it (``star-har eval`` runs fp32). ``compile`` wraps the
    model in ``torch.compile``; on CUDA with mode ``reduce-overhead`` (CUDA graphs), which removes
    most kernel-launch overhead at batch 1. Compilation happens in :meth:`warmup` (or the first
    call) and is repeated for each new batch size.
    """

    name = "torch"

    def __init__(self, net: nn.Module, spec: ModelSpec, device: str = "cpu", fp16: bool = False,
                 compile: bool = False, bf16: bool = False) -> None:
        super().__init__(spec)
        if device == "cuda" and not torch.cuda.is_available():
            raise EngineUnavailable("CUDA was requested but torch sees no CUDA device")
        if fp16 and device != "cuda":
            raise InvalidInputError("fp16 needs a CUDA device (CPU half precision is slower than fp32)")
        check_bf16(self.name, fp16, bf16)
        self.device, self.compiled, self.precision = device, compile, precision_name(fp16, bf16)
        self.net = net.eval().to(device)
        self.importance = "gradient" if isinstance(net, GradientImportance) else "model"
        self.forward = self.net
        if compile:
            mode = "reduce-overhead" if device == "cuda" else None
            self.forward = torch.compile(self.net, mode=mode)
            self.name = "torch-compile"

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp16":
            return torch.autocast("cuda", dtype=torch.float16)
        if self.precision == "bf16":
            return torch.autocast(self.device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _infer(self, frames: np.ndarray | None, keypoints: np.ndarray) -> tuple[np.ndarray, ...]:
        # gradient importance runs a backward pass, which inference-mode tensors cannot take part in
        with torch.no_grad() if self.importance == "gradient" else torch.inference_mode():
            kps = torch.from_numpy(keypoints).to(self.device, non_blocking=True)
            rgb = None if frames is None else torch.from_numpy(frames).to(self.device, non_blocking=True)
            with self._autocast():
                out = self.forward(rgb, kps)
        return tuple(value.float().cpu().numpy() for value in out)
