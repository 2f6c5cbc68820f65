"""An edit that moves a connector to another address must enter its secrets again: a
kept ("********") secret would otherwise be sent to a server the editor chose, and an
admin who may not read it could collect it there. On SQLite and PostgreSQL."""

import pytest

from jackfield import ConnectorConfigError

from .test_connector_service import snapshot

MASK = "********"


def api(jf, who, base_url="https://api.example.com/v1"):
    return jf.connectors.create(
        who,
        name="api",
        category="http",
        provider_type="http",
        params=[
            {"key": "base_url", "value": base_url},
            {"key": "auth.mode", "value": "bearer"},
            {"key": "auth.token", "value": "tok-entered-by-someone-else"},
        ],
    )


def edit(base_url, token=MASK):
    return [
        {"key": "base_url", "value": base_url},
        {"key": "auth.mode", "value": "bearer"},
        {"key": "auth.token", "value": token},
    ]


@pytest.mark.parametrize(
    "elsewhere",
    [
        "https://collector.example.net/v1",
        "http://api.example.com/v1",  # another scheme: the token would go in clear
        "https://api.example.com:8443/v1",  # another port: another server
    ],
)
def test_moving_a_connector_needs_its_secrets_again(jf, admin, elsewhere):
    created = api(jf, admin)
    before = snapshot(jf)
    with pytest.raises(ConnectorConfigError) as caught:
        jf.connectors.update(admin, created["id"], params=edit(elsewhere))
    assert set(caught.value.field_errors) == {"auth.token"}
    assert "the Base URL changed" in caught.value.field_errors["auth.token"]
    with pytest.raises(ConnectorConfigError):  # the CLI's --param merges: the same rule
        jf.connectors.update(
            admin, created["id"], params=[{"key": "base_url", "value": elsewhere}], merge=True
        )
    assert snapshot(jf) == before  # nothing changed

    jf.connectors.update(admin, created["id"], params=edit(elsewhere, token="tok-new"))
    assert jf.connectors.get_config(admin, created["id"])["base_url"] == elsewhere


def test_the_same_server_keeps_its_secrets(jf, admin):
    created = api(jf, admin)
    for same in ("https://API.example.com/v2", "https://api.example.com:443/other/"):
        jf.connectors.update(admin, created["id"], params=edit(same))
    config = jf.open_provider(created["id"]).config
    assert config["auth"]["token"] == "tok-entered-by-someone-else"


def test_an_smtp_host_change_needs_the_password_again(jf, admin):
    created = jf.connectors.create(
        admin,
        name="mail",
        category="email",
        provider_type="smtp",
        config={"host": "smtp.example.com", "username": "u", "password": "pw-1"},
    )
    moved = {"host": "smtp.attacker.example", "username": "u", "password": MASK}
    with pytest.raises(ConnectorConfigError) as caught:
        jf.connectors.update(admin, created["id"], config=moved)
    assert set(caught.value.field_errors) == {"password"}
    jf.connectors.update(admin, created["id"], config={**moved, "host": "SMTP.example.com."})
