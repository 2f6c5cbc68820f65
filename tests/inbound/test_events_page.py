"""The Events page of the admin UI: the organization's events, and the live update
driven by htmx polling (checked over HTTP and in headless Chromium)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from jackfield.service import Principal, Role
from jackfield.service.events import EventService

PASSWORD = "correct horse battery"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def ui_admin(jf) -> tuple[str, Principal]:
    """(email, principal) of an admin with a password, in an organization of its own."""
    email = f"ev-{uuid.uuid4().hex[:6]}@example.com"
    user, _ = jf.accounts.create_user(
        email, f"ev-{uuid.uuid4().hex[:6]}", "admin", password=PASSWORD
    )
    return email, Principal(user["organization_id"], email, Role.ADMIN)


@pytest.fixture
def client(api, ui_admin) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=api.url, timeout=10) as http:
        token = re.search(r'name="csrf_token" value="([^"]+)"', http.get("/login").text)
        assert token
        response = http.post(
            "/login",
            data={"email": ui_admin[0], "password": PASSWORD, "csrf_token": token.group(1)},
        )
        assert response.status_code == 303, response.text
        yield http


def echo_connector(jf, who: Principal, name: str = "inbox") -> str:
    return jf.connectors.create(
        who, name=name, category="messaging", provider_type="echo", config={}
    )["id"]


def test_the_page_lists_the_organizations_events_only(jf, client, ui_admin, other_admin):
    who = ui_admin[1]
    events = EventService(jf.db)
    mine = echo_connector(jf, who, "Support inbox")
    theirs = echo_connector(jf, other_admin, "Not yours")
    events.inject(who, mine, {"text": "hello"}, event_id="mine-1", event_type="message.received")
    events.inject(other_admin, theirs, {"text": "secret"}, event_id="theirs-1")

    page = client.get("/events")
    assert page.status_code == 200
    assert 'data-event-id="mine-1"' in page.text and "Support inbox" in page.text
    assert "theirs-1" not in page.text and "secret" not in page.text
    assert 'hx-get="/events?after=' in page.text

    newest = int(re.search(r'data-inbox-id="(\d+)"', page.text).group(1))
    quiet = client.get(f"/events?after={newest}")
    assert 'class="event-row"' not in quiet.text  # nothing newer yet: only the polling row
    events.inject(who, mine, {"text": "again"}, event_id="mine-2")
    update = client.get(f"/events?after={newest}")
    assert 'data-event-id="mine-2"' in update.text and 'data-event-id="mine-1"' not in update.text
    beyond = client.get(f"/events?after={2**64}")  # no such id: the page, not a 500
    assert beyond.status_code == 200 and 'data-event-id="mine-1"' in beyond.text


def test_a_burst_larger_than_a_poll_shows_over_the_next_polls_says_so_and_drops_nothing(
    jf, client, ui_admin
):
    """A poll adds at most 200 events; while more wait, the polling row says the page is
    behind (before, it said "Listening" while it fell further behind)."""
    who = ui_admin[1]
    connector = echo_connector(jf, who)
    events = EventService(jf.db)
    events.inject(who, connector, {}, event_id="before")
    page = client.get("/events")
    burst = [f"b-{n}" for n in range(450)]
    for event_id in burst:
        events.inject(who, connector, {}, event_id=event_id)
    shown: list[str] = []
    behind: list[bool] = []
    for _ in range(4):  # 200 + 200 + 50, then nothing new
        poll = re.search(r'hx-get="(/events\?after=\d+)"', page.text)
        assert poll
        page = client.get(poll.group(1), headers={"HX-Request": "true"})
        rows = re.findall(r'class="event-row" data-event-id="([^"]+)"', page.text)
        assert rows == sorted(rows, key=burst.index, reverse=True)  # newest first
        shown = rows + shown
        behind.append("Catching up" in page.text)
    assert shown == burst[::-1]
    assert behind == [True, True, False, False]


def test_older_events_page_back_to_the_first_without_gaps(jf, client, ui_admin, other_admin):
    """Before, the page showed the newest 50 and no way back to the others."""
    who = ui_admin[1]
    events = EventService(jf.db)
    connector = echo_connector(jf, who)
    theirs = echo_connector(jf, other_admin, "Not yours")
    sent = [f"e-{n}" for n in range(120)]
    for n, event_id in enumerate(sent):
        events.inject(who, connector, {}, event_id=event_id)
        if n % 10 == 0:
            events.inject(other_admin, theirs, {}, event_id=f"theirs-{n}")
    shown: list[str] = []
    page = client.get("/events")
    assert "events-poller" in page.text  # the first page is live
    for _ in range(3):  # 50 + 50 + 20
        shown += re.findall(r'class="event-row" data-event-id="([^"]+)"', page.text)
        older = re.search(r'href="(/events\?before=\d+)"', page.text)
        if older is None:
            break
        page = client.get(older.group(1))
        assert page.status_code == 200 and "events-poller" not in page.text
    assert older is None  # the last page has no "Older events"
    assert shown == sent[::-1]


def test_the_page_needs_a_login(api):
    response = httpx2.get(f"{api.url}/events", follow_redirects=False)
    assert response.status_code in (302, 303, 307) and "/login" in response.headers["location"]
    # the live poll of a page whose session ended: back to the page, not to the poll's URL
    poll = httpx2.get(
        f"{api.url}/events?after=21",
        headers={"HX-Request": "true", "HX-Current-URL": f"{api.url}/events"},
    )
    assert poll.headers["HX-Redirect"] == "/login?next=/events"


@pytest.fixture
def browser_page(api, ui_admin) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is missing (CI=true: the browser tests must run)")
        pytest.skip(f"{CHROMIUM} is missing")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(base_url=api.url)
        context.set_default_timeout(10_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto("/")
        page.get_by_label("Email").fill(ui_admin[0])
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/connectors")
        try:
            yield page
        finally:
            browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.mark.browser
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_new_event_appears_without_a_reload(jf, ui_admin, browser_page):
    who = ui_admin[1]
    connector = echo_connector(jf, who, "Live inbox")
    events = EventService(jf.db)
    events.inject(who, connector, {"n": 1}, event_id="live-1")
    page = browser_page
    page.goto("/events")
    page.locator('tr[data-event-id="live-1"]').wait_for()

    events.inject(
        who, connector, {"text": "arrived later"}, event_id="live-2", event_type="order.created"
    )
    row = page.locator('tr[data-event-id="live-2"]')
    row.wait_for(timeout=8_000)  # two polling periods and some slack, no reload
    assert "order.created" in row.inner_text() and "Live inbox" in row.inner_text()
    ids = page.locator("tr.event-row").evaluate_all("rows => rows.map(r => r.dataset.eventId)")
    assert ids == ["live-2", "live-1"]  # newest first, each once
    assert page.locator("#events-poller").count() == 1
