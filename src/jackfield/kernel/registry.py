"""The provider registry: an object you can create; a default one exists for convenience.

Registration validates the class and refuses duplicate keys. Discovery of the entry point
group ``jackfield.providers`` runs when called (``Jackfield(...)`` calls it), never at
import. A provider whose optional dependency is missing is recorded with an install hint
instead of breaking discovery for everyone else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import import_module, metadata

from .categories import CATEGORY_BASES
from .errors import ConnectorNotFoundError
from .provider import ConnectorProvider, Tier
from .redaction import get_logger

ENTRY_POINT_GROUP = "jackfield.providers"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
log = get_logger(__name__)


@dataclass(frozen=True)
class UnavailableProvider:
    """An entry point that could not be loaded, and how to fix it."""

    name: str
    target: str
    error: str


class ConnectorRegistry:
    def __init__(self) -> None:
        self._providers: dict[tuple[str, str], type[ConnectorProvider]] = {}
        self.unavailable: list[UnavailableProvider] = []

    def register(self, cls: type[ConnectorProvider]) -> type[ConnectorProvider]:
        """Add a provider class (usable as a decorator). Raises on invalid or duplicate."""
        _validate(cls)
        key = (cls.category, cls.provider_type)
        existing = self._providers.get(key)
        if existing is not None:
            raise ValueError(
                f"provider {cls.category}/{cls.provider_type} is already registered "
                f"by {existing.__module__}.{existing.__qualname__}"
            )
        self._providers[key] = cls
        return cls

    def unregister(self, category: str, provider_type: str) -> None:
        self._providers.pop((category, provider_type), None)

    def register_path(self, target: str) -> type[ConnectorProvider]:
        """Register a provider given as ``module:Class``."""
        module_name, _, attr = target.partition(":")
        if not module_name or not attr:
            raise ValueError(f"expected 'module:Class', got {target!r}")
        cls: type[ConnectorProvider] = getattr(import_module(module_name), attr)
        if self._providers.get((cls.category, cls.provider_type)) is cls:
            return cls
        return self.register(cls)

    def discover(self) -> None:
        """Load every ``jackfield.providers`` entry point not registered yet."""
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                self.register_path(ep.value)
            except ImportError as exc:
                missing = getattr(exc, "name", None) or str(exc)
                hint = f"missing dependency {missing!r}: pip install 'jackfield[all]'"
                self._mark_unavailable(ep.name, ep.value, hint)
            except (AttributeError, TypeError, ValueError) as exc:
                self._mark_unavailable(ep.name, ep.value, str(exc))

    def get(self, category: str, provider_type: str) -> type[ConnectorProvider]:
        try:
            return self._providers[(category, provider_type)]
        except KeyError:
            known = ", ".join(sorted(p for c, p in self._providers if c == category)) or "none"
            raise ConnectorNotFoundError(
                f"no provider {provider_type!r} in category {category!r}",
                remediation=f"Known {category} providers: {known}.",
            ) from None

    def is_registered(self, category: str, provider_type: str) -> bool:
        return (category, provider_type) in self._providers

    def list_for_category(self, category: str) -> list[type[ConnectorProvider]]:
        return [cls for (c, _), cls in sorted(self._providers.items()) if c == category]

    def all(self) -> list[type[ConnectorProvider]]:
        return [cls for _, cls in sorted(self._providers.items())]

    def categories(self) -> list[str]:
        return sorted({c for c, _ in self._providers})

    def _mark_unavailable(self, name: str, target: str, error: str) -> None:
        if not any(u.target == target for u in self.unavailable):
            log.warning("provider %s (%s) unavailable: %s", name, target, error)
            self.unavailable.append(UnavailableProvider(name, target, error))


def _validate(cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, ConnectorProvider)):
        raise TypeError(f"{cls!r} is not a ConnectorProvider subclass")
    where = f"{cls.__module__}.{cls.__qualname__}"
    for attr in ("category", "provider_type", "display_name"):
        value = getattr(cls, attr, None)
        if not isinstance(value, str) or not value:
            raise TypeError(f"{where} must set the class attribute {attr!r}")
    if not _NAME.match(cls.category) or not _NAME.match(cls.provider_type):
        raise TypeError(f"{where}: category and provider_type must be lower_snake_case")
    if not isinstance(cls.tier, Tier):
        raise TypeError(f"{where}: tier must be a Tier")
    if not isinstance(cls.capabilities, frozenset) or not all(
        isinstance(c, str) for c in cls.capabilities
    ):
        raise TypeError(f"{where}: capabilities must be a frozenset of strings")
    base = CATEGORY_BASES.get(cls.category)
    if base is not None and not issubclass(cls, base):
        raise TypeError(f"{where}: a {cls.category} provider must subclass {base.__name__}")
    abstract: frozenset[str] = getattr(cls, "__abstractmethods__", frozenset())
    if abstract:
        hint = ""
        if not getattr(cls, "sends", True):  # a receive-only provider trips over this one
            hint = " (a provider that only receives implements them too, raising"
            hint += " ConnectorNotSupportedError)"
        raise TypeError(f"{where} does not implement: {', '.join(sorted(abstract))}{hint}")
    cls.config_schema()  # a broken schema should fail registration, not the first request


connector_registry = ConnectorRegistry()
"""The default registry: ``Jackfield(...)`` uses it unless given another."""
