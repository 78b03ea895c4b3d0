"""star-har models: STAR-Transformer and the 3D deformable transformer, behind one registry.

This package knows nothing of cameras, GUIs or training loops.
"""

from star_har.model import deformable, star  # noqa: F401  (register the built-in models)
from star_har.model.checkpoint import Checkpoint, CheckpointError, TemporalSampling, load_checkpoint, save_checkpoint
from star_har.model.registry import ActionOutput, build_model, list_models, register_model
from star_har.model.skeleton import LAYOUTS, JointLayout, convert_keypoints, get_layout

__all__ = ["ActionOutput", "Checkpoint", "CheckpointError", "JointLayout", "LAYOUTS",
           "TemporalSampling", "build_model", "convert_keypoints", "get_layout", "list_models",
           "load_checkpoint", "register_model", "save_checkpoint"]
