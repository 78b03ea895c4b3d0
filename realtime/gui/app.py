"""Starting the GUI: the QApplication, :func:`launch` and screenshots (``star-har gui``, whose
options are defined in :mod:`realtime.gui.cli`)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from PyQt6 import QtWidgets  # noqa: F401  (fail early, at import, without PyQt6)

from star_har.realtime.display import has_display

log = logging.getLogger(__name__)


def create_app():
    """The QApplication (created once). OpenCV's wheel points ``QT_QPA_PLATFORM_PLUGIN_PATH`` at
    its own Qt 5 plugins when imported, which PyQt6 must not load: the variable is dropped.

    torch's CPU threads are capped at one core less than the machine has: the UI thread wakes
    often, and intra-op threads that must wait for a busy core made each torch window 20x slower
    (300 ms instead of 12 ms on 2 cores); the other engines are unaffected.
    """
    import cv2  # noqa: F401  (sets the variable on first import: import it before dropping it)
    import torch

    os.environ.pop("QT_QPA_PLATFORM_PLUGIN_PATH", None)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1)))
    from PyQt6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("star-har")
    return app


def launch(config, *, autostart: bool = True, sources: list[tuple[str, str]] | None = None,
           screenshot: str | Path | None = None, screenshot_after: int = 6, timeout_s: float = 180.0,
           factory=None) -> int:
    """Open the main window for ``config`` (a :class:`~realtime.pipeline.PipelineConfig`) and run
    the event loop until it closes; returns the exit code.

    autostart: start ``config.source`` at once. sources: extra (label, source) entries for the
    source list. screenshot: save a PNG of the window once ``screenshot_after`` predictions were
    shown (or at ``timeout_s``), then quit; without a display this renders off screen.
    """
    if screenshot is not None and not has_display():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = create_app()
    from PyQt6.QtCore import QTimer

    from star_har.realtime.gui.controller import default_factory
    from star_har.realtime.gui.window import MainWindow

    window = MainWindow(config, factory or default_factory, sources)
    window.show()
    # Ctrl-C or SIGTERM closes the window (stopping every thread, finishing a recording); Python
    # only sees the signal while it runs, so a timer wakes it up regularly. Closing twice is harmless.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: window.close())
    wake = QTimer(window)
    wake.timeout.connect(lambda: None)
    wake.start(200)
    if autostart:
        QTimer.singleShot(0, window.start)
    if screenshot is not None:
        path = Path(screenshot)

        def save() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not window.grab().save(str(path)):
                log.error("could not write %s", path)
            print(f"screenshot: {path} ({window.predictions_seen} predictions shown)")
            window.close()

        def check() -> None:
            if window.predictions_seen >= screenshot_after:
                save()
            else:
                QTimer.singleShot(100, check)

        QTimer.singleShot(100, check)
        QTimer.singleShot(int(timeout_s * 1000), lambda: window.isVisible() and save())
    code = int(app.exec())
    window.controller.wait_for_threads()
    return code


def run_gui(args: argparse.Namespace) -> int:
    from star_har.realtime.options import config_from_args

    # files play at their frame rate in a window, as they would from a camera
    config = config_from_args(args, source=args.source or "0", realtime_pace=True)
    if args.screenshot is None and not has_display():
        from star_har.errors import UserError

        raise UserError("no display ($DISPLAY / $WAYLAND_DISPLAY unset): use `star-har run --headless` "
                        "or `star-har gui --screenshot out.png`")
    return launch(config, autostart=args.source is not None, screenshot=args.screenshot,
                  screenshot_after=args.screenshot_after)
