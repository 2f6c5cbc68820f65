from typing import Annotated, Optional, Union

import pytest
from pydantic import (
    AliasChoices,
    AliasPath,
    BaseModel,
    Field,
    HttpUrl,
    Secret,
    SecretBytes,
    SecretStr,
    create_model,
    field_validator,
    model_validator,
)

from jackfield import ConfigField, ConnectorConfigError
from jackfield.kernel import FieldType, MessagingProvider, schema_to_json_schema, validate_config
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


def model_field(annotation, default=None):
    """The one ConfigField derived from a model with one field ``value``."""
    model = create_model("One", value=(annotation, default))
    (field,) = fields_from_model(model)
    return field


@pytest.mark.parametrize(
    "annotation",
    [
        SecretStr,
        SecretStr | None,
        Optional[SecretStr],  # noqa: UP045 (what users write)
        Optional[SecretBytes],  # noqa: UP045
        Union[SecretStr, None],  # noqa: UP007
        Annotated[SecretStr, Field(description="key")] | None,
        Annotated[SecretStr | None, "meta"],
        Secret[str],
    ],
)
def test_a_secret_type_marks_a_model_field_secret_also_when_optional(annotation):
    """Before, only a bare ``SecretStr`` did: ``api_key: SecretStr | None = None`` was
    stored in plaintext and shown unmasked."""
    assert model_field(annotation).secret


@pytest.mark.parametrize(
    "extra",
    [
        {"secret": True},
        {"secret": True, "example": "sk-..."},  # before: only exactly {"secret": True}
        lambda schema: schema.update(secret=True),
    ],
)
def test_json_schema_extra_marks_a_model_field_secret(extra):
    assert model_field(str, Field("", json_schema_extra=extra)).secret


def test_plain_model_fields_are_not_secret_and_a_failing_extra_does_not_crash():
    assert not model_field(str | None).secret
    assert not model_field(str, Field("", json_schema_extra={"example": "x"})).secret

    def broken(schema):
        raise KeyError("example")

    field = model_field(str, Field("", json_schema_extra=broken))
    assert (field.secret, field.origin) == (False, False)


@pytest.mark.parametrize(
    "extra",
    [{"origin": True}, {"origin": True, "secret": False}, lambda s: s.update(origin=True)],
)
def test_json_schema_extra_marks_an_origin_field(extra):
    field = model_field(str, Field("https://api.example.com", json_schema_extra=extra))
    assert field.origin and not field.secret
    assert not model_field(str).origin


def test_an_optional_number_keeps_its_type():
    assert model_field(int | None).type is FieldType.INTEGER
    assert model_field(Optional[bool], False).type is FieldType.BOOLEAN  # noqa: UP045
    assert model_field(int | str).type is FieldType.STRING


class ModelConfig(BaseModel):
    url: HttpUrl = Field(title="Base URL")
    token: SecretStr
    retries: int = Field(3, gt=0)
    channel: str | None = None

    @field_validator("token")
    @classmethod
    def _token_prefix(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("sk-"):
            raise ValueError(f"{value.get_secret_value()} does not start with sk-")
        return value


class ModelProvider(MessagingProvider):
    provider_type = "model_test"
    display_name = "Model"
    config_model = ModelConfig

    def send_message(self, message): ...


def test_a_config_model_checks_what_is_saved():
    """Before, the model only made the schema: "not a url" and 0 for a ``gt=0`` field
    were accepted."""
    with pytest.raises(ConnectorConfigError) as info:
        ModelProvider.validate_config({"url": "not a url", "token": "sk-1", "retries": "0"})
    errors = info.value.field_errors
    assert set(errors) == {"url", "retries"}
    assert errors["url"].startswith("Base URL: ") and "valid URL" in errors["url"]
    assert "greater than 0" in errors["retries"]
    assert "not a url" not in str(info.value)  # pydantic's input is not quoted


def test_a_config_model_never_quotes_a_secret():
    with pytest.raises(ConnectorConfigError) as info:
        ModelProvider.validate_config({"url": "https://x.example", "token": "pk-live-4471"})
    assert set(info.value.field_errors) == {"token"}
    assert "pk-live-4471" not in str(info.value) and "pk-live-4471" not in repr(
        info.value.field_errors
    )
    assert "does not start with sk-" in info.value.field_errors["token"]


def test_a_config_model_leaves_the_config_as_stored():
    config = ModelProvider.validate_config(
        {"url": "https://x.example", "token": "sk-1", "retries": "5", "channel": "", "extra": 1}
    )
    assert config == {
        "url": "https://x.example",  # not an HttpUrl: providers get the dict they had
        "token": "sk-1",
        "retries": 5,
        "channel": "",  # empty: the model's default applied for the check only
        "extra": 1,
    }
    provider = ModelProvider.from_config(config)
    assert type(provider.config) is dict


def test_a_model_validator_error_is_reported_for_the_config():
    class Pair(BaseModel):
        low: int = 0
        high: int = 0

        @model_validator(mode="after")
        def _ordered(self):
            if self.low > self.high:
                raise ValueError("low is above high")
            return self

    class PairProvider(ModelProvider):
        provider_type = "pair_test"
        config_model = Pair

    with pytest.raises(ConnectorConfigError) as info:
        PairProvider.validate_config({"low": "5", "high": "1"})
    assert info.value.field_errors == {"config": "Value error, low is above high"}


class AliasedConfig(BaseModel):
    api_key: SecretStr = Field(validation_alias="api-key")
    region: str = Field(default="eu", validation_alias=AliasChoices("region-name", "area"))
    retries: int = Field(3, gt=0, validation_alias="max-retries")
    zone: str = Field(validation_alias=AliasPath("placement", "zone"))


class AliasedProvider(MessagingProvider):
    provider_type = "aliased_model_test"
    display_name = "Aliased"
    config_model = AliasedConfig

    def send_message(self, message): ...


def test_a_config_model_with_validation_aliases_checks_under_the_schemas_keys():
    """The schema names fields by their names (or alias); the model reads them by their
    validation alias. Before, every save was refused with "Field required" under keys
    the schema did not have."""
    keys = [f.key for f in AliasedProvider.config_schema()]
    assert keys == ["api_key", "region", "retries", "zone"]
    assert AliasedProvider.config_schema()[0].secret
    config = AliasedProvider.validate_config({"api_key": "k-123456", "region": "us", "zone": "z"})
    assert config["api_key"] == "k-123456" and config["region"] == "us"
    with pytest.raises(ConnectorConfigError) as info:
        AliasedProvider.validate_config({"api_key": "k-123456", "retries": "0", "zone": "z"})
    assert set(info.value.field_errors) == {"retries"}  # under the schema's key
    assert "greater than 0" in info.value.field_errors["retries"]
