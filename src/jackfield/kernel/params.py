"""Connector params: flat dot-notation keys <-> the nested config dict providers read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .config import KEY_PATTERN
from .errors import ConnectorConfigError

MAX_KEY_LENGTH = 200


def check_param_key(key: str) -> str:
    """Return ``key`` if it is a valid dot-notation key, else raise ``ConnectorConfigError``."""
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not KEY_PATTERN.match(key):
        raise ConnectorConfigError(
            f"invalid parameter key {key!r}",
            field_errors={
                str(key)[:MAX_KEY_LENGTH]: "keys are dot-separated words of letters, digits, "
                f"_ or - (at most {MAX_KEY_LENGTH} characters)"
            },
            remediation="Use keys like 'host' or 'installed.client_id'.",
        )
    return key


def unflatten_params(params: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Build the nested config from params applied in ``sequence`` order.

    ``[{"key": "a.b", "value": "1"}]`` gives ``{"a": {"b": "1"}}``. A later param with
    the same key wins. A key that is both a value and a group (``a`` and ``a.b``) raises
    ``ConnectorConfigError``.
    """
    ordered = sorted(enumerate(params), key=lambda item: (item[1].get("sequence") or 0, item[0]))
    result: dict[str, Any] = {}
    for _, param in ordered:
        key = check_param_key(param.get("key", ""))
        parts = key.split(".")
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise _conflict(key, prefix)
            node = child
        leaf = parts[-1]
        if isinstance(node.get(leaf), dict):
            raise _conflict(key, key)
        node[leaf] = param.get("value")
    return result


def flatten_config(config: Mapping[str, Any], *, step: int = 10) -> list[dict[str, Any]]:
    """The inverse of ``unflatten_params``: ``[{"key", "value", "sequence"}]`` in order."""
    flat: list[dict[str, Any]] = []

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for name, value in node.items():
            key = f"{prefix}.{name}" if prefix else str(name)
            if isinstance(value, Mapping):
                if not value:
                    raise ConnectorConfigError(f"empty group {key!r} cannot be stored as params")
                walk(value, key)
            else:
                check_param_key(key)
                flat.append({"key": key, "value": value, "sequence": step * (len(flat) + 1)})

    walk(config, "")
    return flat


def _conflict(key: str, other: str) -> ConnectorConfigError:
    return ConnectorConfigError(
        f"parameter {key!r} conflicts with {other!r}: a key cannot be both a value and a group",
        field_errors={key: f"conflicts with {other!r}"},
    )
