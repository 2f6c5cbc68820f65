"""Whether an edit of a connector changes anything.

A save of the connector form sends every field back, changed or not. Resetting the
status to ``draft`` ("configuration changed", test again) on every save dropped a
connected connector out of service although nothing had changed. So the config is
compared as the provider would see it -- the decrypted values with the schema's defaults
applied and coerced to its types -- before and after the edit: a boolean left unset and
sent back as ``false`` (its default), a number renumbered in sequence, or a secret kept
with the mask is the same configuration; a different value, a key added or removed, a
new file's content, or a param now stored as secret is a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..kernel.errors import ConnectorConfigError
from ..kernel.provider import ConnectorProvider
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
    is not valid (then any edit counts as a change)."""
    try:
        config = cls.validate_config(codec.plain_config(connector))
    except ConnectorConfigError:
        return None
    kinds = {row.key: (row.value_type, bool(row.is_secret)) for row in connector.params}
    return Effective(config, kinds)


def config_changed(before: Effective | None, after: Effective | None) -> bool:
    if before is None or after is None or before.config != after.config:
        return True
    common = before.kinds.keys() & after.kinds.keys()  # (a key added with its default
    return any(before.kinds[k] != after.kinds[k] for k in common)  # value is no change)
