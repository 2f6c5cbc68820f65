"""The egress (SSRF) guard: address classes, odd spellings, allowlist, redirect hops."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from jackfield.integration import (
    EgressDeniedError,
    EgressPolicy,
    create_client,
    request,
)
from jackfield.kernel.envelope import Permanent, outcome_from_error
from jackfield.kernel.errors import ConnectionFailedError, PermanentError
from jackfield.testing import LiveServer

HITS: list[str] = []


async def hello(request: Request) -> Response:
    HITS.append(request.url.path)
    return JSONResponse({"hello": "world"})


async def redirect(request: Request) -> Response:
    HITS.append(request.url.path)
    return RedirectResponse(request.query_params["to"], status_code=302)


APP = Starlette(routes=[Route("/hello", hello), Route("/redirect", redirect)])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """uvicorn serving APP on a free 127.0.0.1 port in a background thread."""
    with LiveServer(APP, lifespan="off") as live:
        yield live.url


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JACKFIELD_EGRESS_ALLOWLIST", raising=False)
    HITS.clear()


DENIED = {
    # IPv4 literals
    "http://127.0.0.1/": "loopback",
    "http://127.0.0.2:8080/": "loopback",
    "http://10.1.2.3/": "private",
    "http://172.16.0.1/": "private",
    "http://192.168.1.1/": "private",
    "http://169.254.169.254/latest/meta-data/": "cloud metadata",
    "http://169.254.1.1/": "link-local",
    "http://0.0.0.0/": "unspecified",
    "http://100.64.0.1/": "CGNAT",
    "http://224.0.0.1/": "multicast",
    "http://240.0.0.1/": "private",
    "http://255.255.255.255/": "private",
    # IPv6 literals
    "http://[::1]/": "loopback",
    "http://[::]/": "unspecified",
    "http://[fe80::1]/": "link-local",
    "http://[fc00::1]/": "private",
    "http://[fd12:3456::1]/": "private",
    "http://[ff02::1]/": "multicast",
    "http://[fec0::1]/": "site-local",
    # IPv4 inside IPv6: mapped, 6to4, NAT64
    "http://[::ffff:127.0.0.1]/": "loopback",
    "http://[::ffff:10.0.0.1]/": "private",
    "http://[::ffff:169.254.169.254]/": "cloud metadata",
    "http://[2002:7f00:1::1]/": "loopback",
    "http://[2002:a9fe:a9fe::1]/": "cloud metadata",
    "http://[64:ff9b::7f00:1]/": "loopback",
    "http://[64:ff9b::a00:1]/": "private",
    # spellings resolvers accept
    "http://2130706433/": "loopback",
    "http://0x7f.1/": "loopback",
    "http://127.1/": "loopback",
    "http://017700000001/": "loopback",
    "http://0/": "unspecified",
    # names
    "http://localhost/": "loopback",
    "http://LOCALHOST:8000/admin": "loopback",
}


@pytest.mark.parametrize("url", sorted(DENIED))
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(EgressDeniedError) as info:
        EgressPolicy().check_url(url)
    exc = info.value
    assert DENIED[url] in exc.message
    assert exc.code == "egress_denied"
    assert exc.remediation == "add the host to JACKFIELD_EGRESS_ALLOWLIST if it is trusted"
    assert isinstance(exc, PermanentError)
    assert isinstance(outcome_from_error(exc), Permanent)


@pytest.mark.parametrize(
    "url", ["http://0x7f.1/", "http://[::ffff:10.0.0.1]/", "http://localhost/"]
)
async def test_async_check_refuses(url: str) -> None:
    with pytest.raises(EgressDeniedError):
        await EgressPolicy().check(url)


def test_message_names_host_and_resolved_address() -> None:
    with pytest.raises(EgressDeniedError) as info:
        EgressPolicy().check_url("http://localhost:9/")
    assert info.value.message == (
        "egress to localhost refused: it resolves to 127.0.0.1, a loopback address"
    )
    with pytest.raises(EgressDeniedError) as info:
        EgressPolicy().check_url("http://10.0.0.1/")
    assert info.value.message == "egress to 10.0.0.1 refused: 10.0.0.1 is a private address"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/file", "file:///etc/passwd", "gopher://example.com/", "ws://x.io"]
)
def test_other_schemes_refused(url: str) -> None:
    with pytest.raises(EgressDeniedError, match="scheme"):
        EgressPolicy(["example.com", "x.io"]).check_url(url)


@pytest.mark.parametrize(
    "url", ["http://8.8.8.8/", "https://1.1.1.1:8443/x", "http://[2606:4700:4700::1111]/"]
)
def test_public_literal_allowed(url: str) -> None:
    assert EgressPolicy().check_url(url)


def test_mapped_public_address_allowed() -> None:
    assert [str(ip) for ip in EgressPolicy().check_url("http://[::ffff:8.8.8.8]/")] == [
        "::ffff:808:808"
    ]


@pytest.mark.parametrize(
    ("allowlist", "url"),
    [
        (["127.0.0.1"], "http://127.0.0.1:8080/"),
        (["127.0.0.1"], "http://0x7f.1/"),  # the resolved address is what matches
        (["10.0.0.0/8"], "http://10.20.30.40/"),
        (["10.0.0.0/8"], "http://[::ffff:10.9.9.9]/"),
        (["fd00::/8"], "http://[fd12:3456::1]/"),
        (["[::1]"], "http://[::1]:8000/"),
        (["LocalHost"], "http://localhost:8000/"),
        ([" 169.254.169.254 ", ""], "http://169.254.169.254/"),
    ],
)
def test_allowlist_exceptions(allowlist: list[str], url: str) -> None:
    assert EgressPolicy(allowlist).check_url(url)


def test_allowlisted_hostname_matches_exactly_ignoring_case_and_root_dot() -> None:
    policy = EgressPolicy(["Internal.Example."])
    assert policy.host_allowlisted("INTERNAL.example")
    assert policy.host_allowlisted("internal.example.")
    assert not policy.host_allowlisted("api.internal.example")
    assert not policy.host_allowlisted("internal.example.com")


@pytest.mark.parametrize(
    ("allowlist", "url"),
    [
        (["127.0.0.1"], "http://127.0.0.2/"),
        (["10.0.0.0/16"], "http://10.1.0.1/"),
        (["example.com"], "http://localhost/"),
        (["127.0.0.1"], "http://[::1]/"),
    ],
)
def test_allowlist_is_narrow(allowlist: list[str], url: str) -> None:
    with pytest.raises(EgressDeniedError):
        EgressPolicy(allowlist).check_url(url)


def test_from_env_reads_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EgressDeniedError):
        EgressPolicy.from_env().check_url("http://10.0.0.1/")
    monkeypatch.setenv("JACKFIELD_EGRESS_ALLOWLIST", "example.internal, 10.0.0.0/8")
    policy = EgressPolicy.from_env()
    assert policy.check_url("http://10.0.0.1/")
    assert policy.host_allowlisted("Example.Internal")


def test_unresolvable_host_is_connection_failed() -> None:
    with pytest.raises(ConnectionFailedError, match="cannot resolve"):
        EgressPolicy().check_url("http://no-such-host.invalid/")


# -- through the transport, against a real server ------------------------------------
async def test_reachable_loopback_server_refused_without_allowlist(server: str) -> None:
    async with create_client(server) as client:
        with pytest.raises(EgressDeniedError, match="loopback"):
            await request(client, "GET", "/hello")
    assert HITS == []


async def test_allowlisted_server_reached(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACKFIELD_EGRESS_ALLOWLIST", "127.0.0.1")
    async with create_client(server) as client:
        response = await request(client, "GET", "/hello")
    assert response.json() == {"hello": "world"}


async def test_allowlisted_hostname_reached(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    async with create_client(f"http://localhost:{port}", policy=EgressPolicy(["localhost"])) as c:
        assert (await request(c, "GET", "/hello")).status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/hello",
        "http://127.0.0.2:{port}/hello",
        "http://10.0.0.1/",
        "http://[::ffff:7f00:2]:{port}/hello",
        "ftp://127.0.0.1/",
    ],
)
async def test_redirect_hop_is_checked(
    server: str, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JACKFIELD_EGRESS_ALLOWLIST", "127.0.0.1")
    port = server.rsplit(":", 1)[1]
    async with create_client(server) as client:
        with pytest.raises(EgressDeniedError):
            await request(client, "GET", "/redirect", params={"to": target.format(port=port)})
    assert HITS == ["/redirect"]  # the first hop was allowed, the second never left


async def test_redirect_to_allowlisted_hop_followed(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JACKFIELD_EGRESS_ALLOWLIST", "127.0.0.1")
    async with create_client(server) as client:
        response = await request(client, "GET", "/redirect", params={"to": "/hello"})
    assert response.json() == {"hello": "world"}
    assert HITS == ["/redirect", "/hello"]


class _BlindPreCheck(EgressPolicy):
    """Stands in for a rebinding resolver: the request-time check sees a harmless answer."""

    async def check(self, url: object, timeout: float | None = None) -> list[object]:  # type: ignore[override]
        return []


async def test_connection_is_checked_again_at_connect_time(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    async with create_client(f"http://localhost:{port}", policy=_BlindPreCheck()) as client:
        with pytest.raises(EgressDeniedError, match=r"resolves to 127\.0\.0\.1"):
            await request(client, "GET", "/hello")
    assert HITS == []
