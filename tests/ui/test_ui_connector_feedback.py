"""What the connector pages tell an admin (or a user) straight away, over plain HTTP:
a field's own error next to it, read-only pages for the ``user`` role, the outcome of
an OAuth connection, imported settings that have no field. Runs against the live
server on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx2
import pytest

from jackfield.service import Principal, Role

from . import test_ui_oauth_browser as oauth_browser
from .conftest import csrf_of, login

OAUTH_CLIENT_ID = oauth_browser.CLIENT_ID
OAUTH_CLIENT_SECRET = oauth_browser.CLIENT_SECRET
oauth_served = oauth_browser.oauth_setup
"""Jackfield served at its PUBLIC_URL, with a loopback authorization server (a fixture)."""


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


# -- 3. a user sees connectors read-only, and admin-only pages say so at once ----------------
@pytest.fixture
def user_client(api: Any, jf: Any, ui_user: Any) -> Any:
    """An HTTP client logged in as a ``user`` of ``ui_user``'s organization."""
    email = f"reader-{uuid.uuid4().hex[:6]}@example.com"
    jf.accounts.create_user(email, ui_user.org, "user", password="reader password")
    with httpx2.Client(base_url=api.url, timeout=10) as http:
        assert login(http, email, "reader password").status_code == 303
        yield http


def test_a_user_sees_the_config_read_only_without_secret_hints(
    user_client: httpx2.Client, jf: Any, ui_user: Any
) -> None:
    connector = jf.connectors.create(
        admin_of(ui_user),
        name="Shared API",
        category="http",
        provider_type="http",
        config={
            "base_url": "https://api.example.com",
            "auth": {"mode": "bearer", "token": "tok-secret-8d8d8d"},
        },
    )
    page = user_client.get(f"/connectors/{connector['id']}")
    assert page.status_code == 200
    html = page.text
    assert "<input" not in html.split('id="config-heading"')[1]  # nothing to type into
    assert "Leave the mask" not in html and "Save changes" not in html
    assert re.search(r'<dd id="f-base_url" data-key="base_url">https://api.example.com</dd>', html)
    assert re.search(r'<dd id="f-auth-token" data-key="auth.token">stored \(hidden\)</dd>', html)
    assert re.search(r'<dd id="f-auth-password" data-key="auth.password">not set</dd>', html)
    assert "tok-secret-8d8d8d" not in html and "********" not in html


def test_admin_only_pages_answer_403_to_a_user_before_any_form(
    user_client: httpx2.Client, jf: Any, ui_user: Any
) -> None:
    connector = jf.connectors.create(
        admin_of(ui_user), name="Keep me", category="messaging", provider_type="echo"
    )
    for path in (
        "/connectors/new",
        "/connectors/new?category=messaging&provider_type=echo",
        f"/connectors/{connector['id']}/delete",
    ):
        response = user_client.get(path)
        assert response.status_code == 403, path
        assert "This action needs the admin role." in response.text
        assert "<form" not in response.text.split('id="main"')[1].replace(
            '<form method="post" action="/logout"', ""
        )
    assert user_client.get(f"/connectors/{uuid.uuid4()}/delete").status_code == 404
    assert jf.connectors.get(admin_of(ui_user), connector["id"])["name"] == "Keep me"


def test_an_admin_still_gets_the_forms(client: httpx2.Client, jf: Any, ui_user: Any) -> None:
    connector = jf.connectors.create(
        admin_of(ui_user), name="Mine", category="messaging", provider_type="echo"
    )
    assert client.get("/connectors/new").status_code == 200
    delete = client.get(f"/connectors/{connector['id']}/delete")
    assert delete.status_code == 200 and "Delete connector" in delete.text
    assert "Save changes" in client.get(f"/connectors/{connector['id']}").text


# -- 4. the OAuth connection's outcome is said on the page; its bookkeeping is read-only ----
def _connect(http: httpx2.Client, connector_url: str) -> dict[str, str]:
    """Press "Connect with OAuth": the provider's authorize URL's query."""
    token = csrf_of(http.get(connector_url).text)
    started = http.post(f"{connector_url}/connect", data={"csrf_token": token})
    assert started.status_code == 303
    return dict(httpx2.URL(started.headers["location"]).params)


def _back_from_provider(http: httpx2.Client, callback: str) -> str:
    """The browser's return to the callback; the connector page it is sent on to."""
    answer = http.get(callback, headers={"Accept": "text/html"})
    assert answer.status_code == 303
    page = httpx2.URL(answer.headers["location"])
    return http.get(page.path + "?" + page.query.decode()).text


def flashes(html: str) -> list[str]:
    return re.findall(r'<div class="flash flash-(\w+)"[^>]*>([^<]*)</div>', html)


def test_the_connector_page_says_how_the_oauth_connection_went(
    oauth_served: Any,
) -> None:
    jf, url, auth_url, _ = oauth_served
    user, _ = jf.accounts.create_user(
        f"oauth-{uuid.uuid4().hex[:6]}@example.com", "oauth-org", "admin", password="oauth pass 1"
    )
    connector = jf.connectors.create(
        Principal(user["organization_id"], "t", Role.ADMIN),
        name="Partner API",
        category="http",
        provider_type="oauth2_http",
        config={
            "base_url": f"{auth_url}/api",
            "authorize_url": f"{auth_url}/authorize",
            "token_url": f"{auth_url}/token",
            "client_id": OAUTH_CLIENT_ID,
            "client_secret": OAUTH_CLIENT_SECRET,
        },
    )
    page = f"/connectors/{connector['id']}"
    with httpx2.Client(base_url=url, timeout=10) as http:
        assert login(http, user["email"], "oauth pass 1").status_code == 303

        asked = _connect(http, page)
        refusal = httpx2.URL(asked["redirect_uri"]).copy_merge_params(
            {
                "error": "access_denied",
                "error_description": "user said no <b>x</b>",
                "state": asked["state"],
            }
        )
        html = _back_from_provider(http, refusal.path + "?" + refusal.query.decode())
        assert flashes(html) == [
            (
                "error",
                "Not connected: the provider did not authorize (access_denied: user said no"
                " &lt;b&gt;x&lt;/b&gt;); reconnect",
            )
        ]
        assert "<b>x</b>" not in html

        asked = _connect(http, page)
        approved = httpx2.get(  # the provider's consent page, approving at once
            str(httpx2.URL(f"{auth_url}/authorize").copy_merge_params(asked))
        )
        assert approved.status_code == 302
        back = httpx2.URL(approved.headers["location"])
        html = _back_from_provider(http, back.path + "?" + back.query.decode())
        [(kind, message)] = flashes(html)
        assert kind == "success" and message.startswith("Connected: ")

        # the token bookkeeping is shown, not offered as inputs; expiry as a UTC time
        for key in ("oauth.expires_at", "oauth.issued_at", "oauth.token_type", "oauth.scope"):
            assert f'name="param.{key}"' not in html
        expiry = re.search(r'<p class="readonly-value" id="f-oauth-expires_at"[^>]*>([^<]*)<', html)
        assert expiry and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", expiry.group(1))
        assert re.search(r'id="f-oauth-token_type"[^>]*>Bearer<', html)

        # a save of the form keeps what the service set
        admin = Principal(user["organization_id"], "t", Role.ADMIN)
        before = jf.connectors.get_config(admin, connector["id"])["oauth"]
        saved = form_post(
            http,
            page,
            {
                "name": "Partner API",
                "param.base_url": f"{auth_url}/api",
                "param.authorize_url": f"{auth_url}/authorize",
                "param.token_url": f"{auth_url}/token",
                "param.client_id": OAUTH_CLIENT_ID,
                "param.client_secret": "********",
                "param.oauth.access_token": "********",
                "param.oauth.refresh_token": "********",
                "param.oauth.expires_at": "1",  # (not a field of the form: ignored)
            },
            page,
        )
        assert saved.status_code == 303, saved.text
        after = jf.connectors.get_config(admin, connector["id"])["oauth"]
        assert after == before and after["expires_at"] != 1


# -- 5. import: the UI's own words, and imported settings without a field are shown --------
def _import(http: httpx2.Client, url: str, name: str, content: bytes) -> str:
    token = csrf_of(http.get(url).text)
    response = http.post(
        url + "/import",
        data={"csrf_token": token},
        files={"file": (name, content, "application/json")},
    )
    assert response.status_code == 303
    return http.get(url).text


def test_a_file_that_is_not_json_is_called_so_without_base64(
    client: httpx2.Client, jf: Any, ui_user: Any
) -> None:
    connector = jf.connectors.create(
        admin_of(ui_user), name="Imp", category="messaging", provider_type="echo"
    )
    html = _import(client, f"/connectors/{connector['id']}", "bad.json", b"{not json")
    [(kind, message)] = flashes(html)
    assert kind == "error"
    assert message.startswith("Import failed: The imported file is not a JSON file (")
    assert "base64" not in html


def test_imported_settings_without_a_field_are_shown_escaped_and_kept(
    client: httpx2.Client, jf: Any, ui_user: Any
) -> None:
    connector = jf.connectors.create(
        admin_of(ui_user),
        name="Imp",
        category="http",
        provider_type="http",
        config={"base_url": "https://api.example.com"},
    )
    url = f"/connectors/{connector['id']}"
    note = '<script>alert(1)</script>"><img src=x>'
    document = {"base_url": "https://api.example.com", "extra": {"note": note, "deep": {"k": "v"}}}
    html = _import(client, url, "imp.json", json.dumps(document).encode())
    assert "Other stored settings" in html
    assert "<dt><code>extra.note</code></dt><dd>&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<dt><code>extra.deep.k</code></dt><dd>v</dd>" in html
    assert "<script>alert" not in html and "<img src=x>" not in html

    saved = form_post(
        client, url, {"name": "Imp", "param.base_url": "https://api.example.com"}, url
    )
    assert saved.status_code == 303
    assert "<dt><code>extra.deep.k</code></dt><dd>v</dd>" in client.get(url).text
    assert jf.connectors.get_config(admin_of(ui_user), connector["id"])["extra"]["note"] == note
