import subprocess
import sys

from star_har.cli import main


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    out = capsys.readouterr().out
    assert "info" in out and "COMMAND" in out


def test_info_reports_versions_and_models(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "star" in out and "onnxruntime" in out


def test_console_script_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "star_har.cli", "info"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_building_the_parser_imports_no_heavy_library():
    """Every subcommand registers without torch, OpenCV, MediaPipe or Qt: `--help`, a typo and the
    option checks answer at once, and each command pays only for what it uses."""
    code = ("import sys, star_har.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'cv2', 'mediapipe', 'PyQt6', 'onnxruntime') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
