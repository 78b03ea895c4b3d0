"""The demo clip generator (deterministic, the requested actions, cached), its MediaPipe
detectability, the per-segment scoring, and `star-har demo` headless end to end."""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest

from star_har.model.skeleton import get_layout
from star_har.realtime.demo.body import ACTIONS, JOINT_INDEX, forward_kinematics
from star_har.realtime.demo.cli import format_scores, score_segments
from star_har.realtime.demo.clip import Segment, generate_demo_clip, render_clip

PENN = get_layout("penn13")


def _joint(keypoints: np.ndarray, name: str) -> np.ndarray:
    return keypoints[..., PENN.index(name), :2]


def test_rendering_is_deterministic_and_follows_the_actions():
    args = (["jumping_jacks", "squat"], 1.0, 30.0, (160, 120))
    first = list(render_clip(*args))
    second = list(render_clip(*args))
    assert len(first) == 60 and [a for _, _, a in first] == ["jumping_jacks"] * 30 + ["squat"] * 30
    for (image_a, kps_a, _), (image_b, kps_b, _) in zip(first, second):
        assert image_a.shape == (120, 160, 3) and image_a.dtype == np.uint8
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(kps_a, kps_b)
    kps = np.stack([k for _, k, _ in first])
    jacks, squat = kps[:30], kps[30:]
    # jumping jacks: the wrists go from below the shoulders to above the head (image y grows down)
    wrist_y, head_y = _joint(jacks, "left_wrist")[:, 1], _joint(jacks, "head")[:, 1]
    assert wrist_y.max() > _joint(jacks, "left_shoulder")[:, 1].max() and (wrist_y < head_y).any()
    # squat: the hips sink towards the knees, then rise again
    hip_to_knee = _joint(squat, "left_knee")[:, 1] - _joint(squat, "left_hip")[:, 1]
    assert hip_to_knee.min() < 0.5 * hip_to_knee.max()


def test_body_kinematics_keeps_bone_lengths():
    rest, _ = forward_kinematics({})
    posed, _ = forward_kinematics(ACTIONS["pushup"].pose_at(0.4))
    for a, b in (("left_shoulder", "left_elbow"), ("right_hip", "right_knee"), ("neck", "head")):
        i, j = JOINT_INDEX[a], JOINT_INDEX[b]
        assert np.linalg.norm(posed[i] - posed[j]) == pytest.approx(np.linalg.norm(rest[i] - rest[j]))


def test_generated_clip_is_cached_and_complete(tmp_path):
    clip = generate_demo_clip(tmp_path, actions=("situp", "pullup"), seconds_per_action=0.5, size=(160, 120))
    assert [s.action for s in clip.segments] == ["situp", "pullup"]
    assert clip.segments[1] == Segment("pullup", 15, 30) and clip.action_at(20) == "pullup"
    capture = cv2.VideoCapture(str(clip.video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    capture.release()
    assert clip.ground_truth().shape == (30, 13, 3)
    stamp = clip.video.stat().st_mtime_ns
    again = generate_demo_clip(tmp_path, actions=("situp", "pullup"), seconds_per_action=0.5, size=(160, 120))
    assert again == clip and clip.video.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="no demo animation"):
        generate_demo_clip(tmp_path, actions=("moonwalk",))


def test_score_segments_counts_windows_inside_each_segment():
    def record(first: int, best: str, confident: bool = True) -> dict:
        return {"frame_range": [first, first + 15], "label": best if confident else None,
                "state": "action" if confident else "uncertain", "top_k": [{"label": best, "score": 0.6}]}

    segments = [Segment("squat", 0, 40), Segment("pushup", 40, 80)]
    records = [record(0, "squat"), record(20, "situp"), record(30, "squat"),  # the last straddles the cut
               record(50, "pushup", confident=False), record(60, "pushup"), record(62, "situp")]
    squat, pushup = score_segments(records, segments)
    assert (squat.windows, squat.top1, squat.confident) == (2, 1, 1)
    assert (pushup.windows, pushup.top1, pushup.confident, pushup.most_predicted) == (3, 2, 1, "pushup")
    assert pushup.recognised and format_scores([squat, pushup]).endswith(
        "recognised 2 of 2 actions; 3 of 5 windows right at top-1, 2 confidently")


@pytest.mark.parametrize("action", ["jumping_jacks", "pushup", "bench_press"])
def test_mediapipe_finds_the_rendered_person(pose_model_path, action):
    from star_har.realtime.pose import PoseEstimator

    frames = list(render_clip([action], 0.5, 30.0, (640, 480)))
    errors = []
    with PoseEstimator(pose_model_path, "penn13") as pose:
        for k, (image, truth, _) in enumerate(frames):
            result = pose.process(image, k / 30)
            if result.person_found:
                errors.append(np.linalg.norm(result.keypoints[:, :2] - truth[:, :2], axis=1))
    assert len(errors) >= 0.9 * len(frames)
    height = np.ptp(frames[0][1][:, 1])
    assert np.median(errors) < 0.1 * height  # joints land on the figure's own joints


def test_demo_headless_end_to_end(tmp_path, pose_model_path, monkeypatch, capsys):
    from star_har.realtime.demo.cli import run_demo
    from tests.realtime_helpers import tiny_checkpoint

    monkeypatch.setenv("STAR_HAR_POSE_MODEL", str(pose_model_path))
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    args = argparse.Namespace(source=None, clip=True, headless=True, output_dir=str(tmp_path),
                              seconds_per_action=1.0, regenerate=False, checkpoint=str(checkpoint),
                              engine="torch", hop_seconds=8 / 30, threshold=0.5, pose_model=None)
    assert run_demo(args) == 0
    out = capsys.readouterr().out
    assert "recognised" in out and "annotated video" in out
    records = [json.loads(line) for line in (tmp_path / "demo_predictions.jsonl").read_text().splitlines()]
    assert len(records) >= 15  # 6 s of video, one prediction every 8 frames
    capture = cv2.VideoCapture(str(tmp_path / "demo_annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 180
    capture.release()


def test_shipped_model_recognises_the_demo_actions():
    """The clip's animations and the shipped checkpoint stay in step: on the generator's own
    skeleton, the model's most frequent answer per action is that action (5 of 6 at least)."""
    import torch

    from star_har.model import load_checkpoint
    from star_har.realtime import DEMO_MODEL, model_checkpoint
    from star_har.realtime.demo.clip import DEFAULT_ACTIONS, penn13_from_body
    from star_har.realtime.demo.render import frame_camera

    shipped = model_checkpoint(DEMO_MODEL)
    if not shipped.is_file():
        pytest.skip(f"no shipped checkpoint at {shipped}")
    checkpoint = load_checkpoint(shipped)
    net = checkpoint.build()
    step = max(1, round(checkpoint.sampling.frame_interval * 30))
    span = step * (checkpoint.sampling.frames_per_window - 1) + 1
    answers = {}
    for name in DEFAULT_ACTIONS:
        action = ACTIONS[name]
        camera = frame_camera(action, (640, 480))
        track = np.stack([penn13_from_body(camera.project(action.joints_at(i / 30)[0])[0]) for i in range(120)])
        windows = np.stack([track[s:s + span:step] for s in range(0, len(track) - span + 1, 6)])
        with torch.no_grad():
            best = net(None, torch.from_numpy(windows)).logits.argmax(-1)
        answers[name] = np.bincount(best.numpy(), minlength=len(checkpoint.class_names)).argmax()
    recognised = [name for name, k in answers.items() if checkpoint.class_names[k] == name]
    assert len(recognised) >= 5, {name: checkpoint.class_names[k] for name, k in answers.items()}
