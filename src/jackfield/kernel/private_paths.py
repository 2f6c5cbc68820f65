"""Directories and files only their owner may read, for what Jackfield keeps on disk.

The data directory holds the master key, file params and (by default) the SQLite
database, which holds password hashes and every organization's payloads: what Jackfield
creates there is for the account it runs as alone. A directory or file that exists
already keeps the modes its owner gave it (an operator may share it with a group on
purpose), so nothing here changes the mode of an existing path.
"""

from __future__ import annotations

import os
from pathlib import Path


def make_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) unless it exists; missing parents get the default
    mode, as ``mkdir -p`` gives them."""
    Path(path).mkdir(mode=0o700, parents=True, exist_ok=True)


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists: done before SQLite opens a
    database file, which it would create with the umask's mode (its ``-wal`` and ``-shm``
    files take the mode of the database file)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
