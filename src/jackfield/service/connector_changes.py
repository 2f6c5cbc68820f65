"""Whether an edit of a connector changes anything.

A save of the connector form sends every field back, changed or not. Resetting the
status to ``draft`` ("configuration changed", test again) on every save dropped a
connected connector out of service although nothing had changed. So the config is
compared as the provider would see it -- the decrypted values with the schema's defaults
applied and coerced to its types -- before and after the edit: a boolean left unset and
sent back as ``false`` (its default), a number renumbered in sequence, a secret kept
with the mask, or a setting sent as ``""`` and then left out (as a form leaves blank
inputs) is the same configuration; a different value, a key added or removed, a new
file's content, or a param now stored as secret is a change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..kernel.config import ConfigField, get_path
from ..kernel.errors import ConflictError, ConnectorConfigError
from ..kernel.provider import ConnectorProvider
from ..secrets import SecretKeyError
from ..store import Connector
from .params import ParamCodec


@dataclass(frozen=True)
class Effective:
    config: dict[str, Any]  # decrypted, defaults applied, coerced
    kinds: dict[str, tuple[str, bool]]  # stored key -> (value_type, stored as secret)


def effective_config(
    codec: ParamCodec, connector: Connector, cls: type[ConnectorProvider]
) -> Effective | None:
    """What a connector's params mean to its provider; ``None`` when the stored config
    is not valid or cannot be read -- a secret sealed under a key since lost, a stored
    file gone from disk, which the edit may be replacing: then any edit counts as a
    change."""
    try:
        config = cls.validate_config(codec.plain_config(connector))
    except (ConnectorConfigError, SecretKeyError, OSError):
        return None
    for field in cls.config_schema():  # "" is unset, as validation reads it
        if get_path(config, field.key) == "":
            _unset(config, field.key.split("."))
    kinds = {row.key: (row.value_type, bool(row.is_secret)) for row in connector.params}
    return Effective(config, kinds)


def _unset(config: dict[str, Any], path: list[str]) -> None:
    """Remove ``path``, and the groups it leaves empty."""
    head, *rest = path
    child = config.get(head)
    if not rest:
        config.pop(head, None)
    elif isinstance(child, dict):
        _unset(child, rest)
        if not child:
            del config[head]


def config_changed(before: Effective | None, after: Effective | None) -> bool:
    if before is None or after is None or before.config != after.config:
        return True
    common = before.kinds.keys() & after.kinds.keys()  # (a key added with its default
    return any(before.kinds[k] != after.kinds[k] for k in common)  # value is no change)


def edit_version(view: dict[str, Any], schema: Iterable[ConfigField]) -> str:
    """A short digest of what the connector form shows of ``view`` (a connector view:
    its name and params, secrets masked). An editor keeps the version it was opened
    with and hands it back on save; a different version now means someone saved a
    change in between, which the save would silently undo.

    Not ``updated_at``: a connection test and a token refresh change that too, and a
    save after either is no lost update (a secret the form sends back as the mask keeps
    the refreshed value). Nor the schema's read-only fields (a token's expiry, issue
    time, scope): the service sets them, a refresh rewrites them, and a save keeps them
    as stored, whatever the form was opened with."""
    read_only = {f.key for f in schema if f.read_only}
    params = [p for p in view["params"] if p["key"] not in read_only]
    shown = [view["name"], sorted((p["key"], p["value"], p["value_type"]) for p in params)]
    return hashlib.sha256(json.dumps(shown).encode()).hexdigest()[:20]


def check_version(
    view: dict[str, Any], schema: Iterable[ConfigField], expected: str | None
) -> None:
    """Refuse an edit made from a form opened before the connector last changed."""
    if expected is not None and edit_version(view, schema) != expected:
        raise ConflictError(
            "the connector was changed since this form was opened (in another tab or by"
            " someone else); saving would undo that change, so nothing was saved",
            remediation="Reload the connector to see its current settings, then make your"
            " change again.",
        )
