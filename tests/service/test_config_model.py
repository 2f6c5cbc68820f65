"""Providers that declare their config with a pydantic ``config_model``, end to end
through the connector service: secrets the model marks are encrypted at rest and
masked, what the model refuses is not saved, and ``origin`` extras guard the secrets.
On SQLite and PostgreSQL."""

from typing import Optional

import pytest
from pydantic import BaseModel, Field, HttpUrl, SecretStr
from sqlalchemy import select

from jackfield import ConnectorConfigError
from jackfield.kernel import MessagingProvider
from jackfield.store import ConnectorParam

from .test_connector_service import registered, snapshot

MASK = "********"
SECRETS = {
    "api_key": "sk-live-OPTIONAL-7731",
    "legacy_key": "sk-live-LEGACY-7732",
    "password": "pw-EXTRA-7733",
}


class Config(BaseModel):
    url: HttpUrl = Field(json_schema_extra={"origin": True})
    api_key: SecretStr | None = None
    legacy_key: Optional[SecretStr] = None  # noqa: UP045 (what users write)
    password: str = Field("", json_schema_extra={"secret": True, "example": "hunter2"})
    retries: int = Field(3, gt=0)


class ModelChat(MessagingProvider):
    provider_type = "model_chat_test"
    display_name = "Model chat"
    config_model = Config

    def send_message(self, message): ...


def create(jf, who, **config):
    return jf.connectors.create(
        who,
        name="chat",
        category="messaging",
        provider_type="model_chat_test",
        config={"url": "https://chat.example.com", **SECRETS, **config},
    )


def test_the_models_secrets_are_encrypted_and_masked(jf, admin):
    """Before, an optional ``SecretStr`` and a ``json_schema_extra`` with ``secret``
    beside other keys were stored in plaintext and shown to every member."""
    with registered(ModelChat):
        created = create(jf, admin)
        with jf.db.transaction() as s:
            rows = {p.key: p.value for p in s.scalars(select(ConnectorParam))}
        for key, plain in SECRETS.items():
            assert rows[key].startswith("jf1:") and plain not in rows[key]
        view = {p["key"]: p for p in jf.connectors.get(admin, created["id"])["params"]}
        for key in SECRETS:
            assert (view[key]["value"], view[key]["secret"]) == (MASK, True)
        assert view["url"]["value"] == "https://chat.example.com"
        config = jf.connectors.get_config(admin, created["id"])
        assert {key: config[key] for key in SECRETS} == dict.fromkeys(SECRETS, MASK)
        assert jf.open_provider(created["id"]).config["api_key"] == SECRETS["api_key"]


def test_what_the_model_refuses_is_not_saved(jf, admin):
    with registered(ModelChat):
        before = snapshot(jf)
        with pytest.raises(ConnectorConfigError) as caught:
            create(jf, admin, url="not a url", retries="0")
        assert set(caught.value.field_errors) == {"url", "retries"}
        assert snapshot(jf) == before
        created = create(jf, admin, retries="5")
        with pytest.raises(ConnectorConfigError) as caught:
            jf.connectors.update(
                admin, created["id"], params=[{"key": "retries", "value": "-1"}], merge=True
            )
        assert set(caught.value.field_errors) == {"retries"}
        assert jf.open_provider(created["id"]).config["retries"] == 5


def test_an_origin_extra_makes_a_move_need_the_secrets_again(jf, admin):
    with registered(ModelChat):
        created = create(jf, admin)
        moved = {"url": "https://collector.example.net", **dict.fromkeys(SECRETS, MASK)}
        with pytest.raises(ConnectorConfigError) as caught:
            jf.connectors.update(admin, created["id"], config=moved)
        assert set(caught.value.field_errors) == set(SECRETS)
        config = jf.open_provider(created["id"]).config
        assert config["url"] == "https://chat.example.com"
