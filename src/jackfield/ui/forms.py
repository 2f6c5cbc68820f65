"""Connector forms generated from a provider's ``ConfigField`` schema, and back.

This module only translates between HTML form fields and the params list the service
takes: which values are valid, which are required, what defaults apply and what the
mask means are decided by ``ConnectorService``. Inputs are named ``param.<key>`` so a
config key never collides with the form's own fields (name, CSRF token).

Secrets: a stored secret is shown as the mask ``********`` (never its value); sending
the mask back keeps it. A secret typed into a form that failed validation is not echoed
back into the page: the field comes back empty (or with the mask if it had one).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import FormData, UploadFile

from ..kernel.config import SECRET_MASK, ConfigField, FieldType, get_path

PREFIX = "param."
TRUE_VALUES = frozenset({"true", "on", "1", "yes"})
FALSE_VALUES = frozenset({"false", "off", "0", "no", ""})


def checkbox_value(form: FormData, name: str) -> bool | None:
    """A yes/no box of the form: absent (unticked) is no; ``None`` for a value that is
    neither (a hand-made request's ``maybe``), which the page refuses rather than
    reading any value at all as yes."""
    raw = form.get(name)
    if raw is None:
        return False
    text = raw.strip().lower() if isinstance(raw, str) else "?"
    if text in TRUE_VALUES:
        return True
    return False if text in FALSE_VALUES else None


@dataclass(frozen=True)
class FormField:
    """One generated input, ready for the ``config_field`` template macro."""

    key: str
    name: str
    id: str
    label: str
    input: str  # text | number | password | checkbox | select | textarea | file
    required: bool
    help: str
    value: str
    choices: tuple[str, ...] = ()
    step: str = ""
    error: str = ""
    checked: bool = False
    stored_file: bool = False


def field_id(key: str) -> str:
    return "f-" + key.replace(".", "-")


def _input_kind(field: ConfigField) -> str:
    if field.read_only and not field.secret:
        return "readonly"  # shown, not an input: the service sets it
    if field.type is FieldType.FILE:
        return "file"
    if field.secret:
        return "password"
    return {
        FieldType.INTEGER: "number",
        FieldType.NUMBER: "number",
        FieldType.BOOLEAN: "checkbox",
        FieldType.SELECT: "select",
        FieldType.TEXT: "textarea",
    }.get(field.type, "text")


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def shown_time(value: str) -> str:
    """Unix seconds as a UTC date and time (a value that is none: as stored)."""
    try:
        moment = datetime.fromtimestamp(int(value.strip()), UTC)
    except (ValueError, OverflowError, OSError):
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def initial_values(
    schema: Iterable[ConfigField], config: Mapping[str, Any] | None
) -> dict[str, str]:
    """Values to show: the stored (masked) config, or the schema defaults for a new form."""
    values = {}
    for field in schema:
        value = get_path(config, field.key) if config is not None else field.default
        values[field.key] = as_text(value)
    return values


def form_fields(
    schema: Iterable[ConfigField],
    values: Mapping[str, str],
    errors: Mapping[str, str] | None = None,
    *,
    stored_files: Iterable[str] = (),
    stored_secrets: Iterable[str] = (),
) -> list[FormField]:
    """The form's fields. A secret typed into a form shown again after an error is not put
    back into the page: its field shows the stored value's mask (or nothing) again, with
    a note to type it again -- before, the mask went too, and the next save failed with
    "required" although a secret was stored."""
    errors = dict(errors or {})
    stored = set(stored_files)
    kept = set(stored_secrets)
    fields = []
    for field in schema:
        kind = _input_kind(field)
        value = values.get(field.key, "")
        if kind == "readonly" and field.unix_time:
            value = shown_time(value)
        if kind == "password" and value != SECRET_MASK:
            if value and field.key not in errors:
                errors[field.key] = "Type the new value again: a secret is never sent back."
            value = SECRET_MASK if field.key in kept else ""  # only ever the mask
        fields.append(
            FormField(
                key=field.key,
                name=PREFIX + field.key,
                id=field_id(field.key),
                label=field.label,
                input=kind,
                required=field.required,
                help=field.help,
                value="" if kind == "file" else value,
                choices=field.choices,
                step="1" if field.type is FieldType.INTEGER else "any",
                error=errors.get(field.key, ""),
                checked=value.strip().lower() in TRUE_VALUES,
                stored_file=field.key in stored,
            )
        )
    return fields


def submitted_values(schema: Iterable[ConfigField], form: FormData) -> dict[str, str]:
    """What the user typed, to show the form again after an error."""
    values = {}
    for field in schema:
        raw = form.getlist(PREFIX + field.key)
        last = raw[-1] if raw else ""
        values[field.key] = last if isinstance(last, str) else ""
    return values


def params_from_form(
    schema: Iterable[ConfigField],
    form: FormData,
    *,
    stored_files: Iterable[str] = (),
    keep_keys: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """The params list for ``ConnectorService.create``/``update`` from a submitted form.

    Empty inputs are left out (the service applies defaults and reports missing
    required values). A file input left empty keeps a stored file (the mask), unless
    its "Remove the stored file" box is ticked.
    ``keep_keys`` are stored params the form has no input for (read-only fields, keys
    from an imported document); they are sent as the mask so an edit does not drop them.
    """
    params: list[dict[str, Any]] = []
    stored = set(stored_files)
    keep = set(keep_keys)
    fields = list(schema)
    for index, field in enumerate(fields):
        sequence = (index + 1) * 10
        name = PREFIX + field.key
        if _input_kind(field) == "readonly":
            if field.key in keep:
                params.append(_param(field.key, SECRET_MASK, sequence))
            continue  # (never taken from the form)
        if field.type is FieldType.FILE:
            upload = form.get(name)
            content = read_upload(upload)
            if content:
                value = base64.b64encode(content).decode()
                params.append(_param(field.key, value, sequence, "file"))
            elif field.key in stored and form.get(name + ".remove") != "true":
                params.append(_param(field.key, SECRET_MASK, sequence, "file"))
            continue  # (left out, a stored file is removed)
        raw = form.getlist(name)
        last = raw[-1] if raw else ""
        text = last if isinstance(last, str) else ""
        if field.type is FieldType.BOOLEAN:
            text = "true" if text.strip().lower() in TRUE_VALUES else "false"
        elif not field.secret and field.type is not FieldType.TEXT:
            text = text.strip()
        if text != "":
            params.append(_param(field.key, text, sequence))
    known = {f.key for f in fields}
    offset = (len(fields) + 1) * 10
    for index, key in enumerate(k for k in keep_keys if k not in known):
        params.append(_param(key, SECRET_MASK, offset + index * 10))
    return params


def read_upload(value: Any) -> bytes:
    """The bytes of an uploaded file field (empty when nothing was chosen)."""
    if isinstance(value, UploadFile) and value.filename:
        value.file.seek(0)
        return bytes(value.file.read())
    return b""


def _param(key: str, value: str, sequence: int, value_type: str = "text") -> dict[str, Any]:
    return {"key": key, "value": value, "value_type": value_type, "sequence": sequence}
