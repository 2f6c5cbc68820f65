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


def credentials_api(jf, who):
    """An http connector with OAuth2 client credentials: its secret goes to the token URL."""
    return jf.connectors.create(
        who,
        name="cc",
        category="http",
        provider_type="http",
        config={
            "base_url": "https://api.example.com",
            "auth": {
                "mode": "oauth2_client_credentials",
                "token_url": "https://login.example.com/token",
                "client_id": "app",
                "client_secret": "cs-entered-by-someone-else",
            },
        },
    )


def test_removing_an_origin_then_setting_another_needs_the_secrets_again(jf, admin):
    """Two edits: the first leaves the token URL out (no move from a stored value, as the
    rule once read), the second sets the editor's own: the kept secret went there."""
    created = credentials_api(jf, admin)
    before = snapshot(jf)
    auth = {"client_id": "app", "client_secret": MASK}
    with pytest.raises(ConnectorConfigError) as caught:
        jf.connectors.update(
            admin,
            created["id"],
            config={"base_url": "https://api.example.com", "auth": {"mode": "none", **auth}},
        )
    assert set(caught.value.field_errors) == {"auth.client_secret"}
    assert "the OAuth2 token URL changed" in caught.value.field_errors["auth.client_secret"]
    assert snapshot(jf) == before
    # the same edit with the secret left out is fine: nothing is kept
    jf.connectors.update(admin, created["id"], config={"base_url": "https://api.example.com"})


def google_drive(jf, who):
    return jf.connectors.create(
        who,
        name="drive",
        category="storage",
        provider_type="google_drive",
        config={
            "client_id": "app",
            "client_secret": "gd-client-secret",
            "oauth": {"access_token": "gd-access", "refresh_token": "gd-refresh"},
        },
    )


@pytest.mark.parametrize("field", ["token_url", "api_base", "upload_base"])
def test_a_url_left_at_its_default_cannot_be_pointed_elsewhere_with_the_secrets(jf, admin, field):
    """None of these is stored (each takes its default): setting one moves the
    connector just as changing a stored one does -- the refresh token, client secret or
    access token would go to the new address."""
    created = google_drive(jf, admin)
    before = snapshot(jf)
    kept = {"client_id": "app", "client_secret": MASK}
    tokens = {"oauth": {"access_token": MASK, "refresh_token": MASK}}
    with pytest.raises(ConnectorConfigError) as caught:
        jf.connectors.update(
            admin,
            created["id"],
            config={**kept, **tokens, field: "https://collector.example.net/x"},
        )
    assert set(caught.value.field_errors) == {
        "client_secret",
        "oauth.access_token",
        "oauth.refresh_token",
    }
    assert snapshot(jf) == before
    # writing the default itself is no move
    default = next(
        f.default for f in type(jf.open_provider(created["id"])).config_schema() if f.key == field
    )
    jf.connectors.update(admin, created["id"], config={**kept, **tokens, field: default})


def test_an_smtp_port_or_tls_change_needs_the_password_again(jf, admin):
    """Port 465 with TLS to port 2525 without: the kept password would go in clear to
    another port of the same host."""
    created = jf.connectors.create(
        admin,
        name="mail",
        category="email",
        provider_type="smtp",
        config={"host": "smtp.example.com", "port": 465, "tls": True, "password": "pw-1"},
    )
    before = snapshot(jf)
    same = {"host": "smtp.example.com", "password": MASK}
    for change in ({"port": 2525, "tls": True}, {"port": 465, "tls": False}):
        with pytest.raises(ConnectorConfigError) as caught:
            jf.connectors.update(admin, created["id"], config={**same, **change})
        assert set(caught.value.field_errors) == {"password"}
    assert snapshot(jf) == before
    # the same values written another way are no move: "on" is true, "465" is 465
    jf.connectors.update(admin, created["id"], config={**same, "port": "465", "tls": "on"})
    assert jf.open_provider(created["id"]).config["password"] == "pw-1"
