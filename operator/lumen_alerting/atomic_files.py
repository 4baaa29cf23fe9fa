"""Replacing a file atomically, for every writer of files others read: the exporter's pipeline
state, ``lumenctl emit``'s textfile and ``lumenctl report``'s output. A shared leaf: it imports
nothing of Lumen's (``.importlinter``), so the report uses it without importing the exporter."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("lumen.atomic_files")


def write_atomically(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a reader (or a crash) sees the old file or the new
    one, never a part: a temporary file in the same directory, fsync, rename, fsync the
    directory. The temporary file (``.NAME.*.tmp``) does not end in ``.prom`` or ``.json``.
    ``OSError`` means the file was not replaced; once it is, a directory that cannot be synced is
    only logged."""
    directory = path.parent
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    # The rename is done: the new file IS the file now, whatever happens next. A directory that
    # cannot be synced only means a crash (of the machine) might still bring back the old one,
    # so it is a warning, not a failure a caller would take for "nothing changed".
    try:
        sync_directory(directory)
    except OSError as error:
        log.warning(
            "%s written, but its directory could not be synced (%s): a machine crash now "
            "could bring back the previous version.",
            path,
            error,
        )


def sync_directory(directory: Path) -> None:
    """fsync ``directory``: the renames and creations in it survive a machine crash."""
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
