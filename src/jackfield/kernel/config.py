"""Config schemas: the list of ``ConfigField`` a provider declares.

One schema drives validation, the admin form, CLI prompts, redaction (``secret``) and
the JSON Schema served by ``/api/connectors/types``. Keys use dot notation
(``installed.client_id``) and map onto the nested config dict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    AliasChoices,
    AliasPath,
    BaseModel,
    Secret,
    SecretBytes,
    SecretStr,
    ValidationError,
)
from pydantic.fields import FieldInfo

from .errors import ConnectorConfigError
from .secret_text import mask_secrets

_SECRET_TYPES = (SecretStr, SecretBytes, Secret)
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
SECRET_MASK = "********"


class FieldType(StrEnum):
    STRING = "string"
    TEXT = "text"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    SELECT = "select"
    FILE = "file"
    DIRECTORY = "directory"  # a directory of the server's; see ``service.local_paths``


@dataclass(frozen=True)
class ConfigField:
    """One configurable value of a provider."""

    key: str
    label: str
    required: bool = False
    secret: bool = False
    type: FieldType = FieldType.STRING
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    """The values a ``FieldType.SELECT`` field allows (the form's options, the JSON
    Schema's ``enum``; any other value is refused). Only for a select: a provider that
    gives choices to a field of another type is refused at registration -- the schema
    would advertise an ``enum`` that the form (a text box) and validation do not keep."""
    origin: bool = False
    """Where the connector sends its secrets (a URL or host name): when an edit changes
    it, the secrets must be entered again -- a masked value kept would reach the new
    address, and an admin could read a secret by pointing a connector at a server of
    their own (``service.secret_origins``)."""
    read_only: bool = False
    """Set by the service, not typed by an admin (an OAuth token's expiry, type and
    scope): forms show it and keep it, never offer it as an input."""
    unix_time: bool = False
    """An integer of Unix seconds: shown as a UTC date and time, not a raw number."""

    def __post_init__(self) -> None:
        if not KEY_PATTERN.match(self.key):
            raise ValueError(f"invalid config key {self.key!r}: use dot-separated words")
        object.__setattr__(self, "type", FieldType(self.type))
        object.__setattr__(self, "choices", tuple(self.choices))

    def coerce(self, value: Any) -> Any:
        """Turn a stored (text) value into the field's type; raise ``ValueError`` if it isn't."""
        if self.type is FieldType.BOOLEAN:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError("expected true or false")
        if self.type is FieldType.INTEGER:
            if isinstance(value, bool):
                raise ValueError("expected a whole number")
            try:
                return int(str(value).strip())
            except ValueError:
                raise ValueError("expected a whole number") from None
        if self.type is FieldType.NUMBER:
            try:
                return float(str(value).strip())
            except ValueError:
                raise ValueError("expected a number") from None
        if self.type is FieldType.SELECT and self.choices and str(value) not in self.choices:
            raise ValueError(f"expected one of: {', '.join(self.choices)}")
        return value if isinstance(value, str) else str(value)

    def json_schema(self) -> dict[str, Any]:
        kind = {
            FieldType.INTEGER: "integer",
            FieldType.NUMBER: "number",
            FieldType.BOOLEAN: "boolean",
        }.get(self.type, "string")
        schema: dict[str, Any] = {"type": kind, "title": self.label}
        if self.help:
            schema["description"] = self.help
        if self.default is not None:
            schema["default"] = self.default
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.secret:
            schema["writeOnly"] = True
            schema["format"] = "password"
        if self.type is FieldType.FILE:
            schema["contentEncoding"] = "base64"
        if self.type is FieldType.TEXT:
            schema["format"] = "textarea"
        if self.read_only:
            schema["readOnly"] = True
        return schema


def get_path(config: Mapping[str, Any], key: str) -> Any:
    """The value at dot-notation ``key`` in a nested dict, or ``None``."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def set_path(config: dict[str, Any], key: str, value: Any) -> None:
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):  # absent or None: an empty group
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def validate_config(fields: Iterable[ConfigField], config: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``config`` against ``fields``: required values, types, choices.

    Returns a new nested dict with defaults applied and values coerced. Keys the schema
    does not name are kept as they are (providers may read extra settings). Raises
    ``ConnectorConfigError`` listing every problem at once.
    """
    fields = list(fields)
    result = _deep_copy(config)
    errors = _scalar_groups(fields, result)
    for field in fields:
        if any(field.key.startswith(f"{group}.") for group in errors):
            continue  # its group is a single value: said once, for the group
        value = get_path(result, field.key)
        if value is None or value == "":
            if field.default is not None:
                set_path(result, field.key, field.default)
            elif field.required:
                errors[field.key] = f"{field.label} is required"
            continue
        if isinstance(value, Mapping):
            errors[field.key] = f"{field.label} must be a single value, not a group"
            continue
        try:
            set_path(result, field.key, field.coerce(value))
        except ValueError as exc:
            errors[field.key] = f"{field.label}: {exc}"
    if errors:
        raise ConnectorConfigError.for_fields(errors)
    return result


def _scalar_groups(fields: list[ConfigField], config: Mapping[str, Any]) -> dict[str, str]:
    """An error for each group of the schema (``auth`` of ``auth.mode``) that ``config``
    gives as a single value (``"auth": "basic"``).

    Refused at save time: a group's defaults could not be written into it, and a group
    without defaults would otherwise be stored and fail later, where it is read.
    """
    members: dict[str, list[str]] = {}
    for field in fields:
        parts = field.key.split(".")
        for end in range(1, len(parts)):
            members.setdefault(".".join(parts[:end]), []).append(field.key)
    errors: dict[str, str] = {}
    for group in sorted(members, key=len):
        if any(group.startswith(f"{outer}.") for outer in errors):
            continue
        head, _, last = group.rpartition(".")
        parent = get_path(config, head) if head else config
        if not isinstance(parent, Mapping) or parent.get(last) is None:
            continue
        if not isinstance(parent[last], Mapping):
            keys = ", ".join(members[group])
            errors[group] = f"{group} must be a group of values ({keys}), not a single value"
    return errors


def schema_to_json_schema(fields: Iterable[ConfigField]) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the nested config object the fields describe."""
    root: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for order, field in enumerate(fields):
        parts = field.key.split(".")
        node = root
        for part in parts[:-1]:
            child = node["properties"].setdefault(
                part, {"type": "object", "properties": {}, "required": []}
            )
            node = child
        prop = field.json_schema()
        prop["x-order"] = order
        node["properties"][parts[-1]] = prop
        if field.required:
            node["required"].append(parts[-1])
    return root


def check_schema(fields: object) -> list[ConfigField]:
    """The schema ``config_schema()`` returned, or ``ValueError`` saying what is wrong.

    Checked when a provider is registered: a schema the form, validation and the JSON
    Schema cannot use would otherwise fail later, on every listing of provider types.
    """
    if isinstance(fields, str | bytes | Mapping) or not isinstance(fields, Iterable):
        raise ValueError(f"must return a list of ConfigField, got {type(fields).__name__}")
    checked = list(fields)
    keys: set[str] = set()
    for item in checked:
        if not isinstance(item, ConfigField):
            raise ValueError(f"must return only ConfigField items, got {item!r}")
        if item.key in keys:
            raise ValueError(f"declares the key {item.key!r} twice")
        keys.add(item.key)
        if item.type is FieldType.SELECT and not item.choices:
            raise ValueError(f"field {item.key!r} is a select without choices")
        if item.choices and item.type is not FieldType.SELECT:
            raise ValueError(
                f"field {item.key!r} has choices but type {item.type.value!r}: "
                f"declare it type=FieldType.SELECT (only a select offers and enforces choices)"
            )
        if item.default is not None:
            try:
                item.coerce(item.default)
            except ValueError as exc:
                raise ValueError(
                    f"field {item.key!r} has default {item.default!r}: {exc}"
                ) from None
    for key in keys:
        parts = key.split(".")
        for end in range(1, len(parts)):
            group = ".".join(parts[:end])
            if group in keys:
                raise ValueError(f"key {group!r} is a value and also the group of {key!r}")
    return checked


def fields_from_model(model: type[BaseModel]) -> list[ConfigField]:
    """Derive ``ConfigField``s from a pydantic model.

    A field is secret when its type holds a secret type (``SecretStr``, ``SecretBytes``,
    ``Secret[...]``; also inside ``Optional``/``Union``/``Annotated``) or when its
    ``json_schema_extra`` (a dict, or a callable) sets ``"secret": True``; it is an
    origin field (``ConfigField.origin``) when ``json_schema_extra`` sets
    ``"origin": True``. ``Optional[int]`` and the like take the type they wrap.
    """
    return list(_fields_from_model(model))


@cache
def _fields_from_model(model: type[BaseModel]) -> tuple[ConfigField, ...]:
    properties = _json_schema_properties(model)
    fields: list[ConfigField] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        prop = properties.get(_input_key(name, info), properties.get(key))
        extra = _schema_extra(info.json_schema_extra, prop)
        secret = (
            _holds_secret_type(info.annotation) or bool(extra.get("secret")) or _write_only(prop)
        )
        ftype = {bool: FieldType.BOOLEAN, int: FieldType.INTEGER, float: FieldType.NUMBER}.get(
            _single_type(info.annotation),
            FieldType.STRING,
        )
        default = None if info.is_required() else info.default
        if isinstance(default, _SECRET_TYPES):
            default = default.get_secret_value()
        fields.append(
            ConfigField(
                key=key,
                label=info.title or name.replace("_", " ").capitalize(),
                required=info.is_required(),
                secret=secret,
                type=ftype,
                default=default,
                help=info.description or "",
                origin=bool(extra.get("origin")),
            )
        )
    return tuple(fields)


def validate_with_model(
    model: type[BaseModel], fields: Iterable[ConfigField], config: Mapping[str, Any]
) -> None:
    """Check ``config`` (as ``validate_config`` returned it) against ``model`` too.

    What the schema cannot say (an ``HttpUrl``, a ``Field(gt=0)``, a validator) is the
    model's to check. The model sees the schema's keys that have a value (an empty one
    is left out: the model's default applies, as in ``validate_config``) and nothing
    else; ``config`` itself is not changed. Raises ``ConnectorConfigError`` keyed like
    the schema; a message never quotes a secret value (pydantic's ``input`` is dropped,
    and a secret a validator wrote into its message is masked).
    """
    fields = list(fields)
    # each value goes where the model reads it (its validation alias, an ``AliasPath``
    # nested), as any other caller of the model would give it; errors name it that way
    where = {
        info.alias or name: _input_path(name, info) for name, info in model.model_fields.items()
    }
    schema_keys = {
        spelling: info.alias or name
        for name, info in model.model_fields.items()
        for spelling in (name, info.alias, _input_key(name, info))
        if spelling
    }
    data: dict[str, Any] = {}
    secrets: list[str] = []
    for field in fields:
        value = get_path(config, field.key)
        if value is None or value == "":
            continue
        _place(data, where.get(field.key, (field.key,)), value)
        if field.secret and len(str(value)) >= _MIN_MASKED_LENGTH:
            secrets.append(str(value))
    try:
        model.model_validate(data)
    except ValidationError as exc:
        labels = {field.key: field.label for field in fields}
        errors: dict[str, str] = {}
        for error in exc.errors(include_input=False, include_url=False, include_context=False):
            loc = error["loc"]
            if loc:  # named as the model reads it: back to the schema's key
                loc = (schema_keys.get(str(loc[0]), loc[0]), *loc[1:])
            key = _error_key(loc, labels)
            message = mask_secrets(error["msg"], secrets)
            label = labels.get(key)
            text = f"{label}: {message}" if label else message
            errors[key] = f"{errors[key]}; {text}" if key in errors else text
        raise ConnectorConfigError.for_fields(errors) from None


_MIN_MASKED_LENGTH = 4  # as the redactor's: a shorter one would mask words of the message
MODEL_ERROR_KEY = "config"
"""The key of an error the model raised for the config as a whole (a model validator)."""


def _input_path(name: str, info: FieldInfo) -> tuple[str, ...]:
    """Where ``model_validate`` reads a field: its ``AliasPath`` (of names), else the key
    ``_input_key`` names."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        alias = alias.choices[0] if alias.choices else None
    if isinstance(alias, AliasPath) and all(isinstance(step, str) for step in alias.path):
        return tuple(str(step) for step in alias.path)
    return (_input_key(name, info),)


def _place(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for step in path[:-1]:
        data = data.setdefault(step, {})
    data[path[-1]] = value


def _input_key(name: str, info: FieldInfo) -> str:
    """The key a field is read under from outside: its validation alias (the first of
    ``AliasChoices`` that is a name, the first step of an ``AliasPath``), else its alias,
    else its name."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        alias = next((choice for choice in alias.choices if isinstance(choice, str)), None)
    if isinstance(alias, AliasPath):
        alias = str(alias.path[0])
    return alias if isinstance(alias, str) else info.alias or name


def _error_key(loc: tuple[int | str, ...], labels: Mapping[str, str]) -> str:
    if not loc:
        return MODEL_ERROR_KEY
    first = str(loc[0])
    return first if first in labels else ".".join(str(part) for part in loc)


def _json_schema_properties(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema properties (json_schema_extra callables applied), or {}."""
    try:
        properties = model.model_json_schema().get("properties", {})
    except Exception:  # noqa: BLE001 - a type without a JSON Schema, a failing callable
        return {}
    return properties if isinstance(properties, dict) else {}


def _schema_extra(extra: object, prop: object) -> Mapping[str, Any]:
    """The field's ``json_schema_extra``: a dict as given, a callable's as applied."""
    if isinstance(extra, Mapping):
        return extra
    if callable(extra) and isinstance(prop, Mapping):
        return prop
    return {}


def _write_only(prop: object) -> bool:
    """Whether the property schema (or a member of its ``anyOf``) is ``writeOnly``."""
    if not isinstance(prop, Mapping):
        return False
    if prop.get("writeOnly") is True:
        return True
    members = prop.get("anyOf") or prop.get("oneOf") or ()
    return any(_write_only(member) for member in members)


def _holds_secret_type(annotation: Any) -> bool:
    """Whether a secret type appears anywhere in ``annotation`` (Optional, Union,
    Annotated, a generic's arguments)."""
    if isinstance(annotation, type) and issubclass(annotation, _SECRET_TYPES):
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return _holds_secret_type(get_args(annotation)[0])
    if isinstance(origin, type) and issubclass(origin, _SECRET_TYPES):
        return True
    return any(_holds_secret_type(arg) for arg in get_args(annotation))


def _single_type(annotation: Any) -> Any:
    """``int`` for ``int``, ``Optional[int]``, ``Annotated[int, ...]``; else as given."""
    if get_origin(annotation) is Annotated:
        return _single_type(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _single_type(members[0])
    return annotation


def secret_keys(fields: Iterable[ConfigField]) -> set[str]:
    return {field.key for field in fields if field.secret}


def _deep_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in value.items()}
