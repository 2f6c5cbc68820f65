"""A plugin's webhook parser that returns events the inbox cannot store: the request is
refused whole with a 500 (the provider's fault, so the sender retries until it is
fixed), nothing is stored, the same on SQLite and PostgreSQL, and the log says why."""

from __future__ import annotations

import logging
from dataclasses import replace

import httpx2
from sqlalchemy import select

from jackfield.connectors.webhook import WebhookProvider
from jackfield.kernel import connector_registry
from jackfield.store.models_inbound import InboxEvent

from .conftest import make_active_connector

BIG = {"blob": "x" * (3 * 1024 * 1024)}


class SloppyPlugin(WebhookProvider):
    """A third-party provider (it does not vouch for its events) whose parser has bugs,
    chosen by the test through the ``x-bug`` header."""

    provider_type = "sloppy_plugin_test"
    events_checked = False

    def parse_webhook(self, request):
        (event,) = super().parse_webhook(request)
        bug = request.headers.get("x-bug", "")
        if bug == "none":
            return None
        if bug == "not_event":
            return [{"event_id": event.event_id}]
        if bug == "generator":  # no bug: a parser may yield its events (as poll() may)
            return (e for e in [event])
        changes = {
            "empty_id": {"event_id": ""},
            "long_id": {"event_id": "L" * 500},
            "nul_type": {"event_type": "a\x00b"},
            "list_payload": {"payload": [1, 2, 3]},
            "big_payload": {"payload": BIG},
        }.get(bug, {})
        return [replace(event, **changes)]


if not connector_registry.is_registered("http", SloppyPlugin.provider_type):
    connector_registry.register(SloppyPlugin)


def stored(jf, connector_id: str) -> list[InboxEvent]:
    with jf.db.transaction() as s:
        return list(s.scalars(select(InboxEvent).where(InboxEvent.connector_id == connector_id)))


def test_events_a_plugin_cannot_have_stored_are_refused_whole_with_500(
    jf, api, admin, webhook_secret, sign, caplog
):
    cid = make_active_connector(jf, admin, SloppyPlugin.provider_type, {"secret": webhook_secret})
    url = f"{api.url}/hooks/{cid}"
    caplog.set_level(logging.ERROR)
    bugs = ["empty_id", "empty_id", "long_id", "nul_type", "list_payload", "big_payload"]
    for number, bug in enumerate([*bugs, "none", "not_event"]):
        body = f'{{"type": "t", "n": {number}}}'.encode()
        response = httpx2.post(url, content=body, headers={**sign(body), "x-bug": bug})
        # before: 200 (stored as it was, or a second empty id a "duplicate": lost), or
        # on PostgreSQL an opaque 500 internal_error
        assert response.status_code == 500, (bug, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_event", bug
        assert "cannot be stored" in error["message"] or "must be a list" in error["message"]
        assert webhook_secret.removeprefix("whsec_") not in response.text
    assert stored(jf, cid) == []
    logged = [r.getMessage() for r in caplog.records if "nothing stored" in r.getMessage()]
    assert len(logged) == 8
    assert "sloppy_plugin_test" in logged[0] and "event_id must be 1 to 200" in logged[0]
    assert all(webhook_secret.removeprefix("whsec_") not in line for line in logged)

    body = b'{"type": "fine"}'  # the fixed provider's events get in
    assert httpx2.post(url, content=body, headers=sign(body)).status_code == 200
    body = b'{"type": "yielded"}'
    headers = {**sign(body), "x-bug": "generator"}
    assert httpx2.post(url, content=body, headers=headers).status_code == 200
    assert [row.event_type for row in stored(jf, cid)] == ["fine", "yielded"]


WIDE = {"items": [{"id": n, "name": "x" * 20, "tags": ["a", "b"]} for n in range(12_000)]}


class WidePlugin(WebhookProvider):
    """A third-party provider whose events are large (here: whatever the body)."""

    provider_type = "wide_plugin_test"
    events_checked = False

    def parse_webhook(self, request):
        (event,) = super().parse_webhook(request)
        return [replace(event, payload=WIDE)]


if not connector_registry.is_registered("http", WidePlugin.provider_type):
    connector_registry.register(WidePlugin)


async def test_a_plugins_events_are_checked_off_the_event_loop(jf, admin, webhook_secret, sign):
    """The check walks every value of the payload (tens of ms for a megabyte of small
    objects): it ran on the event loop, stalling every other request meanwhile."""
    import asyncio

    from jackfield.kernel.inbound import WebhookRequest
    from jackfield.runtime.inbound.webhook import WebhookIngress

    cid = make_active_connector(jf, admin, WidePlugin.provider_type, {"secret": webhook_secret})
    ingress = WebhookIngress(jf)
    loop = asyncio.get_running_loop()
    stalls: list[float] = []

    async def tick() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.001)
            stalls.append(loop.time() - before)

    body = b'{"type": "wide"}'
    await ingress.receive(cid, WebhookRequest("POST", sign(body), body))  # (warm)
    ticker = asyncio.create_task(tick())
    try:
        await asyncio.sleep(0.01)
        result = await ingress.receive(cid, WebhookRequest("POST", sign(body), body))
    finally:
        ticker.cancel()
        ingress.close()
    assert result.accepted == 1
    assert max(stalls) < 0.03, max(stalls)  # before: 0.05 s or more
