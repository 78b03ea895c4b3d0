"""Training configuration: nested dicts read from YAML, filled with defaults, overridable by
``key.sub=value`` strings from the command line (values parsed as YAML: ``1e-3``, ``true``, ``[1, 2]``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from star_har.errors import InvalidInputError, MissingFileError

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "output": "runs/train",
    "epochs": 30,
    "batch_size": 32,              # global: split over processes under torchrun
    "label_smoothing": 0.1,
    "grad_clip": 1.0,               # max gradient norm; null disables clipping
    "amp": True,                    # mixed precision, used on CUDA only
    "num_workers": 0,
    "time_limit_minutes": None,     # stop after the epoch that would overrun this budget
    "export": None,                 # also copy the best checkpoint here (e.g. assets/...)
    "data": {
        "kind": "penn_action",      # penn_action | ntu | clips | npz | utd_mhad | msr_action3d | everyday
        "root": None,
        "val_root": None,           # a separate validation folder, else a held-out part of root
        "val_fraction": 0.15,
        "split_seed": 0,
        "protocol": "xsub",         # NTU: xsub | xview | xset
        "classes": None,            # restrict to / order classes as listed
        "frames_per_window": 16,
        "window_seconds": 1.6,
        "repeats": 1,               # random windows per sequence and epoch
        "eval_windows": 5,          # windows averaged per sequence in evaluation
        "image_size": 112,
        "pose_model": None,         # clips: MediaPipe .task bundle
        "pose_cache": None,         # clips: folder for extracted poses (default: the star-har cache)
        "val_subjects": None,       # validation = these subjects (cross-subject split), e.g. [S018, 7]
        "sources": None,            # everyday: {name: {kind, root, val_subjects, ...}} trained together
        "merge": None,              # everyday: {class: [source class, ...]} one vocabulary
        "background": None,         # source classes trained as one "background" class (open set)
    },
    "model": {"name": "star", "modality": "pose", "dim": 128, "depth": 2, "num_heads": 4},
    "optim": {"name": "sgd", "lr": 2.0e-4, "momentum": 0.9, "weight_decay": 1.0e-4,
              "betas": [0.9, 0.999]},
    "schedule": {"name": "cosine", "warmup_epochs": 0, "min_lr_ratio": 0.01},
    "augment": {},                  # AugmentConfig fields
    "init": None,                   # checkpoint to fine-tune from (head replaced if classes differ)
    "freeze_backbone": False,       # with init: train only the classification head
}


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base``; unknown top-level keys are errors."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value} if key in ("model", "augment") else merge(out[key], value)
        else:
            out[key] = value
    return out


def set_value(cfg: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` override in place."""
    if "=" not in assignment:
        raise InvalidInputError(f"override {assignment!r} must look like key.sub=value")
    path, raw = assignment.split("=", 1)
    keys = path.strip().split(".")
    node = cfg
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            raise InvalidInputError(f"unknown config section {key!r} in override {assignment!r}")
        node = node[key]
    if keys[0] not in DEFAULTS or (len(keys) == 2 and keys[0] not in ("model", "augment")
                                   and isinstance(DEFAULTS[keys[0]], dict) and keys[1] not in DEFAULTS[keys[0]]):
        raise InvalidInputError(f"unknown config key {path!r}")
    node[keys[-1]] = _parse(raw)


def _parse(raw: str) -> Any:
    """A YAML value, with ``1e-3`` read as a number (YAML 1.1 wants ``1.0e-3``)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def load_config(path: str | Path | None, overrides: list[str] = ()) -> dict[str, Any]:
    """Defaults <- YAML file <- overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"config not found: {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise InvalidInputError(f"config {path} must be a YAML mapping")
        unknown = sorted(set(loaded) - set(DEFAULTS))
        if unknown:
            raise InvalidInputError(f"unknown config key(s) in {path}: {', '.join(unknown)}")
        cfg = merge(cfg, loaded)
    for assignment in overrides:
        set_value(cfg, assignment)
    return cfg
