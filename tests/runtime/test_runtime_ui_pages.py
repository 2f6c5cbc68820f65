"""The Runtime and Outbox pages of the admin UI, over HTTP as a browser uses them
(session cookie, CSRF-protected forms, redirect after POST)."""

from __future__ import annotations

import html
import re
import uuid
from contextlib import closing

import httpx2
import pytest
from ulid import ULID

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def jf(sqlite_url, make_jf):
    return make_jf(sqlite_url)


def _login(api, jf, org, role):
    email = f"{role}-{uuid.uuid4().hex[:6]}@example.com"
    jf.accounts.create_user(email, org, role, password=PASSWORD)
    http = httpx2.Client(base_url=api.url, timeout=10)
    token = CSRF.search(http.get("/login").text).group(1)
    response = http.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 303, response.text
    return http


def _csrf(http, path):
    return CSRF.search(http.get(path).text).group(1)


def test_runtime_and_outbox_pages_show_state_and_act_on_dead_letters(
    jf, api, tenant, make_connector, wait_until
):
    org_name = next(o["name"] for o in jf.accounts.list_orgs() if o["id"] == tenant.org_id)
    cid = make_connector(tenant.admin)
    doomed = jf.send(cid, {"text": "x", "simulate": "permanent"}, envelope_id=str(ULID()))
    fine = jf.send(cid, {"text": "fine"})

    def state(envelope):
        return jf.runtime.outbox.get(tenant.admin, envelope)["state"]

    wait_until(lambda: state(doomed) == "dead" and state(fine) == "delivered")

    with closing(_login(api, jf, org_name, "admin")) as admin:
        page = admin.get("/runtime")
        assert page.status_code == 200
        assert f'data-connector-id="{cid}"' in page.text
        assert 'data-liveness="running"' in page.text and 'data-readiness="ready"' in page.text
        restart = admin.post(
            f"/runtime/{cid}/restart", data={"csrf_token": _csrf(admin, "/runtime")}
        )
        assert restart.status_code == 303 and restart.headers["location"] == "/runtime"
        assert "Restarting" in admin.get("/runtime").text
        wait_until(lambda: jf.runtime.units.get(tenant.admin, cid)["restart_count"] == 1)

        dead_page = admin.get("/outbox", params={"state": "dead"})
        assert f'data-envelope-id="{doomed}"' in dead_page.text
        assert f'data-envelope-id="{fine}"' not in dead_page.text
        assert "simulated permanent failure" in dead_page.text
        assert f"/outbox/{doomed}/replay" in dead_page.text
        assert f'data-envelope-id="{fine}"' in admin.get("/outbox").text

        token = _csrf(admin, "/outbox")
        here = admin.get("/outbox", params={"state": "dead", "connector_id": cid})
        action = re.search(rf'action="(/outbox/{doomed}/replay\?[^"]+)"', here.text)
        replayed = admin.post(html.unescape(action.group(1)), data={"csrf_token": token})
        assert replayed.status_code == 303  # back to the page it was on, its filter kept
        assert replayed.headers["location"] == f"/outbox?state=dead&connector_id={cid}"
        assert "queued again" in admin.get(replayed.headers["location"]).text
        wait_until(lambda: state(doomed) == "dead")  # it fails again, as it must

        # a connector's dead letters: all of them at once
        assert "/outbox/replay-dead" not in admin.get("/outbox", params={"state": "dead"}).text
        filtered = admin.get("/outbox", params={"state": "dead", "connector_id": cid})
        assert f'action="/outbox/replay-dead?connector_id={cid}"' in filtered.text
        all_again = admin.post(
            "/outbox/replay-dead", params={"connector_id": cid}, data={"csrf_token": token}
        )
        assert all_again.status_code == 303
        assert "1 dead letter queued again" in admin.get(all_again.headers["location"]).text
        wait_until(lambda: state(doomed) == "dead")
        discarded = admin.post(
            f"/outbox/{doomed}/discard",
            params={"back": "//elsewhere.example/outbox?"},  # only ever an Outbox page
            data={"csrf_token": token},
        )
        assert discarded.status_code == 303
        assert discarded.headers["location"] == "/outbox?state=dead"
        assert state(doomed) == "discarded"
        refused = admin.post(f"/outbox/{fine}/discard", data={"csrf_token": token})
        assert "only dead messages can be discarded" in admin.get(refused.headers["location"]).text
        # a form without the CSRF token changes nothing
        assert admin.post(f"/outbox/{doomed}/replay").status_code in (400, 403)
        assert state(doomed) == "discarded"

    with closing(_login(api, jf, org_name, "user")) as user:
        page = user.get("/outbox", params={"state": "discarded"})
        assert f'data-envelope-id="{doomed}"' in page.text
        assert "/replay" not in page.text and "/restart" not in user.get("/runtime").text
        later = jf.send(cid, {"text": "y", "simulate": "permanent"})
        wait_until(lambda: state(later) == "dead")
        dead = user.get("/outbox", params={"state": "dead", "connector_id": cid})
        assert f'data-envelope-id="{later}"' in dead.text and "replay-dead" not in dead.text

    with httpx2.Client(base_url=api.url, timeout=10) as anonymous:
        assert anonymous.get("/outbox").status_code in (302, 303, 307)
        assert anonymous.get("/runtime").status_code in (302, 303, 307)


def test_another_organizations_units_and_messages_are_invisible_and_untouchable(
    jf, api, tenant, other_tenant, make_connector, wait_until
):
    theirs = make_connector(other_tenant.admin)
    doomed = jf.send(theirs, {"text": "their plans", "simulate": "permanent"})
    wait_until(lambda: jf.runtime.outbox.get(other_tenant.admin, doomed)["state"] == "dead")
    our_org = next(o["name"] for o in jf.accounts.list_orgs() if o["id"] == tenant.org_id)

    with closing(_login(api, jf, our_org, "admin")) as admin:
        assert theirs not in admin.get("/runtime").text
        for state in ("", "dead"):
            page = admin.get("/outbox", params={"state": state} if state else None)
            assert page.status_code == 200
            assert doomed not in page.text and "their plans" not in page.text
        token = _csrf(admin, "/outbox")
        for action in ("replay", "discard"):  # answered like a message that does not exist
            refused = admin.post(f"/outbox/{doomed}/{action}", data={"csrf_token": token})
            assert f"No message {doomed}." in admin.get(refused.headers["location"]).text
        restart = admin.post(
            f"/runtime/{theirs}/restart", data={"csrf_token": _csrf(admin, "/runtime")}
        )
        assert "flash-error" in admin.get(restart.headers["location"]).text

    assert jf.runtime.outbox.get(other_tenant.admin, doomed)["state"] == "dead"  # untouched
    assert jf.runtime.units.get(other_tenant.admin, theirs)["restart_count"] == 0


def test_the_outbox_page_pages_through_older_messages_and_back(
    jf, api, tenant, make_connector, wait_until
):
    org_name = next(o["name"] for o in jf.accounts.list_orgs() if o["id"] == tenant.org_id)
    cid = make_connector(tenant.admin)
    sent = [jf.send(cid, {"text": f"m{i}"}) for i in range(53)]  # one page holds 50
    wait_until(
        lambda: all(jf.runtime.outbox.get(tenant.admin, e)["state"] == "delivered" for e in sent)
    )
    shown = re.compile(r'data-envelope-id="([^"]+)"')

    with closing(_login(api, jf, org_name, "user")) as user:
        first = user.get("/outbox", params={"connector_id": cid})
        assert shown.findall(first.text) == sent[::-1][:50]  # newest first
        assert "Newest messages" not in first.text
        created = jf.runtime.outbox.get(tenant.admin, sent[-1])["created_at"]
        assert f'<time datetime="{created}">' in first.text  # when each was sent
        older = re.search(r'href="([^"]+)">Older messages', first.text)
        second = user.get(html.unescape(older.group(1)))
        assert shown.findall(second.text) == sent[::-1][50:]
        assert "Older messages" not in second.text
        newest = re.search(r'href="([^"]+)">Newest messages', second.text)
        assert html.unescape(newest.group(1)) == f"/outbox?connector_id={cid}"
