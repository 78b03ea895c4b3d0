"""star-har real time: camera or video -> live pose -> windows -> action predictions.

Stages (each a small module, joined by bounded queues in :mod:`realtime.pipeline`):
:mod:`realtime.capture` -> :mod:`realtime.pose` -> :mod:`realtime.ring_buffer` -> inference
(:mod:`realtime.engines`) -> :mod:`realtime.postprocess`; :mod:`realtime.metrics` measures them
and :mod:`realtime.overlay` draws the results. This package never imports ``train``.
"""

from pathlib import Path

from star_har.errors import UnknownNameError
from star_har.files import packaged_file

#: The shipped models by name (``--model NAME``; ``--checkpoint PATH`` takes your own), shipped as
#: package data so that they are found from a checkout and from an installed wheel alike.
MODELS = {"everyday": "star_pose_everyday.pt", "penn-sports": "star_pose_penn.pt"}
#: The webcam's default (``star-har run``, the GUI: people in front of a camera wave, drink and
#: phone more than they play sports) and the generated demo clip's (Penn actions).
DEFAULT_MODEL, DEMO_MODEL = "everyday", "penn-sports"


def model_checkpoint(name: str) -> Path:
    """The packaged checkpoint of a shipped model name."""
    if name not in MODELS:
        raise UnknownNameError(f"unknown model {name!r}; shipped: {', '.join(MODELS)} (or pass --checkpoint PATH)")
    return packaged_file("star_har.assets", MODELS[name])


#: The checkpoint ``star-har run`` and the GUI use unless told otherwise.
DEFAULT_CHECKPOINT = model_checkpoint(DEFAULT_MODEL)
