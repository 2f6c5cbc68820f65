"""``jackfield serve`` as an operator runs it: where it listens, what it prints, how it
refuses an address it cannot use, and how it stops on SIGTERM while a browser keeps the
live event stream open."""

import base64
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx2
import pytest

JACKFIELD = shutil.which("jackfield", path=str(Path(os.sys.executable).parent))


@pytest.fixture
def env(tmp_path):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JACKFIELD_")}
    env.update(
        JACKFIELD_DATABASE_URL=f"sqlite:///{data}/jackfield.db", JACKFIELD_DATA_DIR=str(data)
    )
    return env


def run(env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([JACKFIELD, *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_port_in_use_is_a_one_line_error_and_nothing_starts(env, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = run(env, "serve", "--port", str(port))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(choose another --host or --port)"
    ]
    assert "Traceback" not in proc.stdout + proc.stderr
    # refused before the application was built: no database was created
    assert not (tmp_path / "data" / "jackfield.db").exists()


def test_an_unknown_host_and_an_impossible_port_are_refused(env):
    proc = run(env, "serve", "--host", "256.1.1.1", "--port", "0")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot listen on 256.1.1.1:0: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run(env, "serve", "--port", "99999")
    assert proc.returncode == 2  # a usage error
    assert "Traceback" not in proc.stderr and "65535" in proc.stderr


def test_db_upgrade_says_what_it_did(env, tmp_path):
    proc = run(env, "db", "upgrade", "--json")
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout)
    # it migrated a new database: not "up to date" (before, --json said true regardless)
    assert done["up_to_date"] is False and done["from"] is None and done["to"]
    again = run(env, "db", "upgrade")  # (before, both said "up to date")
    assert again.stdout.strip() == f"database is up to date (revision {done['to']})"
    assert json.loads(run(env, "db", "upgrade", "--json").stdout) == {
        "up_to_date": True,
        "from": done["to"],
        "to": done["to"],
    }

    # a database a newer version migrated (a rollback of the code): one clear line
    database = sqlite3.connect(tmp_path / "data" / "jackfield.db")
    with database:
        database.execute("UPDATE alembic_version SET version_num = '9999'")
    database.close()
    for command in (("db", "upgrade"), ("runtime", "status")):
        refused = run(env, *command)
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: the database is at revision 9999, which")
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_sigterm_ends_open_event_streams_and_stops_promptly(env):
    token = run(
        env, "users", "create", "ops@example.com", "--org", "acme", "--role", "admin", "--token"
    )
    assert token.returncode == 0, token.stderr
    token = token.stdout.strip().splitlines()[-1]
    serve = _serve(env)
    try:
        started = _started(serve)  # --port 0: the JSON says where it listens
        url = started["url"]
        assert started["health"] == f"{url}healthz"
        assert started["bootstrap_admin"] is None  # the database already had a user
        assert httpx2.get(started["health"]).json()["status"] == "ok"

        stream: dict[str, object] = {}
        opened = threading.Event()

        def listen() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx2.stream("GET", f"{url}api/events/stream", headers=headers, timeout=30) as r:
                opened.set()
                stream["text"] = "".join(r.iter_text())  # until the server ends it
            stream["ended"] = time.monotonic()

        reader = threading.Thread(target=listen)
        reader.start()
        assert opened.wait(10)
        time.sleep(0.3)
        signalled = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=30)
        stopped = time.monotonic()
        reader.join(10)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert serve.returncode in (0, -signal.SIGTERM), err
    # uvicorn would wait out its 5 s grace for the open stream, then cancel it with an error
    assert stopped - signalled < 3, err
    assert "ERROR" not in err and "Traceback" not in err, err
    assert ": connected" in str(stream["text"])  # the client got a clean end of stream
    assert float(stream["ended"]) - signalled < 3  # type: ignore[arg-type]


def test_the_access_log_masks_the_oauth_callbacks_code(env):
    """Before, the access log kept the full callback URL, authorization code included."""
    serve = _serve(env)
    try:
        url = _started(serve)["url"]
        callback = f"{url}api/connectors/oauth/callback/oauth2_http"
        answer = httpx2.get(callback, params={"code": "C0DE-7781-in-the-log", "state": "x:y"})
        assert answer.status_code in (400, 404)  # no such state: nothing is exchanged
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert "oauth2_http?code=********&state=********" in err, err
    assert "C0DE-7781" not in err


def _serve(env: dict[str, str]) -> subprocess.Popen[str]:
    """``jackfield serve`` on a free port, printing where it listens as JSON."""
    return subprocess.Popen(
        [JACKFIELD, "serve", "--port", "0", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _started(serve: subprocess.Popen[str]) -> dict[str, object]:
    """The JSON object ``serve --json`` prints once it is about to listen."""
    assert serve.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = serve.stdout.readline()
        assert line, f"serve exited: {serve.poll()}"
        lines.append(line)
        if line.startswith("}"):
            started = json.loads("".join(lines))
            break
    else:
        raise AssertionError("serve printed nothing")
    while True:  # it prints just before it starts listening
        try:
            if httpx2.get(str(started["health"])).status_code == 200:
                return started
        except httpx2.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not start"
        time.sleep(0.1)


def test_nodes_started_together_on_a_new_database_all_come_up(empty_database_url, tmp_path):
    """Three ``serve`` processes at once on an empty database (replicas of one
    deployment): one migrates, records the key check and creates the first admin, the
    others wait for it and start. Before, on PostgreSQL all but one exited with a
    duplicate-key traceback (migration, key check or bootstrap admin)."""
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    nodes = []
    for n in range(3):
        node_env = {k: v for k, v in os.environ.items() if not k.startswith("JACKFIELD_")}
        node_env.update(
            JACKFIELD_DATABASE_URL=empty_database_url,
            JACKFIELD_DATA_DIR=str(tmp_path / f"node{n}"),
            JACKFIELD_SECRET_KEY=key,
        )
        nodes.append(_serve(node_env))
    try:
        started = [_started(node) for node in nodes]
        admins = [s["bootstrap_admin"] for s in started if s["bootstrap_admin"]]
        assert len(admins) == 1 and admins[0]["password"], started  # shown by one node only
    finally:
        for node in nodes:
            node.send_signal(signal.SIGTERM)
        outputs = [node.communicate(timeout=30) for node in nodes]
    assert all("Traceback" not in err for _, err in outputs), outputs


STUCK_PLUGIN = '''
import time
from jackfield.kernel import MessagingProvider, OutboundMessage, PollingSource, SentMessage


class StuckProvider(MessagingProvider, PollingSource):
    """Its poll is a sync call that never returns (a vendor SDK without a timeout)."""

    provider_type = "stuck_test"
    display_name = "Stuck (tests)"
    poll_interval_seconds = 0.1

    def poll(self, cursor):
        time.sleep(3600)

    def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="s")
'''


def test_ctrl_c_stops_serve_although_a_provider_call_never_returns(env, tmp_path):
    """Before, the process logged its shutdown and then stayed alive for good: Python
    joined the worker thread stuck in the provider's poll. (Provider calls run on daemon
    threads now, so it ends at once, without the forced exit that once got it out.)"""
    plugins = tmp_path / "plugins"
    (plugins / "stuck_plug-0.1.dist-info").mkdir(parents=True)
    (plugins / "stuck_plug.py").write_text(STUCK_PLUGIN)
    (plugins / "stuck_plug-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: stuck-plug\nVersion: 0.1\n"
    )
    (plugins / "stuck_plug-0.1.dist-info" / "entry_points.txt").write_text(
        "[jackfield.providers]\nstuck_test = stuck_plug:StuckProvider\n"
    )
    env = {**env, "PYTHONPATH": str(plugins)}
    assert run(env, "orgs", "create", "acme").returncode == 0
    create = "connectors create --org acme --name stuck --category messaging --provider stuck_test"
    connector = json.loads(run(env, *create.split(), "--json").stdout)["id"]
    assert run(env, "connectors", "test", connector).returncode == 0
    assert run(env, "connectors", "activate", connector).returncode == 0
    serve = _serve(env)
    try:
        _started(serve)
        time.sleep(1.0)  # its unit runs: the poll is stuck in a worker thread
        signalled = time.monotonic()
        serve.send_signal(signal.SIGINT)
        _, err = serve.communicate(timeout=30)
        stopped = time.monotonic()
    finally:
        if serve.poll() is None:
            serve.kill()
    assert serve.returncode == 128 + signal.SIGINT, err
    assert stopped - signalled < 15, err
    assert "Finished server process" in err


def test_sighup_stops_serve_gracefully_as_sigterm_does(env, tmp_path):
    """Before, SIGHUP (the terminal or ssh session that started serve closed) killed it
    at once without a line in its log, and the message it was delivering stayed
    in_flight until its lease ran out."""
    assert run(env, "orgs", "create", "acme").returncode == 0
    create = "connectors create --org acme --name echo --category messaging --provider echo"
    connector = json.loads(run(env, *create.split(), "--json").stdout)["id"]
    assert run(env, "connectors", "test", connector).returncode == 0
    assert run(env, "connectors", "activate", connector).returncode == 0
    serve = _serve(env)
    try:
        _started(serve)
        sent = run(env, "sim", "send", connector, "slow", "--simulate", "slow:2000")
        assert sent.returncode == 0, sent.stderr
        database = tmp_path / "data" / "jackfield.db"
        deadline = time.monotonic() + 15
        while _states(database) != ["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _states(database) == ["in_flight"]
        serve.send_signal(signal.SIGHUP)
        _, err = serve.communicate(timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert serve.returncode == -signal.SIGHUP, err
    assert "SIGHUP received: stopping" in err and "Finished server process" in err, err
    assert _states(database) == ["delivered"]  # it finished within the shutdown's grace


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_while_postgresql_does_not_answer_commands_fail_and_sigterm_stops_serve(
    env, database_url, cuttable_proxy
):
    """A PostgreSQL that accepts connections and then says nothing (hung, or packets
    dropped): a command failed only after 131 s, and serve ignored SIGTERM for as long
    as the database did not answer (4.5 minutes). Now a command fails within seconds in
    one line, and serve stops within its grace (its in-flight work is recovered by
    leases, as after a kill)."""
    proxy, through_proxy = cuttable_proxy(database_url)
    env = {
        **env,
        "JACKFIELD_DATABASE_URL": through_proxy,
        "JACKFIELD_RUNTIME_SHUTDOWN_GRACE_SECONDS": "2",
    }
    assert run(env, "orgs", "create", "acme").returncode == 0
    create = "connectors create --org acme --name echo --category messaging --provider echo"
    connector = json.loads(run(env, *create.split(), "--json").stdout)["id"]
    assert run(env, "connectors", "test", connector).returncode == 0
    assert run(env, "connectors", "activate", connector).returncode == 0
    serve = _serve(env)
    try:
        _started(serve)
        assert run(env, "sim", "send", connector, "warm").returncode == 0
        time.sleep(1.5)  # the runtime's connections are open and idle
        proxy.hang()
        started = time.monotonic()
        status = run(env, "runtime", "status")
        assert time.monotonic() - started < 12
        assert status.returncode == 1
        assert status.stderr.startswith("error: cannot use the database: "), status.stderr
        assert len(status.stderr.strip().splitlines()) == 1, status.stderr

        time.sleep(1)
        signalled = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=60)
        stopped = time.monotonic()
    finally:
        proxy.hung = False
        if serve.poll() is None:
            serve.kill()
    # its grace: 5 s for requests, 2 s for deliveries, 5 s to exit
    assert stopped - signalled < 12 + 3, err
    assert "still stopping 12s after the signal (is the database answering?)" in err
    assert serve.returncode in (128 + signal.SIGTERM, -signal.SIGTERM), err


def test_serve_under_nohup_keeps_running_when_its_terminal_closes(env):
    """``nohup jackfield serve &`` is how a server outlives the ssh session that started
    it: nohup ignores SIGHUP. serve installed its own handler over that and stopped
    when the session closed."""
    serve = subprocess.Popen(
        ["nohup", JACKFIELD, "serve", "--port", "0", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = str(_started(serve)["health"])
        serve.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert serve.poll() is None, serve.communicate()[1]
        assert httpx2.get(health).status_code == 200
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert "SIGTERM received: stopping" in err and "SIGHUP" not in err, err


def _states(database: Path) -> list[str]:
    connection = sqlite3.connect(database)
    try:
        return [state for (state,) in connection.execute("SELECT state FROM outbox_messages")]
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"JACKFIELD_DATA_DIR": "{file}/data"}, "Not a directory"),
        ({"JACKFIELD_DATABASE_URL": "sqlite:///{file}/jf.db"}, "File exists"),
        ({"JACKFIELD_DATABASE_URL": "bogus://x"}, "JACKFIELD_DATABASE_URL cannot be used"),
        ({"JACKFIELD_SMTP_PORT": "twenty-five"}, "JACKFIELD_SMTP_PORT: Input should be"),
        # a webhook may be accepted up to a day after it was signed: its id must be kept
        ({"JACKFIELD_INBOX_RETENTION_HOURS": "2"}, "JACKFIELD_INBOX_RETENTION_HOURS: must be 0"),
        # an interval of 0 made every node prune in a loop that never waited (a core spun)
        (
            {"JACKFIELD_RETENTION_INTERVAL_SECONDS": "0"},
            "JACKFIELD_RETENTION_INTERVAL_SECONDS: Input should be greater than 0",
        ),
        # values that were accepted and then did nothing (or broke OAuth and webhook URLs)
        ({"JACKFIELD_LOG_FORMAT": "xml"}, "JACKFIELD_LOG_FORMAT: Input should be 'console'"),
        (
            {"JACKFIELD_EGRESS_ALLOWLIST": "10.0.0.0/8,10.0.0.0/33,api.example"},
            "'10.0.0.0/33' is not an IP address or CIDR network",
        ),
        ({"JACKFIELD_EGRESS_ALLOWLIST": "bad host!"}, "'bad host!' is not a host name"),
        ({"JACKFIELD_PUBLIC_URL": "notaurl"}, "JACKFIELD_PUBLIC_URL: must be an http://"),
        ({"JACKFIELD_SMTP_PORT": "0"}, "JACKFIELD_SMTP_PORT: Input should be greater than"),
        # a retention no date can reach back to stopped all pruning, the inbox's too
        ({"JACKFIELD_OUTBOX_RETENTION_HOURS": "inf"}, "JACKFIELD_OUTBOX_RETENTION_HOURS: "),
        ({"JACKFIELD_INBOX_RETENTION_HOURS": "1e8"}, "less than or equal to 876000"),
        # an unreachable server: psycopg's message has a second line ("Is the server ...")
        (
            {"JACKFIELD_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:9/x?connect_timeout=2"},
            "cannot use the database",
        ),
    ],
)
def test_an_unusable_setting_is_a_one_line_error(env, tmp_path, setting, expected):
    """Before, each printed a traceback (NotADirectoryError, FileExistsError, ...)."""
    blocker = tmp_path / "a-file"
    blocker.touch()
    env = {**env, **{k: v.format(file=blocker) for k, v in setting.items()}}
    commands = [("orgs", "create", "acme"), ("serve", "--port", "0")]
    if "JACKFIELD_DATA_DIR" not in setting:  # (db upgrade needs no data dir)
        commands.append(("db", "upgrade"))
    for command in commands:
        result = run(env, *command)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("error:") and expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///{file}", "file is not a database (JACKFIELD_DATABASE_URL names a file that"),
        ("postgresql://u:pw-s3cret@127.0.0.1:abc/db", "its host and port do not parse"),
        ("postgresql://u:pw-s3cret@[::1/db", "its host and port do not parse"),
        # a parameter the driver refuses before it connects (psycopg's ProgrammingError)
        (
            "postgresql://u:pw-s3cret@127.0.0.1:9/db?connect_timeout=abc",
            "bad value for connect_timeout: 'abc' (check JACKFIELD_DATABASE_URL)",
        ),
    ],
)
def test_a_database_url_that_cannot_work_is_a_one_line_error(env, tmp_path, url, expected):
    """Before, a file that is not a SQLite database (DatabaseError) and a port that is
    not a number (ValueError) printed a hundred lines of traceback, the URL in them."""
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("hello\n")
    env = {**env, "JACKFIELD_DATABASE_URL": url.format(file=not_a_database)}
    for command in (
        ("runtime", "status"),
        ("outbox", "list"),
        ("db", "upgrade"),
        ("serve", "--port", "0"),
    ):
        result = run(env, *command)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("error:") and expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "s3cret" not in result.stdout + result.stderr
    assert not_a_database.read_text() == "hello\n"


@pytest.mark.parametrize("public_url", [None, "https://jackfield.example"])
def test_serve_says_when_its_urls_point_elsewhere(env, public_url):
    """Webhook URLs, OAuth redirect URIs and the return from OAuth are built on
    JACKFIELD_PUBLIC_URL, whose default is port 8000's: a server started on another port
    without it showed webhook URLs and redirected browsers to a port nobody listens on."""
    if public_url:
        env = {**env, "JACKFIELD_PUBLIC_URL": public_url}  # behind a proxy: as configured
    serve = subprocess.Popen(
        [JACKFIELD, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(serve.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("Jackfield on") for line in lines):
            assert time.monotonic() < deadline and serve.poll() is None, lines
            time.sleep(0.05)
        url = next(line for line in lines if line.startswith("Jackfield on")).split()[2]
        while time.monotonic() < deadline:  # it answers once it printed all it prints
            try:
                if httpx2.get(f"{url}healthz").status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        reader.join(timeout=10)
    printed = " ".join(" ".join(lines).split())  # (the console wraps long lines)
    if public_url:
        assert "note:" not in printed
    else:
        expected = "note: webhook and OAuth URLs use JACKFIELD_PUBLIC_URL http://127.0.0.1:8000/"
        assert expected in printed, printed
