"""The provider base class: metadata, config schema, life cycle and delivery."""

from __future__ import annotations

import inspect
from abc import ABC
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any, ClassVar, Self

from pydantic import BaseModel

from ._async import call_async
from .config import ConfigField, fields_from_model, validate_config, validate_with_model
from .envelope import DELIVERING, Delivered, DeliveryOutcome, Envelope, outcome_from_error
from .errors import AuthError, ConnectorError, ConnectorNotSupportedError


class Tier(StrEnum):
    SUPPORTED = "supported"
    INTERNAL_TEST_ONLY = "internal_test_only"
    DEFERRED = "deferred"


class Category(StrEnum):
    STORAGE = "storage"
    EMAIL = "email"
    MESSAGING = "messaging"
    QUEUE = "queue"
    HTTP = "http"
    DATABASE = "database"


class Capability(StrEnum):
    THREADS = "threads"
    REACTIONS = "reactions"
    EDIT = "edit"
    ATTACHMENTS = "attachments"
    WEBHOOK = "webhook"
    POLLING = "polling"
    SUBSCRIPTION = "subscription"
    OAUTH2 = "oauth2"


@dataclass(frozen=True)
class ConnectionTestResult:
    success: bool
    message: str
    details: dict[str, Any] | None = None


OAUTH_FLOW_KEY = "oauth_flow"
"""Config key under which ``exchange_oauth_code`` receives ``{"code_verifier",
"redirect_uri"}`` of the flow in progress (PKCE, RFC 7636).

Both OAuth hooks return the nested params to store; the service reads the tokens at
``oauth.access_token``, ``oauth.refresh_token`` (secret fields of the provider's schema)
and ``oauth.expires_at`` (Unix seconds)."""


def oauth_not_connected() -> AuthError:
    """The error of an OAuth connector used before Connect stored any token. The provider
    raises it when it has no token source, the service's token source when it finds no
    token to refresh: both say the same, so Test tells how to connect, not to reconnect."""
    return AuthError(
        "the connector is not connected yet",
        remediation="Use Connect on the connector's page to authorize access.",
    )


TokenSourceFn = Callable[..., Awaitable[str]]
"""``await source(force_refresh=False) -> access token`` (the integration's TokenSource)."""


@dataclass(frozen=True)
class OAuthAuthorization:
    """What the generic OAuth2 flow needs to send the browser to the provider."""

    authorize_url: str
    token_url: str
    client_id: str
    scopes: tuple[str, ...] = ()
    extra_params: dict[str, str] = field(default_factory=dict)


class ConnectorProvider(ABC):
    """Base of every provider: one class per external system and category.

    Subclasses set the metadata class attributes, declare ``config_schema()`` (or a
    pydantic ``config_model``) and implement ``test_connection`` plus their category
    interface. Methods may be sync or async; sync ones run in a worker thread.
    """

    category: ClassVar[str]
    provider_type: ClassVar[str]
    display_name: ClassVar[str]
    tier: ClassVar[Tier] = Tier.SUPPORTED
    capabilities: ClassVar[frozenset[str]] = frozenset()
    sends: ClassVar[bool] = True
    """``False`` for a provider that only receives (a webhook endpoint): a message sent
    to one of its connectors is refused when sent, instead of dying at delivery."""
    config_model: ClassVar[type[BaseModel] | None] = None
    token_source: TokenSourceFn | None = None
    """Set by the application on instances of ``oauth2`` providers: the refresher that
    yields a valid access token (refreshed ahead of expiry, single-flight, persisted).
    Without it a provider may only use the access token stored in its config."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config: Mapping[str, Any] = config

    # -- configuration -------------------------------------------------------------
    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return fields_from_model(cls.config_model) if cls.config_model else []

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The config with defaults applied and values coerced to the schema's types.

        With a ``config_model``, the model checks it too (URLs, ranges, validators); the
        result stays the dict, not the model instance.
        """
        schema = cls.config_schema()
        result = validate_config(schema, config)
        if cls.config_model is not None:
            validate_with_model(cls.config_model, schema, result)
        return result

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls(cls.validate_config(config))

    @classmethod
    def normalize_import_json(cls, data: dict[str, Any]) -> dict[str, Any]:
        return data

    # -- OAuth2 hooks ---------------------------------------------------------------
    @classmethod
    def oauth_authorization(cls, config: Mapping[str, Any]) -> OAuthAuthorization | None:
        return None

    @classmethod
    def exchange_oauth_code(cls, code: str, config: Mapping[str, Any]) -> Any:
        """Trade an authorization code for the params to store (sync or async)."""
        return {}

    @classmethod
    def refresh_oauth_token(cls, refresh_token: str, config: Mapping[str, Any]) -> Any:
        """Trade a refresh token for new params to store (sync or async).

        Raise ``AuthError`` when the grant is refused for good (the connector then needs
        a reconnect) and ``TransientError`` when trying again later may help.
        """
        raise ConnectorNotSupportedError(
            f"{cls.provider_type} cannot refresh OAuth tokens", operation="oauth_refresh"
        )

    # -- life cycle -------------------------------------------------------------------
    def test_connection(self) -> Any:
        """Check that the external system is reachable with this config."""
        return ConnectionTestResult(True, "configuration is valid (no live check)")

    def open(self) -> Any:
        return None

    def close(self) -> Any:
        return None

    # -- outbound -------------------------------------------------------------------
    def operations(self) -> dict[str, Any]:
        """Named outbound operations: name -> callable taking the payload dict."""
        return {}

    @property
    def default_operation(self) -> str | None:
        ops = self.operations()
        return next(iter(ops)) if len(ops) == 1 else None

    @classmethod
    def operation_names(cls) -> frozenset[str] | None:
        """The operation names a send may give, known from the class: a send naming
        another one is refused at once instead of dying at delivery. ``None`` when not
        known up front: ``operations()`` reads the connector's config, or the class
        overrides ``deliver`` (its own dispatch may take names ``operations()`` does not
        list; such a class whose ``deliver`` still dispatches through ``operations()``
        returns ``offered_operations(cls)`` here). Delivery says then."""
        if cls.deliver is not ConnectorProvider.deliver:
            return None
        return offered_operations(cls)

    async def deliver(self, envelope: Envelope) -> DeliveryOutcome:
        """Perform ``envelope.operation``; errors become the outcome their class calls for.

        Unexpected exceptions propagate: the runtime counts them as crashes. While the
        operation runs, ``DELIVERING`` holds the envelope (the categories send its id).
        """
        name = envelope.operation or self.default_operation
        operation = self.operations().get(name or "")
        if operation is None:
            known = ", ".join(sorted(self.operations())) or "none"
            exc = ConnectorNotSupportedError(
                f"{self.provider_type} has no operation {name!r} (known: {known})",
                operation=name,
            )
            return outcome_from_error(exc)
        delivering = DELIVERING.set(envelope)
        try:
            result = await call_async(operation, envelope.payload)
            if not isinstance(result, dict) and inspect.isawaitable(result):
                result = await result
        except ConnectorError as exc:
            if exc.operation is None:
                exc.operation = name
            return outcome_from_error(exc)
        finally:
            DELIVERING.reset(delivering)
        return Delivered(result if isinstance(result, dict) else {})


@cache
def offered_operations(cls: type[ConnectorProvider]) -> frozenset[str] | None:
    """The names ``cls.operations()`` gives without a config (``None`` if it needs one),
    worked out once per class."""
    try:
        bare = cls.__new__(cls)  # no config: operations() of the category bases read none
        return frozenset(cls.operations(bare))
    except Exception:  # noqa: BLE001 - names that need a config are not known up front
        return None
