"""The provider registry: an object you can create; a default one exists for convenience.

Registration validates the class and refuses duplicate keys. Discovery of the entry point
group ``jackfield.providers`` runs when called (``Jackfield(...)`` calls it), never at
import. An entry point that fails to load, for whatever reason, is recorded (and logged,
masked) as unavailable instead of breaking discovery, and every command, for everyone else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import import_module, metadata

from .categories import CATEGORY_BASES
from .config import check_schema
from .errors import ConnectorNotFoundError
from .provider import ConnectorProvider, Tier
from .redaction import get_logger, redactor

ENTRY_POINT_GROUP = "jackfield.providers"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
log = get_logger(__name__)


@dataclass(frozen=True)
class UnavailableProvider:
    """An entry point that could not be loaded, and how to fix it."""

    name: str
    target: str
    error: str


class DuplicateProviderError(ValueError):
    """A second class for a ``(category, provider_type)`` key that is already taken."""

    def __init__(self, cls: type[ConnectorProvider], existing: type[ConnectorProvider]) -> None:
        self.key = f"{cls.category}/{cls.provider_type}"
        self.existing = existing
        super().__init__(f"provider {self.key} is already registered by {_where(existing)}")


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
            raise DuplicateProviderError(cls, existing)
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
        if not (isinstance(cls, type) and issubclass(cls, ConnectorProvider)):
            raise TypeError(f"{target} is {cls!r}, not a ConnectorProvider subclass")
        key = (getattr(cls, "category", None), getattr(cls, "provider_type", None))
        if self._providers.get(key) is cls:  # type: ignore[arg-type]
            return cls
        return self.register(cls)

    def discover(self) -> None:
        """Load every ``jackfield.providers`` entry point not registered yet.

        Jackfield's own providers load first, so an installed plugin can never take a
        built-in key (``messaging/echo``) whatever order the entry points come in; between
        two plugins, the first one keeps the key and the second is refused by name.
        """
        entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(entry_points, key=lambda ep: not _is_builtin(ep.value)):
            try:
                self.register_path(ep.value)
            except DuplicateProviderError as exc:
                self._mark_unavailable(ep.name, ep.value, _refusal(ep, exc))
            except ImportError as exc:
                self._mark_unavailable(ep.name, ep.value, _import_failure(ep, exc))
            except Exception as exc:  # noqa: BLE001 - logged: only this provider is lost
                # a plugin's module runs arbitrary code at import (a KeyError reading
                # os.environ): that must cost this entry point, not every command
                self._mark_unavailable(ep.name, ep.value, f"{type(exc).__name__}: {exc}")

    def get(self, category: str, provider_type: str) -> type[ConnectorProvider]:
        try:
            return self._providers[(category, provider_type)]
        except KeyError:
            known = ", ".join(sorted(p for c, p in self._providers if c == category)) or "none"
            raise ConnectorNotFoundError(
                f"no provider {provider_type!r} in category {category!r}",
                remediation=f"Known {category} providers: {known}.",
            ) from None

    def load_error(self, name: str) -> str | None:
        """Why the entry point called ``name`` (by convention the provider type) could not
        be loaded, if it was discovered and failed."""
        return next((u.error for u in self.unavailable if u.name == name), None)

    def is_registered(self, category: str, provider_type: str) -> bool:
        return (category, provider_type) in self._providers

    def list_for_category(self, category: str) -> list[type[ConnectorProvider]]:
        return [cls for (c, _), cls in sorted(self._providers.items()) if c == category]

    def all(self) -> list[type[ConnectorProvider]]:
        return [cls for _, cls in sorted(self._providers.items())]

    def categories(self) -> list[str]:
        return sorted({c for c, _ in self._providers})

    def _mark_unavailable(self, name: str, target: str, error: str) -> None:
        error = redactor.redact(error)  # a plugin's message may quote a secret it read
        if not any(u.target == target for u in self.unavailable):
            log.warning("provider %s (%s) unavailable: %s", name, target, error)
            self.unavailable.append(UnavailableProvider(name, target, error))


def _is_builtin(target: str) -> bool:
    """Whether ``module:Class`` is one of Jackfield's own providers (``jackfield`` is a
    regular package: a plugin cannot add modules to it)."""
    return target.startswith("jackfield.")


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _distribution(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"distribution {dist.name!r}" if dist is not None else "unknown distribution"


def _import_failure(ep: metadata.EntryPoint, exc: ImportError) -> str:
    """What could not be imported. Only Jackfield's own providers have an extra to install;
    for a plugin, name its distribution and the module it could not import."""
    missing = getattr(exc, "name", None) or str(exc)
    if _is_builtin(ep.value):
        return f"missing dependency {missing!r}: pip install 'jackfield[all]'"
    return (
        f"cannot import module {missing!r} ({type(exc).__name__}: {exc}); "
        f"check the plugin's {_distribution(ep)} and its dependencies"
    )


def _refusal(ep: metadata.EntryPoint, exc: DuplicateProviderError) -> str:
    """Why a plugin's provider was not registered, naming the plugin (not the holder)."""
    holder = "built-in provider" if _is_builtin(exc.existing.__module__) else "provider"
    return (
        f"refused: {exc.key} is already provided by {holder} {_where(exc.existing)}; "
        f"entry point {ep.name!r} ({ep.value}, {_distribution(ep)}) was not registered"
    )


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
    # a broken schema should fail registration, not every listing of provider types
    try:
        schema = cls.config_schema()
    except Exception as exc:  # re-raised below, naming the class and what it raised
        raise TypeError(f"{where}: config_schema() raised {type(exc).__name__}: {exc}") from exc
    try:
        check_schema(schema)
    except ValueError as exc:
        raise TypeError(f"{where}: config_schema() {exc}") from None


connector_registry = ConnectorRegistry()
"""The default registry: ``Jackfield(...)`` uses it unless given another."""
