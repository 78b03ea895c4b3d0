"""star-har real time: camera or video -> live pose -> windows -> action predictions.

Stages (each a small module, joined by bounded queues in :mod:`realtime.pipeline`):
:mod:`realtime.capture` -> :mod:`realtime.pose` -> :mod:`realtime.ring_buffer` -> inference
(:mod:`realtime.engines`) -> :mod:`realtime.postprocess`; :mod:`realtime.metrics` measures them
and :mod:`realtime.overlay` draws the results. This package never imports ``train``.
"""

from pathlib import Path

#: The checkpoint ``star-har run`` and the GUI use unless told otherwise (STAR, pose, Penn Action).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "star_pose_penn.pt"
