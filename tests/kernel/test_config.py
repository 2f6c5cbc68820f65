import pytest
from pydantic import BaseModel, Field, SecretStr

from jackfield import ConfigField, ConnectorConfigError
from jackfield.kernel import FieldType, schema_to_json_schema, validate_config
from jackfield.kernel.config import fields_from_model

FIELDS = [
    ConfigField("host", "Host", required=True),
    ConfigField("port", "Port", type=FieldType.INTEGER, default=587),
    ConfigField("starttls", "STARTTLS", type=FieldType.BOOLEAN, default=False),
    ConfigField("auth.password", "Password", secret=True),
    ConfigField("mode", "Mode", type=FieldType.SELECT, choices=("a", "b"), default="a"),
]


def test_validate_applies_defaults_and_coerces_text_values():
    config = validate_config(FIELDS, {"host": "mail", "port": "2525", "starttls": "yes"})
    assert config == {"host": "mail", "port": 2525, "starttls": True, "mode": "a"}


def test_validate_lists_every_problem_at_once():
    with pytest.raises(ConnectorConfigError) as info:
        validate_config(FIELDS, {"port": "many", "starttls": "maybe", "mode": "c"})
    errors = info.value.field_errors
    assert set(errors) == {"host", "port", "starttls", "mode"}
    assert "required" in errors["host"]
    assert "whole number" in errors["port"]


def test_json_schema_nests_dot_keys_and_marks_secrets():
    schema = schema_to_json_schema(FIELDS)
    assert schema["required"] == ["host"]
    assert schema["properties"]["port"] == {
        "type": "integer",
        "title": "Port",
        "default": 587,
        "x-order": 1,
    }
    password = schema["properties"]["auth"]["properties"]["password"]
    assert password["writeOnly"] is True and password["format"] == "password"


def test_schema_can_be_derived_from_a_pydantic_model():
    class Config(BaseModel):
        url: str = Field(description="Base URL")
        token: SecretStr
        retries: int = 3

    fields = {f.key: f for f in fields_from_model(Config)}
    assert fields["url"].required and fields["url"].help == "Base URL"
    assert fields["token"].secret
    assert fields["retries"].type is FieldType.INTEGER and fields["retries"].default == 3
