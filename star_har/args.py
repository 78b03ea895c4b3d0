"""Command-line value types shared by every subcommand (stdlib only, bottom of the import graph).

argparse reports a rejected value as ``star-har COMMAND: error: argument --fps: ...`` before any
model or video is opened, so a typo never costs a long start-up.
"""

from __future__ import annotations

import argparse


def _number(kind: type, minimum: float, inclusive: bool):
    word = f"at least {minimum:g}" if inclusive else f"greater than {minimum:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if value != value or (value < minimum if inclusive else value <= minimum):  # NaN fails too
            raise argparse.ArgumentTypeError(f"must be {word}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} {word}"
    return parse


#: ``type=`` for counts that must be 1 or more (``--epochs``, ``--batch-size``, ``--num-poses``).
positive_int = _number(int, 1, inclusive=True)
#: ``type=`` for rates and durations that must be above 0 (``--fps``, ``--seconds-per-action``).
positive_float = _number(float, 0, inclusive=False)


def fraction(text: str) -> float:
    """``type=`` for shares in (0, 1] (``--keep``)."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be at most 1, got {text}")
    return value
