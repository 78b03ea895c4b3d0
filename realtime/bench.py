"""``star-har bench``: per-window latency of every model on every available engine, model cost
(parameters, FLOPs), ONNX export time, and the whole pipeline's throughput on a video.

Latency is the median (and 90th percentile) wall time of ``engine.infer`` on one window (batch 1),
with the importance bars computed as ``importance`` says (the model's own, its gradient, or
measured occlusion: see :mod:`star_har.realtime.importance`),
over ``repeats`` calls after a warm-up, including the host <-> device copies and the conversion
to numpy that the real-time loop pays. Models without a shipped checkpoint use random weights:
latency does not depend on the weights. FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions and attention; one
multiply-add = 2 FLOPs; element-wise work is not counted).
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from star_har.errors import InvalidInputError
from star_har.model import TemporalSampling, build_model, list_models, load_checkpoint
from star_har.model.checkpoint import Checkpoint
from star_har.realtime import model_checkpoint
from star_har.realtime.config import PipelineConfig
from star_har.realtime.engines import EngineUnavailable, ModelSpec, available_engines, create_engine, resolve_device
from star_har.realtime.engines.table import precision_name
from star_har.realtime.importance import OcclusionImportance

log = logging.getLogger(__name__)

PENN_CLASSES = 15


@dataclass(frozen=True)
class BenchModel:
    """A model configuration to benchmark: ``build_model(model_name, 15, **config)`` at ``input_size``;
    ``config`` None means the shipped checkpoint's own (read from the file, so the sizes cannot drift)."""

    key: str
    model_name: str
    config: dict[str, Any] | None
    input_size: int | None

    def checkpoint(self, frames_per_window: int) -> tuple[Checkpoint, str]:
        """(checkpoint, where its weights come from): the shipped one, or random weights (latency
        does not depend on them) for other configurations and other window lengths."""
        config = self.config
        if config is None:
            path = model_checkpoint(SHIPPED_POSE_MODEL)
            shipped = load_checkpoint(path)
            if shipped.sampling.frames_per_window == frames_per_window:
                return shipped, path.name
            config = shipped.hparams
        torch.manual_seed(0)
        net = build_model(self.model_name, PENN_CLASSES, **config)
        hparams = dict(net.hparams)
        hparams.pop("num_classes")
        meta = {"input_size": [self.input_size, self.input_size]} if self.input_size else {}
        return Checkpoint(self.model_name, PENN_CLASSES, hparams, [f"class_{i}" for i in range(PENN_CLASSES)],
                          "penn13", TemporalSampling(frames_per_window, frames_per_window / 10),
                          net.state_dict(), meta), "random"


#: The shipped pose checkpoint "star-pose" times: penn-sports, with its importance head (the everyday
#: model is the same network on 16 joints instead of 13, without that head: about the same cost).
SHIPPED_POSE_MODEL = "penn-sports"

MODELS = (
    # the shipped checkpoint (its own size), then the architecture defaults
    BenchModel("star-pose", "star", None, None),
    BenchModel("star-pose256", "star", {"modality": "pose"}, None),
    BenchModel("star-rgb64", "star", {"modality": "rgb+pose"}, 64),
    BenchModel("star-rgb112", "star", {"modality": "rgb+pose"}, 112),
    BenchModel("star-rgb224", "star", {"modality": "rgb+pose"}, 224),
    BenchModel("deformable112", "deformable", {"modality": "rgb+pose"}, 112),
    BenchModel("deformable224", "deformable", {"modality": "rgb+pose"}, 224),
)


def bench_models(keys: list[str] | None = None) -> list[BenchModel]:
    """The configurations to run: ``keys`` (default all) among those whose model is registered."""
    registered = set(list_models())
    known = {model.key: model for model in MODELS}
    unknown = sorted(set(keys or []) - known.keys())
    if unknown:
        raise InvalidInputError(f"unknown bench model(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    chosen = [known[key] for key in keys] if keys else list(MODELS)
    skipped = [model.key for model in chosen if model.model_name not in registered]
    if skipped:
        log.warning("not registered, skipped: %s", ", ".join(skipped))
    return [model for model in chosen if model.model_name in registered]


@dataclass
class LatencyRow:
    model: str
    engine: str
    device: str
    precision: str
    input: str
    weights: str
    params_m: float
    gflops: float
    importance: str = "model"
    median_ms: float = float("nan")
    p90_ms: float = float("nan")
    windows_per_s: float = float("nan")
    setup_s: float = float("nan")
    note: str = ""


@dataclass
class PipelineRow:
    video: str
    engine: str
    frames: int
    video_s: float
    wall_s: float
    realtime_factor: float
    pose_ms: float
    inference_ms: float
    window_to_prediction_ms_median: float
    window_to_prediction_ms_max: float
    predictions: int


@dataclass
class BenchReport:
    environment: dict[str, Any]
    latency: list[LatencyRow] = field(default_factory=list)
    pipeline: list[PipelineRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def model_cost(checkpoint: Checkpoint, spec: ModelSpec) -> tuple[float, float]:
    """(parameters in millions, GFLOPs of one window at batch 1)."""
    net = checkpoint.build()
    params = sum(p.numel() for p in net.parameters()) / 1e6
    frames, keypoints = spec.example_inputs(batch=1)
    counter = FlopCounterMode(display=False)
    with counter:  # with autograd on: FlopCounterMode's module tracker hooks need grad_fns
        net(None if frames is None else torch.from_numpy(frames), torch.from_numpy(keypoints))
    return params, counter.get_total_flops() / 1e9


def time_engine(engine, spec: ModelSpec, repeats: int) -> list[float]:
    """Wall times (ms) of ``repeats`` batch-1 calls of ``engine.infer`` (warm the engine first)."""
    frames, keypoints = spec.example_inputs(batch=1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.infer(frames, keypoints)
        times.append((time.perf_counter() - start) * 1000)
    return times


def engine_variants(device: str, engines: list[str] | None, compile: bool) -> list[tuple[str, bool]]:
    """(engine, compile) pairs to benchmark: each available engine, plus compiled torch with ``compile``."""
    available = available_engines(device)
    chosen = engines or available
    missing = sorted(set(chosen) - set(available))
    if missing:
        log.warning("engine(s) not available on %s, skipped: %s", device, ", ".join(missing))
    variants = [(name, False) for name in chosen if name in available]
    if compile and "torch" in [name for name, _ in variants]:
        variants.insert([name for name, _ in variants].index("torch") + 1, ("torch", True))
    return variants


def bench_latency(models: list[BenchModel], device: str, fp16: bool, compile: bool, engines: list[str] | None,
                  repeats: int, warmup: int, frames_per_window: int, cache_dir: Path,
                  threads: int | None = None, bf16: bool = False,
                  importance: tuple[str, ...] = ("model",)) -> list[LatencyRow]:
    rows = []
    variants = [(name, compiled, method) for name, compiled in engine_variants(device, engines, compile)
                for method in importance]
    progress = tqdm(total=len(models) * len(variants), desc="bench", unit="run", leave=False)
    for bench_model in models:
        checkpoint, weights = bench_model.checkpoint(frames_per_window)
        spec = ModelSpec.from_checkpoint(checkpoint)
        params, gflops = model_cost(checkpoint, spec)
        shape = (f"{spec.frames_per_window}x{spec.input_size[0]}x{spec.input_size[1]} + pose"
                 if spec.needs_frames else f"{spec.frames_per_window}x{spec.input_joints} joints")
        for name, compiled, method in variants:
            progress.set_postfix_str(f"{bench_model.key} {name}{'-compile' if compiled else ''} {method}")
            row = LatencyRow(bench_model.key, name + ("-compile" if compiled else ""), device,
                             precision_name(fp16, bf16), shape, weights, round(params, 3), round(gflops, 3),
                             method)
            try:
                # setup: ONNX export / TensorRT build when uncached, torch.compile, warm-up calls
                start = time.perf_counter()
                engine = create_engine(checkpoint, name, device, fp16=fp16, compile=compiled,
                                       cache_dir=cache_dir, threads=threads, bf16=bf16,
                                       gradient_importance=method == "gradient")
                if method == "occlusion":
                    engine = OcclusionImportance(engine)
                engine.warmup(iterations=warmup)
                row.setup_s = time.perf_counter() - start
                times = time_engine(engine, spec, repeats)
                row.median_ms, row.p90_ms = statistics.median(times), float(np.percentile(times, 90))
                row.windows_per_s = 1000 / row.median_ms
                row.precision = engine.precision
            except (EngineUnavailable, ValueError) as exc:
                row.note = str(exc)
            rows.append(row)
            progress.update()
    progress.close()
    return rows


def bench_pipeline(video: Path, checkpoint: Checkpoint, engine_name: str, device: str, fp16: bool,
                   pose_model: str | None, cache_dir: Path, hop_seconds: float, bf16: bool = False) -> PipelineRow:
    """Run the real-time pipeline over ``video`` as fast as possible (every frame, no pacing)."""
    import cv2

    from star_har.realtime.pipeline import Pipeline

    capture = cv2.VideoCapture(str(video))
    fps, frame_count = capture.get(cv2.CAP_PROP_FPS) or 30.0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    engine = create_engine(checkpoint, engine_name, device, fp16=fp16, cache_dir=cache_dir, bf16=bf16)
    engine.warmup()
    delays: list[float] = []
    config = PipelineConfig(source=str(video), engine=engine.name, device=device, fp16=fp16, bf16=bf16,
                            hop_seconds=hop_seconds, pose_model=pose_model)
    pipeline = Pipeline(config, engine=engine, checkpoint=checkpoint,
                        on_prediction=lambda prediction: delays.append(prediction.window_to_prediction_ms))
    start = time.perf_counter()
    pipeline.start()
    pipeline.wait()
    wall = time.perf_counter() - start
    pipeline.join()
    if pipeline.error:
        raise RuntimeError(f"pipeline failed on {video}: {pipeline.error}")
    snapshot = pipeline.metrics.snapshot()
    frames = snapshot.frames_processed or frame_count
    return PipelineRow(video.name, engine.name, frames, frames / fps, wall, (frames / fps) / wall,
                       snapshot.pose_ms, snapshot.inference_ms,
                       statistics.median(delays) if delays else float("nan"),
                       max(delays) if delays else float("nan"), len(delays))


def environment(device: str, threads: int) -> dict[str, Any]:
    import onnxruntime

    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "platform": platform.platform(),
           "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
           "onnxruntime": onnxruntime.__version__, "threads": threads, "device": device}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "-" if np.isnan(value) else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_table(rows: list, columns: list[str] | None = None) -> str:
    if not rows:
        return ""
    columns = columns or list(asdict(rows[0]))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(asdict(row)[column]) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_report(report: BenchReport, output_dir: Path, stem: str) -> list[Path]:
    """bench JSON, one CSV per table and a markdown summary in ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = [output_dir / f"{stem}.json", output_dir / f"{stem}.md"]
    paths[0].write_text(json.dumps(asdict(report), indent=1, default=str))
    paths[1].write_text(render_markdown(report) + "\n")
    for name, rows in (("latency", report.latency), ("pipeline", report.pipeline)):
        if rows:
            path = output_dir / f"{stem}-{name}.csv"
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
                writer.writeheader()
                writer.writerows(asdict(row) for row in rows)
            paths.append(path)
    return paths


def render_markdown(report: BenchReport) -> str:
    env = ", ".join(f"{key} {value}" for key, value in report.environment.items())
    parts = [f"Environment: {env}", "", "Per-window latency (batch 1):", "",
             markdown_table(report.latency, ["model", "weights", "engine", "device", "precision", "importance",
                                             "input", "params_m",
                                             "gflops", "median_ms", "p90_ms", "windows_per_s", "setup_s"])]
    if report.pipeline:
        parts += ["", "Whole pipeline (capture + MediaPipe + ring buffer + model), as fast as possible:", "",
                  markdown_table(report.pipeline)]
    notes = report.notes + [f"{row.model} {row.engine}: {row.note}" for row in report.latency if row.note]
    if notes:
        parts += ["", *[f"- {note}" for note in notes]]
    return "\n".join(parts)


def run_bench(models: list[str] | None = None, engines: list[str] | None = None, device: str = "auto",
              fp16: bool = False, compile: bool = False, repeats: int = 20, warmup: int = 3,
              frames_per_window: int = 16, threads: int | None = None, video: Path | None = None,
              pose_model: str | None = None, hop_seconds: float = PipelineConfig.default("hop_seconds"),
              cache_dir: Path | None = None, bf16: bool = False,
              pipeline_model: str = "star-pose", importance: tuple[str, ...] = ("model",)) -> BenchReport:
    """Run the benchmark (see the module doc) and return its report."""
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    report = BenchReport(environment(device, torch.get_num_threads()))
    chosen = bench_models(models)
    piped = bench_models([pipeline_model])[0] if video is not None else None  # a bad name fails first
    with tempfile.TemporaryDirectory(prefix="star-har-bench-") as scratch:
        # A fresh cache by default, so that setup_s includes the ONNX export / engine build.
        cache = Path(cache_dir) if cache_dir else Path(scratch)
        report.latency = bench_latency(chosen, device, fp16, compile, engines, repeats, warmup,
                                       frames_per_window, cache, threads, bf16, tuple(importance))
        if piped is not None:
            checkpoint, weights = piped.checkpoint(frames_per_window)
            for name, _ in engine_variants(device, engines, compile=False):
                try:
                    report.pipeline.append(bench_pipeline(Path(video), checkpoint, name, device, fp16,
                                                          pose_model, cache, hop_seconds, bf16))
                except (EngineUnavailable, ValueError) as exc:  # e.g. fp16 without ORT's TensorRT provider
                    report.notes.append(f"pipeline with {name}: {exc}")
            report.notes.append(f"pipeline rows: {pipeline_model} ({weights}), a prediction every {hop_seconds:g} s")
    return report
