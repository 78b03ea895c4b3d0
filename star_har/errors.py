"""The one error base class of star-har, at the bottom of the import graph (stdlib only).

Every layer (model, train, realtime, the CLI) raises :class:`StarHarError` or a subclass for a
problem the user can fix: bad input, a missing file, an unusable checkpoint. ``star-har`` prints
those as one line and exits with 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class StarHarError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


class UserError(StarHarError):
    """Bad command-line input or configuration."""


class InvalidInputError(StarHarError, ValueError):
    """A value, file content or configuration that cannot be used (also a ValueError)."""


class MissingFileError(StarHarError, FileNotFoundError):
    """A file or folder the user named (or that a default points to) does not exist."""


class UnknownNameError(StarHarError, KeyError):
    """A name (model, joint layout, engine, ...) that is not known; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
