"""Editing connectors over real HTTP the way a client does: read a connector, change it,
send it back. What GET shows must be safe to show (to every role) and safe to send back."""

from __future__ import annotations

import base64

from .test_api_connectors import SECRET, callers, vault

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
