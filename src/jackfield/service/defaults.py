"""The connector to use for a category: the organization's default, else a built-in
adapter (local filesystem storage, SMTP email from settings), so an application can send
an email or store a file before any admin configured anything."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from ..kernel.errors import ConnectorNotFoundError
from ..kernel.provider import ConnectorProvider
from ..kernel.registry import ConnectorRegistry
from ..secrets import mask_config
from ..store import Connector, Database
from .categories import check_category
from .params import ParamCodec

BuiltinAdapters = Callable[[str, str], tuple[str, dict[str, Any]] | None]
"""(category, organization_id) -> (provider_type, config) of the built-in adapter."""


@dataclass(frozen=True)
class ResolvedConnector:
    connector_id: str | None
    name: str
    provider: type[ConnectorProvider]
    config: dict[str, Any]
    stored_secrets: frozenset[str] = field(default=frozenset(), repr=False)
    """Keys stored as secret that the provider's schema may not call secret."""

    def __repr__(self) -> str:
        """The config with its secrets masked: an app prints or logs what it resolved,
        and the dataclass's own repr showed the decrypted values."""
        config = mask_config(self.provider.config_schema(), self.config, self.stored_secrets)
        return (
            f"ResolvedConnector(connector_id={self.connector_id!r}, name={self.name!r}, "
            f"provider={self.provider!r}, config={config!r})"
        )

    @property
    def builtin(self) -> bool:
        return self.connector_id is None

    def instantiate(self) -> ConnectorProvider:
        return self.provider.from_config(self.config)


class DefaultResolver:
    def __init__(
        self,
        db: Database,
        registry: ConnectorRegistry,
        codec: ParamCodec,
        builtins: BuiltinAdapters,
        check: Callable[[type[ConnectorProvider], dict[str, Any], str], None] = (
            lambda cls, config, org: None
        ),
    ) -> None:
        self.db = db
        self.registry = registry
        self.codec = codec
        self.builtins = builtins
        self.check = check  # the connector service's checks at open (its directories)

    def get_default_for_category(self, organization_id: str, category: str) -> ResolvedConnector:
        """The enabled default connector of the category, or the built-in adapter.

        An unknown category is refused as such (``ConnectorConfigError``, as ``create``
        refuses it): "no default nope connector" sent its caller looking for a missing
        connector when the category name was mistyped."""
        check_category(self.registry, category)
        with self.db.transaction() as s:
            connector = s.scalar(
                select(Connector).where(
                    Connector.organization_id == organization_id,
                    Connector.category == category,
                    Connector.is_default.is_(True),
                    Connector.is_enabled.is_(True),
                )
            )
            if connector is not None:
                cls = self.registry.get(connector.category, connector.provider_type)
                config = self.codec.plain_config(connector)
                self.check(cls, config, organization_id)
                secret = frozenset(row.key for row in connector.params if row.is_secret)
                return ResolvedConnector(connector.id, connector.name, cls, config, secret)
        builtin = self.builtins(category, organization_id)
        if builtin is None:
            raise ConnectorNotFoundError(
                f"no default {category} connector",
                remediation=f"Create a {category} connector, test it, activate it and make "
                "it the default.",
            )
        provider_type, config = builtin
        cls = self.registry.get(category, provider_type)
        return ResolvedConnector(None, f"built-in {provider_type}", cls, config)
