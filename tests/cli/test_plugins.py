"""The ``jackfield`` command with a broken third-party plugin installed."""

import json
import os
import shutil
import subprocess
from pathlib import Path

JACKFIELD = shutil.which("jackfield", path=str(Path(os.sys.executable).parent))


def test_a_plugin_failing_at_import_does_not_break_the_command(tmp_path):
    plugins = tmp_path / "plugins"
    (plugins / "boom_plug-0.1.dist-info").mkdir(parents=True)
    (plugins / "boom_plug.py").write_text("import os\nAPI_KEY = os.environ['ACME_UNSET_KEY']\n")
    (plugins / "boom_plug-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: boom-plug\nVersion: 0.1\n"
    )
    (plugins / "boom_plug-0.1.dist-info" / "entry_points.txt").write_text(
        "[jackfield.providers]\nboom_runtime = boom_plug:X\n"
    )
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JACKFIELD_")}
    path = [str(plugins), *filter(None, [env.get("PYTHONPATH")])]
    env.update(
        JACKFIELD_DATABASE_URL=f"sqlite:///{data}/jackfield.db",
        JACKFIELD_DATA_DIR=str(data),
        PYTHONPATH=os.pathsep.join(path),
    )
    proc = subprocess.run(
        [JACKFIELD, "providers", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "echo" in proc.stdout
    assert "boom_runtime (boom_plug:X) unavailable: KeyError: 'ACME_UNSET_KEY'" in proc.stderr


def test_a_provider_crashing_in_its_test_is_one_line_in_the_cli(tmp_path):
    """``connectors test`` printed the crash's full traceback (its ERROR log) to stderr;
    a command's errors are one line. ``serve`` keeps tracebacks in its log."""
    plugins = tmp_path / "plugins"
    (plugins / "flaky_plug-0.1.dist-info").mkdir(parents=True)
    (plugins / "flaky_plug.py").write_text(
        "from jackfield.kernel import MessagingProvider\n"
        "class Flaky(MessagingProvider):\n"
        "    provider_type = 'flaky'\n"
        "    display_name = 'Flaky'\n"
        "    @classmethod\n"
        "    def config_schema(cls):\n"
        "        return []\n"
        "    def test_connection(self):\n"
        "        raise RuntimeError('kaboom in the vendor SDK')\n"
        "    async def send_message(self, message):\n"
        "        raise NotImplementedError\n"
    )
    (plugins / "flaky_plug-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: flaky-plug\nVersion: 0.1\n"
    )
    (plugins / "flaky_plug-0.1.dist-info" / "entry_points.txt").write_text(
        "[jackfield.providers]\nflaky = flaky_plug:Flaky\n"
    )
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JACKFIELD_")}
    env.update(
        JACKFIELD_DATABASE_URL=f"sqlite:///{data}/jackfield.db",
        JACKFIELD_DATA_DIR=str(data),
        PYTHONPATH=os.pathsep.join([str(plugins), *filter(None, [env.get("PYTHONPATH")])]),
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [JACKFIELD, *args], env=env, capture_output=True, text=True, timeout=60
        )

    assert run("orgs", "create", "acme").returncode == 0
    created = run(
        "connectors",
        "create",
        "--org",
        "acme",
        "--name",
        "f",
        "--category",
        "messaging",
        "--provider",
        "flaky",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    connector = json.loads(created.stdout)["id"]
    tested = run("connectors", "test", connector)
    assert "Traceback" not in tested.stderr
    crash = [line for line in tested.stderr.splitlines() if "kaboom" in line]
    assert len(crash) == 1 and "RuntimeError: kaboom in the vendor SDK" in crash[0], tested.stderr
