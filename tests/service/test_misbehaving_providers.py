"""Providers that break their contract in a connection test or a poll: the framework
answers with a failed test naming the provider's bug, and never hangs or dies with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def run_app(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as an application's main module, with an embedded Jackfield ``jf`` on
    SQLite in ``tmp_path`` and its org ``who``; fails if the process does not end."""
    prelude = f"""\
        import asyncio, json, time
        from jackfield import ConnectionTestResult, Jackfield, connector_registry
        from jackfield.kernel import InboundEvent, MessagingProvider, PollingSource
        from jackfield.service import Principal

        data = {str(tmp_path / "data")!r}
        jf = Jackfield(database_url=f"sqlite:///{{data}}/app.db", data_dir=data)
        who = Principal.operator(jf.accounts.create_org("acme")["id"], actor="my-app")
    """
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(prelude) + textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JACKFIELD_")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    try:
        return subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=40
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the application did not exit; it printed: {exc.stdout!r} {exc.stderr!r}")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_connection_test_that_hangs_does_not_keep_the_process_from_exiting(tmp_path, kind):
    """Before, ``jackfield connectors test`` printed the timeout's result and then never
    exited: Python joined the thread still running the test at exit."""
    hang = (
        "time.sleep(3600)"
        if kind == "sync"
        else "return asyncio.sleep(3600)  # an awaitable that never ends"
    )
    done = run_app(
        tmp_path,
        f"""\
        class Hanging(MessagingProvider):
            provider_type = "hanging"
            display_name = "Hanging"

            def test_connection(self):
                {hang}

            def send_message(self, message):
                return None

        connector_registry.register(Hanging)
        created = jf.connectors.create(who, name="h", category="messaging", provider_type="hanging")
        jf.connectors.test_timeout_seconds = 0.5
        print(json.dumps(jf.connectors.test(who, created["id"])), flush=True)
        jf.close()
        """,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["success"] is False and result["status"] == "error"
    assert result["message"] == "the connection test did not finish within 0.5 s"


def test_an_embedded_app_exits_after_stop_although_a_poll_hangs(tmp_path):
    """README: a poll that never returns holds one thread. Before, that thread also kept
    the application from exiting after ``jf.stop()`` and ``jf.close()``."""
    done = run_app(
        tmp_path,
        """\
        class Stuck(MessagingProvider, PollingSource):
            provider_type = "stuck_poll"
            display_name = "Stuck poll"
            poll_interval_seconds = 0.05

            def test_connection(self):
                return ConnectionTestResult(True, "fine")

            def poll(self, cursor):
                print("polling", flush=True)
                time.sleep(3600)  # an HTTP call without a timeout

            def send_message(self, message):
                return None

        connector_registry.register(Stuck)
        created = jf.connectors.create(who, name="s", category="messaging", provider_type="stuck_poll")
        jf.connectors.test(who, created["id"])
        jf.connectors.set_enabled(who, created["id"], True)

        async def main():
            await jf.start()
            await asyncio.sleep(2)
            await jf.stop()

        asyncio.run(main())
        jf.close()
        print("stopped", flush=True)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["polling", "stopped"]
