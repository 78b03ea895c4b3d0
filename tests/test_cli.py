import signal
import subprocess
import sys
import time

import pytest

from star_har import cli
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


def test_a_stop_signal_inside_an_import_lands_once_the_import_is_done(tmp_path, monkeypatch):
    """A KeyboardInterrupt raised inside torch's import crossed its pybind11 start-up and aborted the
    process (SIGABRT instead of exit status 130); the signal now waits until no import is running."""
    (tmp_path / "signalled_during_import.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "for _ in range(50):\n"
        "    time.sleep(0.002)  # the handler runs here, inside the import\n"
        "FINISHED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    previous = cli._install_interrupt_handlers()
    try:
        with pytest.raises(KeyboardInterrupt):
            import signalled_during_import  # noqa: F401
            time.sleep(10)  # the signal, sent again, interrupts this
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert sys.modules["signalled_during_import"].FINISHED
    sys.modules.pop("signalled_during_import")


def test_an_ignored_ctrl_c_stays_ignored():
    """Under ``nohup`` or ``&`` SIGINT is ignored; the command must not start listening to it."""
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        previous = cli._install_interrupt_handlers()
        assert signal.SIGINT not in previous and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    finally:
        signal.signal(signal.SIGINT, previous_int)
