"""``star-har demo``: the built-in demo.

``star-har demo`` needs no arguments: it uses the webcam when one answers, otherwise the demo clip
rendered by :mod:`realtime.demo.clip` (made by this project's code), and the checkpoint shipped in
``assets/``. With a display it opens the GUI; without one it runs headless, writes the annotated
video and the JSON Lines predictions, and prints how well each action of the clip was recognised.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from star_har.args import positive_float
from star_har.realtime import DEFAULT_MODEL, DEMO_MODEL, MODELS, model_checkpoint
from star_har.realtime.options import add_pipeline_options, config_from_args

log = logging.getLogger(__name__)


def webcam_available(index: int = 0) -> bool:
    """Whether camera ``index`` opens and delivers a frame (checked quickly, then released)."""
    if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
        return False  # no device node: skip OpenCV's slow probing and its warnings
    import cv2

    capture = cv2.VideoCapture(index)
    try:
        return capture.isOpened() and capture.read()[0]
    finally:
        capture.release()


@dataclass(frozen=True)
class SegmentScore:
    """How the predictions whose window lies inside one segment of the clip went.

    top1: windows whose best class is the segment's action; confident: those of them above the
    confidence threshold (named on screen); most_predicted: the most frequent best class.
    """

    action: str
    windows: int
    top1: int
    confident: int
    most_predicted: str | None

    @property
    def recognised(self) -> bool:
        return self.most_predicted == self.action


def score_segments(records: list[dict], segments) -> list[SegmentScore]:
    """Score JSON Lines ``records`` (``star-har run`` schema) against the clip's ``segments``.

    Only windows entirely inside a segment count (windows straddling a cut mix two actions).
    """
    scores = []
    for segment in segments:
        inside = [r for r in records if segment.start <= r["frame_range"][0] and r["frame_range"][1] < segment.end]
        best = [r["top_k"][0]["label"] if r["top_k"] else r["state"] for r in inside]
        confident = sum(r["label"] == segment.action for r in inside)
        counts = Counter(best)
        scores.append(SegmentScore(segment.action, len(inside), counts.get(segment.action, 0), confident,
                                   counts.most_common(1)[0][0] if counts else None))
    return scores


def format_scores(scores: list[SegmentScore]) -> str:
    width = max(len(s.action) for s in scores)
    lines = [f"{'action in the clip':<{width}}  windows  top-1  confident  most often predicted"]
    def share(count: int, total: int) -> str:
        return f"{count / total:6.0%}" if total else "     -"

    for s in scores:
        lines.append(f"{s.action:<{width}}  {s.windows:7d}  {share(s.top1, s.windows)}  {share(s.confident, s.windows)}     "
                     f"{s.most_predicted or '-'} {'(ok)' if s.recognised else '(wrong)'}")
    windows = sum(s.windows for s in scores)
    lines.append(f"recognised {sum(s.recognised for s in scores)} of {len(scores)} actions; "
                 f"{sum(s.top1 for s in scores)} of {windows} windows right at top-1, "
                 f"{sum(s.confident for s in scores)} confidently")
    return "\n".join(lines)


def _gui_available() -> bool:
    from star_har.realtime.display import has_display

    if not has_display():
        return False
    try:
        import star_har.realtime.gui.app  # noqa: F401
    except ImportError as exc:
        log.info("GUI unavailable (%s): running headless", exc)
        return False
    return True


def run_demo(args: argparse.Namespace) -> int:
    from star_har.errors import UserError
    from star_har.model import load_checkpoint
    from star_har.realtime.demo.clip import generate_demo_clip
    from star_har.realtime.runner import format_summary, run_headless

    clip = None
    if args.source is not None:
        source = args.source
    elif not args.clip and webcam_available(0):
        source = "0"
        print("demo: using the webcam (camera 0); pass --clip for the generated demo clip")
    else:
        clip = generate_demo_clip(args.output_dir, seconds_per_action=args.seconds_per_action,
                                  force=args.regenerate)
        source = str(clip.video)
        print(f"demo: no webcam, playing the generated demo clip {clip.video}\n"
              f"      actions: {', '.join(s.action for s in clip.segments)}")
    # the generated clip shows Penn's exercises: its model unless one was chosen; else the webcam's
    checkpoint = Path(args.checkpoint or model_checkpoint(DEFAULT_MODEL if clip is None else DEMO_MODEL))
    if not checkpoint.is_file():
        raise UserError(f"checkpoint not found: {checkpoint} (shipped models: {', '.join(MODELS)}; "
                        "pass --model NAME or --checkpoint PATH)")
    load_checkpoint(checkpoint)  # a bad file fails here, in one line
    config = config_from_args(args, source=source, checkpoint=checkpoint)
    if not args.headless and _gui_available():
        from star_har.realtime.gui.app import launch

        extra = [("demo clip", str(clip.video))] if clip is not None else []
        return launch(config, sources=extra)

    from star_har.files import cache_dir

    out_dir = Path(args.output_dir) if args.output_dir else cache_dir("demo")
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl, video = out_dir / "demo_predictions.jsonl", out_dir / "demo_annotated.mp4"
    print("demo: no display, running headless" if not args.headless else "demo: running headless")
    summary = run_headless(config, jsonl, video, quiet=True, started_at=getattr(args, "started_at", None))
    print(format_summary(summary))
    if clip is not None:
        records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        print(format_scores(score_segments(records, clip.segments)))
    print(f"annotated video: {video}\npredictions (JSON Lines): {jsonl}")
    return 130 if summary["interrupted"] else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="the built-in demo: webcam, or a generated clip of exercises; no arguments needed",
        description="Recognise actions with the shipped model. Uses the webcam when one is present, "
                    "otherwise renders (once, then cached) a demo clip of a procedurally animated person "
                    "doing jumping jacks, squats, push-ups, sit-ups, pull-ups and bench presses. "
                    "Opens the GUI when there is a display; otherwise runs headless, writes the annotated "
                    "video and the JSON Lines predictions, and scores each action of the clip.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--source", help="use this webcam index, video, URL or folder instead")
    demo.add_argument("--clip", action="store_true", help="use the generated clip even when a webcam is present")
    demo.add_argument("--headless", action="store_true", help="no GUI, even with a display")
    demo.add_argument("--output-dir", metavar="DIR",
                      help="where the clip, annotated video and predictions go (default ~/.cache/star-har/demo, "
                           "$STAR_HAR_CACHE/demo)")
    demo.add_argument("--seconds-per-action", type=positive_float, default=4.0,
                      help="length of each action in the clip")
    demo.add_argument("--regenerate", action="store_true", help="render the clip again even when cached")
    add_pipeline_options(demo, "--checkpoint", "--engine", "--hop-seconds", "--threshold", "--pose-model", "--importance",
                         checkpoint={"default": None, "help": "a checkpoint or shipped --model instead of "
                                     f"{DEMO_MODEL} (generated clip) / {DEFAULT_MODEL} (webcam)"})
    demo.set_defaults(handler=run_demo)
