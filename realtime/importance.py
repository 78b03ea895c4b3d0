"""How the importance bars are computed live: from the model's own output, its gradient, or by occlusion.

``model`` shows what the checkpoint reports: its fitted importance head when it has one
(``star-har importance``), else its attention. ``gradient`` is the first-order estimate of
occlusion (:class:`~star_har.model.importance.GradientImportance`): the engine is built with it
(``create_engine(gradient_importance=True)``), one backward pass per window. ``occlusion`` is the ground truth itself: the
window and its T copies with one frame removed go through the engine in one batched call, and
each frame's bar is how much the shown class loses without it. It costs T extra windows per
prediction and works the same on every engine, since it only needs logits. ``auto`` (the
default) measures by occlusion on a GPU, where the T extra windows ride in the batch the GPU has
room for, and shows the model's estimate on a CPU, where they would cost about 13 forwards.
"""

from __future__ import annotations

import numpy as np
import torch

from star_har.model.importance import bars_from_drops, occluded_windows, occlusion_drops
from star_har.realtime.engines.base import WindowScores

#: What the bars mean, by where they come from: (short label, explanation) for the GUI's legend.
IMPORTANCE_SOURCES = {
    "occlusion": ("measured by removing each frame",
                  "how much the shown action loses when the frame is removed (measured)"),
    "gradient": ("first-order effect of removing each frame",
                 "how much the shown action would lose if the frame were removed (estimated from the "
                 "model's gradient times the change removing it makes)"),
    "head": ("estimated effect of removing each frame",
             "how much the shown action would lose if the frame were removed (estimated by a head "
             "fitted to that measurement)"),
    "attention": ("model attention", "the model's attention to the frame (not a measure of its effect)"),
}


def resolve_importance(method: str, device: str) -> str:
    """``model``, ``gradient`` or ``occlusion``: what ``method`` means for an engine running on ``device``."""
    if method != "auto":
        return method
    return "occlusion" if str(device).startswith("cuda") else "model"


def importance_source(method: str, hparams: dict) -> str:
    """``occlusion``, ``gradient``, ``head`` or ``attention``: what ``method`` shows for a model with
    ``hparams``."""
    if method in ("occlusion", "gradient"):
        return method
    return "head" if hparams.get("importance_head") else "attention"


class OcclusionImportance:
    """An engine whose ``infer`` reports occlusion importance; everything else is the wrapped
    engine's (name, device, spec, warm-up ...)."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def infer(self, frames: np.ndarray | None, keypoints: np.ndarray) -> WindowScores:
        return occlusion_infer(self.engine, frames, keypoints)


def occlusion_infer(engine, frames: np.ndarray | None, keypoints: np.ndarray) -> WindowScores:
    """``engine.infer`` on a batch of windows with measured importance: logits ``(B, K)`` and
    novelty ``(B,)`` of the windows as they are, importance ``(B, T)`` from their T occluded copies
    each. All ``B (T + 1)`` windows go through the engine together, in as few calls as its batch
    limit allows (TensorRT engines have a ``max_batch``)."""
    count, num_frames = keypoints.shape[:2]
    copies = [occluded_windows(None if frames is None else frames[b:b + 1], keypoints[b:b + 1]) for b in range(count)]
    all_keypoints = np.concatenate([keypoints] + [kp for _, kp in copies])
    all_frames = None if frames is None else np.concatenate([frames] + [rgb for rgb, _ in copies])
    step = getattr(engine, "max_batch", None) or len(all_keypoints)
    parts = [engine.infer(None if all_frames is None else all_frames[i:i + step], all_keypoints[i:i + step])
             for i in range(0, len(all_keypoints), step)]
    all_logits = np.concatenate([part.logits for part in parts])
    novelty = np.concatenate([part.novelty for part in parts])[:count]
    logits, occluded = all_logits[:count], all_logits[count:].reshape(count, num_frames, -1)
    drops = np.stack([occlusion_drops(logits[b], occluded[b], int(logits[b].argmax())) for b in range(count)])
    return WindowScores(logits, bars_from_drops(torch.from_numpy(drops)).numpy().astype(np.float32), novelty)
