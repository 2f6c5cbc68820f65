"""An API write is authenticated before its body is read: an anonymous caller (or one
with a made-up token) hears 401 at once, whatever it sends, on every write route.

Before, FastAPI read and parsed the body first: 16 parallel anonymous 16 MiB bodies took
the server to about 1 GB of memory, and a malformed anonymous body was answered 422."""

from __future__ import annotations

import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx2
from fastapi.routing import iter_route_contexts

from jackfield.api import create_app

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
ANNOUNCED = 512 * 1024  # under every route's body limit (a 413 would come first)


def write_routes(jf: Any) -> list[tuple[str, str]]:
    app = create_app(jf, start_runtime=False)
    found = []
    for route in iter_route_contexts(app.routes):
        path = getattr(route, "path", None) or ""
        for method in sorted((getattr(route, "methods", None) or set()) & WRITES):
            if path.startswith("/api/"):
                found.append((method, path.replace("{", "").replace("}", "")))
    return found


def status_before_the_body(url: str, method: str, path: str, token: str | None) -> int:
    """Announce a 512 KiB body, send 10 bytes of it, and read the answer: a server that
    waits for the body first never answers (the socket times out)."""
    parts = urlsplit(url)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {ANNOUNCED}\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(head.encode() + b'{"payload"')
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    return int(status_line.split()[1])


def test_every_api_write_refuses_an_anonymous_body_before_reading_it(jf, api):
    routes = write_routes(jf)
    assert ("POST", "/api/connectors/connector_id/messages") in routes
    for method, path in routes:
        for token in (None, "made-up-token"):
            assert status_before_the_body(api.url, method, path, token) == 401, (method, path)


def test_a_malformed_anonymous_body_is_401_not_422(api):
    for body in (b"not json", b"[[[[", b"[" * 10_000):
        response = httpx2.post(
            f"{api.url}/api/connectors", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthenticated"


def test_a_valid_token_still_writes(jf, api):
    _, token = jf.accounts.create_user(
        f"w-{uuid.uuid4().hex[:6]}@x.io", f"w-{uuid.uuid4().hex[:6]}", "admin", with_token=True
    )
    response = httpx2.post(
        f"{api.url}/api/connectors",
        json={"name": "written", "category": "messaging", "provider_type": "echo"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
