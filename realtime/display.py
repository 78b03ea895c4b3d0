"""Whether windows can be shown here (stdlib only: the commands ask before importing PyQt6)."""

from __future__ import annotations

import os
import sys


def has_display() -> bool:
    """A desktop session: Windows, macOS, or an X11 / Wayland display in the environment."""
    return sys.platform in ("win32", "darwin") or any(map(os.environ.get, ("DISPLAY", "WAYLAND_DISPLAY")))
