"""The GUI with several people (offscreen): everybody listed with their action, the main panels
follow the selected person."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")

from star_har.realtime.gui.app import create_app  # noqa: E402
from star_har.realtime.gui.window import MainWindow  # noqa: E402
from star_har.realtime.people import PersonPrediction  # noqa: E402
from star_har.realtime.pipeline import Pipeline, PipelineConfig  # noqa: E402
from tests.realtime_helpers import tiny_checkpoint  # noqa: E402
from tests.test_people import CrowdPose, mediapipe_person  # noqa: E402


def test_people_are_listed_and_the_panels_follow_the_selected_person(qtbot, tmp_path):
    create_app()
    video = tmp_path / "crowd.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    for i in range(240):
        writer.write(np.full((480, 640, 3), 60 + i % 100, np.uint8))
    writer.release()
    crowd = [mediapipe_person(x, seed=i) for i, x in enumerate((40, 260, 480))]
    config = PipelineConfig(source=str(video), checkpoint=tiny_checkpoint(tmp_path / "tiny.pt"), engine="torch",
                            num_poses=3)
    window = MainWindow(config, lambda cfg, **kw: Pipeline(cfg, pose=CrowdPose(crowd), **kw))
    qtbot.addWidget(window)
    shown: list[int] = []
    panel_set = window.prediction_panel.set_prediction
    window.prediction_panel.set_prediction = lambda p: (p is None or shown.append(p.track_id), panel_set(p))
    window.show()
    window.start()
    qtbot.waitUntil(lambda: len(shown) >= 2 and window.people.count() == 3, timeout=30000)
    rows = [window.people.item(r).text() for r in range(3)]
    assert [row.split()[0] for row in rows] == ["#1", "#2", "#3"] and window.people.isVisible()
    assert set(shown) == {1}  # nobody selected: the first person's details
    window.people.item(1).setSelected(True)
    count = len(shown)
    qtbot.waitUntil(lambda: len(shown) >= count + 2, timeout=30000)
    assert set(shown[count:]) == {2}
    assert isinstance(window.controller.pipeline.latest_prediction, PersonPrediction)
    window.close()
