"""Long connector values through the real ``jackfield`` command: the service refuses a
value over its limit (nothing is stored), and the human output of a long value that is
allowed comes back at once, shortened (rich took minutes to fold one long word)."""

import json
import subprocess

import pytest

from .test_serve import JACKFIELD, env, run  # noqa: F401 - the serve tests' fixture and runner


@pytest.fixture
def acme(env):  # noqa: F811
    assert run(env, "orgs", "create", "acme").returncode == 0
    return env


def create(environ, config_file, *extra: str, timeout: float = 60):
    command = ["connectors", "create", "--org", "acme", "--name", "m1", "--category", "email"]
    command += ["--provider", "smtp", "--config-file", str(config_file), *extra]
    return subprocess.run(
        [JACKFIELD, *command], env=environ, capture_output=True, text=True, timeout=timeout
    )


def test_a_value_over_64_kib_is_refused_naming_the_key_and_nothing_is_stored(acme, tmp_path):
    config = tmp_path / "m1.json"
    config.write_text(json.dumps({"host": "a.com", "x": "y" * 1_000_000}))
    proc = create(acme, config)
    assert proc.returncode == 1, proc.stderr  # before: 0, and the connector was stored
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: param 'x' is too large: the limit is 64 KiB per text value")
    assert json.loads(run(acme, "connectors", "list", "--json").stdout)["items"] == []


def test_a_long_value_is_shown_shortened_at_once(acme, tmp_path):
    config = tmp_path / "m1.json"
    config.write_text(json.dumps({"host": "a.com", "x": "y" * 64 * 1024}))  # the most allowed
    proc = create(acme, config, timeout=20)  # before: still printing after minutes
    assert proc.returncode == 0, proc.stderr
    shown = "".join(proc.stdout.split())  # (rich folds it to the terminal's width)
    assert f"x={'y' * 500}...(65536characters;--jsonshowsthemall)" in shown
    assert "y" * 501 not in shown
    connector_id = json.loads(run(acme, "connectors", "list", "--json").stdout)["items"][0]["id"]
    show = subprocess.run(
        [JACKFIELD, "connectors", "show", connector_id],
        env=acme,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert "(65536 characters; --json shows them all)" in show.stdout
    whole = json.loads(run(acme, "connectors", "show", connector_id, "--json").stdout)
    assert {p["key"]: p["value"] for p in whole["params"]}["x"] == "y" * 64 * 1024
