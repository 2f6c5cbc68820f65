"""Saving the connector form: a save that changes nothing keeps the connector as it
was (connected stays connected), a real change needs a new test; a save made from a
page opened before another change is refused instead of undoing that change; a form
value that means neither yes nor no is refused. Over HTTP, as a browser submits the
form as the page shows it, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from typing import Any

import httpx2
import pytest

from jackfield.service import Principal, Role

FLASH = re.compile(r'class="flash[^"]*"[^>]*>(.*?)</div>', re.S)


class _FormReader(HTMLParser):
    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.inside = False
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("action") == self.action and a.get("method") == "post"
        if not self.inside or ("name" not in a and tag != "option"):
            return
        if tag == "input" and a.get("type") not in ("file", "submit"):
            if a.get("type") != "checkbox" or "checked" in a:
                self.fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select, self._options = a["name"], []
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value", ""), "selected" in a))
        elif tag == "textarea":
            self._textarea, self._text = a["name"], ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select is not None:
            chosen = [v for v, selected in self._options if selected] or [
                v for v, _ in self._options[:1]
            ]
            self.fields.append((self._select, chosen[0] if chosen else ""))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None


def form_as_sent(html: str, action: str) -> dict[str, str]:
    """The fields of the page's ``<form method="post" action=...>`` as submitted
    unchanged (a checkbox only when ticked; no file chosen)."""
    reader = _FormReader(action)
    reader.feed(html)
    assert reader.fields, f"the page has no form posting to {action}"
    return dict(reader.fields)


@pytest.fixture
def who(ui_user: Any) -> Principal:
    return Principal(ui_user.organization_id, "t", Role.ADMIN)


@pytest.fixture
def connected(jf: Any, who: Principal) -> dict[str, Any]:
    """A tested, connected connector with a secret, a default and a number."""
    view = jf.connectors.create(
        who,
        name="vault",
        category="http",
        provider_type="vault_test",
        config={"url": "https://vault.example", "token": "good"},
    )
    assert jf.connectors.test(who, view["id"])["status"] == "connected"
    return view


def save(client: httpx2.Client, url: str, html: str, **changes: str) -> httpx2.Response:
    data = {**form_as_sent(html, url), **changes}
    return client.post(url, data=data, files={"_": ("", b"")})


def flash_after(client: httpx2.Client, response: httpx2.Response) -> str:
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"]).text
    return " ".join(m.strip() for m in FLASH.findall(page))


def test_a_save_without_changes_keeps_the_connector_connected(
    client: httpx2.Client, jf: Any, who: Principal, connected: dict[str, Any]
) -> None:
    url = f"/connectors/{connected['id']}"
    saved = save(client, url, client.get(url).text)
    assert "Nothing changed" in flash_after(client, saved)
    after = jf.connectors.get(who, connected["id"])
    assert after["status"] == "connected", after["status_message"]

    changed = save(client, url, client.get(url).text, **{"param.url": "https://other.example"})
    assert "Test it again" in flash_after(client, changed)
    assert jf.connectors.get(who, connected["id"])["status"] == "draft"


def test_rest_put_follows_the_same_rule(
    api: Any, jf: Any, ui_user: Any, who: Principal, connected: dict[str, Any]
) -> None:
    """PUT of the connector as read (secrets masked) changes nothing either (nor does
    the CLI's update: the rule is the service's)."""
    _, token = jf.accounts.create_user(
        f"api-{uuid.uuid4().hex[:6]}@example.com", ui_user.org, "admin", with_token=True
    )
    with httpx2.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as http:
        url = f"/api/connectors/{connected['id']}"
        read = http.get(url).json()
        put = http.put(url, json={"name": read["name"], "params": read["params"]})
        assert put.status_code == 200, put.text
        assert put.json()["status"] == "connected"
        same = {"url": "https://vault.example", "token": "********", "retries": 3}
        put = http.put(url, json={"config": same})
        assert put.json()["status"] == "connected"  # 3 is the default: the same config
        put = http.put(url, json={"config": {**same, "retries": 4}})
        assert put.json()["status"] == "draft"


def test_a_save_from_a_page_opened_before_another_save_is_refused(
    client: httpx2.Client, jf: Any, who: Principal, connected: dict[str, Any]
) -> None:
    """Before, tab B's save silently undid tab A's: both said Saved."""
    url = f"/connectors/{connected['id']}"
    tab_a, tab_b = client.get(url).text, client.get(url).text
    saved = save(client, url, tab_a, **{"param.url": "https://from-tab-a.example"})
    assert saved.status_code == 303

    refused = save(client, url, tab_b, **{"param.retries": "7"})
    assert refused.status_code == 409
    assert "changed since this form was opened" in refused.text
    assert "Reload the connector" in refused.text
    assert form_as_sent(refused.text, url)["param.retries"] == "7"  # what B typed is kept
    again = save(client, url, refused.text)  # saving again from that page: still refused
    assert again.status_code == 409
    config = jf.connectors.get_config(who, connected["id"])
    assert (config["url"], config.get("retries")) == ("https://from-tab-a.example", None)

    reloaded = client.get(url).text
    jf.connectors.test(who, connected["id"])  # a test meanwhile changes no setting
    saved = save(client, url, reloaded, **{"param.retries": "7"})
    assert saved.status_code == 303
    config = jf.connectors.get_config(who, connected["id"])
    assert (config["url"], config["retries"]) == ("https://from-tab-a.example", "7")


def test_a_default_choice_that_is_neither_yes_nor_no_is_refused(
    client: httpx2.Client, jf: Any, who: Principal
) -> None:
    """Before, ``is_default=maybe`` (any value at all) made the connector the default."""
    page = client.get("/connectors/new?category=messaging&provider_type=echo").text
    form = {**form_as_sent(page, "/connectors"), "name": "loop"}
    refused = client.post(
        "/connectors", data={**form, "is_default": "maybe"}, files={"_": ("", b"")}
    )
    assert refused.status_code == 422
    assert "must be ticked or not" in refused.text
    assert jf.connectors.list(who) == []
    made = client.post("/connectors", data={**form, "is_default": "true"}, files={"_": ("", b"")})
    assert made.status_code == 303
    assert [c["is_default"] for c in jf.connectors.list(who)] == [True]


def test_a_save_without_changes_keeps_a_connector_created_with_blank_values(
    client: httpx2.Client, jf: Any, who: Principal
) -> None:
    """A connector sent with "" for settings it leaves unset (as clients filling every
    field of the JSON Schema do): the form leaves blank inputs out, which is the same
    configuration. Before, every untouched save of it dropped it to draft."""
    from sqlalchemy import update

    from jackfield.store import Connector

    view = jf.connectors.create(
        who,
        name="api",
        category="http",
        provider_type="http",
        config={
            "base_url": "https://api.example.com",
            "health_path": "",
            "auth": {"mode": "none", "username": "", "password": ""},
        },
    )
    with jf.db.transaction() as s:  # (tested against a server this test does not run)
        s.execute(update(Connector).where(Connector.id == view["id"]).values(status="connected"))
    url = f"/connectors/{view['id']}"
    saved = save(client, url, client.get(url).text)
    assert "Nothing changed" in flash_after(client, saved)
    assert jf.connectors.get(who, view["id"])["status"] == "connected"
