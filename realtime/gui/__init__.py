"""The star-har desktop application (PyQt6) on top of :mod:`realtime`.

Importing this package fails with ImportError when PyQt6 is not installed (``pip install
star-har[gui]``), which ``star-har run`` uses to fall back to headless mode.
"""

from PyQt6 import QtWidgets  # noqa: F401  (fail early, at import, without PyQt6)

from star_har.realtime.gui.app import create_app, launch

__all__ = ["create_app", "launch"]
