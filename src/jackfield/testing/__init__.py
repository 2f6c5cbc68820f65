"""Conformance suites that providers pass by subclassing (see DESIGN.md §2, §7).

The suites need pytest, so they load on first use: importing ``jackfield.testing`` for
something else (the simulator, say) works where pytest is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .server import LiveServer

if TYPE_CHECKING:
    from .storage import StorageConformance

__all__ = ["LiveServer", "StorageConformance"]


def __getattr__(name: str) -> Any:
    if name == "StorageConformance":
        from .storage import StorageConformance

        return StorageConformance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
