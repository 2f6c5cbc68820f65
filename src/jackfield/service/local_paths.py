"""Directories of the server that connectors may not use: Jackfield's own files.

A provider field of type ``directory`` (``local_fs``'s ``root``) names a directory that
the server process reads and writes on behalf of an organization's admin. That process
can also write Jackfield's own files: the data directory (the generated master key, file
params and built-in storage of every organization) and the SQLite database. A connector
rooted there, or at a directory holding them, would let one organization's admin read or
overwrite every organization's secrets. Such a directory is refused when the connector
is saved, and again whenever it is opened: a connector saved before this rule, or a
symbolic link changed since, is caught then.

The built-in storage adapter (``Jackfield.default``) lives in the data directory by
design; it is not a stored connector and does not pass through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..kernel.config import ConfigField, FieldType, get_path
from ..kernel.errors import ConnectorConfigError


class ReservedPaths:
    """Jackfield's own files and directories, which no ``directory`` field may overlap."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.paths = tuple(_real(path) for path in paths)

    def problem(self, directory: str) -> str | None:
        """Why ``directory`` may not be used, or ``None``. Overlapping means being one of
        the reserved paths, lying inside one, or holding one."""
        target = _real(Path(directory))
        for reserved in self.paths:
            if target.is_relative_to(reserved) or reserved.is_relative_to(target):
                # (the reserved path is not named: it is the server's, not the admin's)
                return (
                    f"{directory} is or holds Jackfield's own data directory or database;"
                    " choose a directory outside them"
                )
        return None

    def check(self, fields: Iterable[ConfigField], config: Mapping[str, Any]) -> None:
        """Raise ``ConnectorConfigError`` naming every ``directory`` field of ``config``
        that overlaps a reserved path."""
        errors: dict[str, str] = {}
        for field in fields:
            if field.type is not FieldType.DIRECTORY:
                continue
            value = get_path(config, field.key)
            if value is None or value == "":
                continue
            problem = self.problem(str(value))
            if problem is not None:
                errors[field.key] = problem
        if errors:
            raise ConnectorConfigError.for_fields(errors)


def _real(path: Path) -> Path:
    """The absolute path with symbolic links resolved (as far as the path exists)."""
    return path.expanduser().resolve()
