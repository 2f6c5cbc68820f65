"""Editing connectors over real HTTP the way a client does: read a connector, change it,
send it back. What GET shows must be safe to show (to every role) and safe to send back."""

from __future__ import annotations

import base64

from .test_api_connectors import SECRET, assert_error, callers, vault

__all__ = ["callers"]  # the fixture, imported for these tests

FILE_SECRET = "file-secret-5d1e0a"


def test_config_masks_every_param_stored_as_secret(callers):
    """Before, ``/config`` masked by the provider's schema only: a param its sender marked
    secret, and the content of a secret file, came back in plaintext -- to role user too."""
    admin, user = callers["admin"], callers["user"]
    body = vault()
    body["params"] += [
        {"key": "extra.api_key", "value": SECRET, "secret": True},
        {
            "key": "client_cert",
            "value": base64.b64encode(FILE_SECRET.encode()).decode(),
            "value_type": "file",
            "secret": True,
        },
    ]
    created = admin("POST", "/api/connectors", json=body)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    for caller in (admin, user):
        answer = caller("GET", f"/api/connectors/{cid}/config")
        assert answer.status_code == 200, answer.text
        config = answer.json()["config"]
        assert config["extra"] == {"api_key": "********"}
        assert config["client_cert"] == "********"
        assert config["token"] == "********" and config["url"] == "https://vault.example.com"
        assert FILE_SECRET not in answer.text and SECRET not in answer.text


def test_sending_back_a_file_param_as_get_shows_it_keeps_the_file(callers):
    """Before, GET showed a (non-secret) file param as ``null`` and a PUT of those params
    stored ``null``: the file was gone. Now it is kept, and ``""`` removes it on purpose."""
    admin = callers["admin"]
    body = vault()
    body["params"].append(
        {"key": "ca", "value": base64.b64encode(b"-----CA-----").decode(), "value_type": "file"}
    )
    cid = admin("POST", "/api/connectors", json=body).json()["id"]
    shown = admin("GET", f"/api/connectors/{cid}").json()["params"]
    assert {"key": "ca", "value": None, "value_type": "file", "secret": False}.items() <= next(
        p for p in shown if p["key"] == "ca"
    ).items()

    put = admin("PUT", f"/api/connectors/{cid}", json={"params": shown})
    assert put.status_code == 200, put.text
    config = admin("GET", f"/api/connectors/{cid}/config").json()["config"]
    assert config["ca"] == "-----CA-----" and config["token"] == "********"

    shown = admin("GET", f"/api/connectors/{cid}").json()["params"]
    for param in shown:
        if param["key"] == "ca":
            param["value"] = ""
    assert admin("PUT", f"/api/connectors/{cid}", json={"params": shown}).status_code == 200
    config = admin("GET", f"/api/connectors/{cid}/config").json()["config"]
    assert config.get("ca") in (None, "")


def test_put_takes_the_create_body_back_but_category_and_provider_stay(callers):
    """Before, a PUT with ``category`` or ``provider_type`` (even unchanged) was refused as
    "Extra inputs are not permitted", so a connector read with GET could not be sent
    back whole."""
    admin = callers["admin"]
    cid = admin("POST", "/api/connectors", json=vault()).json()["id"]
    got = admin("GET", f"/api/connectors/{cid}").json()
    body = {k: got[k] for k in ("name", "category", "provider_type", "params", "is_default")}
    body["name"] = "Vault (edited)"
    put = admin("PUT", f"/api/connectors/{cid}", json=body)
    assert put.status_code == 200, put.text
    assert put.json()["name"] == "Vault (edited)" and put.json()["provider_type"] == "vault_test"

    for field, other in (("category", "storage"), ("provider_type", "oauth2_http")):
        error = assert_error(
            admin("PUT", f"/api/connectors/{cid}", json={**body, field: other, "name": "x"}),
            422,
            "invalid_config",
        )
        assert "cannot change" in error["message"] and field in error["details"]["fields"]
    after = admin("GET", f"/api/connectors/{cid}").json()
    assert (after["name"], after["category"], after["provider_type"]) == (
        "Vault (edited)",
        "http",
        "vault_test",
    )
