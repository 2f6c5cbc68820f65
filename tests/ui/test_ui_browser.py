"""The admin UI in headless Chromium: what an administrator does, click by click.

The server is the live uvicorn of the ``api`` fixture (SQLite and PostgreSQL); each test
gets a fresh browser context and logs in through the login form.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from jackfield.service import Principal, Role
from jackfield.service.events import EventService

pytestmark = pytest.mark.browser
SECRET = "vault-token-" + "7b1e" * 5


def principal(user: Any) -> Principal:
    return Principal(user.organization_id, "test", Role.ADMIN)


def active_echo(jf: Any, who: Principal, name: str) -> str:
    """An enabled, connected echo (loopback) connector: it delivers what it is sent."""
    created = jf.connectors.create(who, name=name, category="messaging", provider_type="echo")
    cid: str = created["id"]
    jf.connectors.test(who, cid)
    jf.connectors.set_enabled(who, cid, True)
    return cid


def wait_for_state(jf: Any, who: Principal, envelope_id: str, state: str) -> None:
    deadline = time.monotonic() + 20
    while jf.runtime.outbox.get(who, envelope_id)["state"] != state:
        assert time.monotonic() < deadline, f"message {envelope_id} never became {state}"
        time.sleep(0.05)


def nav_to_connectors(page: Any) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Connectors").click()
    page.get_by_role("heading", name="Connectors").wait_for()


def open_create_form(page: Any, category: str, provider_label: str) -> None:
    page.get_by_role("link", name="New connector").click()
    page.get_by_label("Category").select_option(category)
    # htmx narrows the provider list to the category; wait for the swap
    page.wait_for_function(
        "() => [...document.querySelectorAll('#provider_type option[data-category]')]"
        f".every(o => o.dataset.category === {json.dumps(category)})"
    )
    page.get_by_label("Provider").select_option(label=provider_label)
    page.get_by_role("button", name="Continue").click()


def create_vault(page: Any, name: str = "Vault", token: str = SECRET) -> None:
    open_create_form(page, "http", "Vault (tests)")
    page.get_by_label("Name").fill(name)
    page.get_by_label("URL").fill("https://vault.example")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Create connector").click()
    page.get_by_role("heading", name=name).wait_for()


def test_login_wrong_password_then_right(page: Any, ui_user: Any) -> None:
    page.goto("/")
    assert page.url.endswith("/login")
    page.get_by_label("Email").fill(ui_user.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong email or password."
    assert page.get_by_label("Email").input_value() == ui_user.email
    page.get_by_label("Password").fill(ui_user.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/connectors")
    assert page.get_by_role("heading", name="Connectors").is_visible()
    nav = page.get_by_role("navigation", name="Main")
    for label in ("Connectors", "Runtime", "Outbox", "Events"):
        assert nav.get_by_role("link", name=label).is_visible()


def test_keyboard_only_login(page: Any, ui_user: Any) -> None:
    page.goto("/login")
    # the email field has focus when the page opens (autofocus may be applied only after the
    # load event on a busy machine, so wait for it); Tab moves to the password
    page.wait_for_function("() => document.activeElement?.id === 'email'")
    page.keyboard.type(ui_user.email)
    page.keyboard.press("Tab")
    page.keyboard.type(ui_user.password)
    assert page.get_by_label("Email").input_value() == ui_user.email
    page.keyboard.press("Enter")
    page.wait_for_url("**/connectors")
    # and keyboard focus is visible: Tab reaches the skip link first
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement.textContent.trim()")
    assert focused == "Skip to content"
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_create_test_and_activate_local_fs(
    admin_page: Any, jf: Any, ui_user: Any, tmp_path: Path
) -> None:
    page = admin_page
    root = tmp_path / "objects"
    open_create_form(page, "storage", "Local filesystem")
    assert page.get_by_label("Root directory").get_attribute("aria-required") == "true"
    page.get_by_label("Name").fill("Team archive")
    page.get_by_label("Root directory").fill(str(root))
    page.get_by_role("button", name="Create connector").click()
    page.get_by_role("heading", name="Team archive").wait_for()
    assert "Created “Team archive”" in page.get_by_role("status").first.inner_text()

    nav_to_connectors(page)
    row = page.get_by_role("row").filter(has_text="Team archive")
    assert "draft" in row.inner_text() and "disabled" in row.inner_text()
    row.get_by_role("link", name="Team archive").click()

    page.get_by_role("button", name="Test connection").click()
    result = page.locator("#test-result")
    result.get_by_text("Connection OK").wait_for()
    assert str(root) in result.inner_text()
    assert page.locator("#status-badge").inner_text() == "connected"  # swapped in by htmx
    page.get_by_role("button", name="Activate").click()
    page.get_by_text("“Team archive” is activated.").wait_for()
    assert page.get_by_role("button", name="Deactivate").is_visible()

    nav_to_connectors(page)
    page.get_by_role("link", name="storage").click()
    states = page.get_by_role("row").filter(has_text="Team archive").inner_text()
    assert "connected" in states and "enabled" in states
    [stored] = jf.connectors.list(principal(ui_user))
    assert stored["is_enabled"] and stored["status"] == "connected"
    assert root.is_dir()


def test_required_field_error_is_inline_and_nothing_is_created(
    admin_page: Any, jf: Any, ui_user: Any
) -> None:
    page = admin_page
    open_create_form(page, "storage", "Local filesystem")
    page.get_by_label("Name").fill("Incomplete")
    page.get_by_role("button", name="Create connector").click()
    field = page.locator(".field", has=page.get_by_label("Root directory"))
    assert field.locator(".field-error").inner_text() == "Root directory is required"
    assert page.get_by_label("Root directory").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Name").input_value() == "Incomplete"
    assert jf.connectors.list(principal(ui_user)) == []


def test_secret_is_masked_and_never_in_the_page(admin_page: Any, jf: Any, ui_user: Any) -> None:
    page = admin_page
    create_vault(page)
    token = page.get_by_label("Token")
    assert token.get_attribute("type") == "password"
    assert token.input_value() == "********"
    assert SECRET not in page.content()
    # a failed save with a new secret typed in: the page does not echo it either
    page.get_by_label("URL").fill("")
    page.get_by_label("Token").fill(SECRET + "-new")
    page.get_by_role("button", name="Save changes").click()
    page.locator("#f-url-error").wait_for()
    assert SECRET not in page.content()
    [stored] = jf.connectors.list(principal(ui_user))
    config = jf.connectors.resolve(stored["id"])[2]
    assert config["token"] == SECRET  # nothing was saved


def test_import_config_from_a_file(admin_page: Any, jf: Any, ui_user: Any) -> None:
    page = admin_page
    create_vault(page, token="bad")
    document = {"installed": {"url": "https://imported.example", "token": "good"}}
    page.get_by_label("JSON file").set_input_files(
        files=[
            {
                "name": "credentials.json",
                "mimeType": "application/json",
                "buffer": json.dumps(document).encode(),
            }
        ]
    )
    page.get_by_role("button", name="Import").click()
    page.get_by_text("Imported credentials.json").wait_for()
    assert page.get_by_label("URL").input_value() == "https://imported.example"
    assert page.get_by_label("Token").input_value() == "********"
    page.get_by_role("button", name="Test connection").click()
    page.locator("#test-result").get_by_text("Connection OK").wait_for()
    assert '"good"' not in page.content()


def test_delete_asks_for_confirmation(admin_page: Any, jf: Any, ui_user: Any) -> None:
    page = admin_page
    create_vault(page, name="Doomed")
    page.get_by_role("link", name="Delete…").click()
    page.get_by_role("heading", name="Delete “Doomed”?").wait_for()
    page.get_by_role("link", name="Cancel").click()
    page.get_by_role("heading", name="Doomed").wait_for()
    assert len(jf.connectors.list(principal(ui_user))) == 1

    page.get_by_role("link", name="Delete…").click()
    page.get_by_role("button", name="Delete connector").click()
    page.wait_for_url(re.compile(r".*/connectors$"))
    assert "Deleted “Doomed”." in page.get_by_role("status").first.inner_text()
    assert page.get_by_role("row").filter(has_text="Doomed").count() == 0
    assert jf.connectors.list(principal(ui_user)) == []


def test_logout_then_root_redirects_to_login(admin_page: Any) -> None:
    page = admin_page
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    page.goto("/")
    assert page.url.endswith("/login")
    page.goto("/connectors")
    assert "/login" in page.url
    assert page.get_by_role("heading", name="Log in").is_visible()


def test_discarding_a_dead_letter_asks_first(admin_page: Any, jf: Any, ui_user: Any) -> None:
    who = principal(ui_user)
    cid = active_echo(jf, who, "Loop")
    doomed = jf.send(cid, {"text": "x", "simulate": "permanent"})
    wait_for_state(jf, who, doomed, "dead")

    page = admin_page
    page.goto("/outbox?state=dead")
    row = page.get_by_role("row").filter(has_text=doomed)
    questions: list[str] = []

    def answer(accept: bool) -> None:
        def on_dialog(dialog: Any) -> None:
            questions.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        page.once("dialog", on_dialog)

    answer(accept=False)  # the admin has second thoughts: nothing happens
    row.get_by_role("button", name=f"Discard {doomed}").click()
    page.wait_for_timeout(300)
    assert questions == [
        f"Discard message {doomed}? It will not be delivered, and this cannot be undone."
    ]
    assert jf.runtime.outbox.get(who, doomed)["state"] == "dead"

    answer(accept=True)
    row.get_by_role("button", name=f"Discard {doomed}").click()
    page.get_by_text(f"Message {doomed} discarded.").wait_for()
    assert len(questions) == 2
    assert jf.runtime.outbox.get(who, doomed)["state"] == "discarded"


def document_width(page: Any) -> int:
    width: int = page.evaluate("() => document.documentElement.scrollWidth")
    return width


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # layout: one database will do
def test_every_page_fits_a_phone_and_a_long_event_type_fits_a_desktop(
    admin_page: Any, jf: Any, ui_user: Any
) -> None:
    """No page scrolls sideways: a wide table scrolls inside its own box (its last column,
    the actions, reachable there), and long unbroken text wraps instead of widening."""
    who = principal(ui_user)
    name = "Customer-notifications-relay-for-the-europe-west-production-cluster"
    cid = active_echo(jf, who, name)
    doomed = jf.send(cid, {"text": "x" * 300, "simulate": "permanent"})
    jf.send(cid, {"text": "y" * 300})
    wait_for_state(jf, who, doomed, "dead")
    EventService(jf.db).inject(
        who, cid, {"text": "z" * 300}, event_type="t" * 100, event_id="i" * 200
    )

    page = admin_page
    page.set_viewport_size({"width": 375, "height": 800})
    pages = ["/connectors", "/connectors/new", f"/connectors/{cid}", "/runtime", "/outbox"]
    for path in [*pages, "/outbox?state=dead", "/events"]:
        page.goto(path)
        assert document_width(page) <= 375, f"{path} scrolls sideways on a phone"
    # the dead letter's Discard, in the table's last column, is reached by scrolling the table
    page.goto("/outbox?state=dead")
    discard = page.get_by_role("button", name=f"Discard {doomed}")
    discard.scroll_into_view_if_needed()
    box = discard.bounding_box()
    assert box and 0 <= box["x"] and box["x"] + box["width"] <= 375

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/events")
    assert document_width(page) <= 1280
    payload = page.locator(f'tr[data-event-id="{"i" * 200}"] td').last
    box = payload.bounding_box()
    assert box and box["x"] + box["width"] <= 1280, "the Payload column is off-screen"


def test_the_outbox_connector_filter_is_shown_and_clears_keeping_the_state(
    admin_page: Any, jf: Any, ui_user: Any
) -> None:
    who = principal(ui_user)
    failing = active_echo(jf, who, "Failing relay")
    working = active_echo(jf, who, "Working relay")
    doomed = jf.send(failing, {"text": "x", "simulate": "permanent"})
    fine = jf.send(working, {"text": "fine"})
    wait_for_state(jf, who, doomed, "dead")
    wait_for_state(jf, who, fine, "delivered")

    page = admin_page
    page.goto("/outbox?state=dead")
    dead_row = page.get_by_role("row").filter(has_text=doomed)
    dead_row.get_by_role("link", name="Failing relay").click()
    shown = page.locator("#connector-filter")
    assert "Failing relay" in shown.inner_text()
    # every state tab keeps the connector filter, and the page still says so
    page.get_by_role("navigation", name="Filter by state").get_by_role(
        "link", name="delivered"
    ).click()
    assert "Failing relay" in shown.inner_text()
    empty = page.locator(".empty").inner_text()
    assert empty.startswith("No delivered messages of connector “Failing relay”."), empty
    assert page.get_by_role("row").filter(has_text=fine).count() == 0
    # clearing it keeps the state: the other connector's delivered message is listed
    shown.get_by_role("link", name="Show all connectors").click()
    page.get_by_role("row").filter(has_text=fine).wait_for()
    assert "connector_id" not in page.url and "state=delivered" in page.url
    assert shown.count() == 0
    current = page.locator('.tabs a[aria-current="page"]')
    assert current.inner_text() == "delivered"
