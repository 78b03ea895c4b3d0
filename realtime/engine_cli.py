"""``star-har export`` and ``star-har bench``: the inference engines' commands."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from star_har.args import positive_int
from star_har.errors import MissingFileError
from star_har.realtime.config import IMPORTANCE_METHODS
from star_har.realtime.engines.table import DEVICES, engine_names, precision_name
from star_har.realtime.options import add_pipeline_options

log = logging.getLogger(__name__)


def _input_size(value: int | None) -> tuple[int, int] | None:
    return None if value is None else (value, value)


def export_command(args: argparse.Namespace) -> int:
    from star_har.errors import UserError
    from star_har.model import load_checkpoint
    from star_har.realtime.engines import EngineUnavailable, ModelSpec
    from star_har.realtime.export import export_checkpoint_onnx, export_tensorrt

    checkpoint = load_checkpoint(args.checkpoint)
    spec = ModelSpec.from_checkpoint(checkpoint, _input_size(args.input_size))
    if args.format == "onnx" and args.fp16:
        raise UserError("--fp16 applies to --format tensorrt; ONNX graphs are exported in fp32 "
                        "(ONNX Runtime's TensorRT provider runs them in fp16 with --fp16 at run time)")
    try:
        if args.format == "onnx":
            path = export_checkpoint_onnx(checkpoint, spec, args.output, gradient=args.importance == "gradient")
        else:
            path = export_tensorrt(checkpoint, spec, args.output, fp16=args.fp16, max_batch=args.max_batch,
                                   gradient=args.importance == "gradient")
    except EngineUnavailable as exc:
        raise UserError(str(exc)) from None
    inputs = f"frames (B, 3, T, {spec.input_size[0]}, {spec.input_size[1]}) + keypoints" if spec.needs_frames else "keypoints"
    print(f"wrote {path} ({args.format}, {checkpoint.model_name}, inputs: {inputs} (B, T, {spec.input_joints}, {spec.keypoint_channels}), "
          f"{len(spec.class_names)} classes)")
    return 0


def bench_command(args: argparse.Namespace) -> int:
    from star_har.errors import UserError
    from star_har.realtime.bench import render_markdown, run_bench, write_report
    from star_har.realtime.engines import EngineUnavailable

    if args.video is not None:  # a bad video fails now, not after minutes of latency runs
        from star_har.realtime.capture import open_source

        if not Path(args.video).is_file():
            raise MissingFileError(f"video not found: {args.video}")
        open_source(args.video)
    models = args.models or (["star-pose", "star-rgb112"] if args.quick else None)
    repeats = min(args.repeats, 5) if args.quick else args.repeats
    try:
        report = run_bench(models=models, engines=args.engines, device=args.device, fp16=args.fp16,
                           compile=args.compile, repeats=repeats, warmup=args.warmup,
                           frames_per_window=args.frames, threads=args.threads, video=args.video,
                           pose_model=args.pose_model, hop_seconds=args.hop_seconds, cache_dir=args.cache_dir,
                           bf16=args.bf16, pipeline_model=args.pipeline_model, importance=tuple(args.importance))
    except EngineUnavailable as exc:
        raise UserError(str(exc)) from None
    print(render_markdown(report))
    precision = precision_name(args.fp16, args.bf16)
    stem = f"bench-{report.environment['device']}" + ("" if precision == "fp32" else f"-{precision}")
    for path in write_report(report, Path(args.output_dir), stem):
        log.info("wrote %s", path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export", help="export a checkpoint to ONNX or a TensorRT engine",
        description="Export a star-har checkpoint for deployment. ONNX: dynamo exporter, dynamic batch "
                    "(and window length where the model allows), inputs 'keypoints' (B, T, J, 3) and, "
                    "for RGB models, 'frames' (B, 3, T, H, W); outputs 'logits', 'frame_importance' and 'novelty'; "
                    "class names, joint layout and sampling stored in the ONNX metadata. TensorRT: "
                    "builds a serialized engine for this machine's GPU and TensorRT version (needs both).")
    export.add_argument("--checkpoint", required=True, help="star-har checkpoint (.pt)")
    export.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx", help="output format (default onnx)")
    export.add_argument("--output", required=True, help="file to write (.onnx or .engine)")
    export.add_argument("--fp16", action="store_true", help="TensorRT: allow fp16 kernels")
    export.add_argument("--input-size", type=int, metavar="PIXELS",
                        help="RGB models: frame side (multiple of 16; default: the checkpoint's, else 112)")
    export.add_argument("--max-batch", type=positive_int, default=8, help="TensorRT: largest batch (default 8)")
    export.add_argument("--importance", choices=("model", "gradient"), default="model",
                        help="what the 'frame_importance' output holds: the model's own (default), or the "
                             "gradient estimate of occlusion, its backward pass exported in the graph "
                             "(star-har run --importance gradient)")
    export.set_defaults(handler=export_command)

    bench = subparsers.add_parser(
        "bench", help="benchmark models x engines (latency, FLOPs) and the whole pipeline",
        description="Per-window latency (batch 1, median of --repeats calls) of each model "
                    "configuration on each available inference engine, with parameters, GFLOPs and "
                    "setup time (ONNX export / TensorRT build / compilation), and, with --video, the "
                    "real-time factor of the whole pipeline (capture + MediaPipe + model). Models "
                    "without a checkpoint use random weights (latency does not depend on them). Prints "
                    "a markdown table and writes JSON, CSV and markdown to --output-dir.",
        epilog="GPU: star-har bench --device cuda --fp16 --compile")
    bench.add_argument("--models", nargs="+", metavar="MODEL",
                       help="configurations to run (default all registered: star-pose, star-pose256, "
                            "star-rgb64, star-rgb112, star-rgb224, deformable112, deformable224)")
    bench.add_argument("--engines", nargs="+", choices=engine_names(),
                       help="engines to run (default: all available on the device)")
    bench.add_argument("--device", default="auto", choices=DEVICES, help="default: cuda when available")
    bench.add_argument("--fp16", action="store_true", help="half precision (CUDA)")
    bench.add_argument("--bf16", action="store_true",
                       help="bfloat16 autocast (torch engine; other engines' rows say why they did not run)")
    bench.add_argument("--compile", action="store_true", help="also time the torch engine under torch.compile")
    bench.add_argument("--repeats", type=positive_int, default=20, help="timed calls per engine (median reported)")
    bench.add_argument("--warmup", type=positive_int, default=3, help="untimed calls first")
    bench.add_argument("--frames", type=positive_int, default=16, help="frames per window (default 16)")
    bench.add_argument("--threads", type=positive_int,
                       help="CPU threads for torch and onnxruntime (default: each library's choice)")
    bench.add_argument("--quick", action="store_true",
                       help="star-pose and star-rgb112 only, at most 5 repeats")
    bench.add_argument("--importance", nargs="+", choices=IMPORTANCE_METHODS[1:], default=["model"],
                       metavar="METHOD",
                       help="how each timed window computes its importance bars: model (its own head or "
                            "attention; the default), gradient (one backward pass), occlusion (T extra "
                            "windows); several give one row each, so the cost of each method shows")
    bench.add_argument("--video", help="also measure the whole pipeline on this video file")
    bench.add_argument("--pipeline-model", default="star-pose", metavar="MODEL",
                       help="the configuration the --video pipeline runs (default star-pose, the shipped "
                            "penn-sports checkpoint; e.g. star-rgb64 for the RGB stream)")
    add_pipeline_options(bench, "--pose-model", "--hop-seconds")
    bench.add_argument("--cache-dir", type=Path,
                       help="reuse ONNX exports / TensorRT engines from here (default: a fresh temporary "
                            "directory, so setup time includes the export)")
    bench.add_argument("--output-dir", default="benchmarks/results",
                       help="where to write bench-<device>.json/.md/-latency.csv (default benchmarks/results)")
    bench.set_defaults(handler=bench_command)
