"""Fixtures of the admin UI tests: a UI user, a logged-in HTTP client, headless Chromium.

Browser tests drive Debian's ``/usr/bin/chromium`` through Playwright (sync API, used
only from the test thread). Outside CI a missing browser skips them with the reason;
with ``CI=true`` it fails them, so a green CI run means the browser really ran.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() == "true"
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class UiUser:
    email: str
    password: str
    org: str
    organization_id: str


@pytest.fixture
def ui_user(jf: Any) -> UiUser:
    """An admin with a password, in an organization of its own."""
    org = f"ui-{uuid.uuid4().hex[:6]}"
    user, _ = jf.accounts.create_user(
        f"ui-{uuid.uuid4().hex[:6]}@example.com", org, "admin", password=PASSWORD
    )
    return UiUser(user["email"], PASSWORD, org, user["organization_id"])


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def login(client: httpx2.Client, email: str, password: str) -> httpx2.Response:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


@pytest.fixture
def client(api: Any, ui_user: UiUser) -> Iterator[httpx2.Client]:
    """An HTTP client logged in as ``ui_user`` (cookies kept, redirects not followed)."""
    with httpx2.Client(base_url=api.url, timeout=10) as http:
        response = login(http, ui_user.email, ui_user.password)
        assert response.status_code == 303, response.text
        yield http


# -- the browser ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if IN_CI:
            pytest.fail(reason + " (CI=true: the browser tests must run)")
        pytest.skip(reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("playwright is not installed (CI=true: the browser tests must run)")
        pytest.skip("playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, api: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) whose relative URLs go to the live server."""
    context = browser.new_context(base_url=api.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def admin_page(page: Any, ui_user: UiUser) -> Any:
    """``page``, logged in through the login form as ``ui_user``."""
    page.goto("/")
    page.get_by_label("Email").fill(ui_user.email)
    page.get_by_label("Password").fill(ui_user.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/connectors")
    return page
