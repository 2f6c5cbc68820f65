"""A stored connector whose provider is no longer installed, or whose plugin fails to load:
the connector is there, its provider is not. Before, the API answered 404 "no provider
'gone_chat'" (as if the connector were missing) and the runtime showed it ``ready``."""

from __future__ import annotations

import asyncio
import uuid

import httpx2

from jackfield import ConnectionTestResult, ConnectorRegistry
from jackfield.api import create_app
from jackfield.app import Jackfield
from jackfield.kernel import MessagingProvider, OutboundMessage, SentMessage
from jackfield.service import Principal, Role
from jackfield.testing import LiveServer

from .conftest import fast_settings


class GoneChat(MessagingProvider):
    provider_type = "gone_chat"
    display_name = "Gone chat"

    def test_connection(self) -> ConnectionTestResult:
        return ConnectionTestResult(True, "ok")

    def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="g")


async def test_a_connector_whose_provider_failed_to_load_says_so(
    database_url, tmp_path, install_plugin
):
    settings = fast_settings(database_url, tmp_path / "data")
    installed = ConnectorRegistry()
    installed.register(GoneChat)
    first = Jackfield(settings=settings, registry=installed)
    try:
        org_name = f"acme-{uuid.uuid4().hex[:6]}"
        _, token = first.accounts.create_user("a@example.com", org_name, "admin", with_token=True)
        admin = Principal(first.accounts.org_id(org_name), "a@example.com", Role.ADMIN)
        cid = first.connectors.create(
            admin, name="team chat", category="messaging", provider_type="gone_chat"
        )["id"]
        assert first.connectors.test(admin, cid)["success"]
        first.connectors.set_enabled(admin, cid, True)
        first.send(cid, {"text": "queued before the plugin broke"})
    finally:
        first.close()

    # the plugin's new release imports a dependency that is not installed
    install_plugin(
        "jackfield-gone", {"gone_p": "import gone_missing_dep\n"}, {"gone_chat": "gone_p:X"}
    )
    jf = Jackfield(settings=settings, registry=ConnectorRegistry())
    try:
        with LiveServer(create_app(jf)) as api:
            http = httpx2.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"})
            with http:
                answers = [
                    http.post(f"/api/connectors/{cid}/test"),
                    http.get(f"/api/connectors/{cid}/config"),
                ]
            # an anonymous sender learns nothing of the connector or the plugin
            hook = httpx2.post(f"{api.url}/hooks/{cid}", content=b"{}")
            assert hook.status_code == 404, hook.text
            assert "team chat" not in hook.text and "gone" not in hook.text
        for answer in answers:
            assert answer.status_code == 422, answer.text
            error = answer.json()["error"]
            assert (
                "the provider messaging/gone_chat of connector 'team chat' is not available"
                in (error["message"])
            )
            assert "gone_missing_dep" in error["message"]  # the load error
            assert "Known messaging providers" not in error["remediation"]

        await jf.start()
        try:
            for _ in range(200):
                unit = jf.runtime.supervisor.units.get(cid)
                if unit is not None and unit.last_error:
                    break
                await asyncio.sleep(0.05)
        finally:
            await jf.stop()
        assert unit is not None and unit.readiness == "misconfigured"
        assert "is not available" in unit.last_error
    finally:
        jf.close()
