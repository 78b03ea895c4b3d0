"""Live pose: MediaPipe on a real clip, nobody in view, following the main person, model files."""

from __future__ import annotations

import http.server
import threading
import urllib.error
import zipfile

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


def test_depth_of_real_footage_has_the_scale_of_the_image(tai_chi_video, pose_model_path):
    """MediaPipe's world depth in pixels: varied but within the person's size, the same joints as
    without depth, and the people array carries it too."""
    capture = cv2.VideoCapture(str(tai_chi_video))
    spreads = []
    with PoseEstimator(pose_model_path, layout="body16", depth=True) as estimator, \
            PoseEstimator(pose_model_path, layout="body16") as planar:
        for i in range(20):
            ok, image = capture.read()
            assert ok
            result, plain = estimator.process(image, i / 30), planar.process(image, i / 30)
            assert result.keypoints.shape == (16, 4) and result.people.shape[1:] == (33, 4)
            np.testing.assert_allclose(result.keypoints[:, :3], plain.keypoints, atol=1e-3)
            if result.person_found:
                seen = result.keypoints[result.keypoints[:, 2] > 0.5]
                height = np.ptp(seen[:, 1])
                spreads.append(np.ptp(seen[:, 3]) / height)
    capture.release()
    assert len(spreads) >= 15 and np.isfinite(spreads).all()
    assert 0.02 < np.median(spreads) < 1.0  # a body is less deep than tall, but not flat


def test_world_depth_is_metric_depth_at_the_image_scale():
    rng = np.random.default_rng(0)
    world = rng.normal(0, 0.4, (2, 33, 3)).astype(np.float32)
    people = np.concatenate((world[..., :2] * np.array([[[150.0]], [[60.0]]]) + 300, np.ones((2, 33, 1))), axis=-1)
    people[1, :5, 2] = 0.1  # unconfident joints do not set the scale
    people[1, :5, :2] += 500
    np.testing.assert_allclose(pose_module.world_depth(people.astype(np.float32), world)[0], world[0, :, 2] * 150, rtol=1e-4)
    np.testing.assert_allclose(pose_module.world_depth(people.astype(np.float32), world)[1], world[1, :, 2] * 60, rtol=1e-4)


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


def fake_bundle(path, members=pose_module.TASK_MEMBERS):
    """A file shaped like a PoseLandmarker bundle (zip of TFLite flatbuffer headers)."""
    with zipfile.ZipFile(path, "w") as bundle:
        for name in members:
            bundle.writestr(name, b"\x1c\x00\x00\x00TFL3" + bytes(range(200)))
    return path


def test_pose_model_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("STAR_HAR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(pose_module.POSE_MODEL_ENV, raising=False)
    explicit = fake_bundle(tmp_path / "mine.task")
    assert resolve_pose_model(explicit) == explicit
    with pytest.raises(FileNotFoundError, match="pose model not found: .*nope.task"):
        resolve_pose_model(tmp_path / "nope.task")
    monkeypatch.setenv(pose_module.POSE_MODEL_ENV, str(explicit))
    assert resolve_pose_model() == explicit
    monkeypatch.delenv(pose_module.POSE_MODEL_ENV)

    def offline(url, destination, timeout=30.0, validate=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(pose_module, "download", offline)
    with pytest.raises(FileNotFoundError) as info:
        resolve_pose_model()
    message = str(info.value)
    assert "network is unreachable" in message and "--pose-model" in message
    assert pose_module.POSE_MODEL_URL in message and "\n" not in message
    cached = tmp_path / "cache" / pose_module.POSE_MODEL_NAME
    cached.parent.mkdir()
    fake_bundle(cached)
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


def test_files_that_are_not_pose_models_are_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("STAR_HAR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(pose_module.POSE_MODEL_ENV, raising=False)
    text = tmp_path / "notes.task"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="notes.task .from --pose-model. is not a MediaPipe pose model: not a .task"):
        resolve_pose_model(text)
    wrong = fake_bundle(tmp_path / "hands.task", members=("hand_detector.tflite",))
    with pytest.raises(ValueError, match="no pose_detector.tflite, pose_landmarks_detector.tflite inside"):
        resolve_pose_model(wrong)
    (tmp_path / "cache").mkdir()
    cached = fake_bundle(tmp_path / "cache" / pose_module.POSE_MODEL_NAME)
    cached.write_bytes(cached.read_bytes()[:300])  # a download cut short in an older version
    with pytest.raises(ValueError) as info:
        resolve_pose_model()
    message = str(info.value)
    assert "cached pose model" in message and "delete it" in message and "\n" not in message


def test_the_shared_pose_model_passes_the_check(pose_model_path):
    pose_module.check_pose_model(pose_model_path)


class _Server(http.server.BaseHTTPRequestHandler):
    """Announces ``length`` bytes and sends ``body`` (then closes), like a connection cut short."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(self.server.length))
        self.end_headers()
        self.wfile.write(self.server.body)
        self.close_connection = True


@pytest.fixture
def serve():
    servers = []

    def start(body: bytes, length: int | None = None) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)  # local only
        server.body, server.length = body, len(body) if length is None else length
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/pose_landmarker_full.task"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_short_or_invalid_downloads_never_reach_the_cache(tmp_path, serve):
    bundle = fake_bundle(tmp_path / "good.task").read_bytes()
    target = tmp_path / "cache" / "model.task"
    with pytest.raises(OSError, match=f"stopped after 300 of {len(bundle)} bytes"):
        pose_module.download(serve(bundle[:300], len(bundle)), target, validate=pose_module.check_pose_model)
    with pytest.raises(ValueError, match="not a .task bundle"):
        pose_module.download(serve(b"<html>rate limited</html>"), target, validate=pose_module.check_pose_model)
    assert not list(target.parent.iterdir())  # neither the final name nor a temporary file
    assert pose_module.download(serve(bundle), target, validate=pose_module.check_pose_model) == target
    assert target.read_bytes() == bundle
