"""The shipped conformance suite as a plugin author runs it: in a project of their own,
with plain pytest and pytest-asyncio, none of Jackfield's pytest settings."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN_TESTS = """\
import pytest

from jackfield.connectors.local_fs import LocalFsProvider
from jackfield.testing import StorageConformance


class TestMyStore(StorageConformance):
    @pytest.fixture
    def provider(self, tmp_path):
        return LocalFsProvider.from_config({"root": str(tmp_path / "store")})

    def test_a_check_of_my_own(self, provider):  # a plain test beside the suite's
        assert provider.config["root"]
"""


@pytest.mark.parametrize("ini", ["[pytest]\n", "[pytest]\nasyncio_mode = auto\n"])
def test_the_storage_suite_runs_in_a_project_without_special_settings(tmp_path: Path, ini):
    """Before, in pytest-asyncio's default (strict) mode every test of the suite failed
    with "async def functions are not natively supported"; only asyncio_mode = auto,
    which no document named, made it run."""
    (tmp_path / "pytest.ini").write_text(ini)
    (tmp_path / "test_my_store.py").write_text(textwrap.dedent(PLUGIN_TESTS))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "JACKFIELD_"))}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "29 passed" in done.stdout.splitlines()[-1]
    # (before, the plugin's own sync test was warned about a mark it never asked for)
    assert "warning" not in done.stdout.splitlines()[-1], done.stdout[-3000:]
