"""Connector params in and out of the store: validation, encryption, masking, files.

Incoming params are plain dicts (``key``, ``value``, ``value_type``, ``sequence``). Secret
fields (from the provider's schema) are encrypted with their connector and key as
associated data; the mask sent back keeps the stored value; file params are base64 on
the way in and live in the ``FileStore``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..kernel.config import SECRET_MASK, ConfigField
from ..kernel.errors import ConnectorConfigError
from ..kernel.params import check_param_key, flatten_config, unflatten_params
from ..secrets import SecretBox, redactor
from ..store import Connector, ConnectorParam
from .files import FileStore

VALUE_TYPES = ("text", "file")
KiB, MiB = 1024, 1024 * 1024
# Limits of what one connector keeps, whoever sends it (REST, UI, CLI, embedded): real
# settings (hosts, ids, tokens, a JSON list of scopes) are far below 64 KiB; longer
# content (certificates, credentials files) belongs in a file param. The REST body limit
# (1 MiB) bounded REST alone: a CLI --config-file stored a 30 MB value, whose display
# then hung for minutes.
MAX_TEXT_BYTES = 64 * KiB  # one text value, UTF-8
MAX_FILE_BYTES = 1 * MiB  # one file param's content
MAX_TEXT_TOTAL_BYTES = 1 * MiB  # every text value sent at once (the REST body limit)


@dataclass
class ParamInput:
    """One incoming param, normalized; ``keep`` means "keep the stored value": the mask,
    or a file param without a value (what a GET shows of a file). A file param whose
    value is ``""`` has no file: that is how a stored file is removed."""

    key: str
    value: str | None
    value_type: str
    sequence: int
    keep: bool = False
    content: bytes | None = None  # decoded file content
    secret: bool = False  # marked secret by the caller (the schema may not know the key)


def normalize_params(
    params: Iterable[Mapping[str, Any]] | None,
    config: Mapping[str, Any] | None,
    stored: Mapping[str, str | None] | None = None,
) -> list[ParamInput]:
    """Params from a ``params`` list and/or a nested ``config`` (params win on a clash).

    A key given twice within the ``params`` (or twice within the ``config``, as ``"a.b"``
    and ``{"a": {"b"}}``) is refused: which one was meant is a guess, and the guesses
    differed (the last listed here, the highest ``sequence`` in ``unflatten_params``).

    ``stored``: the connector's plain text values; one sent back unchanged is not held to
    the size limits (stored before them, it must not block an unrelated edit)."""
    if config is not None and not isinstance(config, Mapping):  # a Python caller's slip
        raise ConnectorConfigError(
            "config must be an object of keys and values, e.g. {'host': 'smtp.example.com'}",
            field_errors={"config": "an object"},
        )
    from_config: list[Mapping[str, Any]] = list(flatten_config(config)) if config else []
    raw = from_config + list(params or [])
    by_key: dict[str, ParamInput] = {}
    seen: set[str] = set()
    text_total = 0
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ConnectorConfigError("each param must be an object with 'key' and 'value'")
        key = check_param_key(item.get("key", ""))
        if index == len(from_config):
            seen = set()  # the params list begins: its keys may override the config's
        if key in seen:
            raise ConnectorConfigError(
                f"param {key!r} is given more than once",
                field_errors={key: "duplicate key: give each key once"},
                remediation="Send each param key once.",
            )
        seen.add(key)
        value_type = item.get("value_type") or "text"
        if value_type not in VALUE_TYPES:
            raise ConnectorConfigError(
                f"param {key!r}: value_type must be 'text' or 'file'",
                field_errors={key: "unknown value_type"},
            )
        value = _text(key, item.get("value"))
        if value_type == "text" and value and (stored or {}).get(key) != value:
            size = len(value.encode("utf-8", "surrogatepass"))
            _check_size(key, size, MAX_TEXT_BYTES, "text value")
            text_total += size
        sequence = item.get("sequence")
        if sequence is not None and (isinstance(sequence, bool) or not isinstance(sequence, int)):
            raise ConnectorConfigError(f"param {key!r}: sequence must be a whole number")
        entry = ParamInput(key, value, value_type, sequence or (index + 1) * 10)
        entry.secret = item.get("secret") is True
        # a file's content is never shown (GET gives null, or the mask when secret), so
        # sending back what GET showed keeps the stored file; "" clears it
        entry.keep = value == SECRET_MASK or (value_type == "file" and value is None)
        if value_type == "file" and not entry.keep and value:
            # (at least) the size it decodes to, checked before decoding it
            _check_size(key, len(value) // 4 * 3 - 2, MAX_FILE_BYTES, "file")
            try:
                entry.content = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ConnectorConfigError(
                    f"param {key!r}: a file value must be base64",
                    field_errors={key: "not valid base64"},
                ) from None
            _check_size(key, len(entry.content), MAX_FILE_BYTES, "file")
        by_key[key] = entry
    if text_total > MAX_TEXT_TOTAL_BYTES:
        raise ConnectorConfigError(
            f"the params' text values add up to {text_total} bytes; the limit is"
            f" {_size(MAX_TEXT_TOTAL_BYTES)}",
            remediation="Keep long content (certificates, credentials files) in file params.",
        )
    unflatten_params([{"key": p.key, "value": 1} for p in by_key.values()])  # key clashes
    return sorted(by_key.values(), key=lambda p: (p.sequence, p.key))


class ParamCodec:
    def __init__(self, box: SecretBox, files: FileStore) -> None:
        self.box = box
        self.files = files

    # -- reading ------------------------------------------------------------------------
    def plain_value(self, connector: Connector, row: ConnectorParam) -> str | None:
        """The decrypted value of a param (file params: their content as text)."""
        if row.value_type == "file" and row.file_ref:
            data = self.files.read(row.file_ref).decode()
            value: str | None = (
                self.box.decrypt(data, context=f"{connector.id}:{row.key}")
                if row.is_secret
                else data
            )
            value = base64.b64decode(value or "").decode("utf-8", "replace")
        elif row.is_secret and row.value:
            value = self.box.decrypt(row.value, context=f"{connector.id}:{row.key}")
        else:
            value = row.value
        if row.is_secret:
            redactor.add(value, org=connector.organization_id)
        return value

    def plain_config(self, connector: Connector) -> dict[str, Any]:
        """The nested, decrypted config (legacy ``config`` column when there are no params)."""
        if not connector.params:
            return dict(connector.config or {})
        return unflatten_params(
            {"key": row.key, "value": self.plain_value(connector, row), "sequence": row.sequence}
            for row in connector.params
        )

    # -- writing ------------------------------------------------------------------------
    def merged_config(
        self, connector: Connector, incoming: list[ParamInput], schema: list[ConfigField]
    ) -> dict[str, Any]:
        """The plaintext config the incoming params describe, for validation."""
        secret = {f.key for f in schema if f.secret}
        stored = {row.key: row for row in connector.params}
        items = []
        for p in incoming:
            if p.keep:
                row = stored.get(p.key)
                value = self.plain_value(connector, row) if row is not None else None
            elif p.content is not None:
                value = p.content.decode("utf-8", "replace")
            else:
                value = p.value
            if p.key in secret or p.secret:
                redactor.add(value, org=connector.organization_id)
            items.append({"key": p.key, "value": value, "sequence": p.sequence})
        return unflatten_params(items)

    def replace(
        self, connector: Connector, incoming: list[ParamInput], schema: list[ConfigField]
    ) -> list[str]:
        """Make ``connector.params`` exactly ``incoming`` (the mask keeps a stored value).

        Returns the file references no longer used: delete them after the commit.
        """
        secret = {f.key for f in schema if f.secret}
        stored = {row.key: row for row in connector.params}
        rows: list[ConnectorParam] = []
        obsolete: list[str] = []
        for p in incoming:
            row = stored.pop(p.key, None)
            if p.keep and row is not None:
                row.sequence = p.sequence
                rows.append(row)
                continue
            if row is None:
                row = ConnectorParam(key=p.key)
            elif row.file_ref:
                obsolete.append(row.file_ref)
            # rows are updated in place: the (connector, key) pair is unique; a value
            # the schema or its sender called secret stays secret (encrypted, masked)
            was_secret = row.is_secret is True
            self._fill(connector.id, row, p, p.key in secret or p.secret or was_secret)
            rows.append(row)
        obsolete += [old.file_ref for old in stored.values() if old.file_ref]
        connector.params = rows
        return obsolete

    def _fill(self, connector_id: str, row: ConnectorParam, p: ParamInput, is_secret: bool) -> None:
        context = f"{connector_id}:{p.key}"
        row.value_type, row.sequence, row.is_secret, row.file_ref = (
            p.value_type,
            p.sequence,
            is_secret,
            None,
        )
        if p.value_type == "file" and p.content is not None:
            text = base64.b64encode(p.content).decode()
            blob = self.box.encrypt(text, context=context) if is_secret else text
            row.file_ref = self.files.write(connector_id, blob.encode())
            row.value = None
        elif p.value_type == "file":
            row.value = None  # no file (cleared with "", or never sent)
        elif is_secret and p.value not in (None, "", SECRET_MASK):
            row.value = self.box.encrypt(str(p.value), context=context)
        else:
            row.value = None if p.keep else p.value

    def reencrypt(self, connector_id: str, row: ConnectorParam) -> str | bool | None:
        """Re-encrypt one secret param under the current key.

        Returns False when nothing changed, True when the value changed, or the obsolete
        file reference (to delete after the commit) for a file param.
        """
        context = f"{connector_id}:{row.key}"
        if row.value_type == "file" and row.file_ref:
            token = self.files.read(row.file_ref).decode()
            if not self.box.needs_rotation(token):
                return False
            fresh = self.box.encrypt(self.box.decrypt(token, context=context), context=context)
            old_ref, row.file_ref = row.file_ref, self.files.write(connector_id, fresh.encode())
            return old_ref
        if row.value and self.box.needs_rotation(row.value):
            row.value = self.box.encrypt(
                self.box.decrypt(row.value, context=context), context=context
            )
            return True
        return False


def _check_size(key: str, size: int, limit: int, what: str) -> None:
    """Refuse a value of ``size`` bytes over ``limit``, naming the key and the limit."""
    if size > limit:
        raise ConnectorConfigError(
            f"param {key!r} is too large: the limit is {_size(limit)} per {what}",
            field_errors={key: f"larger than {_size(limit)}"},
            remediation="Keep long content (certificates, credentials files) in a file param,"
            f" up to {_size(MAX_FILE_BYTES)}."
            if what != "file"
            else f"Use a file of at most {_size(MAX_FILE_BYTES)}.",
        )


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit % MiB == 0 else f"{limit // KiB} KiB"


def _text(key: str, value: Any) -> str | None:
    if isinstance(value, str) and "\x00" in value:
        raise ConnectorConfigError(
            f"param {key!r}: value contains a NUL character", field_errors={key: "NUL character"}
        )
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return json.dumps(value)
    raise ConnectorConfigError(
        f"param {key!r}: value must be text, a number or a boolean",
        field_errors={key: "unsupported value"},
    )
