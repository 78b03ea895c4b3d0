"""A non-editable install works on its own: ``pip install .`` (no dependencies, into a folder put on
PYTHONPATH, so this venv's editable install cannot stand in for it), then ``star-har demo
--headless`` from an empty folder finds its checkpoint, configs and code in the installed copy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_installed_package_runs_the_demo_from_an_empty_folder(tmp_path, pose_model_path):
    target, empty = tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO_ROOT)], check=True, capture_output=True, timeout=120)
    for packaged in ("assets/star_pose_penn.pt", "configs/star_pose_penn.yaml", "realtime/gui/cli.py"):
        assert (target / "star_har" / packaged).is_file(), packaged
    env = {**os.environ, "PYTHONPATH": str(target), "STAR_HAR_CACHE": str(tmp_path / "cache"),
           "STAR_HAR_POSE_MODEL": str(pose_model_path), "OMP_NUM_THREADS": "1"}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    where = subprocess.run([sys.executable, "-c", "import star_har.realtime as r; print(r.__file__, r.DEFAULT_CHECKPOINT)"],
                           cwd=empty, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.count(str(target)) == 2, where.stdout  # the installed copy, not the checkout
    result = subprocess.run([sys.executable, "-m", "star_har.cli", "demo", "--headless", "--clip",
                             "--seconds-per-action", "1", "--engine", "torch", "--output-dir", "out"],
                            cwd=empty, env=env, capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (empty / "out" / "demo_annotated.mp4").stat().st_size > 0
    assert "annotated video" in result.stdout
