"""The headless runner's promises: inputs checked before outputs are opened, no file overwritten
without --overwrite, one-line errors for bad options, and a failing disk that leaves only complete
records, a playable video and one line (see README, Reliability)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import pytest

from star_har.cli import main
from star_har.realtime.pipeline import Pipeline, PipelineConfig
from star_har.realtime.recorder import JsonLinesWriter, WriteError
from star_har.realtime.runner import run_headless
from tests.realtime_helpers import FakePose, MeanPoseEngine, SyntheticSource, tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_pose.pt")


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


def test_an_existing_output_is_never_truncated(tmp_path, checkpoint_path, capsys):
    keep = tmp_path / "keep.jsonl"
    keep.write_text('{"precious": true}\n')
    base = ["run", "--headless", "--checkpoint", str(checkpoint_path), "--output", str(keep)]
    # without --overwrite: refused before anything loads
    assert main(base + ["--source", str(tmp_path / "missing.mp4")]) == 2
    assert "exists; pass --overwrite" in one_line_error(capsys)
    # with --overwrite but a source that does not exist: the inputs are checked first
    assert main(base + ["--overwrite", "--source", str(tmp_path / "missing.mp4")]) == 2
    assert "video not found" in one_line_error(capsys)
    assert keep.read_text() == '{"precious": true}\n'


@pytest.mark.parametrize("options, message", [
    (["--num-poses", "0"], "argument --num-poses: must be at least 1"),
    (["--fps", "-5"], "argument --fps: must be greater than 0"),
    (["--fps", "0"], "argument --fps: must be greater than 0"),
    (["--hop-seconds", "0"], "argument --hop-seconds: must be greater than 0"),
    (["--top-k", "0"], "argument --top-k: must be at least 1"),
    (["--max-frames", "zero"], "argument --max-frames: 'zero' is not an integer"),
    (["--output", "{tmp}"], "is a folder"),
    (["--save-video", "/dev/null/out.mp4"], "cannot write into /dev/null"),
    (["--save-video", "{tmp}/out.mkv"], "use one of .mp4, .avi"),
])
def test_bad_run_options_are_one_line_errors(tmp_path, checkpoint_path, capsys, options, message):
    options = [o.replace("{tmp}", str(tmp_path)) for o in options]
    assert main(["run", "--headless", "--checkpoint", str(checkpoint_path), "--source", "x.mp4", *options]) == 2
    assert message in one_line_error(capsys)


def test_bad_demo_and_bench_options_are_one_line_errors(tmp_path, capsys):
    assert main(["demo", "--headless", "--seconds-per-action", "0"]) == 2
    assert "--seconds-per-action: must be greater than 0" in one_line_error(capsys)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)  # exists, but is no video: refused before minutes of benchmarks
    assert main(["bench", "--quick", "--video", str(broken)]) == 2
    assert "broken.mp4" in one_line_error(capsys)


def _factory(config, **callbacks):
    return Pipeline(config, engine=MeanPoseEngine(), pose=FakePose(), source=SyntheticSource(300), **callbacks)


def test_a_record_that_fails_half_way_is_cut_off(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    writer = JsonLinesWriter(path)
    writer.write({"n": 1})
    real_write = os.write

    def half_then_full(fd, data):  # what a filling disk does: part of the record, then ENOSPC
        if len(data) > 4:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(WriteError, match="No space left on device.*1 complete records"):
        writer.write({"n": 2, "text": "a record long enough to be split"})
    monkeypatch.undo()
    writer.close()
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"n": 1}]


def test_a_full_disk_stops_the_run_with_one_line_and_a_summary(checkpoint_path, capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    with pytest.raises(WriteError, match="cannot write /dev/full"):
        run_headless(PipelineConfig(checkpoint=checkpoint_path), "/dev/full", pipeline_factory=_factory)
    assert "frames" in capsys.readouterr().err  # the summary still came


def test_an_almost_full_disk_stops_recording_while_the_video_can_be_finished(tmp_path, checkpoint_path,
                                                                              monkeypatch):
    monkeypatch.setattr("star_har.realtime.recorder._free_bytes", lambda path: 1024)
    out, video = tmp_path / "out.jsonl", tmp_path / "out.mp4"
    with pytest.raises(WriteError, match="disk almost full"):
        run_headless(PipelineConfig(checkpoint=checkpoint_path), out, video, quiet=True, pipeline_factory=_factory)
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) >= 30 and capture.read()[0]  # finished, playable
    capture.release()
    for line in out.read_text().splitlines():
        json.loads(line)  # every record complete


def test_the_summary_reports_start_up_and_both_real_time_factors(checkpoint_path):
    summary = run_headless(PipelineConfig(checkpoint=checkpoint_path), quiet=True, pipeline_factory=_factory)
    assert 0 < summary["first_prediction_s"] < summary["elapsed_s"] + 1
    assert summary["realtime_factor"] > 0 and summary["realtime_factor_command"] > 0
    assert summary["video_seconds"] == pytest.approx(10.0)


def test_sigterm_during_start_up_is_an_interrupt_not_a_kill(tmp_path, checkpoint_path, tai_chi_video,
                                                           pose_model_path):
    """SIGTERM once killed `run` at once; now it stops like Ctrl-C whenever it lands."""
    out = tmp_path / "out.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "star_har.cli", "run", "--headless", "-q", "--source",
                                str(tai_chi_video), "--checkpoint", str(checkpoint_path), "--engine", "torch",
                                "--pose-model", str(pose_model_path), "--realtime-pace", "--output", str(out)],
                               stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # inside start-up (imports, models) or, on a fast machine, already running
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-1500:]
    if out.exists():
        for line in out.read_text().splitlines():
            json.loads(line)
