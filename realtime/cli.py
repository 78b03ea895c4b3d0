"""``star-har run``: live action recognition on a camera, a video, a stream or an image folder.

Headless it writes one JSON Lines record per prediction (``--output``) and an annotated video
(``--save-video``) through :mod:`realtime.runner`. With a display and without ``--headless`` it
opens the GUI (:mod:`realtime.gui`) when that is installed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from star_har.realtime.options import add_pipeline_options, config_from_args

log = logging.getLogger(__name__)


def run_command(args: argparse.Namespace) -> int:
    from star_har.errors import UserError
    from star_har.realtime.display import has_display
    from star_har.realtime.recorder import VIDEO_SUFFIXES, check_output_path

    config = config_from_args(args)
    # every output is checked before anything loads, and nothing is opened before the inputs are
    if args.output is not None and args.output != "-":
        check_output_path(args.output, "--output", args.overwrite)
    if args.save_video is not None:
        check_output_path(args.save_video, "--save-video", args.overwrite, tuple(VIDEO_SUFFIXES))
    if not args.headless and has_display() and args.output is None and args.save_video is None:
        try:
            from star_har.realtime.gui.app import launch
        except ImportError as exc:
            log.info("GUI unavailable (%s): running headless", exc)
        else:
            return int(launch(config) or 0)
    from star_har.realtime.engines import EngineUnavailable
    from star_har.realtime.runner import format_summary, run_headless

    try:
        summary = run_headless(config, args.output, args.save_video, quiet=args.quiet,
                               started_at=getattr(args, "started_at", None))
    except EngineUnavailable as exc:
        raise UserError(str(exc)) from None
    if args.quiet:
        print(format_summary(summary), file=sys.stderr)
    return 130 if summary["interrupted"] else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="recognise actions live from a camera, video, stream or image folder",
        description="Recognise actions live: capture -> MediaPipe pose -> windows -> model -> predictions. "
                    "With a display it opens the GUI; with --headless (or --output / --save-video) it "
                    "prints predictions, writes them as JSON Lines and an annotated video. "
                    "Ctrl-C or SIGTERM stops cleanly and finishes every output.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.set_defaults(started_at=time.perf_counter())
    add_pipeline_options(parser, "--source", "--checkpoint")
    parser.add_argument("--headless", action="store_true", help="no GUI, even with a display")
    parser.add_argument("--output", metavar="OUT.jsonl",
                        help="write one JSON record per prediction ('-' = stdout; schema in README)")
    parser.add_argument("--save-video", metavar="OUT.mp4", help="write the annotated video (.mp4 or .avi)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output / --save-video files that exist")
    add_pipeline_options(parser, "--engine", "--device", "--fp16", "--bf16", "--hop-seconds", "--threshold", "--smoothing",
                         "--top-k", "--pose-model", "--num-poses", "--max-people", "--importance", "--pose-every-frame", "--max-frames",
                         "--realtime-pace", "--fps")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="do not print each prediction (the summary is still printed)")
    parser.set_defaults(handler=run_command)
