"""Files: atomic writes, the cache folder and the files shipped inside the package (stdlib only).

One implementation of each, so every checkpoint, export, engine and cache write behaves the same:
a crash or a full disk never leaves half a file under the final name.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

#: Environment variable overriding the cache folder.
CACHE_ENV = "STAR_HAR_CACHE"


def cache_dir(*parts: str) -> Path:
    """``$STAR_HAR_CACHE``, else ``$XDG_CACHE_HOME/star-har``, else ``~/.cache/star-har``; joined
    with ``parts``. Not created here: writers create what they need."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "star-har"
    return Path(root).joinpath(*parts)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for binary writing; on success it is flushed to disk
    and renamed to ``path`` (with the usual permissions), on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or a function writing to a binary handle) atomically."""
    with atomic_open(path) as handle:
        if callable(data):
            data(handle)
        else:
            handle.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def packaged_file(package: str, name: str) -> Path:
    """A file shipped as package data (``star_har.assets``, ``star_har.configs``), as a path.

    Works from a checkout (editable install) and from an installed wheel alike.
    """
    return Path(str(importlib.resources.files(package).joinpath(name)))
