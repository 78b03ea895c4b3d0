"""A weight soup: short fine-tunes of one trained network, each under its own setting (another
augmentation), averaged weight by weight into one network of the same size and cost.

Fine-tunes that start from the same weights stay in one basin of the loss, so the average of their
weights is itself a working network, and it tends to keep what each fine-tune gained (the uniform
soup of Wortsman et al., "Model soups", ICML 2022). Measured on the Penn recipe (README "The
shipped checkpoint"): soups of three fine-tunes lowered the robustness costs (jitter, legs) but did
not lift clean accuracy (the same in one run, one video lower in another), so no shipped config
uses one.

The config's ``soup:`` section (:class:`~star_har.train.config.SoupConfig`) names the branches;
:func:`star_har.train.engine.train` runs them after the main run (``<output>/soup/branch<i>``, each
resumable) and writes the soup to ``<output>/soup.pt``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from star_har.train.config import set_path, validate_config

SOUP_FILE = "soup.pt"


def branch_configs(cfg: dict[str, Any], soup: dict[str, Any], init: str | Path) -> list[dict[str, Any]]:
    """One validated training config per branch: ``cfg`` (the main run's, without ``soup``) with the
    branch's overrides, fine-tuning ``init`` for ``soup['epochs']`` at ``soup['lr']`` (cosine, no
    warm-up: the weights are trained already), into ``<output>/soup/branch<i>``."""
    out = Path(cfg["output"])
    configs = []
    for index, overrides in enumerate(soup["branches"], 1):
        branch = copy.deepcopy(cfg)
        for path, value in overrides.items():
            set_path(branch, path, value, f"soup branch {index}")
        branch |= {"init": str(init), "epochs": int(soup["epochs"]), "ema_decay": soup["ema_decay"],
                   "output": str(out / "soup" / f"branch{index}")}
        branch["optim"] = {**branch["optim"], "lr": float(soup["lr"])}
        branch["schedule"] = {**branch["schedule"], "warmup_epochs": 0}
        configs.append(validate_config(branch, f"soup branch {index}"))
    return configs


def average_weights(state_dicts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of networks of one architecture: floating-point tensors averaged (in
    float32, returned in their own dtype), integer ones (step counters) taken from the first."""
    if not state_dicts:
        raise ValueError("nothing to average")
    first = state_dicts[0]
    for other in state_dicts[1:]:
        if other.keys() != first.keys() or any(other[k].shape != v.shape for k, v in first.items()):
            raise ValueError("the networks to average differ in their tensors")
    return {key: torch.stack([sd[key].float() for sd in state_dicts]).mean(0).to(value.dtype)
            if value.is_floating_point() else value.clone() for key, value in first.items()}
