"""The admin UI's session over plain HTTP: login and logout, the signed cookie, CSRF on
every write (UI forms and REST calls authenticated by the cookie). Runs against the live
server on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2

from jackfield.service import Principal, Role

from .conftest import CSRF, csrf_of, login


def test_root_redirects_to_login_with_an_anonymous_session(api: Any) -> None:
    with httpx2.Client(base_url=api.url) as http:
        root = http.get("/")
        assert root.status_code == 303
        assert root.headers["location"] == "/login"
        page = http.get("/login")
    assert page.status_code == 200
    assert 'name="password"' in page.text
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("jackfield_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # PUBLIC_URL is http:// in the tests
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_pages_need_a_login_and_come_back_after_it(api: Any, ui_user: Any) -> None:
    with httpx2.Client(base_url=api.url) as http:
        response = http.get("/connectors?category=storage")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/connectors%3Fcategory%3Dstorage"
        login_page = http.get(response.headers["location"])
        assert 'value="/connectors?category=storage"' in login_page.text
        done = http.post(
            "/login",
            data={
                "email": ui_user.email.upper(),
                "password": ui_user.password,
                "next": "/connectors?category=storage",
                "csrf_token": csrf_of(login_page.text),
            },
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/connectors?category=storage"
        assert http.get("/connectors").status_code == 200


def test_login_never_redirects_to_another_site(api: Any, ui_user: Any) -> None:
    with httpx2.Client(base_url=api.url) as http:
        token = csrf_of(http.get("/login").text)
        done = http.post(
            "/login",
            data={
                "email": ui_user.email,
                "password": ui_user.password,
                "next": "//evil.example/x",
                "csrf_token": token,
            },
        )
    assert done.headers["location"] == "/connectors"


def test_wrong_password_and_unknown_email_look_the_same(api: Any, ui_user: Any) -> None:
    with httpx2.Client(base_url=api.url) as http:
        pages = []
        for email, password in [(ui_user.email, "wrong password"), ("nobody@example.com", "x")]:
            token = csrf_of(http.get("/login").text)
            response = http.post(
                "/login", data={"email": email, "password": password, "csrf_token": token}
            )
            assert response.status_code == 401
            pages.append(response.text.replace(email, "EMAIL"))
        assert "Wrong email or password." in pages[0]
        assert CSRF.sub("", pages[0]) == CSRF.sub("", pages[1])
        assert http.get("/connectors").status_code == 303  # still not logged in


def test_login_needs_the_csrf_token_of_this_browser(api: Any, ui_user: Any) -> None:
    with httpx2.Client(base_url=api.url) as attacker, httpx2.Client(base_url=api.url) as victim:
        token = csrf_of(attacker.get("/login").text)
        victim.get("/login")
        forged = victim.post(
            "/login",
            data={"email": ui_user.email, "password": ui_user.password, "csrf_token": token},
        )
        assert forged.status_code == 403
        assert "Form expired" in forged.text
        missing = victim.post("/login", data={"email": ui_user.email, "password": "x"})
        assert missing.status_code == 403


def test_a_write_without_csrf_changes_nothing(client: httpx2.Client, jf: Any, ui_user: Any) -> None:
    data = {
        "category": "storage",
        "provider_type": "local_fs",
        "name": "forged",
        "param.root": "/tmp/forged",
    }
    response = client.post("/connectors", data={**data, "csrf_token": "not-the-token"})
    assert response.status_code == 403
    assert jf.connectors.list(Principal(ui_user.organization_id, "t", Role.ADMIN)) == []


def test_logout_ends_the_session_and_a_tampered_cookie_is_refused(
    client: httpx2.Client, ui_user: Any
) -> None:
    cookie = client.cookies["jackfield_session"]
    body, _, signature = cookie.partition(".")
    forged = body[:-2] + ("AA" if not body.endswith("AA") else "BB") + "." + signature
    with httpx2.Client(base_url=str(client.base_url)) as other:
        other.cookies.set("jackfield_session", forged)
        assert other.get("/connectors").status_code == 303
    token = csrf_of(client.get("/connectors").text)
    out = client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/").headers["location"] == "/login"
    assert client.get("/connectors").status_code == 303


def test_a_copy_of_the_cookie_is_refused_after_logout_and_a_new_login_works(
    client: httpx2.Client, ui_user: Any
) -> None:
    """Before, logout only cleared the cookie in the browser: a copy of it (a stolen
    one, another tab's) stayed valid for the rest of its 12 hours."""
    copied = client.cookies["jackfield_session"]
    token = csrf_of(client.get("/connectors").text)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    with httpx2.Client(base_url=str(client.base_url)) as thief:
        thief.cookies.set("jackfield_session", copied)
        assert thief.get("/runtime").status_code == 303  # to the login page
        assert thief.get("/api/outbox").status_code == 401
    with httpx2.Client(base_url=str(client.base_url)) as again:  # at once, same user
        assert login(again, ui_user.email, ui_user.password).status_code == 303
        assert again.get("/runtime").status_code == 200
        assert again.get("/api/outbox").status_code == 200


def test_rest_api_accepts_the_session_cookie_but_writes_need_the_csrf_header(
    client: httpx2.Client, jf: Any, ui_user: Any, tmp_path: Path
) -> None:
    listed = client.get("/api/connectors")
    assert listed.status_code == 200 and listed.json()["items"] == []
    body = {
        "name": "From the browser",
        "category": "storage",
        "provider_type": "local_fs",
        "config": {"root": str(tmp_path / "files")},
    }
    forged = client.post("/api/connectors", json=body)
    assert forged.status_code == 401  # a cookie alone does not authorize a REST write
    # ... and the browser's caller is told why (not "authentication required", which
    # read as being logged out); a wrong token is the same
    assert "needs its CSRF token" in forged.json()["error"]["message"]
    assert "X-CSRF-Token" in forged.json()["error"]["remediation"]
    wrong = client.put("/api/connectors/x", json={}, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 401 and "CSRF" in wrong.json()["error"]["message"]
    token = csrf_of(client.get("/connectors").text)
    made = client.post("/api/connectors", json=body, headers={"X-CSRF-Token": token})
    assert made.status_code == 201, made.text
    [item] = jf.connectors.list(Principal(ui_user.organization_id, "t", Role.ADMIN))
    assert item["name"] == "From the browser"
    with httpx2.Client(base_url=str(client.base_url)) as anonymous:
        assert anonymous.get("/api/connectors").status_code == 401
        refused = anonymous.post("/api/connectors", json=body)
        assert refused.json()["error"]["message"] == "authentication required"


def test_session_cookie_is_secure_behind_https(jf: Any) -> None:
    from jackfield.ui.session import SessionMiddleware, UiSession, session_key

    jf.settings = jf.settings.model_copy(update={"public_url": "https://jackfield.example"})
    middleware = SessionMiddleware(lambda *a: None, jf)
    session = UiSession(session_key(jf))
    session.login("user-1")
    cookie = middleware._set_cookie(session)
    assert cookie.startswith("jackfield_session=") and cookie.endswith("; Secure")
    assert UiSession.load(session_key(jf), cookie.split(";")[0].split("=", 1)[1]).user_id == (
        "user-1"
    )


def test_a_browser_asking_for_a_missing_page_gets_a_page(client: httpx2.Client) -> None:
    """Before, a mistyped address (or a login's ``next`` to a page that is gone) showed
    the API's JSON error in the browser. Machines still get the JSON."""
    html = {"Accept": "text/html,application/xhtml+xml"}
    page = client.get("/no-such-page", headers=html)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "Page not found" in page.text and "Log out" in page.text  # inside the UI
    machine = client.get("/no-such-page", headers={"Accept": "application/json"})
    assert machine.status_code == 404 and machine.json()["error"]["code"] == "not_found"
    api = client.get("/api/no-such-thing", headers=html)
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"


def test_password_guessing_is_slowed_down_per_email(api: Any, jf: Any, ui_user: Any) -> None:
    """After 5 wrong passwords an email waits 1 s, doubling with each further failure;
    meanwhile even the right password is refused (else guessing would go on at full
    speed). An unknown email is treated alike, and other emails are not held up."""
    now = [1000.0]
    jf.accounts.login_throttle.clock = lambda: now[0]
    with httpx2.Client(base_url=api.url) as http:
        for _ in range(5):
            assert login(http, ui_user.email, "wrong guess").status_code == 401
        refused = login(http, ui_user.email, ui_user.password)  # it waits 1 s now
        assert refused.status_code == 429
        assert "Too many failed logins for this email. Try again in 1 s." in refused.text
        assert refused.headers["retry-after"] == "1"
        now[0] += 1.5
        assert login(http, ui_user.email, "wrong guess").status_code == 401  # 6th: 2 s
        now[0] += 1.5
        assert login(http, ui_user.email, ui_user.password).status_code == 429
        now[0] += 1
        assert login(http, ui_user.email, ui_user.password).status_code == 303  # in
    with httpx2.Client(base_url=api.url) as http:  # a success forgot the failures
        for _ in range(4):
            assert login(http, ui_user.email, "wrong guess").status_code == 401
        for _ in range(6):
            login(http, "nobody@example.com", "guess")
        assert login(http, "nobody@example.com", "guess").status_code == 429  # alike
        assert login(http, ui_user.email, ui_user.password).status_code == 303
