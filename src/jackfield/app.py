"""The composition root: ``Jackfield`` wires settings, store, registry, secrets and
services. Embedded use is ``Jackfield(database_url=..., secret_key=...)``; ``jackfield
serve`` builds the same object and puts the REST API, UI and runtime on top."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from .integration.egress import ALLOWLIST_ENV, use_allowlist
from .kernel.errors import ConnectorError
from .kernel.inbound import WebhookSource
from .kernel.provider import ConnectorProvider
from .kernel.redaction import PROCESS_SETTINGS, redactor
from .kernel.registry import ConnectorRegistry, connector_registry
from .runtime import Runtime
from .secrets import SecretBox, load_keyring, write_key_file
from .secrets.keys import MasterKey, key_file_path, read_key_file
from .service import (
    AccountService,
    ConnectorService,
    DefaultResolver,
    FileStore,
    ParamCodec,
    ResolvedConnector,
    check_master_key,
    reencrypt_all,
)
from .service.local_paths import DirectoryPolicy
from .service.oauth import OAuthService
from .settings import Settings
from .store import Database, sqlite_file, upgrade


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (another process waits for it)."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Jackfield:
    """Connector service, defaults and (with the runtime) sending and event handlers."""

    def __init__(
        self,
        database_url: str | None = None,
        secret_key: str | None = None,
        *,
        data_dir: str | Path | None = None,
        settings: Settings | None = None,
        registry: ConnectorRegistry | None = None,
        migrate: bool | Literal["only_new"] = True,
    ) -> None:
        """``migrate``: bring the database schema up to date first (as ``jackfield serve``
        does: stop every other process of an older version beforehand); ``"only_new"``:
        create the schema of a new database, but raise ``DatabaseTooOldError`` for one of
        an older version (the CLI's commands); ``False``: leave the schema alone."""
        overrides: dict[str, Any] = {}
        if database_url is not None:
            overrides["database_url"] = database_url
        if secret_key is not None:
            overrides["secret_key"] = SecretStr(secret_key)
        base = settings or Settings()
        # a relative data directory is the one of the current directory now, for good:
        # followed later, an app's os.chdir() made a second key file elsewhere and sealed
        # new secrets under it (the app then could not start again), and moved storage
        overrides["data_dir"] = Path(base.data_dir if data_dir is None else data_dir).absolute()
        self.settings = base.model_copy(update=overrides)
        redactor.add(*self.settings.secret_values, org=PROCESS_SETTINGS)
        explicit = self.settings.egress_allowlist != os.environ.get(ALLOWLIST_ENV, "")
        use_allowlist(self.settings.egress_allowlist if explicit else None)
        self.registry = registry or connector_registry
        self.registry.discover()
        self.db = Database(self.settings.database_url)
        if migrate:
            upgrade(self.db.engine, only_new=migrate == "only_new")
        key_file = None if self.settings.secret_key else key_file_path(self.settings.data_dir)
        self.box = SecretBox(self._keyring(), key_file=key_file, load=self._keyring)
        check_master_key(self.db, self.box)
        self.files = FileStore(self.settings.data_dir / "files")
        self.codec = ParamCodec(self.box, self.files)
        self.accounts = AccountService(self.db)
        self.connectors = ConnectorService(
            self.db,
            self.registry,
            self.codec,
            self.files,
            DirectoryPolicy(self.settings.allowed_directories, self._own_paths()),
        )
        self.defaults = DefaultResolver(
            self.db,
            self.registry,
            self.codec,
            self._builtin_adapter,
            check=self.connectors.check_directories,
        )
        self.oauth = OAuthService(
            self.db, self.connectors, self.codec, self.box, public_url=self.settings.public_url
        )
        self.connectors.token_sources = self.oauth.token_source
        self.runtime = Runtime(self)  # supervisor, outbox, inbound, events; idle until start()

    def _own_paths(self) -> list[Path]:
        """Jackfield's own files, which no connector may use as its directory."""
        database = sqlite_file(self.settings.database_url)
        return [self.settings.data_dir] + ([database] if database is not None else [])

    def _keyring(self) -> Any:
        key = self.settings.secret_key
        return load_keyring(
            key.get_secret_value() if key else None,
            self.settings.fallback_keys,
            self.settings.data_dir,
        )

    # -- defaults -----------------------------------------------------------------------
    def default(self, category: str, org: str) -> ResolvedConnector:
        """The connector to use for ``category`` in organization ``org`` (name or id)."""
        return self.defaults.get_default_for_category(self.accounts.org_id(org), category)

    def _builtin_adapter(
        self, category: str, organization_id: str
    ) -> tuple[str, dict[str, Any]] | None:
        s = self.settings
        if category == "storage":
            return "local_fs", {"root": str(s.data_dir / "storage" / organization_id)}
        if category == "email":
            return "smtp", {
                "host": s.smtp_host,
                "port": s.smtp_port,
                "username": s.smtp_username,
                "password": s.smtp_password.get_secret_value(),
                "from_address": s.smtp_from,
                "starttls": s.smtp_starttls,
                "tls": s.smtp_tls,
            }
        return None

    # -- providers ------------------------------------------------------------------
    def open_provider(self, connector_id: str) -> ConnectorProvider:
        """A configured provider instance for a stored connector (any organization).

        The one place that turns a connector record into a live provider, so wiring
        such as OAuth token refresh is attached the same way for the runtime, the API
        and tests. The caller owns the instance (``open``/``close``).
        """
        return self.connectors.open_provider(connector_id)

    def webhook_url(self, connector: dict[str, Any]) -> str | None:
        """Where senders post ``connector``'s webhooks (``JACKFIELD_PUBLIC_URL`` +
        ``/hooks/{id}``), or ``None`` when its provider does not receive webhooks."""
        try:
            cls = self.registry.get(connector["category"], connector["provider_type"])
        except ConnectorError:  # a type no longer installed
            return None
        if not issubclass(cls, WebhookSource):
            return None
        return f"{self.settings.public_url.rstrip('/')}/hooks/{connector['id']}"

    # -- runtime ------------------------------------------------------------------------
    def send(
        self,
        connector_id: str,
        payload: dict[str, Any],
        *,
        operation: str | None = None,
        envelope_id: str | None = None,
    ) -> str:
        """Queue an outbound message; returns its envelope id once it is committed.

        Durable and idempotent: sending a known ``envelope_id`` (a ULID) again returns it
        without a second delivery. The runtime delivers it (``await jf.start()`` in
        embedded use, or a ``jackfield serve`` on the same database).
        """
        result = self.runtime.send(
            connector_id, payload, operation=operation, envelope_id=envelope_id
        )
        return result.envelope_id

    def send_many(
        self, connector_id: str, payloads: Iterable[dict[str, Any]], *, operation: str | None = None
    ) -> list[str]:
        """Queue several messages to one connector at once; returns their (new) envelope
        ids, in order, once all are committed. One write and one wait for all of them:
        the way to enqueue a batch (an import, a fan-out) quickly."""
        results = self.runtime.send_many(connector_id, payloads, operation=operation)
        return [result.envelope_id for result in results]

    def on(self, event_type: str) -> Any:
        """Decorator: run the function for every inbound event of ``event_type``
        (``"*"``: all); sync or async functions."""
        return self.runtime.events.on(event_type)

    async def start(self) -> None:
        """Start the runtime in the running event loop (delivery, units, handlers)."""
        await self.runtime.start()

    async def stop(self) -> None:
        """Stop the runtime gracefully (in-flight deliveries finish or are given back)."""
        await self.runtime.stop()

    # -- keys ---------------------------------------------------------------------------
    def rotate_keys(self) -> int:
        """Re-encrypt every secret under the current key; returns how many moved.

        With ``JACKFIELD_SECRET_KEY`` the old keys come from the fallbacks. With the
        generated key file, a new key file is made and the old one is kept as
        ``secret.key.old`` until every secret is re-encrypted (a crash in between
        leaves both readable; running the command again finishes the job).
        """
        if self.settings.secret_key is None:
            path = key_file_path(self.settings.data_dir)
            with _exclusive(path.with_name(path.name + ".lock")):
                return self._rotate_key_file(path)
        return reencrypt_all(self.db, self.codec)

    def _rotate_key_file(self, path: Path) -> int:
        """One rotation of the generated key file; its caller holds the rotation lock
        (two at once removed the key every secret was encrypted under)."""
        old = path.with_name(path.name + ".old")
        current = read_key_file(path)
        if not old.exists() or read_key_file(old).raw == current.raw:
            write_key_file(old, current)  # atomically: a kill never leaves half a key
            write_key_file(path, MasterKey.generate())
        self.box.keyring = self._keyring()
        count = reencrypt_all(self.db, self.codec)
        # a running serve may have written a secret under the old key meanwhile
        # (it follows the key file from its next write on): once more, then drop it
        count += reencrypt_all(self.db, self.codec)
        old.unlink()
        self.box.keyring = self._keyring()
        return count

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> Jackfield:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
