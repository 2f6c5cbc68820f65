"""What the connector pages tell an admin (or a user) straight away, over plain HTTP:
a field's own error next to it, read-only pages for the ``user`` role, the outcome of
an OAuth connection, imported settings that have no field. Runs against the live
server on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx2
import pytest

from jackfield.service import Principal, Role

from .conftest import csrf_of, login


def admin_of(ui_user: Any) -> Principal:
    return Principal(ui_user.organization_id, "t", Role.ADMIN)


def form_post(client: httpx2.Client, url: str, data: dict[str, str], page: str) -> httpx2.Response:
    """POST a form with the CSRF token of ``page`` (as multipart, like the browser)."""
    token = csrf_of(client.get(page).text)
    return client.post(url, data={**data, "csrf_token": token}, files={"_": ("", b"")})


def field_error(html: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error">([^<]*)<', html)
    return match.group(1) if match else ""


# -- 1. the http connector's token URL is checked at save ----------------------------------
@pytest.mark.parametrize("bad", ["nope", "ftp://x.example/token"])
def test_a_token_url_that_is_no_http_url_is_refused_at_save_next_to_its_field(
    client: httpx2.Client, jf: Any, ui_user: Any, bad: str
) -> None:
    connector = jf.connectors.create(
        admin_of(ui_user),
        name="CC",
        category="http",
        provider_type="http",
        config={
            "base_url": "https://api.example.com",
            "auth": {
                "mode": "oauth2_client_credentials",
                "client_id": "cid",
                "client_secret": "cs-secret-4242",
                "token_url": "https://api.example.com/token",
            },
        },
    )
    url = f"/connectors/{connector['id']}"
    response = form_post(
        client,
        url,
        {
            "name": "CC",
            "param.base_url": "https://api.example.com",
            "param.auth.mode": "oauth2_client_credentials",
            "param.auth.client_id": "cid",
            "param.auth.client_secret": "********",
            "param.auth.token_url": bad,
        },
        url,
    )
    assert response.status_code == 422
    assert field_error(response.text, "f-auth-token_url") == (
        "expected an absolute http:// or https:// URL"
    )
    config = jf.connectors.get_config(admin_of(ui_user), connector["id"])
    assert config["auth"]["token_url"] == "https://api.example.com/token"


# -- 2. a name too long is told so next to the field ---------------------------------------
def test_a_name_too_long_says_so_next_to_the_field_and_the_input_limits_it(
    client: httpx2.Client, jf: Any, ui_user: Any
) -> None:
    page = "/connectors/new?category=messaging&provider_type=echo"
    blank = client.get(page).text
    assert '<input type="text" id="name" name="name" value="" maxlength="200"' in blank
    name = "Ünïcødé 😀 " + "W" * 305
    response = form_post(
        client,
        "/connectors",
        {"category": "messaging", "provider_type": "echo", "name": name},
        page,
    )
    assert response.status_code == 422
    assert field_error(response.text, "name") == (
        "Name: must be at most 200 characters (this one has 315)"
    )
    assert "is required" not in response.text
    assert jf.connectors.list(admin_of(ui_user)) == []

    connector = jf.connectors.create(
        admin_of(ui_user), name="Short", category="messaging", provider_type="echo"
    )
    url = f"/connectors/{connector['id']}"
    assert 'id="name" name="name" value="Short" maxlength="200"' in client.get(url).text
    edited = form_post(client, url, {"name": "x" * 201}, url)
    assert edited.status_code == 422
    assert field_error(edited.text, "name") == (
        "Name: must be at most 200 characters (this one has 201)"
    )
    empty = form_post(client, url, {"name": "  "}, url)
    assert field_error(empty.text, "name") == "Name is required"
