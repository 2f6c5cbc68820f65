"""The ``jackfield`` command with a broken third-party plugin installed."""

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

JACKFIELD = shutil.which("jackfield", path=str(Path(os.sys.executable).parent))
Run = Callable[..., subprocess.CompletedProcess[str]]


def with_plugin(tmp_path: Path, module: str, code: str, entry_point: str) -> Run:
    """``run(*args)`` of the ``jackfield`` command with a plugin distribution of one
    module on its path (a dist-info with the entry point, as pip would install it)."""
    plugins = tmp_path / "plugins"
    info = plugins / f"{module}-0.1.dist-info"
    info.mkdir(parents=True)
    (plugins / f"{module}.py").write_text(code)
    name = module.replace("_", "-")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[jackfield.providers]\n{entry_point}\n")
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

    return run


def test_a_plugin_failing_at_import_does_not_break_the_command(tmp_path):
    code = "import os\nAPI_KEY = os.environ['ACME_UNSET_KEY']\n"
    run = with_plugin(tmp_path, "boom_plug", code, "boom_runtime = boom_plug:X")
    proc = run("providers", "list")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "echo" in proc.stdout
    assert "boom_runtime (boom_plug:X) unavailable: KeyError: 'ACME_UNSET_KEY'" in proc.stderr


FLAKY = """\
from jackfield.kernel import MessagingProvider


class Flaky(MessagingProvider):
    provider_type = "flaky"
    display_name = "Flaky"

    @classmethod
    def config_schema(cls):
        return []

    def test_connection(self):
        raise RuntimeError("kaboom in the vendor SDK")

    async def send_message(self, message):
        raise NotImplementedError
"""


def test_a_provider_crashing_in_its_test_is_one_line_in_the_cli(tmp_path):
    """``connectors test`` printed the crash's full traceback (its ERROR log) to stderr;
    a command's errors are one line. ``serve`` keeps tracebacks in its log."""
    run = with_plugin(tmp_path, "flaky_plug", FLAKY, "flaky = flaky_plug:Flaky")
    assert run("orgs", "create", "acme").returncode == 0
    created = run(
        *("connectors", "create", "--org", "acme", "--name", "f", "--category", "messaging"),
        *("--provider", "flaky", "--json"),
    )
    assert created.returncode == 0, created.stderr
    connector = json.loads(created.stdout)["id"]
    tested = run("connectors", "test", connector)
    assert "Traceback" not in tested.stderr
    crash = [line for line in tested.stderr.splitlines() if "kaboom" in line]
    assert len(crash) == 1 and "RuntimeError: kaboom in the vendor SDK" in crash[0], tested.stderr
