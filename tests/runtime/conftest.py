"""Fixtures of the runtime tests: a Jackfield with fast runtime timings (so retries and
restarts take tenths of seconds), tenants with admin and user tokens, active echo
connectors, and a provider whose errors carry its secret (to check redaction)."""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx2
import pytest

from jackfield import ConfigField, connector_registry
from jackfield.app import Jackfield
from jackfield.kernel import MessagingProvider, OutboundMessage, PermanentError, SentMessage
from jackfield.service import Principal, Role
from jackfield.settings import Settings
from jackfield.store.models_outbox import RuntimeUnit

FAST = {
    "outbox_retry_base_seconds": 0.05,
    "outbox_retry_max_seconds": 0.5,
    "outbox_poll_seconds": 0.2,
    "outbox_lease_seconds": 5.0,
    "supervisor_backoff_base_seconds": 0.25,
    "supervisor_backoff_max_seconds": 5.0,
    "supervisor_poll_seconds": 0.2,
    "supervisor_crash_window_seconds": 60.0,
    "runtime_shutdown_grace_seconds": 2.0,
}


class LeakyProvider(MessagingProvider):
    """Like a careless vendor SDK: its errors quote the request and the API key."""

    provider_type: ClassVar[str] = "leaky_test"
    display_name: ClassVar[str] = "Leaky (tests)"

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [ConfigField("api_key", "API key", required=True, secret=True)]

    async def send_message(self, message: OutboundMessage) -> SentMessage:
        raise PermanentError(
            f"upstream refused {message.text!r} {message.metadata} (key {self.config['api_key']})"
        )


if not connector_registry.is_registered("messaging", "leaky_test"):
    connector_registry.register(LeakyProvider)


def fast_settings(database_url: str, data_dir: Path, **extra: Any) -> Settings:
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return Settings(
        database_url=database_url, data_dir=data_dir, **{"secret_key": key, **FAST, **extra}
    )


@pytest.fixture
def make_jf(tmp_path: Path) -> Iterator[Callable[..., Jackfield]]:
    """``make_jf(database_url, **settings)``: a Jackfield with fast runtime timings (a
    second one on the same database needs the first one's ``secret_key``)."""
    made: list[Jackfield] = []

    def make(database_url: str, **extra: Any) -> Jackfield:
        app = Jackfield(settings=fast_settings(database_url, tmp_path / "data", **extra))
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


@pytest.fixture
def jf(database_url: str, make_jf: Callable[..., Jackfield]) -> Jackfield:
    """Overrides the suite's ``jf``: the same, with fast runtime timings."""
    return make_jf(database_url)


@dataclass
class Tenant:
    org_id: str
    admin: Principal
    admin_token: str
    user_token: str


def new_tenant(jf: Jackfield) -> Tenant:
    """An organization of its own with an admin and a user, each with an API token."""
    name = f"org-{uuid.uuid4().hex[:8]}"
    admin_view, admin_token = jf.accounts.create_user(
        f"admin-{name}@example.com", name, "admin", with_token=True
    )
    _, user_token = jf.accounts.create_user(
        f"user-{name}@example.com", name, "user", with_token=True
    )
    assert admin_token and user_token
    org_id = jf.accounts.org_id(name)
    return Tenant(
        org_id, Principal(org_id, admin_view["email"], Role.ADMIN), admin_token, user_token
    )


@pytest.fixture
def tenant(jf: Jackfield) -> Tenant:
    return new_tenant(jf)


@pytest.fixture
def other_tenant(jf: Jackfield) -> Tenant:
    return new_tenant(jf)


def active_connector(
    jf: Jackfield,
    who: Principal,
    provider_type: str = "echo",
    *,
    enable: bool = True,
    category: str = "messaging",
    **config: Any,
) -> str:
    """A connector of ``who``'s organization (messaging unless ``category`` says
    otherwise): created, tested, active."""
    created = jf.connectors.create(
        who,
        name=f"{provider_type}-{uuid.uuid4().hex[:6]}",
        category=category,
        provider_type=provider_type,
        config=config,
    )
    assert jf.connectors.test(who, created["id"])["success"]
    if enable:
        jf.connectors.set_enabled(who, created["id"], True)
    return str(created["id"])


@pytest.fixture
def make_connector(jf: Jackfield) -> Callable[..., str]:
    """``make_connector(who, provider_type="echo", **config)``: ``active_connector`` of
    the test's ``jf``."""
    return functools.partial(active_connector, jf)


@pytest.fixture
def client() -> Callable[..., httpx2.Client]:
    """``client(url, token)``: an HTTP client for the live server."""

    def make(url: str, token: str | None = None) -> httpx2.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx2.Client(base_url=url, headers=headers, timeout=30)

    return make


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``wait_until(fn, timeout=10)``: poll ``fn`` until it returns something truthy."""

    def wait(fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
            time.sleep(interval)

    return wait


# -- ``jackfield serve`` as a child process (reliability and several-node tests) ------
JACKFIELD = str(Path(sys.executable).with_name("jackfield"))


class Server:
    """``jackfield serve`` as a child process that can be killed and started again."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [JACKFIELD, "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx2.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("the server did not come up:\n" + self.log.read_text()[-3000:])

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


@pytest.fixture
def serve_process(
    free_port: Callable[[], int],
) -> Iterator[Callable[[dict[str, str], Path], Server]]:
    """``serve_process(env, log)``: a ``Server`` on a free port (not started yet); any
    still running at the end of the test is killed."""
    made: list[Server] = []

    def make(env: dict[str, str], log: Path) -> Server:
        made.append(Server(env, free_port(), log))
        return made[-1]

    yield make
    for server in made:
        if server.process is not None and server.process.poll() is None:
            server.kill()


@pytest.fixture
def serve_setup() -> Callable[..., tuple[str, str, dict[str, str]]]:
    """``serve_setup(database_url, data_dir, SETTING=value, ...)``: an organization
    ``acme``, an admin token and an active echo connector taking 5 ms per send, and the
    environment for ``jackfield serve`` on that database (with ``JACKFIELD_<SETTING>``
    for each keyword): (token, connector id, environment)."""

    def setup(
        database_url: str, data_dir: Path, **settings: str
    ) -> tuple[str, str, dict[str, str]]:
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        jf = Jackfield(
            settings=Settings(database_url=database_url, data_dir=data_dir, secret_key=key)
        )
        try:
            _, token = jf.accounts.create_user("ops@example.com", "acme", "admin", with_token=True)
            who = Principal(jf.accounts.org_id("acme"), "ops@example.com", Role.ADMIN)
            created = jf.connectors.create(
                who,
                name="echo",
                category="messaging",
                provider_type="echo",
                config={"delay_ms": 5},
            )
            jf.connectors.test(who, created["id"])
            jf.connectors.set_enabled(who, created["id"], True)
        finally:
            jf.close()
        assert token
        env = {
            **os.environ,
            "JACKFIELD_DATABASE_URL": database_url,
            "JACKFIELD_DATA_DIR": str(data_dir),
            "JACKFIELD_SECRET_KEY": key,
            "JACKFIELD_ADMIN_PASSWORD": "not-used-here-123",
            **{f"JACKFIELD_{name}": value for name, value in settings.items()},
        }
        return token, str(created["id"]), env

    return setup


# -- helpers of several test files ---------------------------------------------------------
def plant_unit(
    jf: Jackfield, connector_id: str, node: str, organization_id: str, **columns: Any
) -> None:
    """A unit row as ``node`` would have written it (a node gone, far away or ended):
    ``running`` and ``ready`` with no restarts, unless ``columns`` say otherwise."""
    row = {"liveness": "running", "readiness": "ready", "restart_count": 0, **columns}
    with jf.db.transaction() as s:
        s.add(
            RuntimeUnit(
                connector_id=connector_id,
                node=node,
                organization_id=organization_id,
                restart_seen=0,
                **row,
            )
        )


def runtime_unit(http: Any, connector_id: str) -> dict[str, Any] | None:
    """The connector's row of ``GET /api/runtime`` (``None`` while it has none)."""
    items = http.get("/api/runtime").json()["items"]
    return next((u for u in items if u["connector_id"] == connector_id), None)


def inbox_event_ids(http: Any, connector_id: str) -> list[str]:
    """The event ids of the connector's inbox, sorted (``GET .../events``)."""
    items = http.get(f"/api/connectors/{connector_id}/events").json()["items"]
    return sorted(e["event_id"] for e in items)


async def eventually(
    read: Callable[[], Any], condition: Callable[[Any], bool], timeout: float = 30.0
) -> Any:
    """``read()`` (in a thread) until ``condition`` holds of its value, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(read)
        if condition(value):
            return value
        assert time.monotonic() < deadline, f"condition not met in time (last: {value!r})"
        await asyncio.sleep(0.05)
