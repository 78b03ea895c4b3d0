"""star-har real time: camera or video -> live pose -> windows -> action predictions.

Stages (each a small module, joined by bounded queues in :mod:`realtime.pipeline`):
:mod:`realtime.capture` -> :mod:`realtime.pose` -> :mod:`realtime.ring_buffer` -> inference
(:mod:`realtime.engines`) -> :mod:`realtime.postprocess`; :mod:`realtime.metrics` measures them
and :mod:`realtime.overlay` draws the results. This package never imports ``train``.
"""

from star_har.files import packaged_file

#: The checkpoint ``star-har run`` and the GUI use unless told otherwise (STAR, pose, Penn Action),
#: shipped as package data so that it is found from a checkout and from an installed wheel alike.
DEFAULT_CHECKPOINT = packaged_file("star_har.assets", "star_pose_penn.pt")
