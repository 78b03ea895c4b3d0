"""Shared fixtures. Real material (pose model, Penn Action annotations, videos) lives in ../shared
next to the repository on the team's machines; tests that need it skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STAR_HAR_SHARED", REPO_ROOT.parent / "shared"))


def shared_path(relative: str) -> Path:
    """Path of a file in ../shared, skipping the calling test when it is not there."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"needs {relative} from the team's shared folder ({SHARED} not found); "
                    "set STAR_HAR_SHARED to run it")
    return path


@pytest.fixture
def pose_model_path() -> Path:
    return shared_path("models/pose_landmarker_full.task")


@pytest.fixture
def penn_action_dir() -> Path:
    return shared_path("data/penn_action/train")


@pytest.fixture
def tai_chi_video() -> Path:
    return shared_path("videos/tai_chi.mp4")
