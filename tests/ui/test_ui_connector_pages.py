"""The connector pages over plain HTTP (no browser): generated forms and their errors,
secrets never in a page, permissions, actions, vendored assets only. Runs against the
live server on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import re
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx2

import jackfield.ui
from jackfield.service import Principal, Role

UI_DIR = Path(jackfield.ui.__file__).parent
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SECRET = "tok-" + "9f3c" * 6


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def form_post(client: httpx2.Client, url: str, data: dict[str, str], page: str) -> httpx2.Response:
    """POST a form with the CSRF token of ``page`` (as multipart, like the browser)."""
    token = csrf_of(client.get(page).text)
    return client.post(url, data={**data, "csrf_token": token}, files={"_": ("", b"")})


def test_create_shows_field_errors_and_keeps_values(
    client: httpx2.Client, jf: Any, ui_user: Any
) -> None:
    page = "/connectors/new?category=http&provider_type=vault_test"
    response = form_post(
        client,
        "/connectors",
        {
            "category": "http",
            "provider_type": "vault_test",
            "name": "Vault one",
            "param.url": "",
            "param.token": SECRET,
            "param.retries": "many",
        },
        page,
    )
    assert response.status_code == 422
    assert re.search(r'id="f-url-error">URL is required<', response.text)
    assert re.search(r'id="f-retries-error">Retries: expected a whole number<', response.text)
    assert 'value="Vault one"' in response.text and 'value="many"' in response.text
    assert SECRET not in response.text  # a typed secret is not echoed back
    assert jf.connectors.list(Principal(ui_user.organization_id, "t", Role.ADMIN)) == []


def test_secret_shows_only_the_mask_and_the_mask_keeps_it(
    client: httpx2.Client, jf: Any, ui_user: Any
) -> None:
    created = form_post(
        client,
        "/connectors",
        {
            "category": "http",
            "provider_type": "vault_test",
            "name": "Vault",
            "param.url": "https://vault.example",
            "param.token": "good",
            "param.retries": "3",
        },
        "/connectors/new?category=http&provider_type=vault_test",
    )
    assert created.status_code == 303
    url = created.headers["location"]
    page = client.get(url).text
    assert 'id="f-token" name="param.token" value="********"' in page
    # save again with the mask and a changed URL: the token is kept (the test still passes)
    saved = form_post(
        client,
        url,
        {"name": "Vault", "param.url": "https://vault2.example", "param.token": "********"},
        url,
    )
    assert saved.status_code == 303
    result = form_post(client, url + "/test", {}, url)
    assert "Connection OK" in result.text and "vault2.example" in result.text
    assert ">good<" not in result.text and 'value="good"' not in result.text


def test_a_new_secret_on_a_form_that_fails_asks_to_be_typed_again(
    client: httpx2.Client, jf: Any, ui_user: Any
) -> None:
    """Before, the field came back empty (the mask gone too), and saving again failed
    with "Token is required" although a token was stored."""
    fields = {"category": "http", "provider_type": "vault_test", "name": "Vault"}
    fields |= {"param.url": "https://vault.example", "param.token": "good"}
    created = form_post(client, "/connectors", fields, "/connectors/new?category=http")
    url = created.headers["location"]
    edit = {"name": "Vault", "param.url": "https://vault.example", "param.retries": "many"}
    failed = form_post(client, url, {**edit, "param.token": "brand-new-token"}, url)
    assert failed.status_code == 422
    assert "brand-new-token" not in failed.text  # never sent back
    assert 'id="f-token" name="param.token" value="********"' in failed.text  # the stored one
    assert "Type the new value again" in failed.text
    retried = form_post(client, url, {**edit, "param.retries": "3", "param.token": "********"}, url)
    assert retried.status_code == 303  # the stored token kept: no "required"


def test_a_stored_file_is_kept_replaced_or_removed_from_the_form(
    client: httpx2.Client, jf: Any, ui_user: Any
) -> None:
    """Before, the form could keep or replace a stored file but not remove it."""
    fields = {"category": "http", "provider_type": "vault_test", "name": "Vault"}
    fields |= {"param.url": "https://vault.example", "param.token": "good"}
    token = csrf_of(client.get("/connectors/new?category=http&provider_type=vault_test").text)
    created = client.post(
        "/connectors",
        data={**fields, "csrf_token": token},
        files={"param.credentials": ("creds.json", b'{"k": 1}')},
    )
    url = created.headers["location"]
    cid = url.rsplit("/", 1)[-1]
    who = Principal(ui_user.organization_id, "t", Role.ADMIN)

    def stored() -> str | None:
        return jf.connectors.get_config(who, cid).get("credentials")

    assert stored() == "********"  # (a secret file: masked)
    page = client.get(url).text
    assert "Remove the stored file" in page
    edit = {"name": "Vault", "param.url": "https://vault.example", "param.token": "********"}
    assert form_post(client, url, edit, url).status_code == 303
    assert stored() == "********"  # left empty: kept
    removed = form_post(client, url, {**edit, "param.credentials.remove": "true"}, url)
    assert removed.status_code == 303
    assert stored() is None
    assert "Remove the stored file" not in client.get(url).text


def test_user_role_sees_connectors_but_cannot_change_them(
    api: Any, jf: Any, ui_user: Any, tmp_path: Path
) -> None:
    who = Principal(ui_user.organization_id, "t", Role.ADMIN)
    connector = jf.connectors.create(
        who,
        name="Shared",
        category="storage",
        provider_type="local_fs",
        config={"root": str(tmp_path / "files")},
    )
    email = f"reader-{uuid.uuid4().hex[:6]}@example.com"
    jf.accounts.create_user(email, ui_user.org, "user", password="reader password")
    with httpx2.Client(base_url=api.url) as http:
        token = csrf_of(http.get("/login").text)
        http.post(
            "/login", data={"email": email, "password": "reader password", "csrf_token": token}
        )
        listing = http.get("/connectors").text
        assert "Shared" in listing and "New connector" not in listing
        detail = http.get(f"/connectors/{connector['id']}").text
        assert "Test connection" not in detail
        denied = http.post(
            f"/connectors/{connector['id']}/delete", data={"csrf_token": csrf_of(detail)}
        )
        assert denied.status_code == 303
        assert "admin role" in http.get(denied.headers["location"]).text
    assert jf.connectors.get(who, connector["id"])["name"] == "Shared"


def test_another_organizations_connector_is_not_found(
    client: httpx2.Client, jf: Any, other_admin: Principal, tmp_path: Path
) -> None:
    theirs = jf.connectors.create(
        other_admin,
        name="Theirs",
        category="storage",
        provider_type="local_fs",
        config={"root": str(tmp_path / "files")},
    )
    for path in ("", "/delete"):
        response = client.get(f"/connectors/{theirs['id']}{path}")
        assert response.status_code == 404
        assert "Theirs" not in response.text
    token = csrf_of(client.get("/connectors").text)
    gone = client.post(f"/connectors/{theirs['id']}/delete", data={"csrf_token": token})
    assert gone.status_code == 404
    assert jf.connectors.get(other_admin, theirs["id"])["name"] == "Theirs"


def test_import_rejects_a_file_that_is_not_json(
    client: httpx2.Client, jf: Any, ui_user: Any
) -> None:
    who = Principal(ui_user.organization_id, "t", Role.ADMIN)
    connector = jf.connectors.create(
        who,
        name="V",
        category="http",
        provider_type="vault_test",
        config={"url": "https://a.example", "token": SECRET},
    )
    url = f"/connectors/{connector['id']}"
    token = csrf_of(client.get(url).text)
    response = client.post(
        url + "/import",
        data={"csrf_token": token},
        files={"file": ("creds.json", b"not json", "application/json")},
    )
    assert response.status_code == 303
    page = client.get(url).text
    assert "Import failed" in page and "Upload a JSON file" in page
    assert SECRET not in page
    assert jf.connectors.get_config(who, connector["id"])["url"] == "https://a.example"


def test_static_assets_are_vendored_and_pages_name_no_other_site(client: httpx2.Client) -> None:
    external = re.compile(
        r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I
    )
    for template in sorted((UI_DIR / "templates").glob("*.html")):
        text = template.read_text()
        assert not external.search(text), f"{template.name} loads an external resource"
        assert "http://" not in text and "https://" not in text, template.name
    pages = [
        "/connectors",
        "/connectors/new",
        "/connectors/new?category=storage&provider_type=local_fs",
    ]
    for path in pages:
        html = client.get(path).text
        assert not external.search(html), path
        assert 'src="/static/htmx.min.js' in html
    htmx = client.get("/static/htmx.min.js")
    assert htmx.status_code == 200
    readme = (UI_DIR / "static" / "README").read_text()
    upstream = htmx.content.split(b"\n", 1)[1]  # without the added license comment
    assert hashlib.sha256(upstream).hexdigest() in readme
    assert b'version:"2.0.11"' in htmx.content and "2.0.11" in readme
    assert client.get("/static/app.css").status_code == 200


def test_htmx_provider_options_follow_the_category(client: httpx2.Client) -> None:
    path = "/connectors/new/providers?category=storage"
    html = client.get(path, headers={"HX-Request": "true"}).text
    assert 'value="local_fs"' in html
    assert 'value="smtp"' not in html and "<html" not in html


class _Inputs(HTMLParser):
    """Collects form controls, the ``for`` of labels, and ``aria-describedby`` targets."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.labelled: set[str] = set()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(str(attributes["id"]))
        if tag == "label" and attributes.get("for"):
            self.labelled.add(str(attributes["for"]))
        if tag in ("input", "select", "textarea") and attributes.get("type") != "hidden":
            self.controls.append(attributes)


def test_every_generated_input_has_a_label(client: httpx2.Client) -> None:
    types = client.get("/api/connectors/types").json()["items"]
    assert {t["provider_type"] for t in types} >= {"local_fs", "smtp", "http", "vault_test"}
    for item in types:
        page = f"/connectors/new?category={item['category']}&provider_type={item['provider_type']}"
        response = client.get(page)
        assert response.status_code == 200, page
        parser = _Inputs()
        parser.feed(response.text)
        assert parser.controls, page
        for control in parser.controls:
            assert control.get("id") in parser.labelled, f"{page}: {control} has no label"
            for ref in (control.get("aria-describedby") or "").split():
                assert ref in parser.ids, f"{page}: {control} describes itself with a missing id"


def test_make_default_and_activation_rules_come_from_the_service(
    client: httpx2.Client, jf: Any, ui_user: Any, tmp_path: Path
) -> None:
    who = Principal(ui_user.organization_id, "t", Role.ADMIN)
    first, second = (
        jf.connectors.create(
            who,
            name=name,
            category="storage",
            provider_type="local_fs",
            config={"root": str(tmp_path / name)},
        )
        for name in ("first", "second")
    )
    for connector in (first, second):
        url = f"/connectors/{connector['id']}"
        done = form_post(client, url + "/default", {}, url)
        assert done.status_code == 303
        assert "is now the default storage connector" in client.get(url).text
    defaults = {c["name"]: c["is_default"] for c in jf.connectors.list(who)}
    assert defaults == {"first": False, "second": True}

    url = f"/connectors/{first['id']}"
    refused = form_post(client, url + "/activate", {}, url)
    assert refused.status_code == 303
    page = client.get(url).text
    assert "Run a successful connection test before activating." in page
    assert jf.connectors.get(who, first["id"])["is_enabled"] is False
    form_post(client, url + "/test", {}, url)
    form_post(client, url + "/activate", {}, url)
    assert "“first” is activated." in client.get(url).text
    assert jf.connectors.get(who, first["id"])["is_enabled"] is True


def test_a_webhook_connector_page_shows_where_senders_post(
    client: httpx2.Client, jf: Any, ui_user: Any
) -> None:
    who = Principal(ui_user.organization_id, "t", Role.ADMIN)
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    hook = jf.connectors.create(
        who, name="in", category="http", provider_type="webhook", config={"secret": secret}
    )
    echo = jf.connectors.create(who, name="out", category="messaging", provider_type="echo")
    url = f"{jf.settings.public_url}/hooks/{hook['id']}"  # JACKFIELD_PUBLIC_URL's base
    assert f'<code id="webhook-url">{url}</code>' in client.get(f"/connectors/{hook['id']}").text
    assert 'id="webhook-url"' not in client.get(f"/connectors/{echo['id']}").text


def test_a_connector_address_with_its_id_in_upper_case_is_the_same_page(
    client: httpx2.Client, jf: Any, ui_user: Any
) -> None:
    """UUIDs ignore case: an address typed or pasted in upper case opens the connector
    and its actions work, as they do for ``/api/connectors/{ID}``."""
    who = Principal(ui_user.organization_id, "t", Role.ADMIN)
    echo = jf.connectors.create(who, name="Loop", category="messaging", provider_type="echo")
    url = f"/connectors/{echo['id'].upper()}"
    page = client.get(url)
    assert page.status_code == 200 and "Loop" in page.text
    form_post(client, url + "/test", {}, url)
    assert form_post(client, url + "/activate", {}, url).status_code == 303
    assert "“Loop” is activated." in client.get(url).text
    assert jf.connectors.get(who, echo["id"])["is_enabled"] is True
    jf.send(echo["id"], {"text": "hi"})
    outbox = client.get("/outbox", params={"connector_id": echo["id"].upper()}).text
    assert "Only messages of connector <strong>Loop</strong>" in outbox
    assert client.get(f"/connectors/{str(uuid.uuid4()).upper()}").status_code == 404
    assert client.get("/connectors/not-a-uuid").status_code == 404
