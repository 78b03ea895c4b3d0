"""The star-har desktop application (PyQt6) on top of :mod:`realtime`.

:mod:`realtime.gui.cli` registers ``star-har gui`` without importing PyQt6, so the command line
works where it is not installed; :mod:`realtime.gui.app` (``launch``) imports it and fails with
ImportError without it (``pip install star-har[gui]``), which ``star-har run`` uses to fall back
to headless mode.
"""
