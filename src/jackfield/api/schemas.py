"""Request and response models of the REST API (they make the OpenAPI document).

Requests are validated here before a service call: types, lengths, and two things the
databases would otherwise turn into 5xx (NUL characters, which PostgreSQL text cannot
hold, and param keys longer than their column). Every rule about connectors themselves
stays in the service. Response models allow extra keys, so a field the service adds to
its views is passed through rather than silently dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

MAX_KEY_LENGTH = 200
MAX_DEPTH = 16
KEY_PATTERN = r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$"
DATE_TIME: JsonDict = {"format": "date-time"}


# connector ids in any letter case: the service normalises them (``service.lookup``)
ConnectorId = Annotated[str, Path(max_length=100, description="the connector's id (UUID)")]
ConnectorFilter = Annotated[
    str | None, Query(max_length=100, description="only this connector's (its id, a UUID)")
]


class BodyValueError(ValueError):
    """A problem of one value of a request body, found by a whole-body check: its error
    names ``field`` (``config.a``), not the body (pydantic would place it at the model)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _check_values(value: Any, path: str = "", depth: int = 0) -> None:
    """Reject NUL characters anywhere, and nesting the params could not store."""
    if depth > MAX_DEPTH:
        raise BodyValueError(path or "body", f"nested more than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise BodyValueError(path or "value", "NUL characters are not allowed")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_values(key, path, depth)
            _check_values(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_values(item, f"{path}[{index}]", depth + 1)


def _check_config_keys(config: dict[str, Any] | None) -> None:
    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, item in node.items():
            key = f"{prefix}.{name}" if prefix else str(name)
            if len(key) > MAX_KEY_LENGTH:
                raise BodyValueError("config", f"key {key[:40]}... is longer than {MAX_KEY_LENGTH}")
            if isinstance(item, dict):
                walk(item, key)

    if config:
        walk(config, "")


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        _check_values(data)
        return data


# -- errors -------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    message: str
    remediation: str = ""
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Bad request (e.g. a NUL in the URL, or an operation this provider lacks)",
        401: "No or invalid credentials",
        403: "The caller's role may not do this",
        404: "No such resource in the caller's organization",
        409: "The resource's state does not allow this",
        413: "The request body is too large",
        422: "The request is not valid",
    }
    # 400 is always possible: the request guard refuses a NUL in any URL (api/limits.py)
    return {s: {"model": ErrorResponse, "description": text[s]} for s in sorted({400, *statuses})}


# -- connectors ---------------------------------------------------------------------------
class ParamIn(BaseModel):
    """One param. ``secret: true`` keeps a value secret (encrypted, masked) even where the
    provider's schema does not know the key; ``false`` never makes a schema's secret
    plain, so a GET's params may be sent back as they are. A ``file`` param's value is
    the base64 of its content; a GET never shows the content (``null``, or the mask when
    secret), and sending that back keeps the stored file; ``""`` removes the file."""

    model_config = ConfigDict(extra="ignore")
    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH, pattern=KEY_PATTERN)
    value: str | int | float | bool | None = None
    value_type: Literal["text", "file"] = "text"
    sequence: int | None = Field(default=None, ge=0, le=1_000_000_000)
    secret: bool | None = None


class ConnectorCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=50)
    provider_type: str = Field(min_length=1, max_length=100)
    params: list[ParamIn] | None = Field(default=None, max_length=2000)
    config: dict[str, Any] | None = None
    is_default: bool = False

    @model_validator(mode="after")
    def _keys_fit(self) -> ConnectorCreate:
        _check_config_keys(self.config)
        return self


class ConnectorUpdate(RequestModel):
    """The create body, every field optional. ``category`` and ``provider_type`` may be
    sent (a connector read with GET can be sent back whole) but must equal the
    connector's: they cannot change."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    category: str | None = Field(default=None, min_length=1, max_length=50)
    provider_type: str | None = Field(default=None, min_length=1, max_length=100)
    params: list[ParamIn] | None = Field(default=None, max_length=2000)
    config: dict[str, Any] | None = None
    is_default: bool | None = None

    @model_validator(mode="after")
    def _keys_fit(self) -> ConnectorUpdate:
        _check_config_keys(self.config)
        return self


class ImportConfig(RequestModel):
    """Either ``json_data`` (an object) or ``file_content`` (base64 of a JSON file)."""

    json_data: dict[str, Any] | None = None
    file_content: str | None = None
    file_name: str | None = Field(default=None, max_length=500)
    file_mime: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _storable(self) -> ImportConfig:
        """The document (decoded, for ``file_content``) must fit the param store; a file
        that does not decode is left to the service, which explains what is wrong."""
        document: Any = self.json_data
        if self.file_content is not None and document is None:
            try:
                document = json.loads(base64.b64decode(self.file_content, validate=True))
            except (binascii.Error, ValueError):
                return self
        if isinstance(document, dict):
            _check_values(document, "document")
            _check_config_keys(document)
        return self


class ParamOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    key: str
    value: str | None
    value_type: str
    sequence: int
    secret: bool


class ConnectorOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    category: str
    provider_type: str
    organization_id: str
    is_enabled: bool
    is_default: bool
    status: str = Field(json_schema_extra={"enum": ["draft", "connected", "error"]})
    status_message: str
    last_tested_at: str | None = Field(json_schema_extra=DATE_TIME)
    params: list[ParamOut]
    created_at: str | None = Field(json_schema_extra=DATE_TIME)
    updated_at: str | None = Field(json_schema_extra=DATE_TIME)


class ConnectorList(BaseModel):
    items: list[ConnectorOut]
    next_cursor: str | None = None


class TestResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    success: bool
    message: str
    details: dict[str, Any] | None = None
    status: str


class ConfigOut(BaseModel):
    success: bool
    config: dict[str, Any]


class ProviderType(BaseModel):
    model_config = ConfigDict(extra="allow")
    provider_type: str
    display_name: str
    category: str
    tier: str
    capabilities: list[str]
    config_schema: dict[str, Any]


class ProviderTypeList(BaseModel):
    items: list[ProviderType]
    next_cursor: str | None = None


# -- OAuth --------------------------------------------------------------------------------
class AuthorizeOut(BaseModel):
    authorize_url: str


class RedirectAction(BaseModel):
    type: Literal["redirect"]
    url: str


class CallbackOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    success: bool
    connector_id: str
    status: str
    message: str = ""
    action: RedirectAction
