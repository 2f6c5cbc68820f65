import importlib
import os
import re
from pathlib import Path

import pytest

import jackfield

CONTRACT_NAMES = {
    "Jackfield",
    "ConnectorProvider",
    "ConfigField",
    "ConnectionTestResult",
    "Tier",
    "ConnectorRegistry",
    "connector_registry",
    "unflatten_params",
    "flatten_config",
    "ConnectorError",
    "ConnectorNotFoundError",
    "ConnectorConfigError",
    "ConnectionFailedError",
    "ConnectorNotSupportedError",
}


def test_the_contract_names_are_exported():
    assert CONTRACT_NAMES <= set(jackfield.__all__)
    for name in CONTRACT_NAMES:
        assert getattr(jackfield, name) is not None


@pytest.mark.parametrize(
    "module",
    ["jackfield", "jackfield.kernel", "jackfield.secrets", "jackfield.store", "jackfield.service"],
)
def test_all_lists_exactly_resolvable_names(module):
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name) or name == "Jackfield", f"{module}.{name}"
    assert len(mod.__all__) == len(set(mod.__all__))


def test_the_readmes_embedded_use_runs_as_written(tmp_path, monkeypatch):
    """The README's "Embedded use" code, block after block, in a fresh directory."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Embedded use", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    for name in [n for n in os.environ if n.startswith("JACKFIELD_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), scope)  # (our own README)
        jf, who, chat = scope["jf"], scope["who"], scope["chat"]
        assert (tmp_path / ".jackfield").is_dir()
        assert jf.connectors.get(who, chat["id"])["is_enabled"] is True
        assert jf.runtime.outbox.list(who, connector_id=chat["id"])[0][0]["state"] == "pending"
    finally:
        if "jf" in scope:
            scope["jf"].close()
