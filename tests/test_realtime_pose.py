"""Live pose: MediaPipe on a real clip, nobody in view, following the main person, model files."""

from __future__ import annotations

import urllib.error

import cv2
import numpy as np
import pytest

from star_har import pose as pose_module
from star_har.realtime.pose import PoseEstimator, resolve_pose_model, select_main_person


def test_mediapipe_finds_the_person_with_joints_inside_the_frame(tai_chi_video, pose_model_path):
    capture = cv2.VideoCapture(str(tai_chi_video))
    found, inside, confident = 0, 0, 0
    count = 45
    with PoseEstimator(pose_model_path, layout="penn13") as estimator:
        for i in range(count):
            ok, image = capture.read()
            assert ok
            result = estimator.process(image, i / 30)
            assert result.keypoints.shape == (13, 3) and result.inference_ms > 0
            if not result.person_found:
                continue
            found += 1
            sure = result.keypoints[result.keypoints[:, 2] > 0.5]
            confident += len(sure)
            h, w = image.shape[:2]
            x, y = sure[:, 0], sure[:, 1]
            inside += int(np.sum((x >= -2) & (x <= w + 2) & (y >= -2) & (y <= h + 2)))
            assert result.people.shape[1:] == (33, 3) and result.main_index is not None
    capture.release()
    assert found >= 0.9 * count
    assert confident >= 0.7 * found * 13  # most joints confident on a full-body clip
    assert inside >= 0.98 * confident


def test_nobody_in_view_is_reported_not_invented(pose_model_path):
    with PoseEstimator(pose_model_path, layout="coco17") as estimator:
        blank = np.full((240, 320, 3), 127, np.uint8)
        for _ in range(3):  # repeated and equal timestamps must not upset VIDEO mode
            result = estimator.process(blank, 0.0)
            assert not result.person_found and result.main_index is None
            assert result.keypoints.shape == (17, 3) and not result.keypoints.any()


def person_at(x: float, y: float, size: float) -> np.ndarray:
    person = np.zeros((33, 3), np.float32)
    person[:, 0] = x + np.linspace(-size / 2, size / 2, 33)
    person[:, 1] = y + np.linspace(-size, size, 33)
    person[:, 2] = 0.9
    return person


def test_main_person_is_the_largest_then_followed():
    people = np.stack([person_at(50, 100, 20), person_at(200, 100, 60)])
    assert select_main_person(people, None) == 1
    # following someone at x=50 keeps them even when a bigger person is in view
    assert select_main_person(people, np.array([55.0, 100.0])) == 0


def test_pose_model_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("STAR_HAR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(pose_module.POSE_MODEL_ENV, raising=False)
    explicit = tmp_path / "mine.task"
    explicit.write_bytes(b"x")
    assert resolve_pose_model(explicit) == explicit
    with pytest.raises(FileNotFoundError, match="pose model not found: .*nope.task"):
        resolve_pose_model(tmp_path / "nope.task")
    monkeypatch.setenv(pose_module.POSE_MODEL_ENV, str(explicit))
    assert resolve_pose_model() == explicit
    monkeypatch.delenv(pose_module.POSE_MODEL_ENV)

    def offline(url, destination, timeout=30.0):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(pose_module, "download", offline)
    with pytest.raises(FileNotFoundError) as info:
        resolve_pose_model()
    message = str(info.value)
    assert "network is unreachable" in message and "--pose-model" in message
    assert pose_module.POSE_MODEL_URL in message and "\n" not in message
    cached = tmp_path / "cache" / pose_module.POSE_MODEL_NAME
    cached.parent.mkdir()
    cached.write_bytes(b"x")
    assert resolve_pose_model() == cached


def test_download_is_atomic(tmp_path):
    source = tmp_path / "remote.bin"
    source.write_bytes(b"0123456789" * 1000)
    target = tmp_path / "models" / "model.task"
    assert pose_module.download(source.as_uri(), target) == target
    assert target.read_bytes() == source.read_bytes()
    with pytest.raises(urllib.error.URLError):
        pose_module.download((tmp_path / "missing.bin").as_uri(), tmp_path / "models" / "other.task")
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.task"]  # no partial file left
