"""The training loop: seeding, optimisers and schedules, exact resume, DDP, logging, evaluation.

Runs in one process or under ``torchrun`` (DistributedDataParallel, gloo on CPU / nccl on GPU).
Every global batch is split into equal contiguous per-rank slices and DDP averages gradients, so
``N`` processes with ``batch_size / N`` samples each take exactly the steps one process takes
with ``batch_size`` (checked by the tests).
"""

from __future__ import annotations

import csv
import gc
import json
import logging
import math
import os
import pickle
import random
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from star_har.errors import InvalidInputError, MissingFileError
from star_har.model import TemporalSampling, build_model, get_layout, load_checkpoint, save_checkpoint
from star_har.model.checkpoint import Checkpoint, PickledObjectsError, atomic_torch_save, plain_torch_load
from star_har.model.registry import constructor_parameters
from star_har.model.skeleton import joint_stand_ins
from star_har.model.vocabulary import mirror_classes
from star_har.train.augment import AugmentConfig
from star_har.train.config import config_changes, validate_config
from star_har.train.datasets import load_splits
from star_har.train.ema import WeightAverage
from star_har.train.metrics import plot_confusion, plot_curves, summarize
from star_har.train.soup import SOUP_FILE, average_weights, branch_configs
from star_har.train.windows import WindowDataset

log = logging.getLogger(__name__)

STATE_FILE = "last.pt"
BEST_FILE = "best.pt"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False


class ShardedBatchSampler(Sampler[list[int]]):
    """Global batches from a seeded per-epoch permutation; rank ``r`` of ``W`` takes the ``r``-th
    contiguous slice of each. Incomplete last batches are dropped (equal steps on every rank)."""

    def __init__(self, size: int, global_batch: int, rank: int = 0, world: int = 1, seed: int = 0) -> None:
        if global_batch % world:
            raise InvalidInputError(f"batch_size {global_batch} is not divisible by the {world} processes")
        if size < global_batch:
            raise InvalidInputError(f"only {size} training windows for a batch of {global_batch}: lower batch_size")
        self.size, self.global_batch, self.rank, self.world, self.seed = size, global_batch, rank, world, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.global_batch

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
        local = self.global_batch // self.world
        for b in range(len(self)):
            start = b * self.global_batch + self.rank * local
            yield order[start:start + local].tolist()


def build_optimizer(params: list[nn.Parameter], optim: dict[str, Any]) -> torch.optim.Optimizer:
    name = optim["name"].lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=optim["lr"], momentum=optim.get("momentum", 0.9),
                               weight_decay=optim.get("weight_decay", 0.0))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=optim["lr"], betas=tuple(optim.get("betas", (0.9, 0.999))),
                                 weight_decay=optim.get("weight_decay", 0.01))
    raise InvalidInputError(f"unknown optimizer {optim['name']!r}; use sgd or adamw")


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: dict[str, Any], epochs: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step linear warm-up then cosine decay to ``min_lr_ratio`` (or a constant rate)."""
    name = schedule["name"].lower()
    if name not in ("cosine", "constant"):
        raise InvalidInputError(f"unknown schedule {schedule['name']!r}; use cosine or constant")
    warmup = int(schedule.get("warmup_epochs", 0) * steps_per_epoch)
    total = max(epochs * steps_per_epoch, 1)
    floor = float(schedule.get("min_lr_ratio", 0.0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if name == "constant":
            return 1.0
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_network(cfg: dict[str, Any], class_names: list[str]) -> tuple[nn.Module, str, TemporalSampling]:
    """The model for ``cfg`` (fresh, or from ``cfg['init']`` with its head resized to the classes).

    Returns (model, joint_layout, sampling); a fine-tuned model keeps its checkpoint's layout.
    """
    data = cfg["data"]
    sampling = TemporalSampling(int(data["frames_per_window"]), float(data["window_seconds"]))
    if cfg.get("init"):
        ck = load_checkpoint(cfg["init"])
        hparams = trained_hparams(ck)
        layout = cfg["model"].get("layout", ck.joint_layout)
        if cfg.get("init_modality"):
            # e.g. a pose model grows an RGB stream: the transformer starts from the pose model, the
            # CNN and the tensors that read it are new (the log lists them)
            if "modality" not in hparams:
                raise InvalidInputError(f"--init {cfg['init']}: a {ck.model_name} model has no modality to change")
            hparams["modality"] = cfg["init_modality"]
        if layout != ck.joint_layout:
            if "layout" not in hparams:
                raise InvalidInputError(f"--init {cfg['init']}: a {ck.model_name} model cannot change its joint layout")
            hparams |= {"layout": layout, "num_joints": get_layout(layout).num_joints}
        if cfg["model"].get("joint_depth") and not hparams.get("joint_depth"):
            if "joint_depth" not in constructor_parameters(ck.model_name):
                raise InvalidInputError(f"--init {cfg['init']}: a {ck.model_name} model cannot take joint depth")
            hparams["joint_depth"] = True  # the model learns depth from here (widen_input_columns)
        # flip_test is the other model key read with init: a test-time switch, the weights do not depend on it
        hparams = with_test_flip(ck.model_name, hparams, class_names, cfg["model"].get("flip_test"))
        net = build_model(ck.model_name, len(class_names), **hparams)
        own = net.state_dict()
        weights, widened = widen_input_columns(net, relayout_joint_parameters(net, ck.state_dict, ck.joint_layout, layout))
        compatible = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
        if not any(not k.startswith("head.") for k in compatible):  # would silently train from scratch
            raise InvalidInputError(f"--init {cfg['init']}: none of its tensors fits a {ck.model_name} model "
                                    "built from its own header (a damaged checkpoint?)")
        net.load_state_dict(compatible, strict=False)
        log.info("initialised from %s (%s -> %d classes, %s -> %s joints); new: %s%s", cfg["init"],
                 len(ck.class_names), len(class_names), ck.joint_layout, layout,
                 summarize_names(set(own) - set(compatible)) or "nothing",
                 f"; new zero input columns: {summarize_names(widened)}" if widened else "")
    else:
        model_cfg = dict(cfg["model"])
        name = model_cfg.pop("name")
        layout = model_cfg.pop("layout", "penn13")
        if "layout" in constructor_parameters(name):  # models that use the skeleton graph get it too
            model_cfg["layout"] = layout
        model_cfg = with_test_flip(name, model_cfg, class_names)
        net = build_model(name, len(class_names), num_joints=get_layout(layout).num_joints, **model_cfg)
    if cfg.get("freeze_backbone"):
        for key, param in net.named_parameters():
            param.requires_grad_(key.startswith("head."))
    return net, layout, sampling


FITTED_HEADS = ("importance_head", "novelty_head")


def trained_hparams(ck: Checkpoint) -> dict[str, Any]:
    """``ck``'s constructor arguments without what is fitted after training (importance and novelty
    heads: they would mislead on weights that changed) and without backbone weights to fetch."""
    return {k: v for k, v in ck.hparams.items() if k not in ("backbone_weights", *FITTED_HEADS)}


def with_test_flip(name: str, hparams: dict[str, Any], class_names: list[str],
                   flip_test: bool | None = None) -> dict[str, Any]:
    """``hparams`` of model ``name`` with the vocabulary's mirror table (models with a test-time
    flip) and, unless ``flip_test`` is None, the flip switched on or off."""
    if "mirror_classes" not in constructor_parameters(name):
        if flip_test is not None:
            raise InvalidInputError(f"a {name} model has no test-time flip")
        return hparams
    switched = {} if flip_test is None else {"flip_test": flip_test}
    return {**hparams, "mirror_classes": mirror_classes(class_names), **switched}


def summarize_names(names: set[str]) -> str:
    """Tensor names grouped by their top-level module: ``backbone (126 tensors), head.4.bias, ...``."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(name.split(".")[0], []).append(name)
    return ", ".join(members[0] if len(members) == 1 else f"{module} ({len(members)} tensors)"
                     for module, members in groups.items())


def relayout_joint_parameters(net: nn.Module, weights: dict[str, torch.Tensor], src: str | None,
                              dst: str | None) -> dict[str, torch.Tensor]:
    """``weights`` of a model for joint layout ``src`` made to fit ``net`` in layout ``dst``: each
    row of the model's per-joint parameters (its ``joint_parameters``) is taken from the joint that
    stands in for it (:func:`~star_har.model.skeleton.joint_stand_ins`: the same joint, or a
    hand's wrist); a joint with no stand-in keeps ``net``'s fresh row."""
    if src == dst or src is None or dst is None:
        return weights
    own = net.state_dict()
    stand_ins = joint_stand_ins(src, dst)
    weights = dict(weights)
    for key in getattr(net, "joint_parameters", ()):
        rows = own[key].clone()
        for joint, source in enumerate(stand_ins):
            if source is not None:
                rows[joint] = weights[key][source]
        weights[key] = rows
    return weights


def widen_input_columns(net: nn.Module, weights: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
    """``weights`` whose ``net.widened_parameters`` (2-D input weights) have fewer input columns
    than ``net``'s, padded with zero columns, and the names of those padded: new inputs appended
    after the trained ones start with no effect, so the widened model computes what the checkpoint did."""
    own, weights, widened = net.state_dict(), dict(weights), set()
    for key in getattr(net, "widened_parameters", ()):
        old = weights.get(key)
        if old is not None and old.ndim == 2 and old.shape[0] == own[key].shape[0] and old.shape[1] < own[key].shape[1]:
            weights[key] = torch.cat((old, old.new_zeros(old.shape[0], own[key].shape[1] - old.shape[1])), dim=1)
            widened.add(key)
    return weights, widened


def model_name_of(cfg: dict[str, Any]) -> str:
    return load_checkpoint(cfg["init"]).model_name if cfg.get("init") else cfg["model"]["name"]


def autocast_dtype(cfg: dict[str, Any], device: torch.device) -> torch.dtype | None:
    """Mixed precision of a run: fp16 on CUDA (``amp``), bf16 on a CPU (``cpu_bf16``), else None."""
    if device.type == "cuda":
        return torch.float16 if cfg["amp"] else None
    return torch.bfloat16 if cfg.get("cpu_bf16") else None


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


@torch.no_grad()
def window_outputs(net: nn.Module, dataset: WindowDataset, batch_size: int, device: torch.device,
                   autocast: torch.dtype | None = None, progress: bool = True,
                   features: bool = False) -> dict[str, np.ndarray]:
    """Every window of ``dataset`` through ``net``: ``logits`` ``(N, K)``, ``novelty`` ``(N,)``,
    ``labels`` ``(N,)``, ``sequences`` ``(N,)`` (index of each window's sequence) and, with
    ``features``, what the classification head reads ``(N, D)`` (the model's ``head`` input; with
    test-time flip, that of the window as it is); ``autocast``: mixed precision (None: fp32)."""
    net.eval()
    keys = ("logits", "novelty", "labels", "sequences") + (("features",) if features else ())
    out: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    hook = net.head.register_forward_hook(
        lambda module, inputs, output: out["features"].append(inputs[0].float().cpu().numpy())) if features else None
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    try:
        for batch in tqdm(loader, desc="evaluate", leave=False, disable=not progress):
            frames = batch["frames"].to(device) if "frames" in batch else None
            with _autocast(device, autocast):
                result = net(frames, batch["keypoints"].to(device))
            out["logits"].append(result.logits.float().cpu().numpy())
            out["novelty"].append(result.novelty.float().cpu().numpy())
            out["labels"].append(batch["label"].numpy())
            out["sequences"].append(batch["sequence"].numpy())
            if features:  # a flipped copy rides in the same head call: keep the window's own rows
                out["features"][-1] = out["features"][-1][:len(batch["label"])]
    finally:
        if hook is not None:
            hook.remove()
    if not out["logits"]:
        empty = {"logits": np.zeros((0, 0), np.float32), "features": np.zeros((0, 0), np.float32)}
        return {key: empty.get(key, np.zeros(0, np.int64 if key in ("labels", "sequences") else np.float32))
                for key in keys}
    return {key: np.concatenate(values) for key, values in out.items()}


def predict_windows(net: nn.Module, dataset: WindowDataset, batch_size: int, device: torch.device,
                    autocast: torch.dtype | None = None,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits ``(N, K)``, labels ``(N,)`` and sequence indices ``(N,)`` of every window of ``dataset``."""
    out = window_outputs(net, dataset, batch_size, device, autocast, progress)
    return out["logits"], out["labels"], out["sequences"]


def _write_csv(history: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for h in history for k in h))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def _distributed() -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether this call started the process group: torchrun's case)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    started = world > 1 and not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if cuda else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device, started


def _rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain values, so last.pt loads with weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_training_state(path: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """``last.pt`` (tensors and plain values only), checked against ``cfg``; one-line errors."""
    if not path.is_file():
        raise MissingFileError(f"nothing to resume: {path} does not exist")
    try:
        state = plain_torch_load(path)
    except PickledObjectsError:
        raise InvalidInputError(f"cannot resume: {path} is not a star-har training state (it holds pickled "
                                "Python objects, which are never loaded)") from None
    except pickle.UnpicklingError:
        raise InvalidInputError(f"cannot resume: {path} is unreadable (truncated?): delete it to train "
                                "from the start") from None
    except Exception as exc:  # torch raises many types for a truncated file
        raise InvalidInputError(f"cannot resume: {path} is unreadable ({type(exc).__name__}; truncated?): "
                                "delete it to train from the start") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "config", "rng"} <= set(state):
        raise InvalidInputError(f"cannot resume: {path} is not a star-har training state")
    changes = config_changes(state["config"], cfg)
    if changes:
        raise InvalidInputError(f"cannot resume: the config differs from the one {path} was trained with "
                                f"({'; '.join(changes)}); use the same config or a new --output")
    return state


def train(cfg: dict[str, Any], resume: bool = False, command: str | None = None,
          progress: bool = True, export: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train as configured; returns the summary (also ``summary.json`` in the output folder).

    Writes to ``cfg['output']``: ``last.pt`` (full training state, every epoch), ``best.pt`` (a
    star-har checkpoint, best validation single-window top-1; with ``ema_decay``, of the weight
    average), ``log.csv``, ``tensorboard/``, ``curves.png``, ``confusion.png``, ``summary.json``; and
    nowhere else but ``export`` (a copy of the final best.pt), which only the caller names, never a
    config file. With a ``soup`` section, the branches' fine-tunes follow in ``soup/branch<i>/`` and
    their average is ``soup.pt`` (validated like an epoch), the model the command produces and exports.
    """
    cfg = validate_config(cfg)
    # the main run's config never holds the soup: a soup can be added to a finished run by --resume
    soup = cfg.pop("soup", None)
    branches = branch_configs(cfg, soup, Path(cfg["output"]) / BEST_FILE) if soup else []  # bad keys: now
    rank, world, device, started = _distributed()
    try:
        summary = _train(cfg, rank, world, device, resume, command, progress, export)  # a soup replaces export
        if soup:
            summary = _soup(cfg, soup, branches, rank, world, device, resume, command, progress, export)
        return summary
    finally:
        if started:
            # the DDP wrapper (in reference cycles) still holds the group: collect it, so the group's
            # threads stop here and not in interpreter teardown, where a gloo rank aborted now and then
            gc.collect()
            dist.destroy_process_group()


def _train(cfg: dict[str, Any], rank: int, world: int, device: torch.device, resume: bool, command: str | None,
           progress: bool, export: str | os.PathLike | None) -> dict[str, Any]:
    seed_everything(int(cfg["seed"]))
    out = Path(cfg["output"])
    state_path = out / STATE_FILE
    state = load_training_state(state_path, cfg) if resume else None
    train_seqs, val_seqs, class_names = load_splits(cfg["data"])
    net, layout, sampling = build_network(cfg, class_names)
    model_name = model_name_of(cfg)
    modality = net.hparams.get("modality", "pose")
    data = cfg["data"]
    augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["augment"].items()})
    train_set = WindowDataset(train_seqs, class_names, layout, sampling, augment, repeats=int(data["repeats"]),
                              modality=modality, image_size=int(data["image_size"]), seed=int(cfg["seed"]),
                              crop_region=data["crop_region"], class_balance=float(data["class_balance"]),
                              depth=bool(net.hparams.get("joint_depth")))
    val_set = WindowDataset(val_seqs, class_names, layout, sampling, None,
                            windows_per_sequence=int(data["eval_windows"]), modality=modality,
                            image_size=int(data["image_size"]), crop_region=data["crop_region"],
                            depth=bool(net.hparams.get("joint_depth")))
    sampler = ShardedBatchSampler(len(train_set), int(cfg["batch_size"]), rank, world, int(cfg["seed"]))
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=int(cfg["num_workers"]))

    net.to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg["optim"])
    epochs = int(cfg["epochs"])
    scheduler = build_scheduler(optimizer, cfg["schedule"], epochs, len(sampler))
    autocast = autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast == torch.float16)  # bf16 needs no loss scaling
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    average = WeightAverage(net, float(cfg["ema_decay"])) if cfg.get("ema_decay") else None
    evaluated = average.module if average is not None else net  # what is validated and saved
    num_params = sum(p.numel() for p in net.parameters())

    history: list[dict] = []
    best: dict[str, Any] = {"val_window_top1": -1.0}
    start_epoch, elapsed = 0, 0.0
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if average is not None:
            average.load_state_dict(state["ema"])
        history, best, start_epoch, elapsed = state["history"], state["best"], state["epoch"], state["elapsed"]
        _set_rng_state(state["rng"])
        log.info("resumed from %s at epoch %d", state_path, start_epoch)

    writer = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_epoch + 1)
        log.info("%s (%s, %.2fM parameters) on %s x%d: %d training windows/epoch, %d validation windows",
                 model_name, modality, num_params / 1e6, device, world, len(train_set), len(val_set))
    limit = cfg.get("time_limit_minutes")
    epochs_done = start_epoch
    for epoch in range(start_epoch, epochs):
        tic = time.time()
        model.train()
        train_set.set_epoch(epoch)
        sampler.set_epoch(epoch)
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not progress or rank != 0)
        for batch in bar:
            keypoints, labels = batch["keypoints"].to(device), batch["label"].to(device)
            frames = batch["frames"].to(device) if "frames" in batch else None
            with _autocast(device, autocast):
                logits = model(frames, keypoints).logits
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=float(cfg["label_smoothing"]))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.get("grad_clip"):
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(params, float(cfg["grad_clip"]))
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if average is not None:
                average.update(net)
            totals += torch.tensor([loss.item() * len(labels), (logits.argmax(1) == labels).sum().item(), len(labels)],
                                   dtype=torch.float64)
            bar.set_postfix(loss=f"{totals[0] / totals[2]:.3f}", acc=f"{totals[1] / totals[2]:.3f}")
        if world > 1:
            dist.all_reduce(totals)
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                  "train_loss": float(totals[0] / totals[2]), "train_acc": float(totals[1] / totals[2])}
        stop = torch.zeros(1)
        if rank == 0:
            record.update(_validate(evaluated, val_set, class_names, cfg, device, autocast, progress))
            elapsed += time.time() - tic  # wall time of the epoch, validation included
            record["time_s"] = round(elapsed, 1)
            history.append(record)
            improved = not val_seqs or record["val_window_top1"] > best["val_window_top1"]  # nothing held out: the last
            if improved:
                best = {k: v for k, v in record.items() if k != "val_report"}
                meta = _meta(cfg, command, best, elapsed, num_params, len(train_seqs), len(val_seqs), modality)
                save_checkpoint(out / BEST_FILE, evaluated, model_name=model_name, class_names=class_names,
                                joint_layout=layout, sampling=sampling, meta=meta)
            _log_epoch(record, history, writer, out, improved)
            atomic_torch_save({"epoch": epoch + 1, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                               "history": history, "best": best, "elapsed": elapsed, "rng": _rng_state(),
                               "config": cfg, **({"ema": average.state_dict()} if average is not None else {})},
                              state_path)
            per_epoch = elapsed / (epoch + 1 - start_epoch) if epoch + 1 > start_epoch else 0
            if limit and elapsed + per_epoch > float(limit) * 60 and epoch + 1 < epochs:
                log.info("stopping after epoch %d: the next would overrun time_limit_minutes=%s", epoch + 1, limit)
                stop[0] = 1
        if world > 1:
            dist.broadcast(stop, 0)
        epochs_done = epoch + 1
        if stop.item():
            break
    summary: dict[str, Any] = {}
    if rank == 0:
        summary = _finish(cfg, command, out, history, best, elapsed, num_params, class_names, writer,
                          len(train_seqs), len(val_seqs), epochs_done, export)
    if world > 1:
        dist.barrier()
    return summary


def _soup(cfg: dict[str, Any], soup: dict[str, Any], branches: list[dict[str, Any]], rank: int, world: int, device: torch.device,
          resume: bool, command: str | None, progress: bool, export: str | os.PathLike | None) -> dict[str, Any]:
    """Fine-tune the main run's best.pt once per branch config, average the branches' best
    checkpoints into ``soup.pt`` and validate it. ``time_limit_minutes`` covers the whole command:
    branches that would start past it are left out (a soup needs two)."""
    out = Path(cfg["output"])
    main = json.loads((out / "summary.json").read_text())  # every rank: rank 0 wrote it before the barrier
    spent, per_epoch = float(main["train_time_s"]), float(main["train_time_s"]) / max(int(main["epochs"]), 1)
    limit = cfg.get("time_limit_minutes")
    done: list[dict[str, Any]] = []
    for index, branch in enumerate(branches, 1):
        if limit and float(limit) * 60 - spent < per_epoch:
            log.info("soup: branches %d-%d left out: they would overrun time_limit_minutes=%s",
                     index, len(branches), limit)
            break
        if limit:
            branch = {**branch, "time_limit_minutes": float(limit) - spent / 60}
        log.info("soup: branch %d of %d (%s)", index, len(branches),
                 ", ".join(f"{k}={v}" for k, v in soup["branches"][index - 1].items()) or "the main config")
        _train(branch, rank, world, device, resume and (Path(branch["output"]) / STATE_FILE).is_file(),
               command, progress, None)
        result = json.loads((Path(branch["output"]) / "summary.json").read_text())
        spent += float(result["train_time_s"])
        done.append(result)
    if rank != 0:
        return {}
    if len(done) < 2:
        log.warning("soup: %d branch(es) trained, no soup; the model is %s", len(done), out / BEST_FILE)
        return main | {"train_time_s": round(spent, 1)}
    soup_meta = {"epochs": soup["epochs"], "lr": soup["lr"], "ema_decay": soup["ema_decay"],
                 "branches": soup["branches"][:len(done)],
                 "main_validation": {k: v for k, v in main["best"].items() if k.startswith("val_")}}
    destinations = [out / SOUP_FILE] + ([Path(export)] if export is not None else [])
    record, report = cook_soup([Path(r["output"]) / BEST_FILE for r in done], cfg, destinations, command,
                               soup_meta, spent, device, progress, out / "soup" / "confusion.png")
    summary = {"epochs": main["epochs"], "train_time_s": round(spent, 1), "parameters": main["parameters"],
               "best": record, "output": str(out), "checkpoint": str(out / SOUP_FILE), "main": main["best"],
               "branches": [r["best"] for r in done], **({"validation": report} if report else {}),
               **({"export": str(export)} if export is not None else {})}
    (out / "soup" / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def cook_soup(checkpoints: list[Path], cfg: dict[str, Any] | None, destinations: list[Path], command: str | None,
              soup_meta: dict[str, Any], train_time_s: float | None, device: torch.device, progress: bool = True,
              confusion_png: Path | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Average ``checkpoints`` (one architecture, vocabulary and layout: else a one-line error),
    validate the average on the held-out split of ``cfg['data']`` (None: the training config the
    first one records) like an epoch, and save it to every destination with ``meta['soup']``
    (``soup_meta`` + each ingredient's validation). ``train_time_s`` None: the ingredients' own
    training times summed. Returns the validation record and report."""
    cks = [load_checkpoint(path) for path in checkpoints]
    if cfg is None:
        if not isinstance(cks[0].meta.get("config"), dict):
            raise InvalidInputError(f"{checkpoints[0]} records no training config: name one with --config "
                                    "(its data section is the validation split)")
        cfg = validate_config(cks[0].meta["config"], f"the training config recorded in {checkpoints[0]}")
    if train_time_s is None:
        train_time_s = float(sum(ck.meta.get("train_time_s") or 0 for ck in cks))
    # Calibrated and uncalibrated checkpoints mix: the fitted heads are left out (fit them again on
    # the soup), and a mirror table older checkpoints lack is the vocabulary's.
    def architecture(ck: Checkpoint) -> tuple:
        return (ck.model_name, ck.class_names, ck.joint_layout,
                with_test_flip(ck.model_name, trained_hparams(ck), ck.class_names))

    reference = architecture(cks[0])
    for path, ck in zip(checkpoints[1:], cks[1:]):
        if architecture(ck) != reference:
            raise InvalidInputError(f"cannot average {path} with {checkpoints[0]}: they differ in model, "
                                    "classes, joint layout or constructor arguments")
    name, _, _, hparams = reference
    net = build_model(name, cks[0].num_classes, **hparams)
    fitted = tuple(f"{head}." for head in FITTED_HEADS)
    net.load_state_dict(average_weights([{k: v for k, v in ck.state_dict.items() if not k.startswith(fitted)}
                                         for ck in cks]))
    net.eval()
    net.to(device)
    _, val_seqs, class_names = load_splits(cfg["data"])
    val_set = WindowDataset.for_checkpoint(cks[0], val_seqs, int(cfg["data"]["eval_windows"]), class_names)
    record = _validate(net, val_set, class_names, cfg, device, autocast_dtype(cfg, device), progress)
    report = record.pop("val_report", None)
    meta = _meta(cfg, command, record, train_time_s, sum(p.numel() for p in net.parameters()),
                 cks[0].meta.get("dataset", {}).get("train_sequences", 0), len(val_seqs),
                 cks[0].hparams.get("modality", "pose"))
    meta["soup"] = {**soup_meta, "ingredients": [str(p) for p in checkpoints],
                    "ingredient_validation": [ck.meta.get("validation", {}) for ck in cks]}
    net.cpu()
    for path in destinations:
        save_checkpoint(path, net, **cks[0].header, meta=meta)
    log.info("soup of %d: %s", len(cks), ", ".join(f"{k} {v:.4g}" for k, v in record.items()))
    if report is not None and confusion_png is not None:
        plot_confusion(np.array(report["confusion"]), class_names, confusion_png,
                       f"validation, soup of {len(cks)} (video top-1 {report['video_top1']:.3f})")
    return record, report


def _validate(net: nn.Module, val_set: WindowDataset, class_names: list[str], cfg: dict[str, Any],
              device: torch.device, autocast: torch.dtype | None, progress: bool) -> dict[str, Any]:
    if len(val_set) == 0:
        return {}
    scores, labels, sequences = predict_windows(net, val_set, int(cfg["batch_size"]), device, autocast, progress)
    report = summarize(scores, labels, sequences, class_names)
    loss = F.cross_entropy(torch.from_numpy(scores), torch.from_numpy(labels)).item()
    return {"val_loss": loss, "val_window_top1": report["all_windows_top1"],
            "val_centred_window_top1": report["centred_window_top1"], "val_top1": report["video_top1"],
            "val_top5": report["video_top5"], "val_report": report}


def _log_epoch(record: dict, history: list[dict], writer, out: Path, improved: bool) -> None:
    scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "epoch"}
    for key, value in scalars.items():
        writer.add_scalar(key, value, record["epoch"])
    writer.flush()
    flat = [{k: v for k, v in h.items() if k != "val_report"} for h in history]
    _write_csv(flat, out / "log.csv")
    if record["epoch"] % 10 == 0:  # plotting is slow on a busy CPU: every 10 epochs and at the end
        plot_curves(flat, out / "curves.png")
    log.info("epoch %d: %s%s", record["epoch"],
             ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()), " (best)" if improved else "")


def crop_meta(cfg: dict[str, Any], modality: str) -> dict[str, Any]:
    """The checkpoint ``meta`` entry of the crops an RGB model is trained on (nothing for pose)."""
    size = int(cfg["data"]["image_size"])
    return {"input_size": [size, size], "crop_region": cfg["data"]["crop_region"]} if modality != "pose" else {}


def _meta(cfg: dict[str, Any], command: str | None, best: dict, elapsed: float, num_params: int,
          num_train: int, num_val: int, modality: str) -> dict[str, Any]:
    import platform
    return {**crop_meta(cfg, modality), "command": command, "config": json.loads(json.dumps(cfg, default=str)),
            "dataset": {"kind": cfg["data"]["kind"], "root": str(cfg["data"]["root"]),
                        "train_sequences": num_train, "val_sequences": num_val},
            "best_epoch": best.get("epoch"), "validation": {k: v for k, v in best.items() if k.startswith("val_")},
            "train_time_s": round(elapsed, 1), "parameters": num_params,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"
                       + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
                       + f", torch {torch.__version__}"}


def _finish(cfg: dict[str, Any], command: str | None, out: Path, history: list[dict], best: dict,
            elapsed: float, num_params: int, class_names: list[str], writer, num_train: int, num_val: int,
            epochs_done: int, export: str | os.PathLike | None) -> dict[str, Any]:
    """Final meta into best.pt (total training time), confusion PNG, summary.json, export."""
    writer.close()
    if history:
        plot_curves([{k: v for k, v in h.items() if k != "val_report"} for h in history], out / "curves.png")
    summary = {"epochs": epochs_done, "train_time_s": round(elapsed, 1), "parameters": num_params,
               "best": best, "output": str(out)}
    best_path = out / BEST_FILE
    if best_path.is_file():
        ck = load_checkpoint(best_path)
        meta = _meta(cfg, command, best, elapsed, num_params, num_train, num_val,
                     ck.hparams.get("modality", "pose"))
        meta["epochs_run"] = epochs_done
        save_checkpoint(best_path, ck.build(), **ck.header, meta=meta)
        report = next((h["val_report"] for h in history if h["epoch"] == best.get("epoch") and "val_report" in h), None)
        if report is not None:
            plot_confusion(np.array(report["confusion"]), class_names, out / "confusion.png",
                           f"validation, epoch {best['epoch']} (video top-1 {report['video_top1']:.3f})")
            summary["validation"] = report
        if export is not None:
            save_checkpoint(export, ck.build(), **ck.header, meta=meta)
            summary["export"] = str(export)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
