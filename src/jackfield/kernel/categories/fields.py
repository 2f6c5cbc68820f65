"""Reading the fields of a message payload for a category operation.

A payload is JSON its sender chose, and a field of the wrong shape fails the same way
on every attempt. It must become a ``PermanentError`` naming the field -- the message
goes dead at once, saying what to correct -- and never escape as a ``TypeError`` or
``ValueError``: the runtime counts those as crashes of the unit, retries the message
after each restart's backoff, and the messages behind it wait meanwhile.
"""

from __future__ import annotations

from typing import Any

from ..errors import PermanentError

PAYLOAD_REMEDIATION = (
    "Correct the payload and send the message again: this one fails the same way on every attempt."
)


def payload_error(field: str, problem: str, remediation: str | None = None) -> PermanentError:
    """The error of a payload whose ``field`` has ``problem`` (worded to follow it)."""
    return PermanentError(
        f"payload field {field!r} {problem}", remediation=remediation or PAYLOAD_REMEDIATION
    )


def json_kind(value: Any) -> str:
    """What ``value`` is, in JSON's words (a sender wrote JSON, not Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def optional_text(payload: dict[str, Any], field: str) -> str | None:
    """``payload[field]``, a string; absent or ``null``: ``None``."""
    value = payload.get(field)
    if value is None or isinstance(value, str):
        return value
    raise payload_error(field, f"must be a string, not {json_kind(value)}")


def text_map(payload: dict[str, Any], field: str) -> dict[str, str]:
    """``payload[field]``, an object of names to string values (headers); absent or
    ``null``: empty."""
    value = payload.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise payload_error(
            field, f"must be an object of names to string values, not {json_kind(value)}"
        )
    for name, item in value.items():
        if not isinstance(item, str):
            raise payload_error(field, f"must map names to strings: {name!r} is {json_kind(item)}")
    return dict(value)
