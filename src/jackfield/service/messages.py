"""Outbound messages as the outside sees them: states, the public view, validation.

Shared by ``OutboxService``, the API, the CLI and the UI, so a message looks the same
everywhere and is refused for the same reasons everywhere.
"""

from __future__ import annotations

import time
from typing import Any

from ulid import ULID

from ..kernel.errors import ConnectorConfigError, JackfieldError
from ..kernel.payloads import PayloadError, payload_json
from ..kernel.randomness import random_bytes
from ..secrets import redactor
from .views import iso

STATES = ("pending", "in_flight", "retrying", "delivered", "dead", "discarded")
TERMINAL_STATES = frozenset({"delivered", "dead", "discarded"})
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_LIST = 500


class InvalidMessageError(ConnectorConfigError):
    """A message that cannot be accepted as sent (bad envelope id, payload, filter)."""

    code = "invalid_message"
    default_remediation = "Check the message against the API documentation."


class MessageNotFoundError(JackfieldError):
    """No such message in the caller's organization (another org's looks the same)."""

    code = "not_found"
    default_remediation = (
        "Check the envelope id (GET /api/outbox lists them); with the same id on several "
        "connectors, pass connector_id."
    )


def message_view(row: Any) -> dict[str, Any]:
    """The public shape of an outbox message (no payload, no lease internals).

    ``result`` is what the provider returned for a delivered message (e.g. the
    ``message_id`` to edit or react to it later).

    ``next_attempt_at`` is when a pending or retrying message is due, or when an
    in-flight message's lease expires (it is tried again then if its worker died).
    """
    return {
        "envelope_id": row.envelope_id,
        "connector_id": row.connector_id,
        "operation": row.operation or None,
        "state": row.state,
        "attempts": row.attempts,
        "next_attempt_at": None if row.state in TERMINAL_STATES else iso(row.next_attempt_at),
        "last_error": row.last_error,
        "error_class": row.error_class,
        "result": row.result and redactor.redact_obj(row.result, org=row.organization_id),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def parse_envelope_id(value: str | None) -> str:
    """A new ULID when ``value`` is empty, else ``value`` as a canonical ULID (422 if not)."""
    if value is None or value == "":
        return new_ulid()
    try:
        return str(ULID.from_str(str(value).strip()))
    except ValueError as exc:
        raise InvalidMessageError(
            f"envelope_id {value!r} is not a ULID: {exc}",
            field_errors={"envelope_id": "a 26-character ULID"},
            remediation="Leave envelope_id out to get a generated one, or send a ULID.",
        ) from None


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)  # 10 bits -> 2 characters
#: byte -> the character of its low 5 bits (uniform: 256 is a multiple of 32)
_LOW_BITS = bytes(ord(_CROCKFORD[byte % 32]) for byte in range(256))
_time_part: tuple[int, str] = (-1, "")  # (millisecond, its 10 characters), last used


def new_ulid() -> str:
    """A new ULID (48-bit millisecond time, 80 random bits) in canonical text form.

    What ``str(ULID())`` gives, in a third of the time (every send pays for one): the
    time part is encoded once per millisecond, and each of the 16 random characters
    comes from 5 random bits of its own byte (80 bits in all, as the spec asks).
    """
    global _time_part
    ms = time.time_ns() // 1_000_000
    known, time_part = _time_part  # one tuple: consistent even if another thread swaps it
    if known != ms:
        time_part = "".join([_PAIRS[(ms >> shift) & 1023] for shift in (40, 30, 20, 10, 0)])
        _time_part = (ms, time_part)
    return time_part + random_bytes(16).translate(_LOW_BITS).decode()


def lookup_id(envelope_id: str) -> str:
    """Canonical form for lookups; anything that is not a ULID simply finds nothing."""
    try:
        return str(ULID.from_str(str(envelope_id).strip()))
    except ValueError:
        return str(envelope_id)


def check_operation(operation: str | None) -> str:
    if operation is None:
        return ""
    if not isinstance(operation, str) or len(operation) > 100 or "\x00" in operation:
        raise InvalidMessageError(
            "operation must be a name of at most 100 characters, without NUL characters",
            field_errors={"operation": "a provider operation name"},
        )
    return operation.strip()


def encode_payload(payload: Any, index: int | None = None) -> str:
    """The payload's JSON text (stored as is), after checking it is an object within
    ``MAX_PAYLOAD_BYTES``. ``index``: its place in a batch, which a refusal names (field
    ``payloads.3``, as REST names the fields of a body): one bad payload among hundreds
    must be found without a search."""
    field, where = (
        ("payload", "") if index is None else (f"payloads.{index}", f"payloads[{index}]: ")
    )
    if not isinstance(payload, dict):
        raise InvalidMessageError(
            f"{where}payload must be a JSON object", field_errors={field: "an object"}
        )
    try:
        text = payload_json(payload)
    except PayloadError as exc:
        raise InvalidMessageError(f"{where}{exc}", field_errors={field: "JSON"}) from None
    size = len(text)
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidMessageError(
            f"{where}payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}",
            field_errors={field: "too large"},
            remediation="Store large content elsewhere (e.g. storage) and send a reference.",
        )
    return text
