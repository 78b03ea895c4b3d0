"""star-har: real-time human action recognition from RGB frames and skeletons.

One import package with three layers, each its own folder in the source tree:
``star_har.model`` (the models and the checkpoint format), ``star_har.train`` (offline training)
and ``star_har.realtime`` (camera -> pose -> windows -> engine -> predictions), over the bottom
modules ``star_har.errors`` and ``star_har.files``.

The short public API (imported lazily, so ``import star_har`` stays cheap)::

    import star_har
    ckpt = star_har.load_checkpoint("assets/star_pose_penn.pt")   # weights + labels + layout + sampling
    net = ckpt.build()                                             # or star_har.build_model("star", 15, ...)
    for prediction in star_har.recognize("video.mp4"):             # run the real-time pipeline
        print(prediction.text())
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build_model": "star_har.model",
    "list_models": "star_har.model",
    "load_checkpoint": "star_har.model",
    "StarHarError": "star_har.errors",
    "Pipeline": "star_har.realtime.pipeline",
    "PipelineConfig": "star_har.realtime.pipeline",
    "recognize": "star_har.realtime.pipeline",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'star_har' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
