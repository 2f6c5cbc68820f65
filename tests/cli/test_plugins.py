"""The ``jackfield`` command with a broken third-party plugin installed."""

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
