"""The data directory (embedded database, generated secret, sandbox output): its owner's only.

The processes taskgate starts create files with umask 066, and the files whose modes matter
are made 0600 explicitly as well, so a database or secret left 0644 by an earlier version is
closed on the next start. An existing directory keeps its mode: an operator may have opened
it on purpose.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# Files 0600. Directories 0711: searchable but not listable, so the sandbox uid still reaches
# its work dir by path (bwrap resolves the bind source as that uid); the data directory
# itself is created 0700.
PRIVATE_UMASK = 0o066
# SQLite creates the -wal and -shm files with the mode of the database file.
_DATABASE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def restrict_new_files() -> None:
    """Files and directories this process (and what it starts) creates are the owner's only."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """``path``, created 0700 (with its missing parents) unless it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def private_file(path: Path) -> None:
    """Make an existing file of ours 0600; a file another account owns is left alone."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        path.chmod(0o600)


def private_database(path: Path) -> None:
    """Create the SQLite database file 0600 if it is missing, and make it and its companion
    files 0600 if they exist."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in _DATABASE_COMPANIONS:
        private_file(path.with_name(path.name + suffix))
