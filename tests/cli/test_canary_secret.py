"""A canary secret never appears in plaintext: not in the database files, not in a log
line, not in any CLI output, not in the served API."""

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx2
import pytest

from jackfield import ConnectionTestResult, connector_registry
from jackfield.kernel import ConfigField, QueueProvider
from jackfield.logs import configure_logging
from jackfield.service import Principal

CANARY = "canary-7f3a9c1e-do-not-leak"
JACKFIELD = shutil.which("jackfield", path=str(Path(os.sys.executable).parent))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_canary_never_appears_in_db_logs_or_cli_output(tmp_path):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JACKFIELD_")}
    env.update(
        JACKFIELD_DATABASE_URL=f"sqlite:///{data}/jackfield.db",
        JACKFIELD_DATA_DIR=str(data),
        JACKFIELD_LOG_FORMAT="json",
        JACKFIELD_ADMIN_PASSWORD="admin-password-1",
    )
    outputs: list[str] = []

    def run(*args: str, expect: int = 0) -> str:
        proc = subprocess.run(
            [JACKFIELD, *args], env=env, capture_output=True, text=True, timeout=60
        )
        outputs.extend([proc.stdout, proc.stderr])
        assert proc.returncode == expect, proc.stderr
        return proc.stdout

    run("orgs", "create", "acme")
    closed_port = str(free_port())
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"password": CANARY}))
    conn = json.loads(
        run(
            *"connectors create --org acme --name mail".split(),
            *"--category email --provider smtp".split(),
            *["--param", "host=127.0.0.1", "--param", f"port={closed_port}"],
            *["--param", "username=ann", "--param", f"password={CANARY}"],
            "--json",
        )
    )
    cid = conn["id"]
    for args in (
        ("connectors", "show", cid),
        ("connectors", "config", cid),
        ("connectors", "list"),
        ("connectors", "update", cid, "--param", "starttls=false"),
    ):
        run(*args)
        run(*args, "--json")
    run("connectors", "test", cid, "--json", expect=1)  # nothing listens: the test fails
    run("connectors", "import-config", cid, str(creds), expect=1)  # host missing: refused
    run("keys", "rotate")

    port = free_port()
    serve = subprocess.Popen(
        [JACKFIELD, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline and serve.poll() is None, "serve did not start"
            time.sleep(0.2)
        assert httpx2.get(f"http://127.0.0.1:{port}/readyz").json()["database"] == "reachable"
    finally:
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=30)
        outputs.extend([out, err])
    # a graceful stop: uvicorn re-raises SIGTERM after shutting down, as Unix daemons do
    assert serve.returncode in (0, -signal.SIGTERM), err

    everything = "\n".join(outputs)
    assert CANARY not in everything
    assert "********" in everything  # the mask is what was shown
    for path in data.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


class LeakyQueue(QueueProvider):
    """A careless provider: logs its secret and fails with it in the message."""

    provider_type = "leaky_test"
    display_name = "Leaky (tests)"

    @classmethod
    def config_schema(cls):
        return [ConfigField("password", "Password", secret=True, required=True)]

    def test_connection(self) -> ConnectionTestResult:
        logging.getLogger("leaky").warning("connecting with password %s", self.config["password"])
        raise RuntimeError(f"boom: server rejected {self.config['password']}")

    def publish(self, topic, body, headers=None):  # pragma: no cover
        raise NotImplementedError


@pytest.fixture
def jackfield_logging():
    """Remove the handler ``configure_logging`` installs: it writes to this test's stderr."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_jackfield", False):
            root.removeHandler(handler)


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_log_lines_and_errors_are_redacted(jf, admin, capfd, log_format, jackfield_logging):
    if not connector_registry.is_registered("queue", "leaky_test"):
        connector_registry.register(LeakyQueue)
    configure_logging(log_format)
    created = jf.connectors.create(
        admin,
        name="leaky",
        category="queue",
        provider_type="leaky_test",
        params=[{"key": "password", "value": CANARY}],
    )
    result = jf.connectors.test(admin, created["id"])
    assert result["success"] is False and CANARY not in json.dumps(result)
    err = capfd.readouterr().err
    assert "connecting with password ********" in err and "boom: server rejected ********" in err
    assert CANARY not in err
    with pytest.raises(Exception):  # noqa: B017 - any refusal; the message must not leak
        jf.connectors.create(
            Principal(admin.organization_id, "u", admin.role),
            name="",
            category="queue",
            provider_type="leaky_test",
            params=[{"key": "password", "value": CANARY}],
        )
