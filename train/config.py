"""Training configuration: nested dicts read from YAML, filled with defaults, overridable by
``key.sub=value`` strings from the command line (values parsed as YAML: ``1e-3``, ``true``, ``[1, 2]``),
then validated as a whole against a pydantic schema.

The schema below is the one list of keys, types, limits and defaults (:data:`DEFAULTS` is derived
from it): a new setting is one field here. Two sections are checked against the code they feed
instead of a hand-kept list: ``model:`` holds the keyword arguments of the registered model it
names (checked against that constructor's signature, so a new model argument needs no edit here)
and ``augment:`` the fields of :class:`~star_har.train.augment.AugmentConfig`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import inspect
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)

from star_har.errors import InvalidInputError, MissingFileError
from star_har.train.datasets import KINDS

# The model and augmentation modules (torch) are imported where a section is checked, so that the
# command-line parser can read defaults from this schema without loading torch.

# Paths are kept as strings: the config travels in checkpoints that load with weights_only=True.
PathStr = Annotated[str, BeforeValidator(lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v)]
#: Model arguments that training derives itself (class count from the data, joints from the layout).
DERIVED_MODEL_ARGS = ("num_classes", "num_joints")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    kind: str = "penn_action"
    root: PathStr | None = None
    val_root: PathStr | None = None                # a separate validation folder, else a held-out part of root
    val_fraction: float = Field(0.15, ge=0, lt=1)
    split_seed: int = 0
    protocol: Literal["xsub", "xview", "xset"] = "xsub"   # NTU RGB+D
    classes: list[str] | None = None               # restrict to / order classes as listed
    frames_per_window: int = Field(16, ge=1)
    window_seconds: float = Field(1.6, gt=0)
    repeats: int = Field(1, ge=1)                  # random windows per sequence and epoch
    class_balance: float = Field(0.0, ge=0, le=1)  # 0: repeats each; 1: every (source, class) the same windows
    eval_windows: int = Field(5, ge=1)             # windows averaged per sequence in evaluation
    image_size: int = Field(112, ge=8)
    crop_region: str = "body"                      # RGB crops: around the whole body or the upper_body (model/crop.py)
    pose_model: PathStr | None = None              # clips: MediaPipe .task bundle
    pose_cache: PathStr | None = None              # clips: folder for extracted poses (default: the star-har cache)
    dims: Literal["2d", "3d"] = "3d"               # msr_action3d: 3-D metres or 2-D depth-image pixels
    val_subjects: list[str] | None = None          # validation = these subjects (cross-subject split)
    sources: dict[str, DataConfig] | None = None   # everyday: {name: that dataset's data section}
    merge: dict[str, list[str]] | None = None      # everyday: {class: [source class, ...]} one vocabulary
    background: list[str] | None = None            # everyday: classes trained as one background class
    skip_classes: list[str] | None = None          # everyday source: classes left out (unseen: open-set tests)

    @field_validator("kind", "crop_region")
    @classmethod
    def _known_name(cls, value: str, info: ValidationInfo) -> str:
        from star_har.model.crop import CROP_REGIONS  # cv2 and torch: not while building the CLI parser

        what, known = {"kind": ("dataset kind", KINDS), "crop_region": ("crop region", CROP_REGIONS)}[info.field_name]
        if value not in known:
            raise ValueError(f"unknown {what} {value!r}; known: {', '.join(known)}")
        return value


DataConfig.model_rebuild()  # sources nest DataConfig


class OptimConfig(_Section):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(2.0e-4, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1.0e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleConfig(_Section):
    name: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(0, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0, le=1)


class SoupConfig(_Section):
    """After the main run: one short fine-tune of its best checkpoint per branch, averaged (train/soup.py)."""
    branches: list[dict[str, Any]] = Field(min_length=2)  # each {"key.sub": value, ...} over the main config
    epochs: int = Field(6, ge=1)
    lr: float = Field(2.0e-4, gt=0)
    ema_decay: float | None = Field(0.995, gt=0, lt=1)


class TrainConfig(_Section):
    seed: int = 0
    output: PathStr = "runs/train"
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1)              # global: split over processes under torchrun
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)     # max gradient norm; null disables clipping
    ema_decay: float | None = Field(None, gt=0, lt=1)  # validate and save a moving average of the weights (train/ema.py)
    amp: bool = True                               # fp16 mixed precision, used on CUDA only
    cpu_bf16: bool = False                         # bf16 autocast on a CPU (AVX-512 BF16): RGB models ~40 % faster
    num_workers: int = Field(0, ge=0)
    time_limit_minutes: float | None = Field(None, gt=0)   # stop after the epoch that would overrun it
    data: DataConfig = DataConfig()
    model: dict[str, Any] = {"name": "star", "modality": "pose", "dim": 128, "depth": 2, "num_heads": 4}
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    augment: dict[str, Any] = {}                   # AugmentConfig fields
    init: PathStr | None = None                    # checkpoint to fine-tune from (head replaced if classes differ)
    init_modality: Literal["pose", "rgb+pose"] | None = None  # with init: change its modality (pose -> rgb+pose)
    freeze_backbone: bool = False                  # with init: train only the classification head
    soup: SoupConfig | None = None                 # a weight soup of fine-tunes after the run (train/soup.py)


DEFAULTS: dict[str, Any] = TrainConfig().model_dump()
#: Keys whose change does not break ``--resume`` (a longer run, another time budget or loader).
RESUMABLE_CHANGES = ("epochs", "time_limit_minutes", "num_workers", "cpu_bf16")


def _field_schema(name: str, hints: dict[str, Any], defaults: dict[str, Any],
                  extra: dict[str, Any]) -> type[BaseModel]:
    fields = extra | {key: (hints.get(key, Any), default) for key, default in defaults.items()}
    return create_model(name, __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields)


def _hints(obj) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=True)  # keep Annotated limits
    except Exception:  # an annotation that cannot be resolved is checked by the constructor itself
        return {}


@functools.cache
def model_schema(name: str) -> type[BaseModel]:
    """The ``model:`` section for the registered model ``name``: its constructor's arguments."""
    from star_har.model.registry import model_constructor

    constructor = model_constructor(name)
    target = constructor.__init__ if inspect.isclass(constructor) else constructor
    params = {key: p for key, p in inspect.signature(target).parameters.items()
              if key != "self" and key not in DERIVED_MODEL_ARGS
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    defaults = {key: (None if p.default is p.empty else p.default) for key, p in params.items()}
    return _field_schema(f"model {name}", _hints(target), defaults, {"name": (str, ...), "layout": (str, "penn13")})


@functools.cache
def augment_schema() -> type[BaseModel]:
    from star_har.train.augment import AugmentConfig

    return _field_schema("augment", _hints(AugmentConfig),
                         {f.name: f.default for f in dataclasses.fields(AugmentConfig)}, {})


def _known_keys(schema: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        annotation = schema.model_fields[part].annotation if part in schema.model_fields else None
        if not (inspect.isclass(annotation) and issubclass(annotation, BaseModel)):
            return []
        schema = annotation
    return list(schema.model_fields)


def _problems(schema: type[BaseModel], data: Any, prefix: tuple = ()) -> tuple[Any, list[str]]:
    """(validated model or None, one message per problem)."""
    try:
        return schema.model_validate(data), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = ".".join(map(str, prefix + loc)) or "config"
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(str(loc[-1]), _known_keys(schema, loc[:-1]), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                if loc == ("export",):
                    hint = " (training writes only into its output folder: pass --export PATH)"
                problems.append(f"{where}: unknown config key{hint}")
            else:
                message = err["msg"].removeprefix("Value error, ")
                problems.append(f"{where}: {message} (got {err['input']!r})"
                                if err["type"] != "missing" else f"{where}: required")
        return None, problems


def validate_config(cfg: dict[str, Any], origin: str = "config") -> dict[str, Any]:
    """``cfg`` checked against the schema (every problem, in one line) and normalised, as a new dict."""
    top, problems = _problems(TrainConfig, cfg)
    model_cfg = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    model = None
    if not isinstance(model_cfg.get("name"), str):
        problems.append("model.name: required (a registered model, e.g. star)")
    else:
        try:
            model, more = _problems(model_schema(model_cfg["name"]), model_cfg, ("model",))
        except KeyError as exc:  # UnknownNameError lists the registered models
            more = [f"model.name: {exc}"]
        problems += more
    augment, more = _problems(augment_schema(), cfg.get("augment") or {}, ("augment",))
    problems += more
    if model is not None and model.model_dump().get("layout") is not None:
        from star_har.model.skeleton import get_layout

        try:
            get_layout(model.layout)
        except KeyError as exc:
            problems.append(f"model.layout: {exc}")
    if problems:
        raise InvalidInputError(f"invalid {origin}: " + "; ".join(problems))
    out = top.model_dump()
    # only what the config sets: the constructor's own defaults stay the model's business
    out["model"] = model.model_dump(exclude_unset=True) | {"name": model_cfg["name"]}
    out["augment"] = augment.model_dump(exclude_unset=True)
    if top.data.sources:  # a source holds what it sets; the data section's values fill in the rest
        out["data"]["sources"] = {name: source.model_dump(exclude_unset=True)
                                  for name, source in top.data.sources.items()}
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (``model``/``augment`` one level deep)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value} if key in ("model", "augment") else merge(out[key], value)
        else:
            out[key] = value
    return out


def set_value(cfg: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` override in place (the schema checks the key afterwards)."""
    if "=" not in assignment:
        raise InvalidInputError(f"override {assignment!r} must look like key.sub=value")
    path, raw = assignment.split("=", 1)
    set_path(cfg, path.strip(), _parse(raw), f"override {assignment!r}")


def set_path(cfg: dict[str, Any], path: str, value: Any, origin: str = "config") -> None:
    """``cfg[a][b][c] = value`` for ``path`` ``a.b.c``, in place."""
    keys = path.split(".")
    node = cfg
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            raise InvalidInputError(f"unknown config section {key!r} in {origin}")
        node = node[key]
    node[keys[-1]] = value


def _parse(raw: str) -> Any:
    """A YAML value, with ``1e-3`` read as a number (YAML 1.1 wants ``1.0e-3``)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # e.g. an unclosed bracket: kept as text, the schema names the key
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping; syntax errors become one line with the position."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInputError(f"config {path} is not valid YAML{where}: {problem}") from None
    if not isinstance(loaded or {}, dict):
        raise InvalidInputError(f"config {path} must be a YAML mapping")
    return loaded or {}


def load_config(path: str | Path | None, overrides: list[str] = ()) -> dict[str, Any]:
    """Defaults <- YAML file <- overrides, validated."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"config not found: {path}")
        cfg = merge(cfg, read_yaml(path))
    for assignment in overrides:
        set_value(cfg, assignment)
    return validate_config(cfg, f"config {path}" if path is not None else "config")


def config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every setting that differs, ignoring :data:`RESUMABLE_CHANGES`."""
    changes = []
    for key in sorted(set(old) | set(new)):
        if not prefix and key in RESUMABLE_CHANGES:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += config_changes(a, b, f"{prefix}{key}.")
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes
