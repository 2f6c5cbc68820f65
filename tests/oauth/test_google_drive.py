"""The ``google_drive`` storage provider against a local Drive-v3-like API: the storage
conformance suite, pagination, and the whole connect flow through Jackfield's API."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from jackfield.connectors.google_drive import GoogleDriveProvider
from jackfield.kernel import (
    ConnectorConfigError,
    Envelope,
    Retry,
    RetryClass,
    TransientError,
    call_async,
)
from jackfield.testing import StorageConformance

from .conftest import CLIENT_ID, CLIENT_SECRET, SQLITE_ONLY, client, connect, tokens_for


def drive_config(ps: Any, folder_id: str) -> dict[str, Any]:
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "folder_id": folder_id,
        "authorize_url": f"{ps.url}/authorize",
        "token_url": f"{ps.url}/token",
        "api_base": f"{ps.url}/drive/v3",
        "upload_base": f"{ps.url}/upload/drive/v3",
    }


def static_source(token: str) -> Any:
    async def source(*, force_refresh: bool = False) -> str:
        return token

    return source


class TestGoogleDriveConformance(StorageConformance):
    @pytest.fixture
    def provider(self, provider_server: Any) -> GoogleDriveProvider:
        folder = provider_server.make_folder()
        provider = GoogleDriveProvider.from_config(drive_config(provider_server, folder))
        provider.token_source = static_source(provider_server.issue_access())
        return provider


async def test_listing_follows_next_page_token(provider_server):
    folder = provider_server.make_folder()
    other = provider_server.make_folder("elsewhere")
    provider = GoogleDriveProvider.from_config(drive_config(provider_server, folder))
    provider.token_source = static_source(provider_server.issue_access())
    names = [f"obj-{i:02d}.txt" for i in range(8)]
    for name in reversed(names):
        await provider.put(name, name.encode(), "text/plain")
    outsider = GoogleDriveProvider.from_config(drive_config(provider_server, other))
    outsider.token_source = provider.token_source
    await outsider.put("obj-99.txt", b"not in the first folder")
    assert provider_server.page_size_cap == 3  # so eight objects take three pages
    listed = await provider.list("obj-")
    assert [i.path for i in listed] == names
    info = await provider.stat("obj-03.txt")
    assert (info.size, info.content_type) == (len(b"obj-03.txt"), "text/plain")
    assert info.modified_at is not None


async def test_names_with_quotes_are_escaped_in_queries(provider_server):
    provider = GoogleDriveProvider.from_config(
        drive_config(provider_server, provider_server.make_folder())
    )
    provider.token_source = static_source(provider_server.issue_access())
    tricky = "it's a test' or name != 'x.txt"
    await provider.put(tricky, b"1")
    await provider.put("x.txt", b"2")
    assert await provider.get(tricky) == b"1"
    assert [i.path for i in await provider.list()] == [tricky, "x.txt"]


async def test_invalid_config_and_missing_connection_are_clear(provider_server):
    with pytest.raises(ConnectorConfigError) as raised:
        GoogleDriveProvider.from_config(
            {"client_id": "x", "client_secret": "y", "api_base": "ftp:/"}
        )
    assert "api_base" in raised.value.field_errors
    unconnected = GoogleDriveProvider.from_config(drive_config(provider_server, "root"))
    result = await call_async(unconnected.test_connection)
    assert not result.success and "not connected" in result.message


@SQLITE_ONLY
def test_connect_flow_and_refresh_through_the_api(oauth_api, provider_server):
    jf = oauth_api.jf
    admin, _ = tokens_for(jf)
    folder = provider_server.make_folder()
    with client(oauth_api.url, admin) as api:
        created = api.post(
            "/api/connectors",
            json={
                "name": "Team drive",
                "category": "storage",
                "provider_type": "google_drive",
                "config": drive_config(provider_server, folder),
            },
        )
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        start = api.get(f"/api/connectors/{cid}/oauth/authorize").json()["authorize_url"]
        query = parse_qs(urlsplit(start).query)
        assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
        assert query["scope"] == ["https://www.googleapis.com/auth/drive.file"]
        result = connect(api, cid)
        assert result["success"] is True and result["status"] == "connected", result
        assert "client_secret_post" in provider_server.client_auth_seen
        types = api.get("/api/connectors/types", params={"category": "storage"}).json()
        drive = next(t for t in types["items"] if t["provider_type"] == "google_drive")
        assert "oauth2" in drive["capabilities"]
        assert drive["config_schema"]["properties"]["client_secret"]["writeOnly"] is True

    provider = jf.open_provider(cid)

    async def run() -> bytes:
        await provider.open()
        try:
            await provider.put("reports/q1.txt", b"quarter one")
            provider_server.revoke_all_access()  # the next call gets 401 and refreshes
            return bytes(await provider.get("reports/q1.txt"))
        finally:
            await provider.close()

    assert asyncio.run(run()) == b"quarter one"
    assert provider_server.calls["refresh_token"] == 1
    names = [f["name"] for f in provider_server.files.values()]
    assert "reports/q1.txt" in names
    outside = httpx2.get(f"{oauth_api.url}/api/connectors/{cid}")
    assert outside.status_code == 401


async def test_concurrent_puts_of_one_new_path_make_one_file(provider_server):
    """Before, five concurrent puts of a new name all found no file and each created one:
    every put said delivered and the folder held several files named race.txt. Now puts
    of one path take turns in the provider: the first creates, the others overwrite."""
    provider = GoogleDriveProvider.from_config(
        drive_config(provider_server, provider_server.make_folder())
    )
    provider.token_source = static_source(provider_server.issue_access())
    await provider.open()
    try:
        bodies = [f"writer {i}".encode() for i in range(5)]
        await asyncio.gather(*(provider.put("race.txt", body) for body in bodies))
        stored = await provider.get("race.txt")
        listed = [info.path for info in await provider.list()]
    finally:
        await provider.close()
    named = [f for f in provider_server.files.values() if f["name"] == "race.txt"]
    assert len(named) == 1
    assert listed == ["race.txt"]
    assert stored in bodies


async def test_a_download_longer_than_the_timeout_still_arrives(monkeypatch):
    """A file whose transfer takes longer than timeout_seconds, every read quick: before,
    'timed out waiting for 127.0.0.1: no complete answer within 1 s' on every try, so a
    file larger than the link carries in timeout_seconds could never be read. The
    timeout still bounds each read (and the whole of every metadata call)."""
    from collections.abc import AsyncIterator

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from jackfield.testing import LiveServer

    monkeypatch.setenv("JACKFIELD_EGRESS_ALLOWLIST", "127.0.0.1")

    async def files(request: Request) -> Response:
        return JSONResponse({"files": [{"id": "f1", "name": "big.bin", "size": "16"}]})

    async def media(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(16):
                yield b"x"
                await asyncio.sleep(0.1)

        return StreamingResponse(body())

    app = Starlette(routes=[Route("/drive/v3/files", files), Route("/drive/v3/files/f1", media)])
    with LiveServer(app, lifespan="off") as live:
        config = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "folder_id": "folder",
            "api_base": f"{live.url}/drive/v3",
            "upload_base": f"{live.url}/upload/drive/v3",
            "timeout_seconds": 1,
        }
        provider = GoogleDriveProvider.from_config(config)
        provider.token_source = static_source("at")
        assert await provider.get("big.bin") == b"x" * 16


@pytest.mark.parametrize("path", [["a.txt"], None])
async def test_delete_of_a_path_that_is_no_string_is_a_config_error(provider_server, path):
    """Before: delete(["a.txt"]) raised TypeError 'unhashable type' from the per-path
    lock, not the ConnectorConfigError every other operation gives."""
    provider = GoogleDriveProvider.from_config(
        drive_config(provider_server, provider_server.make_folder())
    )
    provider.token_source = static_source(provider_server.issue_access())
    with pytest.raises(ConnectorConfigError):
        await provider.delete(path)


@pytest.mark.parametrize(
    "answer",
    ["<html><body>Sign in to the guest network ({token})</body></html>", '{"files": ['],
    ids=["captive-portal", "cut-body"],
)
async def test_an_answer_that_is_not_json_is_retried_not_a_crash(provider_server, answer):
    """Before: a 200 whose body was a proxy's login page or a cut body raised
    JSONDecodeError out of the provider -- the runtime counted crashes and restarted the
    unit, messages went dead, Test said "unexpected error (JSONDecodeError)". Now it is a
    transient error naming the status, with the access token masked in the excerpt."""
    folder = provider_server.make_folder()
    provider = GoogleDriveProvider.from_config(drive_config(provider_server, folder))
    token = provider_server.issue_access()
    provider.token_source = static_source(token)
    await provider.put("kept.txt", b"before the proxy")
    provider_server.drive_not_json = answer

    result = await provider.test_connection()
    assert not result.success
    assert "HTTP 200" in result.message and "not a JSON object" in result.message
    assert "unexpected" not in result.message and token not in str(result)
    assert result.details and result.details["code"] == TransientError.code

    payload = {"path": "new.txt", "content": "x"}
    outcome = await provider.deliver(
        Envelope(
            envelope_id="01J0000000000000000000000",
            connector_id="c1",
            operation="put_object",
            payload=payload,
        )
    )
    assert isinstance(outcome, Retry) and outcome.retry_class is RetryClass.TRANSIENT
    assert token not in outcome.message
    for call in (provider.list(), provider.stat("kept.txt"), provider.get("kept.txt")):
        with pytest.raises(TransientError, match="not a JSON object"):
            await call

    provider_server.drive_not_json = None  # the proxy is gone: all works again
    await provider.put("kept.txt", b"after")
    assert await provider.get("kept.txt") == b"after"


async def test_a_size_that_is_no_number_is_shown_as_unknown(provider_server):
    """Before: a listing whose size was not an int64 string raised ValueError out of the
    provider (a crash of the unit); now such a size counts as unknown, like a missing
    one (Drive leaves it out for some files) and like a modifiedTime it cannot read."""
    provider = GoogleDriveProvider.from_config(
        drive_config(provider_server, provider_server.make_folder())
    )
    provider.token_source = static_source(provider_server.issue_access())
    await provider.put("a.txt", b"abc")
    provider_server.size_text = "lots"
    assert [(i.path, i.size) for i in await provider.list()] == [("a.txt", 0)]
    assert (await provider.stat("a.txt")).size == 0
    assert (await provider.put("a.txt", b"abcd")).size == 4
