"""The OAuth2 authorization code flow with PKCE (S256), and token refresh.

``start`` sends the browser to the provider with a ``state`` of ``{connector}:{nonce}``;
the nonce is random, single-use, bound to the organization and connector, expires in
10 minutes and is kept server-side (only its SHA-256, with the PKCE verifier encrypted).
``callback`` accepts the provider's redirect without user credentials: the state is the
proof, so every check on it runs, and the nonce is burnt atomically, *before* the code is
exchanged. Tokens are stored as secret params (``oauth.access_token``,
``oauth.refresh_token``, ``oauth.expires_at``) through the connector service.

The HTTP calls are the provider's (``exchange_oauth_code``), which go through the
integration toolkit and its egress guard; this module stays free of HTTP and web
frameworks. Token refresh (``access_token``, the providers' token source) lives in
``oauth_tokens``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

from sqlalchemy import CursorResult, delete, update
from sqlalchemy.orm import Session

from ..kernel import call_sync
from ..kernel.errors import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorNotFoundError,
    ConnectorNotSupportedError,
)
from ..kernel.provider import OAUTH_FLOW_KEY, Capability, ConnectorProvider
from ..kernel.redaction import get_logger
from ..secrets import SecretBox, SecretKeyError, redactor
from ..store import Connector, Database
from ..store.models_oauth import OAuthState
from . import audit
from .connectors import ConnectorService
from .context import Principal, Role
from .lookup import load_connector
from .oauth_tokens import ConnectorTokenSource, TokenRefresher, token_params
from .params import ParamCodec

STATE_TTL = timedelta(minutes=10)
log = get_logger(__name__)


class OAuthStateError(ConnectorError):
    """The ``state`` of a callback is unknown, used, expired or does not fit the request."""

    code = "invalid_oauth_state"
    default_remediation = (
        "Start the connection again from the connector's page; an authorization link "
        "works once and expires after 10 minutes."
    )


@dataclass(frozen=True)
class _Pending:
    organization_id: str
    actor: str
    code_verifier: str
    redirect_uri: str


class OAuthService:
    def __init__(
        self,
        db: Database,
        connectors: ConnectorService,
        codec: ParamCodec,
        box: SecretBox,
        *,
        public_url: str,
        ui_connector_path: str = "/connectors/{id}",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.connectors = connectors
        self.codec = codec
        self.box = box
        self.public_url = public_url.rstrip("/")
        self.ui_connector_path = ui_connector_path
        self.tokens = TokenRefresher(db, connectors, codec, clock=clock)

    # -- the flow -------------------------------------------------------------------------
    def redirect_uri(self, provider_type: str) -> str:
        return f"{self.public_url}/api/connectors/oauth/callback/{provider_type}"

    def connector_page(self, connector_id: str) -> str:
        """Where the browser goes after the callback: the connector's page, asked to say
        how the connect went (it reads that from the connector, not from the URL)."""
        return self.public_url + self.ui_connector_path.format(id=connector_id) + "?oauth=done"

    def start(self, who: Principal, connector_id: str) -> str:
        """Record a pending authorization; returns the URL to send the browser to."""
        who.require_admin()
        now = datetime.now(UTC)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-] (RFC 7636)
        digest = _digest(nonce)
        with self.db.transaction() as s:
            connector = load_connector(s, connector_id, organization_id=who.organization_id)
            cls = self._oauth_provider(connector)
            auth = cls.oauth_authorization(cls.validate_config(self.codec.plain_config(connector)))
            if auth is None:
                raise ConnectorNotSupportedError(
                    f"{cls.provider_type} does not describe an OAuth2 authorization"
                )
            if urlsplit(auth.authorize_url).scheme not in ("http", "https"):
                raise ConnectorConfigError(
                    "the authorization URL must be an http(s) URL",
                    field_errors={"authorize_url": "expected an absolute https:// URL"},
                )
            redirect_uri = self.redirect_uri(connector.provider_type)
            s.execute(delete(OAuthState).where(OAuthState.expires_at < now - timedelta(hours=1)))
            s.add(
                OAuthState(
                    nonce=digest,
                    connector_id=connector.id,
                    organization_id=connector.organization_id,
                    actor=who.actor,
                    code_verifier=self.box.encrypt(verifier, context=state_context(digest)),
                    redirect_uri=redirect_uri,
                    created_at=now,
                    expires_at=now + STATE_TTL,
                )
            )
            audit.record(s, who, "connector.oauth_start", "connector", connector.id)
            connector_uuid = connector.id
        query = dict(auth.extra_params)  # ours below win over a provider's extras
        query.update(
            response_type="code",
            client_id=auth.client_id,
            redirect_uri=redirect_uri,
            state=f"{connector_uuid}:{nonce}",
            code_challenge=_challenge(verifier),
            code_challenge_method="S256",
        )
        if auth.scopes:
            query["scope"] = " ".join(auth.scopes)
        separator = "&" if urlsplit(auth.authorize_url).query else "?"
        return auth.authorize_url + separator + urlencode(query)

    def callback(
        self,
        provider_type: str,
        code: str | None,
        state: str,
        error: str | None = None,
        error_description: str | None = None,
    ) -> dict[str, Any]:
        """Finish an authorization; returns ``{success, connector_id, status, message,
        action: {type: "redirect", url}}``. A bad state raises ``OAuthStateError`` before
        anything is sent to the provider. A refusal's ``error_description`` (RFC 6749
        §4.1.2.1) is kept in the message: "access_denied" alone does not say why."""
        connector_id, nonce = _parse_state(state)
        pending = self._consume(provider_type, connector_id, nonce)
        who = Principal(pending.organization_id, pending.actor or "oauth", Role.ADMIN)
        if error or not code:
            said = error or "no code returned"
            described = " ".join((error_description or "").split())
            # masked before it is cut (a secret cut in two would not be found later)
            described = redactor.redact(described, org=who.organization_id, limit=300)
            if described:
                said = f"{said}: {described}"
            reason = f"the provider did not authorize ({said})"
            return self._failed(who, connector_id, reason)
        _, cls, stored = self.connectors.resolve(connector_id)
        flow = {"code_verifier": pending.code_verifier, "redirect_uri": pending.redirect_uri}
        try:
            config = {**cls.validate_config(stored), OAUTH_FLOW_KEY: flow}
            result = call_sync(cls.exchange_oauth_code, code, config)
            params = token_params(
                cls, result, pending.organization_id, issued_at=self.tokens.clock()
            )
        except ConnectorError as exc:
            return self._failed(who, connector_id, f"authorization failed: {exc.message}")
        except Exception as exc:  # logged, and the connector says so
            # a provider's own error (a URLError when the service is down) is a failed
            # connection for the admin, never a 500 that leaves the connector "not tested"
            log.warning(
                "exchanging the authorization code of %s failed", connector_id, exc_info=exc
            )
            reason = f"authorization failed: unexpected error ({type(exc).__name__}): {exc}"
            return self._failed(who, connector_id, reason)
        self.connectors.update(who, connector_id, params=params, merge=True)
        tested = self.connectors.test(who, connector_id)
        return self._result(connector_id, tested["success"], tested["status"], tested["message"])

    # -- tokens (see oauth_tokens.py) ----------------------------------------------------
    def token_source(self, connector_id: str) -> ConnectorTokenSource:
        return ConnectorTokenSource(self.tokens, connector_id)

    async def access_token(
        self, connector_id: str, *, force_refresh: bool = False, stale_token: str | None = None
    ) -> str:
        return await self.tokens.access_token(
            connector_id, force_refresh=force_refresh, stale_token=stale_token
        )

    def access_token_sync(
        self, connector_id: str, *, force_refresh: bool = False, stale_token: str | None = None
    ) -> str:
        return self.tokens.access_token_sync(
            connector_id, force_refresh=force_refresh, stale_token=stale_token
        )

    # -- internals ------------------------------------------------------------------------
    def _oauth_provider(self, connector: Connector) -> type[ConnectorProvider]:
        cls = self.connectors.registry.get(connector.category, connector.provider_type)
        if Capability.OAUTH2 not in cls.capabilities:
            raise ConnectorNotSupportedError(
                f"{cls.provider_type} does not use OAuth2; configure its credentials instead",
                remediation="Only providers with the oauth2 capability can be connected.",
            )
        return cls

    def _consume(self, provider_type: str, connector_id: str, nonce: str) -> _Pending:
        """Check the state and burn its nonce (exactly once, even under concurrency).

        A callback on another provider's path is refused without burning the nonce."""
        digest = _digest(nonce)
        now = datetime.now(UTC)
        problem: str | None = None
        with self.db.transaction() as s:
            row = s.get(OAuthState, digest)
            if row is None or row.connector_id != connector_id:
                raise OAuthStateError("unknown OAuth state")
            if row.used_at is not None:
                raise OAuthStateError("this OAuth state was already used")
            if row.expires_at <= now:
                raise OAuthStateError("this OAuth state has expired")
            connector = s.get(Connector, connector_id)
            if connector is not None and connector.provider_type != provider_type:
                # a wrong callback path (a misrouted redirect, a stale link) is not the
                # state's use: refuse it before the claim, so the right callback still works
                raise OAuthStateError("this OAuth state was issued for another provider")
            if not _claim(s, digest, now):
                raise OAuthStateError("this OAuth state was already used")
            if connector is None:
                problem = "the connector of this OAuth state no longer exists"
            elif connector.organization_id != row.organization_id:
                problem = "the connector of this OAuth state moved to another organization"
            else:
                try:
                    verifier = self.box.decrypt(row.code_verifier, context=state_context(digest))
                except SecretKeyError:  # sealed under a master key since dropped
                    problem = "this OAuth state was sealed under a master key no longer configured"
                else:
                    pending = _Pending(row.organization_id, row.actor, verifier, row.redirect_uri)
        if problem is not None:  # the nonce stays burnt: a misused state is spent
            raise OAuthStateError(problem)
        return pending

    def _failed(self, who: Principal, connector_id: str, reason: str) -> dict[str, Any]:
        reason = redactor.redact(reason, org=who.organization_id)
        with self.db.transaction() as s:
            connector = s.get(Connector, connector_id)
            if connector is None:
                raise ConnectorNotFoundError(f"no connector {connector_id}")
            connector.status, connector.status_message = "error", f"{reason}; reconnect"
            audit.record(
                s,
                who,
                "connector.oauth_connect",
                "connector",
                connector_id,
                outcome="failure",
                details={"message": reason},
            )
            status, message = connector.status, connector.status_message
        return self._result(connector_id, False, status, message)

    def _result(
        self, connector_id: str, success: bool, status: str, message: str
    ) -> dict[str, Any]:
        return {
            "success": success,
            "connector_id": connector_id,
            "status": status,
            "message": message,
            "action": {"type": "redirect", "url": self.connector_page(connector_id)},
        }


def _claim(s: Session, digest: str, now: datetime) -> bool:
    result = s.execute(
        update(OAuthState)
        .where(OAuthState.nonce == digest, OAuthState.used_at.is_(None))
        .values(used_at=now)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def _parse_state(state: str) -> tuple[str, str]:
    connector_id, sep, nonce = (state or "").partition(":")
    if not sep or not connector_id or not nonce or len(state) > 300:
        raise OAuthStateError("the OAuth state is malformed (expected '<connector>:<nonce>')")
    return connector_id, nonce


def _digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def state_context(digest: str) -> str:
    """The associated data of a pending state's encrypted PKCE verifier."""
    return f"oauth_state:{digest}"
