"""Secrets stay with the address they were entered for.

A secret param is never shown ("********"), and sending the mask back keeps it. An
edit that also moves the connector -- its ``base_url``, token URL or SMTP host, the
fields a provider declares ``ConfigField(..., origin=True)`` -- would then send the kept
secret to the new address: an admin who may not read a secret (entered by someone else,
or an OAuth token) could have it sent to a server of their own. So when an edit changes
the origin of such a field, every secret it keeps must be entered again (or left out,
e.g. OAuth tokens, and the connector connected again).

An origin is what a secret is exposed to: a URL's scheme, host and port (a new path on
the same server is no move), or a host name, compared case-insensitively -- and, where a
provider declares them origin fields too, a port and whether TLS is on (SMTP's password
would otherwise go in clear to another port of the same host).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..integration import url_origin
from ..kernel.config import ConfigField, FieldType
from ..kernel.errors import ConnectorConfigError
from ..store import Connector, ConnectorParam
from .params import ParamInput


def check_kept_secrets(
    connector: Connector, incoming: Iterable[ParamInput], schema: Iterable[ConfigField]
) -> None:
    """Raise ``ConnectorConfigError`` naming each kept secret when ``incoming`` moves
    the connector to another origin.

    A field's origin is compared as it takes effect, before and after: its stored value,
    or its default when none is stored. Removing a stored URL (back to the default, or to
    none) is a move too; otherwise two edits -- remove it, then set another -- would each
    look like no move from a stored value, and a field left at its default could be set
    to any address at all."""
    incoming = list(incoming)
    stored = {row.key: row for row in connector.params}
    given = {p.key: p for p in incoming}
    moved = sorted(
        field.label
        for field in schema
        if field.origin
        and _origin(field, _before(field, stored)) != _origin(field, _after(field, given, stored))
    )
    if not moved:
        return
    kept = [p.key for p in incoming if p.keep and p.key in stored and stored[p.key].is_secret]
    if kept:
        where = " and ".join(moved)
        raise ConnectorConfigError.for_fields(
            {
                key: f"type it again: the {where} changed, and the stored secret is not"
                " sent to a new address"
                for key in kept
            }
        )


def _before(field: ConfigField, stored: dict[str, ConnectorParam]) -> object:
    row = stored.get(field.key)
    return row.value if row is not None else field.default


def _after(
    field: ConfigField, given: dict[str, ParamInput], stored: dict[str, ConnectorParam]
) -> object:
    param = given.get(field.key)
    if param is None:
        return field.default
    return _before(field, stored) if param.keep else param.value


def _origin(field: ConfigField, value: object) -> object:
    """What ``value`` of an origin field exposes a secret to: a URL's scheme, host and
    port; a host name (any case, without a trailing dot); a typed value (an SMTP port,
    whether TLS is on) as its type reads it ("on", "true" and true are one value)."""
    if field.type is not FieldType.STRING:
        try:
            return None if value in (None, "") else field.coerce(value)
        except ValueError:
            return str(value)  # (compared as written)
    text = str(value or "").strip()
    if "://" not in text:  # a host name
        return text.lower().rstrip(".")
    return url_origin(text) or text  # (a malformed URL: compared as written)
