"""Which server directories a connector may use (``local_fs``'s ``root``).

A provider field of type ``directory`` names a directory that the server process reads
and writes on behalf of an organization's admin, who is not the server's operator. The
process can write far more than that admin should: Jackfield's own files (the master key,
the database, every organization's file params and built-in storage), its Python
packages (a module written there runs as the server), other organizations' directories.
So a directory must be:

* inside a directory the operator allowed (``JACKFIELD_DIRECTORY_ALLOWLIST``; none by
  default, and the error says what to set);
* clear of Jackfield's own data directory and database (even within an allowed one);
* clear of every other organization's connectors' directories (neither inside one nor
  holding one).

It is checked when the connector is saved and again whenever it is opened: a connector
saved before these rules, or a symbolic link changed since, is caught then. The built-in
storage adapter (``Jackfield.default``) lives in the data directory by design; it is not
a stored connector and does not pass through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..kernel.config import ConfigField, FieldType, get_path
from ..kernel.errors import ConnectorConfigError
from ..kernel.provider import ConnectorProvider
from ..kernel.registry import ConnectorRegistry
from ..store import Connector, ConnectorParam, Database

ALLOWLIST_SETTING = "JACKFIELD_DIRECTORY_ALLOWLIST"


class DirectoryPolicy:
    def __init__(self, allowed: Iterable[Path], reserved: Iterable[Path]) -> None:
        self.allowed = tuple(_real(path) for path in allowed)
        self.reserved = tuple(_real(path) for path in reserved)

    def problem(self, directory: str, others: Iterable[str] = ()) -> str | None:
        """Why ``directory`` may not be used, or ``None``; ``others``: the directories
        of other organizations' connectors. (Paths of the server's are not named.)"""
        try:
            target = _real(Path(directory))
        except (RuntimeError, OSError, ValueError) as exc:  # ~nosuchuser, a symlink loop
            return f"{directory} cannot be resolved: {exc}"
        if not any(target.is_relative_to(base) for base in self.allowed):
            return (
                f"{directory} is not in a directory the server allows connectors to use"
                f" (the operator lists them in {ALLOWLIST_SETTING})"
            )
        for reserved in self.reserved:
            if _overlap(target, reserved):
                return (
                    f"{directory} is or holds Jackfield's own data directory or database;"
                    " choose a directory outside them"
                )
        for other in others:
            try:
                taken = _real(Path(other))
            except (RuntimeError, OSError, ValueError):
                continue
            if _overlap(target, taken):
                return f"{directory} is or holds a directory of another organization"
        return None

    def check(
        self, fields: Iterable[ConfigField], config: Mapping[str, Any], others: Iterable[str]
    ) -> None:
        """Raise ``ConnectorConfigError`` naming every ``directory`` field of ``config``
        that may not be used."""
        others = list(others)
        errors: dict[str, str] = {}
        for field in directory_fields(fields):
            value = get_path(config, field.key)
            if value is None or value == "":
                continue
            problem = self.problem(str(value), others)
            if problem is not None:
                errors[field.key] = problem
        if errors:
            error = ConnectorConfigError.for_fields(errors)
            if any(ALLOWLIST_SETTING in problem for problem in errors.values()):
                # the server's configuration, not the connector's: say who can change it
                error.remediation = (
                    "Choose a directory the server allows, or ask the server's operator to"
                    f" allow one ({ALLOWLIST_SETTING})."
                )
            raise error


class DirectoryGuard:
    """The policy applied to stored connectors, with every other organization's
    directories read from the database."""

    def __init__(self, db: Database, registry: ConnectorRegistry, policy: DirectoryPolicy) -> None:
        self.db = db
        self.registry = registry
        self.policy = policy

    def check(
        self, cls: type[ConnectorProvider], config: Mapping[str, Any], organization_id: str
    ) -> None:
        schema = cls.config_schema()
        if directory_fields(schema):  # (the query only for providers that have any)
            self.policy.check(schema, config, self.outside(organization_id))

    def outside(self, organization_id: str) -> list[str]:
        """The ``directory`` values of every other organization's connectors."""
        keys = {
            (cls.category, cls.provider_type, field.key)
            for cls in self.registry.all()
            for field in directory_fields(cls.config_schema())
        }
        query = (
            select(
                Connector.category,
                Connector.provider_type,
                ConnectorParam.key,
                ConnectorParam.value,
            )
            .join(ConnectorParam, ConnectorParam.connector_id == Connector.id)
            .where(
                Connector.organization_id != organization_id,
                ConnectorParam.key.in_({key for _, _, key in keys}),
                ConnectorParam.is_secret.is_not(True),
            )
        )
        with self.db.snapshot() as s:
            rows = s.execute(query).all()
        return [value for *key, value in rows if tuple(key) in keys and value]


def directory_fields(fields: Iterable[ConfigField]) -> list[ConfigField]:
    return [field for field in fields if field.type is FieldType.DIRECTORY]


def _overlap(a: Path, b: Path) -> bool:
    return a.is_relative_to(b) or b.is_relative_to(a)


def _real(path: Path) -> Path:
    """The absolute path with symbolic links resolved (as far as the path exists)."""
    return path.expanduser().resolve()
