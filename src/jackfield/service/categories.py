"""Which categories exist, and the one error every entry point gives for any other.

Creating a connector, listing provider types (CLI, REST, UI) and resolving a default
(the embedded ``jf.default``) all take a category name; a typo in it must read as
"unknown category" everywhere, not as an empty list or "no default nope connector".
A category is known when the kernel defines it (it may have no provider installed, e.g.
``queue`` without its extras: listing it is rightly empty) or a provider registered it.
"""

from __future__ import annotations

from ..kernel.categories import CATEGORY_BASES
from ..kernel.errors import ConnectorConfigError
from ..kernel.registry import ConnectorRegistry


def known_categories(registry: ConnectorRegistry) -> list[str]:
    return sorted(set(CATEGORY_BASES) | set(registry.categories()))


def check_category(registry: ConnectorRegistry, category: str) -> str:
    """``category``, or the error naming the known ones (a 422 over REST, exit 1 in
    the CLI -- the same error ``connectors create`` gave for it)."""
    known = known_categories(registry)
    if category not in known:
        raise ConnectorConfigError(
            f"unknown category {category!r}",
            field_errors={"category": f"known categories: {', '.join(known)}"},
            remediation="Name one of the known categories.",
        )
    return category
