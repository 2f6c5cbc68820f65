"""Connector use cases, all scoped to the caller's organization.

Validation happens before any write, inside one transaction, so bad input changes
nothing. Every admin change writes an audit event in the same transaction.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select, true, update
from sqlalchemy.orm import Session

from ..kernel.errors import (
    ConflictError,
    ConnectorConfigError,
    ConnectorError,
)
from ..kernel.provider import Capability, ConnectorProvider, TokenSourceFn
from ..kernel.redaction import Redactor, get_logger
from ..kernel.registry import ConnectorRegistry
from ..secrets import mask_config
from ..store import Connector, Database, Organization
from . import audit
from .categories import check_category
from .connection_tests import TEST_TIMEOUT_SECONDS, run_connection_test
from .connector_changes import check_version, config_changed, effective_config
from .context import Principal
from .files import FileStore
from .listing import after_cursor, connector_cursor
from .local_paths import DirectoryGuard, DirectoryPolicy, directory_fields
from .lookup import load_connector, stored_connector_id
from .params import MAX_FILE_BYTES, ParamCodec, ParamInput, normalize_params
from .secret_origins import check_kept_secrets
from .units import end_failed_units
from .views import connector_view, provider_type_view

log = get_logger(__name__)
STATUSES = ("draft", "connected", "error")


class ConnectorService:
    def __init__(
        self,
        db: Database,
        registry: ConnectorRegistry,
        codec: ParamCodec,
        files: FileStore,
        directories: DirectoryPolicy | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.codec = codec
        self.files = files
        self.directories = DirectoryGuard(db, registry, directories or DirectoryPolicy((), ()))
        """Which server directories a connector's ``directory`` fields may name."""
        self.token_sources: Callable[[str], TokenSourceFn] | None = None
        """Set by the application: OAuth token refresh for providers that declare oauth2."""
        self._listeners: builtins.list[Callable[[str], None]] = []
        self.test_timeout_seconds = TEST_TIMEOUT_SECONDS  # a test's deadline (tests: less)

    def add_listener(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(connector_id)`` once a change to a connector (its config,
        enabled or deleted) has committed: this process's runtime then reloads its unit
        at once, so a message sent after the change is delivered with the new config
        (other nodes notice it when they next look, ``JACKFIELD_SUPERVISOR_POLL_SECONDS``)."""
        self._listeners.append(callback)

    def _changed(self, connector_id: str) -> None:
        for listener in self._listeners:
            listener(connector_id)

    # -- reading --------------------------------------------------------------------------
    def list(self, who: Principal, *, category: str | None = None) -> builtins.list[dict[str, Any]]:
        return self._list(Connector.organization_id == who.organization_id, category)

    def list_deployment(self, *, category: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every organization's connectors: the deployment as its operator sees it (the
        CLI, which holds the database and the master key anyway). Never for an API
        caller: organizations do not see each other."""
        return self._list(true(), category)

    def page(
        self,
        who: Principal,
        *,
        category: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """``{"items", "next_cursor"}``: one page of ``list``, keyset-paged (see
        ``listing``), so deletes between pages skip nothing."""
        limit = max(1, min(int(limit), 500))
        with self.db.snapshot() as s:
            query = select(Connector).where(Connector.organization_id == who.organization_id)
            if category:
                query = query.where(Connector.category == category)
            if cursor:
                query = query.where(after_cursor(cursor))
            order = query.order_by(Connector.created_at, Connector.id).limit(limit + 1)
            rows = list(s.scalars(order))
            following = connector_cursor(rows[limit - 1]) if len(rows) > limit else None
            return {"items": [connector_view(c) for c in rows[:limit]], "next_cursor": following}

    def _list(self, which: Any, category: str | None) -> builtins.list[dict[str, Any]]:
        with self.db.snapshot() as s:
            query = select(Connector).where(which)
            if category:
                query = query.where(Connector.category == category)
            rows = s.scalars(query.order_by(Connector.created_at, Connector.id))
            return [connector_view(c) for c in rows]

    def get(self, who: Principal, connector_id: str) -> dict[str, Any]:
        with self.db.transaction() as s:
            return connector_view(self._load(s, who, connector_id))

    def get_config(self, who: Principal, connector_id: str) -> dict[str, Any]:
        """The nested config with secret values masked: the schema's secret fields and
        every param stored as secret (a key its sender marked secret, which the schema may
        not know -- a secret file among them), as the connector's params show them."""
        with self.db.transaction() as s:
            connector = self._load(s, who, connector_id)
            cls = self._provider(connector)
            stored_secret = [row.key for row in connector.params if row.is_secret]
            return mask_config(
                cls.config_schema(), self.codec.plain_config(connector), stored_secret
            )

    def provider_types(self, category: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every listable provider type. One whose ``config_schema()`` fails now (it was
        checked at registration, but it is the provider's code) is left out and logged:
        it must not take the listing of every other provider down with it."""
        if category:  # a typo is an error, not an empty list (as in create)
            check_category(self.registry, category)
        classes = self.registry.list_for_category(category) if category else self.registry.all()
        views = []
        for cls in classes:
            try:
                views.append(provider_type_view(cls))
            except Exception as exc:  # noqa: BLE001 - logged; the provider's own fault
                log.warning(
                    "provider %s/%s left out of the provider types: config_schema() failed: %s: %s",
                    cls.category,
                    cls.provider_type,
                    type(exc).__name__,
                    exc,
                )
        return views

    # -- writing --------------------------------------------------------------------------
    def create(
        self,
        who: Principal,
        *,
        name: str,
        category: str,
        provider_type: str,
        params: Iterable[Mapping[str, Any]] | None = None,
        config: Mapping[str, Any] | None = None,
        is_default: bool = False,
    ) -> dict[str, Any]:
        who.require_admin()
        name = _check_name(name)
        cls = self._provider_for_create(category, provider_type)
        incoming = normalize_params(params, config)
        with self.db.transaction() as s:
            if is_default:
                _lock_defaults(s, who.organization_id)
            connector = Connector(
                organization_id=who.organization_id,
                name=name,
                category=category,
                provider_type=provider_type,
                status="draft",
                status_message="not tested yet",
            )
            s.add(connector)
            s.flush()
            self._apply_params(connector, incoming, cls)
            if is_default:
                self._make_default(s, connector)
            audit.record(
                s,
                who,
                "connector.create",
                "connector",
                connector.id,
                details={"name": name, "provider_type": provider_type, "keys": _keys(incoming)},
            )
            s.flush()
            return connector_view(connector)

    def update(
        self,
        who: Principal,
        connector_id: str,
        *,
        name: str | None = None,
        params: Iterable[Mapping[str, Any]] | None = None,
        config: Mapping[str, Any] | None = None,
        is_default: bool | None = None,
        merge: bool = False,
        category: str | None = None,
        provider_type: str | None = None,
        expected_version: str | None = None,
    ) -> dict[str, Any]:
        """Change a connector. New ``params``/``config`` replace the stored set, or are
        merged into it key by key with ``merge=True`` (the CLI's ``--param``).

        Only a change of the configuration sends the connector back to ``draft`` (test it
        again); an update that changes nothing (``connector_changes``) leaves it exactly
        as it was, ``updated_at`` included -- which is how a caller tells it apart.
        ``expected_version`` (the ``edit_version`` a form was opened with): refused with
        ``ConflictError`` when the connector has changed since.

        ``category`` and ``provider_type`` are accepted so that a connector as read (or
        the body that created it) can be sent back whole; they cannot change, since the
        params belong to that provider: a different value is refused."""
        who.require_admin()
        obsolete: builtins.list[str] = []
        with self.db.transaction() as s:
            if is_default:
                _lock_defaults(s, who.organization_id)  # before reading the connector
                _lock_with_defaults(s, who.organization_id, connector_id)
            connector = self._load(s, who, connector_id, lock="edit")
            if expected_version is not None:  # (a form's; the schema says what it shows)
                schema = self._provider(connector).config_schema()
                check_version(connector_view(connector), schema, expected_version)
            _check_unchanged(connector, category=category, provider_type=provider_type)
            changes: dict[str, Any] = {}
            if name is not None and (name := _check_name(name)) != connector.name:
                connector.name = changes["name"] = name
            if params is not None or config is not None:
                incoming = normalize_params(params, config, _plain_texts(connector))
                if merge:
                    incoming = _merge(connector, incoming)
                cls = self._provider(connector)
                before = effective_config(self.codec, connector, cls)
                obsolete = self._apply_params(connector, incoming, cls)
                if config_changed(before, effective_config(self.codec, connector, cls)):
                    connector.status, connector.status_message = "draft", "configuration changed"
                    changes["keys"] = _keys(incoming)
            if is_default is not None and is_default != connector.is_default:
                if is_default:
                    self._make_default(s, connector)
                else:
                    connector.is_default = False
                changes["is_default"] = is_default
            if changes:  # (nothing changed: status, updated_at and the runtime stay)
                connector.updated_at = datetime.now(UTC)
                audit.record(s, who, "connector.update", "connector", connector.id, details=changes)
            s.flush()
            view = connector_view(connector)
        for ref in obsolete:
            self.files.delete(ref)
        if changes:
            self._changed(view["id"])
        return view

    def delete(self, who: Principal, connector_id: str) -> None:
        who.require_admin()
        with self.db.transaction() as s:
            connector = self._load(s, who, connector_id, lock="delete")
            s.delete(connector)
            audit.record(
                s,
                who,
                "connector.delete",
                "connector",
                connector.id,
                details={"name": connector.name},
            )
        self.files.delete_connector(connector.id)
        self._changed(connector.id)

    def set_enabled(self, who: Principal, connector_id: str, enabled: bool) -> dict[str, Any]:
        """Activate (only when connected) or deactivate."""
        who.require_admin()
        with self.db.transaction() as s:
            connector = self._load(s, who, connector_id)
            if enabled and connector.status != "connected":
                raise ConflictError(
                    f"connector is {connector.status!r}, not 'connected'",
                    remediation="Run a successful connection test before activating.",
                )
            if not enabled:  # its units end, ``failed`` ones too, on nodes down as well
                end_failed_units(s, connector.id)
            connector.is_enabled = enabled
            action = "connector.activate" if enabled else "connector.deactivate"
            audit.record(s, who, action, "connector", connector.id)
            s.flush()
            view = connector_view(connector)
        self._changed(view["id"])
        return view

    def import_config(
        self,
        who: Principal,
        connector_id: str,
        *,
        json_data: Any = None,
        file_content: str | None = None,
        file_name: str | None = None,
        file_mime: str | None = None,
    ) -> dict[str, Any]:
        """Replace all params with an imported JSON document (after the provider's
        ``normalize_import_json``)."""
        who.require_admin()
        data = _import_document(json_data, file_content)
        obsolete: builtins.list[str] = []
        with self.db.transaction() as s:
            connector = self._load(s, who, connector_id, lock="edit")
            cls = self._provider(connector)
            try:
                normalized = cls.normalize_import_json(data)
            except ConnectorError as exc:  # the provider's own words, masked the same way
                raise ConnectorConfigError(
                    f"the imported document is not usable: {_masked(exc.message, data)}",
                    remediation=_masked(exc.remediation, data),
                ) from None
            except (KeyError, TypeError, ValueError) as exc:
                reason = _masked(str(exc), data)
                raise ConnectorConfigError(
                    f"the imported document is not usable: {reason}"
                ) from None
            if not isinstance(normalized, dict):
                raise ConnectorConfigError("the imported document must describe an object")
            incoming = normalize_params(None, normalized)
            obsolete = self._apply_params(connector, incoming, cls)
            connector.status, connector.status_message = "draft", "configuration imported"
            audit.record(
                s,
                who,
                "connector.import_config",
                "connector",
                connector.id,
                details={"file_name": file_name, "file_mime": file_mime, "keys": _keys(incoming)},
            )
            s.flush()
            view = connector_view(connector)
        for ref in obsolete:
            self.files.delete(ref)
        self._changed(view["id"])
        return view

    # -- testing --------------------------------------------------------------------------
    def test(self, who: Principal, connector_id: str) -> dict[str, Any]:
        """Run ``test_connection`` and record the outcome on the connector."""
        who.require_admin()
        with self.db.transaction() as s:
            connector = self._load(s, who, connector_id)
            cls = self._provider(connector)
            config = self.codec.plain_config(connector)
            stored_id = connector.id
        result = run_connection_test(
            cls,
            lambda: self._instantiate(stored_id, cls, config),
            who.organization_id,
            self.test_timeout_seconds,
        )
        status = "connected" if result.success else "error"
        with self.db.transaction() as s:
            connector = self._load(s, who, connector_id)
            connector.status = status
            connector.status_message = result.message
            connector.last_tested_at = datetime.now(UTC)
            audit.record(
                s,
                who,
                "connector.test",
                "connector",
                connector.id,
                outcome="success" if result.success else "failure",
                details={"message": result.message},
            )
        return {
            "success": result.success,
            "message": result.message,
            "details": result.details,
            "status": status,
        }

    # -- for the runtime and the OAuth flow (already authorized callers) ---------------
    def resolve(
        self, connector_id: str
    ) -> tuple[Connector, type[ConnectorProvider], dict[str, Any]]:
        """A connector's record, provider class and decrypted config, in any organization."""
        with self.db.transaction() as s:
            connector = load_connector(s, connector_id)
            return connector, self._provider(connector), self.codec.plain_config(connector)

    def open_provider(self, connector_id: str) -> ConnectorProvider:
        """A live provider for a stored connector (any organization), with the OAuth
        token source attached when the provider declares ``oauth2``."""
        connector, cls, config = self.resolve(connector_id)
        return self._instantiate(connector.id, cls, config)

    def organization_of(self, connector_id: str) -> str:
        """The organization a connector belongs to (for the operator's CLI)."""
        with self.db.transaction() as s:
            return load_connector(s, connector_id).organization_id

    # -- internals ------------------------------------------------------------------------
    def _load(
        self, s: Session, who: Principal, connector_id: str, *, lock: str | None = None
    ) -> Connector:
        """The caller's connector. ``lock`` (``"edit"``, ``"delete"``): for a change of
        its params, which takes the connector's row lock before any param's -- the order
        ``keys rotate`` and a token refresh take them in, so none deadlocks another
        (PostgreSQL). An edit's ``FOR NO KEY UPDATE`` leaves the runtime's inserts that
        reference the connector (events, cursors, messages) unblocked; a delete's is
        ``FOR UPDATE``."""
        how: dict[str, Any] | bool | None = {"key_share": True} if lock == "edit" else None
        if lock == "delete":
            how = True
        return load_connector(s, connector_id, organization_id=who.organization_id, lock=how)

    def _instantiate(
        self, connector_id: str, cls: type[ConnectorProvider], config: dict[str, Any]
    ) -> ConnectorProvider:
        if directory_fields(cls.config_schema()):  # (the organization only when needed)
            self.directories.check(cls, config, self.organization_of(connector_id))
        provider = cls.from_config(config)
        if self.token_sources is not None and Capability.OAUTH2 in cls.capabilities:
            provider.token_source = self.token_sources(connector_id)
        return provider

    def _provider(self, connector: Connector) -> type[ConnectorProvider]:
        """The stored connector's provider class. One that is not installed (or failed to
        load) is the connector's problem, not a missing connector: a 422 saying so, and
        the runtime shows the connector ``misconfigured`` with the same message."""
        if self.registry.is_registered(connector.category, connector.provider_type):
            return self.registry.get(connector.category, connector.provider_type)
        key = f"{connector.category}/{connector.provider_type}"
        load_error = self.registry.load_error(connector.provider_type)
        why = f": {load_error}" if load_error else " (not installed)"
        raise ConnectorConfigError(
            f"the provider {key} of connector {connector.name!r} is not available{why}",
            field_errors={"provider_type": f"provider {key} is not available"},
            remediation="Install (or fix) the plugin that provides it and restart Jackfield,"
            " or delete this connector.",
        )

    def check_directories(
        self, cls: type[ConnectorProvider], config: Mapping[str, Any], organization_id: str
    ) -> None:
        """Refuse ``directory`` fields naming server directories the connector may not use
        (``service.local_paths``): before it is saved, and whenever it is opened."""
        self.directories.check(cls, config, organization_id)

    def directory_problems(self) -> builtins.list[str]:
        """What is wrong with the stored connectors' directories, one line each (for
        the operator at start: a connector refused only when used looks healthy)."""
        with self.db.snapshot() as s:
            connectors = [
                (c.name, c.organization_id, self._provider(c), self.codec.plain_config(c))
                for c in s.scalars(select(Connector).order_by(Connector.name))
                if self.registry.is_registered(c.category, c.provider_type)
            ]
        problems = []
        for name, org, cls, config in connectors:
            try:
                self.directories.check(cls, config, org)
            except ConnectorConfigError as exc:
                problems.append(f"connector {name!r} ({org}): {exc.message}")
        return problems

    def _provider_for_create(self, category: str, provider_type: str) -> type[ConnectorProvider]:
        check_category(self.registry, category)
        if not self.registry.is_registered(category, provider_type):
            providers = self.registry.list_for_category(category)
            known = ", ".join(c.provider_type for c in providers) or "none installed"
            raise ConnectorConfigError(
                f"unknown provider {provider_type!r} for category {category!r}",
                field_errors={"provider_type": f"known {category} providers: {known}"},
            )
        return self.registry.get(category, provider_type)

    def _apply_params(
        self,
        connector: Connector,
        incoming: builtins.list[ParamInput],
        cls: type[ConnectorProvider],
    ) -> builtins.list[str]:
        schema = cls.config_schema()
        merged = self.codec.merged_config(connector, incoming, schema)
        cls.validate_config(merged)
        self.check_directories(cls, merged, connector.organization_id)
        check_kept_secrets(connector, incoming, schema)
        return self.codec.replace(connector, incoming, schema)

    @staticmethod
    def _make_default(s: Session, connector: Connector) -> None:
        """Clear the category's other default, then set this one. The caller holds
        ``_lock_defaults`` for the organization, so concurrent calls take turns and the
        last one wins instead of failing on ``uq_connectors_default_per_category``."""
        s.execute(
            update(Connector)
            .where(
                Connector.organization_id == connector.organization_id,
                Connector.category == connector.category,
                Connector.id != connector.id,
                Connector.is_default.is_(True),
            )
            .values(is_default=False)
        )
        s.flush()
        connector.is_default = True


def _lock_with_defaults(s: Session, organization_id: str, connector_id: str) -> None:
    """Before making ``connector_id`` the default: its row and those of the organization's
    defaults (one of which it unsets), in id order -- the order ``keys rotate`` locks
    connectors in; taking its own first, then the old default's, could deadlock it."""
    s.execute(
        select(Connector.id)
        .where(
            Connector.organization_id == organization_id,
            # (no UUID: its ``IS NULL`` locks no row, and the connector is not found next)
            or_(Connector.id == stored_connector_id(connector_id), Connector.is_default.is_(True)),
        )
        .order_by(Connector.id)
        .with_for_update(key_share=True)
    ).all()


def _lock_defaults(s: Session, organization_id: str) -> None:
    """Serialize "make this the default" within an organization (PostgreSQL; SQLite
    writers queue anyway): a row lock on the organization, taken first in the
    transaction.

    Locking the category's connector rows would not do: a category with no row yet (two
    concurrent creates) has nothing to lock, and rows already written by the transaction
    could deadlock. ``FOR NO KEY UPDATE`` leaves inserts referencing the organization
    (which take ``FOR KEY SHARE``) unblocked. After the wait, the clearing ``UPDATE``
    sees the previous winner (READ COMMITTED) and clears it."""
    s.execute(
        select(Organization.id)
        .where(Organization.id == organization_id)
        .with_for_update(key_share=True)
    )


NAME_MAX = 200


def _check_name(name: str) -> str:
    """The trimmed name; its field error says what is wrong with it (a name too long
    was once told "Name is required" next to the field)."""
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name:
        problem = "required"
    elif len(name) > NAME_MAX:
        problem = f"must be at most {NAME_MAX} characters (this one has {len(name)})"
    elif "\x00" in name:
        problem = "must not contain a NUL character"
    else:
        return name
    raise ConnectorConfigError(
        f"a connector name must be 1 to {NAME_MAX} characters", field_errors={"name": problem}
    )


def _check_unchanged(connector: Connector, **sent: str | None) -> None:
    """Refuse a change of what a connector is (its category or provider)."""
    fields = {
        name: f"cannot change from {getattr(connector, name)!r}; create a new connector"
        for name, value in sent.items()
        if value is not None and value != getattr(connector, name)
    }
    if fields:
        raise ConnectorConfigError(
            f"a connector's {' and '.join(fields)} cannot change",
            field_errors=fields,
            remediation="Leave category and provider_type out (or unchanged), or create a "
            "new connector of the other provider.",
        )


def _merge(connector: Connector, incoming: list[ParamInput]) -> list[ParamInput]:
    new = {p.key: p for p in incoming}
    kept = [
        ParamInput(row.key, None, row.value_type, row.sequence, keep=True)
        for row in connector.params
        if row.key not in new
    ]
    return sorted([*kept, *incoming], key=lambda p: (p.sequence, p.key))


def _plain_texts(connector: Connector) -> dict[str, str | None]:
    """The stored text values that are not secret (as sent back, unchanged, by a form)."""
    return {
        row.key: row.value
        for row in connector.params
        if row.value_type == "text" and not row.is_secret
    }


def _keys(incoming: list[ParamInput]) -> list[str]:
    return [p.key for p in incoming]


def _masked(text: str, document: Any) -> str:
    """``text`` with every value of an imported ``document`` masked. Which of them are
    secret is only known once ``normalize_import_json`` has mapped the document onto the
    schema, and it is that mapping that failed: a provider's error quoting the document
    must not hand a new secret back (in the 422, the CLI's error line or a log)."""
    values = Redactor()
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        else:
            values.add(node)
    return values.redact(text)


def _import_document(json_data: Any, file_content: str | None) -> Any:
    if json_data is not None and file_content is not None:
        raise ConnectorConfigError("send either json_data or file_content, not both")
    if file_content is not None:
        # Two failures, said apart: a client's encoding (file_content is base64 by
        # contract), and the file itself -- which the admin of the UI, whose upload the
        # UI encodes, never base64-encoded.
        try:
            raw = base64.b64decode(file_content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConnectorConfigError(
                "file_content is not base64-encoded",
                remediation="Send the file's bytes base64-encoded in file_content.",
            ) from exc
        if len(raw) > MAX_FILE_BYTES:  # what REST's body limit allows, for every caller
            raise ConnectorConfigError(
                f"the imported file is {len(raw)} bytes; the limit is 1 MiB",
                remediation="Import the connector's configuration file, not other content.",
            )
        try:
            json_data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConnectorConfigError(
                "the imported file is not a JSON file (it is not UTF-8 text)",
                remediation="Upload a JSON file (UTF-8).",
            ) from exc
        except json.JSONDecodeError as exc:
            raise ConnectorConfigError(
                f"the imported file is not a JSON file ({exc.msg} at line {exc.lineno},"
                f" column {exc.colno})",
                remediation="Upload a JSON file (UTF-8).",
            ) from exc
    if not isinstance(json_data, dict):
        raise ConnectorConfigError("the imported configuration must be a JSON object")
    return json_data
