"""``star-har run``: live action recognition on a camera, a video, a stream or an image folder.

Headless it writes one JSON Lines record per prediction (``--output``) and an annotated video
(``--save-video``) drawn by :mod:`realtime.overlay`, the code the GUI draws with. With a display
and without ``--headless`` it opens the GUI (:mod:`realtime.gui`) when that is installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import threading
from pathlib import Path
from typing import IO

from star_har.errors import InvalidInputError

log = logging.getLogger(__name__)


class VideoWriterThread(threading.Thread):
    """Draws the overlay on each :class:`~realtime.pipeline.FrameUpdate` and writes it to a video
    file, off the pipeline's threads. ``put`` waits when it is behind (files) or drops (live)."""

    def __init__(self, path: Path, fps: float, layout: str, live: bool) -> None:
        super().__init__(name="star-har-video-writer", daemon=True)
        self.path, self.fps, self.layout, self.live = path, fps, layout, live
        self.updates: queue.Queue = queue.Queue(maxsize=8)
        self.stop_event = threading.Event()
        self.frames_written = 0
        self.error: str | None = None

    def put(self, update) -> None:
        from star_har.realtime.queues import put_blocking, put_latest

        if self.live:
            put_latest(self.updates, update)
        else:
            put_blocking(self.updates, update, self.stop_event)

    def close(self) -> None:
        """Write what is queued, then finish the file."""
        from star_har.realtime.queues import put_latest

        put_latest(self.updates, None)
        self.join()

    def run(self) -> None:
        import cv2

        from star_har.realtime.overlay import draw_overlay

        writer = None
        fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
        try:
            while (update := self.updates.get()) is not None:
                image = draw_overlay(update.frame.image, update.keypoints, self.layout, update.prediction,
                                     update.metrics, copy=True)
                if writer is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (image.shape[1], image.shape[0]))
                    if not writer.isOpened():
                        raise OSError(f"cannot write video {self.path}")
                writer.write(image)
                self.frames_written += 1
        except Exception as exc:  # reported by the runner; the pipeline must not hang on a full queue
            self.error = str(exc)
            self.stop_event.set()
        finally:
            if writer is not None:
                writer.release()


def _prediction_line(prediction) -> str:
    nexts = ", ".join(f"{label} {score:.0%}" for label, score in prediction.top_k[1:])
    return (f"{prediction.timestamps[-1]:8.2f}s  frames {prediction.first_frame:>6}-{prediction.last_frame:<6} "
            f"{prediction.text():<28} {('next: ' + nexts) if nexts else ''}").rstrip()


def run_headless(config, output: str | Path | None = None, save_video: str | Path | None = None,
                 quiet: bool = False, pipeline_factory=None) -> dict:
    """Run ``config`` (a :class:`~realtime.pipeline.PipelineConfig`) to the end of the source or
    Ctrl-C, writing JSON Lines to ``output`` (``"-"``: stdout) and the annotated video to
    ``save_video``. Returns the summary (also logged): counts, timings, real-time factor.

    pipeline_factory: builds the pipeline from ``(config, on_frame, on_prediction)`` (tests).
    """
    from star_har.realtime.pipeline import Pipeline

    factory = pipeline_factory or (lambda cfg, **callbacks: Pipeline(cfg, **callbacks))
    records: IO[str] | None = None
    if output is not None:
        records = sys.stdout if str(output) == "-" else open(output, "w", encoding="utf-8")  # noqa: SIM115

    def on_prediction(prediction) -> None:
        if records is not None:
            records.write(json.dumps(prediction.to_record()) + "\n")
            records.flush()  # a crash or a kill keeps every prediction made so far
        if not quiet and records is not sys.stdout:
            print(_prediction_line(prediction), flush=True)

    writer: VideoWriterThread | None = None
    try:
        pipeline = factory(config, on_prediction=on_prediction)
        if save_video is not None:
            writer = VideoWriterThread(Path(save_video), pipeline.source.fps or 30.0, pipeline.layout,
                                       pipeline.source.live)
            pipeline.on_frame = writer.put
            writer.start()
        log.info("running %s", json.dumps(pipeline.describe()))
        pipeline.start()
        interrupted = False
        try:
            while not pipeline.wait(0.2):
                if writer is not None and writer.error:
                    break
        except KeyboardInterrupt:
            interrupted = True
            log.info("interrupted: stopping and flushing")
        pipeline.join()
    finally:
        if writer is not None:
            writer.close()
        if records is not None and records is not sys.stdout:
            records.close()
    summary = pipeline.metrics.summary()
    fps = pipeline.source.fps
    frames = summary["frames_processed"]
    if fps and not pipeline.source.live and summary["elapsed_s"] > 0:
        summary["video_seconds"] = frames / fps
        summary["realtime_factor"] = frames / fps / summary["elapsed_s"]
    summary["interrupted"] = interrupted
    summary["engine"] = pipeline.describe()["engine"]
    if writer is not None:
        summary["video_frames_written"] = writer.frames_written
    log.info("summary %s", json.dumps(summary))
    if not quiet:
        print(format_summary(summary), file=sys.stderr)
    if writer is not None and writer.error:
        raise OSError(writer.error)
    if pipeline.error:
        raise RuntimeError(pipeline.error)
    return summary


def format_summary(summary: dict) -> str:
    """A few readable lines from :func:`run_headless`'s summary."""

    def timing(name: str) -> str:
        t = summary.get(name)
        return f"mean {t['mean']:.1f} / p95 {t['p95']:.1f} ms" if t else "n/a"

    lines = [f"frames {summary['frames_processed']} (dropped {summary['frames_dropped']}), "
             f"pose ran on {summary['pose_frames']}, predictions {summary['predictions']}, "
             f"{summary['elapsed_s']:.1f} s, engine {summary['engine']}"]
    if "realtime_factor" in summary:
        lines.append(f"real-time factor {summary['realtime_factor']:.2f}x "
                     f"({summary['video_seconds']:.1f} s of video)")
    lines += [f"pose {timing('pose_ms')}", f"inference {timing('inference_ms')}",
              f"window complete -> prediction {timing('window_to_prediction_ms')}",
              f"frame captured -> prediction {timing('latency_ms')}"]
    return "\n".join(lines)


def _has_display() -> bool:
    return sys.platform in ("win32", "darwin") or any(map(os.environ.get, ("DISPLAY", "WAYLAND_DISPLAY")))


def config_from_args(args: argparse.Namespace):
    from star_har.realtime.pipeline import PipelineConfig

    if args.hop < 1:
        raise InvalidInputError(f"--hop must be at least 1, got {args.hop}")
    if args.max_frames is not None and args.max_frames < 1:
        raise InvalidInputError(f"--max-frames must be at least 1, got {args.max_frames}")
    return PipelineConfig(
        source=args.source, checkpoint=args.checkpoint, engine=args.engine, device=args.device,
        fp16=args.fp16, hop=args.hop, threshold=args.threshold, smoothing=args.smoothing, top_k=args.top_k,
        pose_model=args.pose_model, num_poses=args.num_poses, pose_every_frame=args.pose_every_frame,
        realtime_pace=args.realtime_pace, max_frames=args.max_frames, image_fps=args.fps)


def run_command(args: argparse.Namespace) -> int:
    from star_har.errors import UserError
    from star_har.realtime import DEFAULT_CHECKPOINT

    config = config_from_args(args)
    if not Path(config.checkpoint).exists() and Path(config.checkpoint) == DEFAULT_CHECKPOINT:
        raise UserError(f"checkpoint not found: {DEFAULT_CHECKPOINT} (train it with `star-har train --config "
                        "configs/star_pose_penn.yaml`, or pass --checkpoint)")
    if not args.headless and _has_display() and args.output is None and args.save_video is None:
        try:
            from star_har.realtime.gui import launch
        except ImportError as exc:
            log.info("GUI unavailable (%s): running headless", exc)
        else:
            return int(launch(config) or 0)
    from star_har.realtime.engines import EngineUnavailable

    try:
        summary = run_headless(config, args.output, args.save_video, quiet=args.quiet)
    except EngineUnavailable as exc:
        raise UserError(str(exc)) from None
    if args.quiet:
        print(format_summary(summary), file=sys.stderr)
    return 130 if summary["interrupted"] else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from star_har.realtime import DEFAULT_CHECKPOINT

    parser = subparsers.add_parser(
        "run", help="recognise actions live from a camera, video, stream or image folder",
        description="Recognise actions live: capture -> MediaPipe pose -> windows -> model -> predictions. "
                    "With a display it opens the GUI; with --headless (or --output / --save-video) it "
                    "prints predictions, writes them as JSON Lines and an annotated video. "
                    "Ctrl-C stops cleanly and flushes every output.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--source", default="0",
                        help="webcam index (0), video file, rtsp:// or http(s):// URL, or folder of images")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="star-har checkpoint (.pt)")
    parser.add_argument("--headless", action="store_true", help="no GUI, even with a display")
    parser.add_argument("--output", metavar="OUT.jsonl",
                        help="write one JSON record per prediction ('-' = stdout; schema in README)")
    parser.add_argument("--save-video", metavar="OUT.mp4", help="write the annotated video (.mp4 or .avi)")
    parser.add_argument("--engine", default="auto", choices=("auto", "torch", "onnxruntime", "tensorrt"),
                        help="inference engine (auto: the fastest available)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="inference device")
    parser.add_argument("--fp16", action="store_true", help="half precision (GPU engines)")
    parser.add_argument("--hop", type=int, default=9,
                        help="stream frames between two predictions (9 = 0.3 s at 30 fps: a whole number "
                             "of the shipped model's 0.1 s window steps, so pose runs on the fewest frames)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="smoothed probability below which the answer is 'no confident action'")
    parser.add_argument("--smoothing", type=float, default=0.5,
                        help="weight of the previous windows in the moving average of probabilities (0 = off)")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per prediction")
    parser.add_argument("--pose-model", metavar="PATH",
                        help="MediaPipe pose_landmarker_full.task (default: $STAR_HAR_POSE_MODEL, the cache, "
                             "or download)")
    parser.add_argument("--num-poses", type=int, default=1,
                        help="people MediaPipe looks for; the main one is followed")
    parser.add_argument("--pose-every-frame", action="store_true",
                        help="run pose on every frame, not only on the frames the model sees (slower)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("--realtime-pace", action="store_true",
                        help="replay files at their frame rate instead of as fast as possible")
    parser.add_argument("--fps", type=float, help="frame rate of an image folder (default 30)")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print each prediction (the summary is still printed)")
    parser.set_defaults(handler=run_command)
