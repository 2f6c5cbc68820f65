"""OAuth2 access tokens of connectors: checked on the way in, refreshed on the way out.

``TokenRefresher.access_token`` is the token source of OAuth providers. It refreshes
ahead of expiry, single-flight per connector under a database lock (``SELECT ... FOR
UPDATE`` on the connector row on PostgreSQL; on SQLite every transaction is a write
transaction, ``BEGIN IMMEDIATE``, which serializes the same way), so threads, processes
and nodes never spend one refresh token twice. Expiry is checked again after the lock is
taken (another caller may have refreshed meanwhile), and a rotated refresh token is
written in the transaction that holds the lock. The HTTP call is the provider's
``refresh_oauth_token`` (through the integration toolkit and its egress guard).

"Ahead of expiry" means within ``REFRESH_LEEWAY``, but never more than half the token's
lifetime: a token that lives 60 s or less would otherwise count as expiring the moment
it is issued, and every request would spend a refresh grant. The service stamps
``oauth.issued_at`` whenever it stores tokens so the lifetime is known.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..kernel import call_sync
from ..kernel.config import get_path, secret_keys
from ..kernel.errors import (
    AuthError,
    ConnectorConfigError,
    ConnectorError,
    ConnectorNotSupportedError,
)
from ..kernel.params import flatten_config, unflatten_params
from ..kernel.provider import Capability, ConnectorProvider, oauth_not_connected
from ..secrets import redactor
from ..store import Connector, Database
from . import audit
from .connectors import ConnectorService
from .context import Principal
from .lookup import load_connector
from .params import ParamCodec, ParamInput, normalize_params

REFRESH_LEEWAY = 60.0
ACCESS_TOKEN = "oauth.access_token"
REFRESH_TOKEN = "oauth.refresh_token"
EXPIRES_AT = "oauth.expires_at"
ISSUED_AT = "oauth.issued_at"
TOKEN_SEQUENCE = 9000  # token params sort after what the admin configured
RECONNECT = "Reconnect the connector (Connect on its page) to authorize again."


class TokenRefresher:
    def __init__(
        self,
        db: Database,
        connectors: ConnectorService,
        codec: ParamCodec,
        *,
        clock: Callable[[], float] = time.time,
        leeway: float = REFRESH_LEEWAY,
    ) -> None:
        self.db = db
        self.connectors = connectors
        self.codec = codec
        self.clock = clock
        self.leeway = leeway

    async def access_token(
        self, connector_id: str, *, force_refresh: bool = False, stale_token: str | None = None
    ) -> str:
        """A valid access token (see ``access_token_sync``), without blocking the loop."""
        return await asyncio.to_thread(
            self.access_token_sync,
            connector_id,
            force_refresh=force_refresh,
            stale_token=stale_token,
        )

    def access_token_sync(
        self, connector_id: str, *, force_refresh: bool = False, stale_token: str | None = None
    ) -> str:
        """The stored access token, refreshed first when it expires within the leeway.

        ``force_refresh`` (the API answered 401) refreshes unless ``stale_token`` — the
        token the caller was refused with — was already replaced by another caller.
        Raises ``AuthError`` (and marks the connector ``error``) when the refresh is
        refused for good, ``TransientError``/``ConnectionFailedError`` otherwise; before
        Connect (no token at all) the provider's "not connected yet", marking nothing.
        """
        _, cls, config = self.connectors.resolve(connector_id)
        if Capability.OAUTH2 not in cls.capabilities:
            raise ConnectorNotSupportedError(f"{cls.provider_type} does not use OAuth2 tokens")
        access = _text(get_path(config, ACCESS_TOKEN))
        if access and not force_refresh and self.fresh(config):
            return access
        return self._refresh(connector_id, force_refresh, stale_token)

    def fresh(self, config: Mapping[str, Any]) -> bool:
        raw = get_path(config, EXPIRES_AT)
        if raw in (None, ""):
            return True  # the provider did not say; a 401 forces a refresh
        try:
            expires_at = float(raw)
        except (TypeError, ValueError):
            return False
        return self.clock() + self.margin(config, expires_at) < expires_at

    def margin(self, config: Mapping[str, Any], expires_at: float) -> float:
        """How long before ``expires_at`` to refresh: the leeway, at most half the
        lifetime (the whole leeway when the issue time is unknown, e.g. older tokens)."""
        try:
            issued_at = float(get_path(config, ISSUED_AT))
        except (TypeError, ValueError):
            return self.leeway
        if issued_at >= expires_at:
            return self.leeway
        return min(self.leeway, (expires_at - issued_at) / 2)

    def _refresh(self, connector_id: str, force: bool, stale_token: str | None) -> str:
        failure: ConnectorError | None = None
        with self.db.transaction() as s:
            # the row lock (PostgreSQL) / write transaction (SQLite) makes this single-flight
            connector = load_connector(s, connector_id, lock=True)
            cls = self.connectors.registry.get(connector.category, connector.provider_type)
            config = cls.validate_config(self.codec.plain_config(connector))
            access = _text(get_path(config, ACCESS_TOKEN))
            replaced = stale_token is not None and access != stale_token
            if access and self.fresh(config) and (not force or replaced):
                return access  # valid, or another caller (thread, process, node) refreshed
            refresh = _text(get_path(config, REFRESH_TOKEN))
            if not access and not refresh:
                raise oauth_not_connected()  # before Connect: no refresh failed, none recorded
            who = Principal.operator(connector.organization_id, "oauth-refresh")
            if not refresh:
                failure = AuthError("no OAuth refresh token is stored", remediation=RECONNECT)
            else:
                try:
                    params = token_params(
                        cls,
                        call_sync(cls.refresh_oauth_token, refresh, config),
                        connector.organization_id,
                        issued_at=self.clock(),
                    )
                except ConnectorError as exc:
                    if exc.retryable and not isinstance(exc, AuthError):
                        raise  # temporary: nothing changes, the caller retries later
                    failure = exc
                else:
                    self._store(connector, cls, params)
                    rotated = any(p["key"] == REFRESH_TOKEN for p in params)
                    audit.record(
                        s,
                        who,
                        "connector.oauth_refresh",
                        "connector",
                        connector.id,
                        details={"rotated": rotated},
                    )
                    return str(get_path(unflatten_params(params), ACCESS_TOKEN))
            message = f"OAuth token refresh failed: {failure.message}; reconnect the connector"
            connector.status_message = redactor.redact(message, org=connector.organization_id)
            connector.status = "error"
            audit.record(
                s,
                who,
                "connector.oauth_refresh",
                "connector",
                connector.id,
                outcome="failure",
                details={"message": failure.message},
            )
        raise AuthError(connector.status_message, operation="oauth_refresh", remediation=RECONNECT)

    def _store(
        self, connector: Connector, cls: type[ConnectorProvider], params: list[dict[str, Any]]
    ) -> None:
        """Write token params into ``connector`` (the caller's transaction); other params,
        and a refresh token the response did not replace, are kept as they are."""
        incoming = normalize_params(params, None)
        new = {p.key for p in incoming}
        kept = [
            ParamInput(row.key, None, row.value_type, row.sequence, keep=True)
            for row in connector.params
            if row.key not in new
        ]
        self.codec.replace(connector, [*kept, *incoming], cls.config_schema())
        connector.updated_at = datetime.now(UTC)


class ConnectorTokenSource:
    """The ``TokenSource`` of one connector, handed to its provider instance.

    It remembers the token it handed out, so that a forced refresh after a 401 does not
    refresh again when another caller already replaced that token.
    """

    def __init__(self, refresher: TokenRefresher, connector_id: str) -> None:
        self.refresher = refresher
        self.connector_id = connector_id
        self._last: str | None = None

    async def __call__(self, *, force_refresh: bool = False) -> str:
        token = await self.refresher.access_token(
            self.connector_id,
            force_refresh=force_refresh,
            stale_token=self._last if force_refresh else None,
        )
        self._last = token
        return token


def token_params(
    cls: type[ConnectorProvider], result: Any, org: str, *, issued_at: float
) -> list[dict[str, Any]]:
    """The params an OAuth hook returned, checked: an access token is present and every
    token is a secret field of the provider (so it is encrypted at rest). ``issued_at``
    (Unix seconds, now) is stored beside them: the refresh margin depends on it."""
    if not isinstance(result, Mapping):
        raise AuthError(f"{cls.provider_type} returned no tokens", operation="oauth")
    flat = [p for p in flatten_config(result) if p["value"] is not None]
    flat = [p for p in flat if p["key"] != ISSUED_AT]
    flat.append({"key": ISSUED_AT, "value": int(issued_at)})
    values = {p["key"]: p["value"] for p in flat}
    if not _text(values.get(ACCESS_TOKEN)):
        raise AuthError("the token endpoint returned no access token", operation="oauth")
    secret = secret_keys(cls.config_schema())
    for key, value in values.items():
        if key.rsplit(".", 1)[-1].endswith("token") and key not in secret:
            raise ConnectorConfigError(
                f"{cls.provider_type} must declare {key!r} as a secret field to store it"
            )
        if key in secret:
            redactor.add(value, org=org)
    return [
        {"key": p["key"], "value": p["value"], "sequence": TOKEN_SEQUENCE + i * 10}
        for i, p in enumerate(flat)
    ]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
