"""Shared fixtures: a Jackfield on SQLite and on PostgreSQL, organizations, principals.

Tests that talk to a server (PostgreSQL, Redis, RabbitMQ, ...) use ``require_service``:
outside CI an unreachable service skips the test with the reason; with ``CI=true`` it
fails, so a green CI run means the real server was used.
"""

from __future__ import annotations

import base64
import os
import socket
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from jackfield import ConfigField, ConnectionTestResult, connector_registry
from jackfield.app import Jackfield
from jackfield.kernel import AuthError, FieldType, HttpProvider
from jackfield.service import Principal, Role
from jackfield.settings import Settings
from jackfield.store import Base, create_db_engine
from jackfield.store.tables import load_all_models
from jackfield.testing import LiveServer

PG_ADMIN_URL = os.environ.get(
    "JACKFIELD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


class VaultProvider(HttpProvider):
    """A provider for service tests: a secret token, a secret file, a required url.

    Its test fails with the token inside the error message, as careless vendor errors
    do, so the tests can check that redaction catches it."""

    provider_type = "vault_test"
    display_name = "Vault (tests)"

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [
            ConfigField("url", "URL", required=True),
            ConfigField("token", "Token", secret=True),
            ConfigField("credentials", "Credentials file", secret=True, type=FieldType.FILE),
            ConfigField("retries", "Retries", type=FieldType.INTEGER, default=3),
        ]

    @classmethod
    def normalize_import_json(cls, data: dict) -> dict:
        # like a Google "installed app" credentials file: {"installed": {...}}
        inner = data.get("installed", data)
        return {"url": inner["url"], "token": inner.get("token", "")}

    def test_connection(self) -> ConnectionTestResult:
        if self.config.get("token") != "good":
            raise AuthError(
                f"token {self.config.get('token')} was rejected by {self.config['url']}"
            )
        return ConnectionTestResult(True, "vault reachable", {"url": self.config["url"]})

    def request(self, request):  # pragma: no cover - not used by these tests
        raise NotImplementedError


if not connector_registry.is_registered("http", "vault_test"):
    connector_registry.register(VaultProvider)


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: the real server is required)")
    pytest.skip(message)


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """``free_port()``: a loopback port nobody listens on (for servers a test starts)."""
    return free_port


@pytest.fixture
def smtp_loopback() -> Iterator[Callable[[Any], int]]:
    """``smtp_loopback(handler)``: an aiosmtpd server on a free loopback port that hands
    each message to ``handler`` (``handle_DATA``); returns its port, stopped after the
    test."""
    from aiosmtpd.controller import Controller

    started: list[Any] = []

    def start(handler: Any) -> int:
        controller = Controller(handler, hostname="127.0.0.1", port=free_port())
        controller.start()
        started.append(controller)
        return int(controller.port)

    yield start
    for controller in started:
        controller.stop()


class CuttableProxy:
    """A TCP proxy on loopback to ``target`` that a test can ``cut`` (every connection
    through it closed, new ones refused: the port is not listened on) and ``restore``
    (on the same port): a network outage between Jackfield and its database server.
    Or ``hang`` it (``hung = False`` again to resume): connections stay open and new
    ones are taken, but nothing goes through -- a server that stopped answering."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.hung = False
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self.restore()

    def url(self, database_url: str) -> str:
        """``database_url`` with this proxy as its host and port."""
        parsed = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return parsed.render_as_string(hide_password=False)

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            _close(sock)

    def hang(self) -> None:
        self.hung = True

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            if self.hung:  # the kernel still completes new connections (the backlog)
                time.sleep(0.05)
                continue
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.hung and source in self._sockets:
                    time.sleep(0.05)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets -= {source, sink}
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture
def cuttable_proxy() -> Iterator[Callable[[str], tuple[CuttableProxy, str]]]:
    """``cuttable_proxy(database_url)``: a ``CuttableProxy`` to that database's server,
    and the URL that reaches the database through it."""
    made: list[CuttableProxy] = []

    def make(database_url: str) -> tuple[CuttableProxy, str]:
        parsed = make_url(database_url)
        proxy = CuttableProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
        made.append(proxy)
        return proxy, proxy.url(database_url)

    yield make
    for proxy in made:
        proxy.cut()


@contextmanager
def new_pg_database() -> Iterator[str]:
    """The URL of an empty PostgreSQL database, dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"jf_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of its own for this test session, migrated once."""
    with new_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with new_pg_database() as url:
        yield url


def _truncate_pg(url: str) -> None:
    load_all_models()
    engine = create_db_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs twice: on SQLite (a fresh file) and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jackfield.db'}"
        return
    url = request.getfixturevalue("pg_database")
    if _has_schema(url):
        _truncate_pg(url)
    yield url
    _truncate_pg(url)


def _has_schema(url: str) -> bool:
    engine = create_db_engine(url)
    with engine.connect() as conn:
        found = conn.execute(text("SELECT to_regclass('public.connectors')")).scalar()
    engine.dispose()
    return found is not None


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jackfield.db'}"


def make_settings(database_url: str, data_dir: Path, **extra: object) -> Settings:
    """Settings of a test's application; connectors may use directories beside its data
    directory (``tmp_path``), as an operator would allow a storage area."""
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        secret_key=extra.pop("secret_key", new_key()),
        directory_allowlist=extra.pop("directory_allowlist", str(data_dir.parent)),
        **extra,
    )


@pytest.fixture
def jf(database_url: str, tmp_path: Path) -> Iterator[Jackfield]:
    app = Jackfield(settings=make_settings(database_url, tmp_path / "data"))
    yield app
    app.close()


@pytest.fixture
def org(jf: Jackfield) -> str:
    return str(jf.accounts.create_org(f"org-{uuid.uuid4().hex[:6]}")["id"])


@pytest.fixture
def admin(org: str) -> Principal:
    return Principal(org, "admin@example.com", Role.ADMIN)


@pytest.fixture
def other_admin(jf: Jackfield) -> Principal:
    other = jf.accounts.create_org(f"other-{uuid.uuid4().hex[:6]}")["id"]
    return Principal(other, "eve@example.com", Role.ADMIN)


@pytest.fixture
def api(jf: Jackfield) -> Iterator[LiveServer]:
    """The Jackfield REST API of ``jf`` served on a free loopback port."""
    from jackfield.api import create_app

    with LiveServer(create_app(jf)) as server:
        yield server


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``install_plugin(dist, {module: code}, {entry_point: target})`` puts a plugin on sys.path,
    ahead of Jackfield's own entry points; its modules are forgotten afterwards."""
    before = set(sys.modules)

    def _install(dist: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
        root = tmp_path / dist
        info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir(parents=True)
        for name, code in modules.items():
            (root / f"{name}.py").write_text(textwrap.dedent(code))
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[jackfield.providers]\n{lines}")
        monkeypatch.syspath_prepend(str(root))

    yield _install
    for name in set(sys.modules) - before:
        if not name.startswith("jackfield"):
            del sys.modules[name]


@pytest.fixture
def admin_token(jf: Jackfield) -> str:
    _, token = jf.accounts.create_user(
        f"admin-{uuid.uuid4().hex[:6]}@example.com",
        f"acme-{uuid.uuid4().hex[:6]}",
        "admin",
        with_token=True,
    )
    assert token
    return token
