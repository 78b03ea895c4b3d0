"""The headless runner behind ``star-har run --headless`` and ``star-har demo``: runs a pipeline to
the end of its source (or a signal), writes JSON Lines and the annotated video, and summarises.

Promises (tested in ``tests/test_realtime_runner.py``):

* inputs are checked before outputs are opened: a wrong source or checkpoint never truncates a file;
* SIGINT and SIGTERM both stop the run cleanly; a second signal does not cut the shutdown short:
  the video is always finished (playable) and every JSON Lines record written is complete;
* a failing disk stops the run with one line and the summary, never half a record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from star_har.errors import StarHarError
from star_har.realtime.recorder import JsonLinesWriter, VideoRecorder, WriteError

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[list[int]]:
    """While active, SIGINT/SIGTERM call ``stop`` once and are recorded in the yielded list; later
    ones only say that the outputs are being finished (no KeyboardInterrupt lands half-way through
    a shutdown). Outside the main thread (where Python cannot take signals) it does nothing."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, _frame) -> None:
        received.append(signum)
        if len(received) == 1:
            log.info("%s: stopping and finishing the outputs", signal.Signals(signum).name)
            stop()
        else:
            print("star-har: still finishing the video and JSON Lines, one moment", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _prediction_line(prediction) -> str:
    nexts = ", ".join(f"{label} {score:.0%}" for label, score in prediction.top_k[1:])
    return (f"{prediction.timestamps[-1]:8.2f}s  frames {prediction.first_frame:>6}-{prediction.last_frame:<6} "
            f"{prediction.text():<28} {('next: ' + nexts) if nexts else ''}").rstrip()


def run_headless(config, output: str | Path | None = None, save_video: str | Path | None = None,
                 quiet: bool = False, pipeline_factory=None, started_at: float | None = None) -> dict:
    """Run ``config`` (a :class:`~realtime.pipeline.PipelineConfig`) to the end of the source or a
    stop signal, writing JSON Lines to ``output`` (``"-"``: stdout) and the annotated video to
    ``save_video``. Returns the summary (also logged): counts, timings, real-time factors.

    Output paths are not checked here (see :func:`realtime.recorder.check_output_path`); they are
    opened only once the pipeline (checkpoint, engine, source) has been built.
    started_at: ``time.perf_counter()`` when the command started (default: now), for the start-up
    time and the whole command's real-time factor.
    pipeline_factory: builds the pipeline from ``(config, on_frame, on_prediction)`` (tests).
    Raises :class:`~realtime.recorder.WriteError` (after the summary) when an output failed.
    """
    from star_har.realtime.pipeline import Pipeline

    started_at = time.perf_counter() if started_at is None else started_at
    factory = pipeline_factory or (lambda cfg, **callbacks: Pipeline(cfg, **callbacks))
    records: JsonLinesWriter | None = None
    failures: list[str] = []
    first: dict[str, float] = {}

    def on_prediction(prediction) -> None:
        if not first:
            first.update(time=time.perf_counter(), frames=pipeline.metrics.snapshot().frames_processed)
        if records is not None and not failures:
            try:
                records.write(prediction.to_record())
            except WriteError as exc:
                failures.append(str(exc))
                pipeline.stop()
        if not quiet and not (records is not None and records.to_stdout):
            print(_prediction_line(prediction), flush=True)

    pipeline = factory(config, on_prediction=on_prediction)  # checkpoint, engine, source: checked first
    writer: VideoRecorder | None = None
    received: list[int] = []
    try:
        if output is not None:
            records = JsonLinesWriter(output)
        if save_video is not None:
            writer = VideoRecorder(Path(save_video), pipeline.source.fps or 30.0, pipeline.layout,
                                   pipeline.source.live)
            pipeline.on_frame = writer.put
            writer.start()
        log.info("running %s", json.dumps(pipeline.describe()))
        with stop_on_signals(pipeline.stop) as received:
            pipeline.start()
            while not pipeline.wait(0.2):
                if writer is not None and writer.error:
                    pipeline.stop()
            pipeline.join()
            if writer is not None:
                writer.close()  # under the handlers: a signal now cannot cut the video's finishing short
    finally:  # also after an exception: threads stopped, the video finished, the records closed
        pipeline.join()
        if writer is not None and writer.is_alive():
            writer.close()
        if records is not None:
            records.close()
    if writer is not None and writer.error:
        failures.append(writer.error)
    summary = _summary(pipeline, started_at, first, bool(received), writer)
    log.info("summary %s", json.dumps(summary))
    if not quiet:
        print(format_summary(summary), file=sys.stderr)
    if failures:
        raise WriteError("; ".join(failures))
    if pipeline.error:
        if pipeline.error == pipeline.capture_error:  # the source, not the program, failed
            raise StarHarError(pipeline.error)
        raise RuntimeError(pipeline.error)
    return summary


def _summary(pipeline, started_at: float, first: dict[str, float], interrupted: bool,
             writer: VideoRecorder | None) -> dict:
    ended = time.perf_counter()
    summary = pipeline.metrics.summary()
    fps = pipeline.source.fps
    frames = summary["frames_processed"]
    if first:
        summary["first_prediction_s"] = first["time"] - started_at
    if fps and not pipeline.source.live and frames:
        summary["video_seconds"] = frames / fps
        summary["realtime_factor_command"] = frames / fps / (ended - started_at)
        if first and ended > first["time"] and frames > first["frames"]:
            # steady state: from the first prediction on, start-up and the first window excluded
            summary["realtime_factor"] = (frames - first["frames"]) / fps / (ended - first["time"])
    summary["interrupted"] = interrupted
    summary["engine"] = pipeline.describe()["engine"]
    if writer is not None:
        summary["video_frames_written"] = writer.frames_written
    return summary


def format_summary(summary: dict) -> str:
    """A few readable lines from :func:`run_headless`'s summary."""

    def timing(name: str) -> str:
        t = summary.get(name)
        return f"mean {t['mean']:.1f} / p95 {t['p95']:.1f} ms" if t else "n/a"

    lines = [f"frames {summary['frames_processed']} (dropped {summary['frames_dropped']}), "
             f"pose ran on {summary['pose_frames']}, predictions {summary['predictions']}, "
             f"{summary['elapsed_s']:.1f} s, engine {summary['engine']}"]
    if "first_prediction_s" in summary:
        lines.append(f"first prediction {summary['first_prediction_s']:.2f} s after start")
    if "realtime_factor_command" in summary:
        steady = (f"real-time factor {summary['realtime_factor']:.2f}x steady, "
                  if "realtime_factor" in summary else "")
        lines.append(f"{steady}{summary['realtime_factor_command']:.2f}x for the whole command "
                     f"({summary['video_seconds']:.1f} s of video)")
    lines += [f"pose {timing('pose_ms')}", f"inference {timing('inference_ms')}",
              f"window complete -> prediction {timing('window_to_prediction_ms')}",
              f"frame captured -> prediction {timing('latency_ms')}"]
    return "\n".join(lines)
