"""The whole pipeline: headless run on a real clip, Ctrl-C, failures, and a soak run."""

from __future__ import annotations

import json
import os
import signal
import threading
import tracemalloc

import cv2
import numpy as np
import pytest

from star_har.cli import main
from star_har.errors import InvalidInputError
from star_har.model import load_checkpoint
from star_har.model.crop import crop_joints
from star_har.realtime.capture import Frame
from star_har.realtime.engines import create_engine
from star_har.realtime.pipeline import Pipeline, PipelineConfig
from star_har.realtime.runner import run_headless
from tests.realtime_helpers import FakePose, MeanPoseEngine, SyntheticSource, tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_pose.pt")


@pytest.fixture(scope="module")
def engine(checkpoint_path):
    return create_engine(load_checkpoint(checkpoint_path), engine="torch", device="cpu")


def pipeline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("star-har")]


@pytest.mark.parametrize("num_poses", [1, 2])
def test_a_model_with_depth_gets_mediapipe_depth_live(tmp_path, tai_chi_video, pose_model_path, num_poses):
    """The pose stage asks MediaPipe for depth when the checkpoint reads it, for the main person
    and for everybody tracked; the windows reach the model with four channels."""
    checkpoint = load_checkpoint(tiny_checkpoint(tmp_path / "depth.pt", joint_depth=True))
    engine = create_engine(checkpoint, engine="torch", device="cpu")
    seen = []
    infer = engine.infer
    engine.infer = lambda frames, keypoints: seen.append(keypoints.copy()) or infer(frames, keypoints)
    pipelines = []

    def factory(config, **callbacks):
        pipelines.append(Pipeline(config, engine=engine, checkpoint=checkpoint, **callbacks))
        return pipelines[-1]

    config = PipelineConfig(checkpoint="unused", source=str(tai_chi_video), pose_model=str(pose_model_path),
                            num_poses=num_poses, hop_seconds=0.5, max_frames=70, threshold=0.0)
    run_headless(config, tmp_path / "out.jsonl", quiet=True, pipeline_factory=factory)
    assert pipelines[0].pose.depth and (tmp_path / "out.jsonl").read_text().strip()
    assert seen and all(k.shape[-2:] == (13, 4) for k in seen)
    depth = np.concatenate([k[..., 3][k[..., 2] > 0.5] for k in seen])
    assert np.ptp(depth) > 5.0  # real depth differences, not a zero channel
    assert not pipeline_threads()


def test_headless_run_on_a_real_clip_gives_a_prediction_per_hop(tmp_path, tai_chi_video, pose_model_path,
                                                                  checkpoint_path, capsys):
    out, video = tmp_path / "out.jsonl", tmp_path / "out.mp4"
    code = main(["run", "--source", str(tai_chi_video), "--checkpoint", str(checkpoint_path), "--headless",
                 "--output", str(out), "--save-video", str(video), "--engine", "torch", "--device", "cpu",
                 "--pose-model", str(pose_model_path), "--max-frames", "80", "--hop-seconds", "0.267", "--threshold", "0.0"])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    ends = [r["frame_range"][1] for r in records]
    # the first window once 1.5 s (15 intervals of 0.1 s) of the 29.97 fps clip are in, then every hop
    assert ends == [45, 53, 61, 69, 77]
    for record in records:
        assert record["state"] == "action" and record["label"] == record["top_k"][0]["label"]
        assert len(record["frames"]) == len(record["importance"]) == 16
        assert record["frames"][-1] == record["frame_range"][1] and record["time"] == pytest.approx(
            record["frame_range"][1] / 29.97, abs=1e-3)
        assert sum(record["importance"]) == pytest.approx(1.0, abs=1e-3)
        assert record["latency_ms"] > 0 and record["inference_ms"] > 0
    written = cv2.VideoCapture(str(video))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 80
    assert (written.get(cv2.CAP_PROP_FRAME_WIDTH), written.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (340, 256)
    written.release()
    assert "real-time factor" in capsys.readouterr().err
    assert not pipeline_threads()


def signalling_factory(engine, signals: list[int], after: int = 3, **source_options):
    """Pipelines that send themselves ``signals`` (as a terminal or ``kill`` would) once ``after``
    predictions were made, one per wait, so the second lands during the shutdown."""
    pose = FakePose()

    def factory(config, **callbacks):
        pipeline = Pipeline(config, engine=engine, pose=pose,
                            source=SyntheticSource(100_000, delay=0.001, **source_options), **callbacks)
        wait = pipeline.wait
        pending = list(signals)

        def signalled_wait(timeout=None):
            if pending and pipeline.metrics.snapshot().predictions >= after:
                os.kill(os.getpid(), pending.pop(0))
            return wait(timeout)

        pipeline.wait = signalled_wait
        return pipeline

    factory.pose = pose
    return factory


@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT],
                                     [signal.SIGTERM, signal.SIGINT]], ids=["int", "term", "int-int", "term-int"])
def test_stop_signals_stop_cleanly_and_finish_every_output(tmp_path, checkpoint_path, engine, signals):
    """SIGTERM once killed the run at once (unplayable mp4); a second Ctrl-C aborted the shutdown."""
    factory = signalling_factory(engine, signals)
    out, video = tmp_path / "out.jsonl", tmp_path / "out.mp4"
    previous = signal.getsignal(signal.SIGTERM)
    summary = run_headless(PipelineConfig(checkpoint=checkpoint_path, hop_seconds=4 / 30), out, video, quiet=True,
                           pipeline_factory=factory)
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    assert summary["interrupted"] and factory.pose.closed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == summary["predictions"] >= 3
    capture = cv2.VideoCapture(str(video))  # the mp4 is finished: it opens and plays to the end
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == summary["video_frames_written"] > 0
    assert not pipeline_threads()


def test_nobody_in_view_skips_the_model(checkpoint_path):
    class NeverCalled:
        needs_frames, input_size, name = False, None, "never"

        def infer(self, frames, keypoints):
            raise AssertionError("the model must not run without a person")

    predictions = []
    pipeline = Pipeline(PipelineConfig(checkpoint=checkpoint_path, hop_seconds=8 / 30), engine=NeverCalled(),
                        pose=FakePose(absent=set(range(1000))), source=SyntheticSource(120),
                        on_prediction=predictions.append)
    pipeline.start()
    pipeline.wait(30)
    pipeline.join()
    assert pipeline.error is None and predictions
    assert all(p.state == "no_person" for p in predictions)


def test_a_failing_stage_stops_the_pipeline_with_its_reason(tmp_path, checkpoint_path):
    class Broken:
        needs_frames, input_size, name = False, None, "broken"

        def infer(self, frames, keypoints):
            raise RuntimeError("out of memory")

    def factory(config, **callbacks):
        return Pipeline(config, engine=Broken(), pose=FakePose(), source=SyntheticSource(100_000), **callbacks)

    with pytest.raises(RuntimeError, match="out of memory"):
        run_headless(PipelineConfig(checkpoint=checkpoint_path), tmp_path / "out.jsonl", quiet=True,
                     pipeline_factory=factory)
    assert not pipeline_threads()


@pytest.mark.parametrize("live", [False, True], ids=["file", "live"])
def test_soak_thousands_of_frames_stay_bounded(checkpoint_path, live):
    frames, hop = 3000, 8
    depths: list[dict[str, int]] = []
    memory: list[int] = []
    predictions = []

    def on_frame(update):
        depths.append(update.metrics.queue_depths)
        if update.frame.index in (1000, frames - 1):
            memory.append(tracemalloc.get_traced_memory()[0])

    source, pose = SyntheticSource(frames, size=(120, 160), live=live, delay=0.001 * live), FakePose()
    pipeline = Pipeline(PipelineConfig(checkpoint=checkpoint_path, hop_seconds=hop / 30, max_frames=frames),
                        engine=MeanPoseEngine(), pose=pose, source=source,
                        on_frame=on_frame, on_prediction=predictions.append)
    tracemalloc.start()
    try:
        pipeline.start()
        assert pipeline.wait(120)
        pipeline.join()
    finally:
        tracemalloc.stop()
    assert pipeline.error is None
    assert max(d["frames"] for d in depths) <= pipeline.frames.maxsize
    assert max(d["windows"] for d in depths) <= pipeline.windows.maxsize
    assert len(pipeline.ring) <= pipeline.ring.capacity
    summary = pipeline.metrics.summary()
    assert summary["frames_captured"] == frames
    if live:  # a live source never waits: frames and windows it could not process are dropped
        assert summary["frames_processed"] + summary["frames_dropped"] >= frames - 1
    else:  # a file loses nothing: every frame, one prediction per hop after the first window
        assert summary["frames_processed"] == frames and summary["frames_dropped"] == 0
        first = predictions[0].last_frame
        assert [p.last_frame for p in predictions] == list(range(first, frames, hop))
        assert len(memory) == 2 and memory[1] - memory[0] < 8 * 2**20
        # pose ran only where a window looks: every 0.1 s (3rd frame at 30 fps) and at window ends
        assert summary["pose_frames"] == pose.calls < frames / 3 + len(predictions) + 2
    assert np.isfinite(summary["latency_ms"]["p95"])


@pytest.mark.parametrize("region", ["body", "upper_body"])
def test_rgb_model_gets_normalised_frames(tmp_path, region):
    path = tiny_checkpoint(tmp_path / "tiny_rgb.pt", modality="rgb+pose", meta={"crop_region": region})
    engine = create_engine(load_checkpoint(path), engine="torch", device="cpu")
    assert engine.needs_frames
    predictions = []
    pipeline = Pipeline(PipelineConfig(checkpoint=path, hop_seconds=8 / 30, threshold=0.0), engine=engine, pose=FakePose(),
                        source=SyntheticSource(64), on_prediction=predictions.append)
    expected = crop_joints(region, "penn13")  # the checkpoint's crop region, as training cut it
    assert (pipeline.ring.box_joints is None) if expected is None else (pipeline.ring.box_joints == expected).all()
    pipeline.start()
    assert pipeline.wait(120)
    pipeline.join()
    assert pipeline.error is None
    assert [p.last_frame for p in predictions] == [45, 53, 61]
    assert all(p.state == "action" and np.isfinite(p.probabilities).all() for p in predictions)


def test_a_file_shorter_than_a_window_still_gets_a_prediction(checkpoint_path):
    """A 1 s clip and a 1.6 s window: one prediction over the whole clip (it used to get none)."""
    predictions = []
    pipeline = Pipeline(PipelineConfig(checkpoint=checkpoint_path), engine=MeanPoseEngine(), pose=FakePose(),
                        source=SyntheticSource(30), on_prediction=predictions.append)
    pipeline.start()
    assert pipeline.wait(60)
    pipeline.join()
    assert pipeline.error is None
    assert len(predictions) == 1 and predictions[0].state != "no_person"
    assert np.isfinite(predictions[0].probabilities).all()
    assert predictions[0].frame_indices[0] == 0 and predictions[0].last_frame >= 26


def test_pose_runs_only_on_the_frames_windows_use(checkpoint_path):
    predictions = []
    pose = FakePose()
    pipeline = Pipeline(PipelineConfig(checkpoint=checkpoint_path, hop_seconds=9 / 30), engine=MeanPoseEngine(), pose=pose,
                        source=SyntheticSource(300), on_prediction=predictions.append)
    pipeline.start()
    assert pipeline.wait(60)
    pipeline.join()
    # 30 fps, one window frame per 0.1 s, hop 9 = 0.3 s: every window is exactly every 3rd frame,
    # and pose ran on those frames only
    assert [p.last_frame for p in predictions] == list(range(45, 300, 9))
    for p in predictions:
        np.testing.assert_array_equal(p.frame_indices, np.arange(p.last_frame - 45, p.last_frame + 1, 3))
    assert pose.calls == 100


def test_predictions_resume_within_a_window_after_a_camera_outage(checkpoint_path):
    """The pose schedule once stepped across the gap: after an outage of D s, pose (and so
    predictions) resumed only about D/2 s after the camera was back."""
    checkpoint = load_checkpoint(checkpoint_path)
    window_s = checkpoint.sampling.window_seconds
    predictions = []
    pipeline = Pipeline(PipelineConfig(checkpoint=checkpoint_path, hop_seconds=0.3), engine=MeanPoseEngine(),
                        pose=FakePose(), source=SyntheticSource(1), on_prediction=predictions.append)
    for thread in pipeline._threads[1:]:  # pose and inference; the frames (with a gap) come from here
        thread.start()
    image = np.zeros((48, 64, 3), np.uint8)
    gap, back = 6.0, 9.0
    times = [i / 30 for i in range(90)] + [back + i / 30 for i in range(90)]
    for index, timestamp in enumerate(times):
        pipeline.frames.put(Frame(index, timestamp, image, 0.0))
    pipeline.frames.put(None)
    assert pipeline.wait(30)
    pipeline.join()
    after = [p.timestamps[-1] for p in predictions if p.timestamps[-1] >= back]
    assert back + gap / 2 > back + window_s + 0.1  # the old delay would be caught
    assert after and after[0] <= back + window_s + 0.1


def test_gradient_importance_needs_an_engine_built_for_it(checkpoint_path, engine):
    with pytest.raises(InvalidInputError, match="gradient"):  # the module's engine was built without it
        Pipeline(PipelineConfig(checkpoint=checkpoint_path, importance="gradient"), engine=engine, pose=FakePose(),
                 source=SyntheticSource(64))
    engine = create_engine(load_checkpoint(checkpoint_path), engine="torch", device="cpu", gradient_importance=True)
    predictions = []
    pipeline = Pipeline(PipelineConfig(checkpoint=checkpoint_path, importance="gradient", hop_seconds=8 / 30,
                                       threshold=0.0), engine=engine, pose=FakePose(), source=SyntheticSource(64),
                        on_prediction=predictions.append)
    assert pipeline.describe()["importance"] == "gradient"
    pipeline.start()
    assert pipeline.wait(120)
    pipeline.join()
    assert pipeline.error is None and predictions
    for prediction in predictions:
        assert prediction.importance.shape == (16,) and np.isfinite(prediction.importance).all()
        assert prediction.importance.sum() == pytest.approx(1.0, abs=1e-3)
