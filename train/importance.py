"""``star-har importance``: fit a checkpoint's frame-importance head to occlusion and measure it.

Occlusion is the ground truth (see :mod:`star_har.model.importance`): for each window of the
checkpoint's own training split, every frame is removed in turn and the shown class's log
probability drop is recorded; the classifier stays frozen and only the small
:class:`~star_har.model.importance.ImportanceHead` learns to predict those drops from the model's
final tokens. On the held-out split the command reports how faithful the bars are (median
Spearman correlation with occlusion, the deletion test) and what they cost, for the new head, for
the attention-based bars it replaces and for the gradient estimate
(:class:`~star_har.model.importance.GradientImportance`, ``--importance gradient`` at run time),
and writes the checkpoint with the head.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from star_har.errors import InvalidInputError, UserError
from star_har.model import Checkpoint, build_model, load_checkpoint, save_checkpoint
from star_har.model.heatmaps import normalize_to_person_box
from star_har.model.importance import (
    GradientImportance,
    bars_from_drops,
    interpolation_residuals,
    occlude_frame,
    occluded_windows,
    occlusion_drops,
    spearman,
)
from star_har.train.datasets import load_splits
from star_har.train.windows import WindowDataset

log = logging.getLogger(__name__)


def with_importance_head(checkpoint: Checkpoint) -> torch.nn.Module:
    """The checkpoint's model with an (untrained) importance head, its own weights loaded."""
    if checkpoint.model_name != "star":
        raise InvalidInputError(f"importance heads are fitted to STAR models, not {checkpoint.model_name!r}")
    hparams = {**checkpoint.hparams, "backbone_weights": None, "importance_head": True}
    net = build_model(checkpoint.model_name, checkpoint.num_classes, **hparams)
    missing, unexpected = net.load_state_dict(checkpoint.state_dict, strict=False)
    if unexpected or any(not key.startswith("importance_head.") for key in missing):
        raise InvalidInputError(f"checkpoint weights do not fit its model: {sorted(unexpected or missing)[:3]}")
    return net.eval()


@torch.no_grad()
def collect(net: torch.nn.Module, dataset: WindowDataset, progress: bool = True) -> dict[str, np.ndarray]:
    """Per window: the head's inputs (pooled final tokens, occlusion residuals), the occlusion
    drops ``(T,)`` of the shown class and the attention-based importance ``(T,)`` (one batch of T
    occluded copies per window)."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("frame_means", "cls_mean", "residuals", "drops", "attention")}
    for item in tqdm(DataLoader(dataset, batch_size=1), desc="occlusion", disable=not progress, unit="window"):
        frames = item.get("frames")
        frames_np = None if frames is None else frames.numpy()
        keypoints = item["keypoints"].numpy()
        boxed = normalize_to_person_box(item["keypoints"], net.min_confidence)
        frame_tokens, cls, attention = net.encode(frames, item["keypoints"], boxed)
        logits = net.head(cls.mean(dim=1))[0].numpy()
        target = int(logits.argmax())
        rgb, kp = occluded_windows(frames_np, keypoints)
        occluded = net.classify(None if rgb is None else torch.from_numpy(rgb), torch.from_numpy(kp)).logits.numpy()
        out["frame_means"].append(frame_tokens.mean(dim=2)[0].numpy())
        out["cls_mean"].append(cls.mean(dim=1)[0].numpy())
        out["residuals"].append(interpolation_residuals(boxed, net.min_confidence)[0].numpy())
        out["drops"].append(occlusion_drops(logits, occluded, target))
        out["attention"].append((attention / attention.sum(dim=1, keepdim=True))[0].numpy())
    return {k: np.stack(v) for k, v in out.items()}


def fit_head(head: torch.nn.Module, data: dict[str, np.ndarray], steps: int = 400, lr: float = 3e-3,
             seed: int = 0) -> None:
    """Train ``head`` to predict the occlusion drops: their ranking within each window
    (1 - Pearson correlation) and their size (squared error relative to the drops' spread)."""
    torch.manual_seed(seed)
    inputs = [torch.from_numpy(data[key]) for key in ("frame_means", "cls_mean", "residuals")]
    drops = torch.from_numpy(data["drops"]).float()
    spread = drops.std().clamp_min(1e-6)
    target = (drops - drops.mean(1, keepdim=True)) / drops.std(1, keepdim=True).clamp_min(1e-6)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    head.train()
    for _ in range(steps):
        predicted = head.scores(*inputs)
        centred = predicted - predicted.mean(1, keepdim=True)
        ranking = 1 - (centred / centred.std(1, keepdim=True).clamp_min(1e-6) * target).mean(1).mean()
        size = (((predicted - drops) / spread) ** 2).mean()
        loss = ranking + size
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()


@torch.no_grad()
def deletion_test(net: torch.nn.Module, dataset: WindowDataset, importance: np.ndarray, count: int = 3,
                  seed: int = 0) -> tuple[float, float]:
    """Mean probability the shown class loses when the ``count`` most important frames are removed,
    and when ``count`` random frames are."""
    rng = np.random.default_rng(seed)
    top_losses, random_losses = [], []
    for i, item in enumerate(DataLoader(dataset, batch_size=1)):
        keypoints = item["keypoints"].numpy()
        frames = None if item.get("frames") is None else item["frames"].numpy()
        variants = [np.argsort(-importance[i])[:count], rng.choice(keypoints.shape[1], count, replace=False)]
        batch_kp, batch_rgb = [keypoints], [frames]
        for chosen in variants:
            kp, rgb = keypoints, frames
            for t in sorted(chosen):
                kp = occlude_frame(kp, int(t), axis=1, confidence=True)
                rgb = None if rgb is None else occlude_frame(rgb, int(t), axis=2)
            batch_kp.append(kp)
            batch_rgb.append(rgb)
        rgb = None if frames is None else torch.from_numpy(np.concatenate(batch_rgb))
        probs = net.classify(rgb, torch.from_numpy(np.concatenate(batch_kp))).logits.softmax(-1).numpy()
        shown = probs[0].argmax()
        top_losses.append(probs[0, shown] - probs[1, shown])
        random_losses.append(probs[0, shown] - probs[2, shown])
    return float(np.mean(top_losses)), float(np.mean(random_losses))


def gradient_bars(net: torch.nn.Module, dataset: WindowDataset) -> np.ndarray:
    """:class:`GradientImportance`'s bars ``(N, T)`` for every window of ``dataset``."""
    estimate = GradientImportance(net)
    bars = []
    for item in DataLoader(dataset, batch_size=1):
        bars.append(estimate(item.get("frames"), item["keypoints"]).frame_importance[0].numpy())
    return np.stack(bars)


def forward_ms(net: torch.nn.Module, dataset: WindowDataset, repeats: int = 30) -> float:
    """Median batch-1 forward time in ms (the cost the importance method adds is measured by
    comparing this with and without the head)."""
    item = dataset[0]
    frames = item["frames"][None] if "frames" in item else None
    times = []
    with torch.no_grad():
        for _ in range(repeats + 3):
            start = time.perf_counter()
            net(frames, item["keypoints"][None])
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times[3:]))


def run_importance(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise UserError(f"{output} exists: pass --overwrite to replace it")
    config = checkpoint.meta.get("config")
    if not isinstance(config, dict) or "data" not in config:
        raise UserError(f"{args.checkpoint} records no training config: its held-out split is unknown")
    data = dict(config["data"])
    if args.data:
        data["root"] = args.data
    net = with_importance_head(checkpoint)
    train_seqs, val_seqs, _ = load_splits(data)
    fit_set = WindowDataset.for_checkpoint(checkpoint, train_seqs[::max(1, len(train_seqs) // args.fit_sequences)],
                                           args.windows)
    val_set = WindowDataset.for_checkpoint(checkpoint, val_seqs, 1)
    log.info("occlusion ground truth: %d fitting windows, %d held-out windows", len(fit_set), len(val_set))
    fitted = collect(net, fit_set, progress=not args.no_progress)
    fit_head(net.importance_head, fitted)
    held = collect(net, val_set, progress=not args.no_progress)
    with torch.no_grad():
        head_importance = bars_from_drops(net.importance_head.scores(
            *[torch.from_numpy(held[key]) for key in ("frame_means", "cls_mean", "residuals")])).numpy()
    report = {}
    methods = (("head", head_importance), ("attention", held["attention"]),
               ("gradient", gradient_bars(checkpoint.build(), val_set)))
    for method, importance in methods:
        top, random = deletion_test(net, val_set, importance)
        report[method] = {
            "spearman_median": float(np.median([spearman(a, b) for a, b in zip(importance, held["drops"])])),
            "deletion_top3_loss": top, "deletion_random3_loss": random,
            "deletion_ratio": top / random if random > 0 else float("inf"),
            "entropy": float(np.mean(-(importance * np.log(importance + 1e-12)).sum(1) / np.log(importance.shape[1]))),
        }
    base_ms, head_ms = forward_ms(checkpoint.build(), val_set), forward_ms(net, val_set)
    gradient_ms = forward_ms(GradientImportance(checkpoint.build()), val_set)
    report["cost"] = {"forward_ms": base_ms, "forward_with_head_ms": head_ms,
                      "head_share": (head_ms - base_ms) / base_ms, "gradient_ms": gradient_ms,
                      "occlusion_windows_per_window": 1 + len(held["drops"][0])}
    report["windows"] = {"fit": len(fit_set), "held_out": len(val_set)}
    for method, _ in methods:
        r = report[method]
        print(f"{method:>9}: Spearman with occlusion (median) {r['spearman_median']:.2f}; removing the top-3 "
              f"frames costs {r['deletion_top3_loss']:.3f} probability, 3 random {r['deletion_random3_loss']:.3f} "
              f"(x{r['deletion_ratio']:.1f}); normalised entropy {r['entropy']:.2f}")
    print(f"     cost: {base_ms:.1f} ms per window without the head, {head_ms:.1f} ms with it, "
          f"{gradient_ms:.1f} ms with the gradient")
    meta = {**checkpoint.meta, "importance": report}
    save_checkpoint(output, net, **checkpoint.header, meta=meta)
    print(f"wrote {output}")
    return 0
