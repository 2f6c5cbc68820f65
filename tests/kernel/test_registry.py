import subprocess
import sys

import pytest

from jackfield import (
    ConfigField,
    ConnectorNotFoundError,
    ConnectorProvider,
    ConnectorRegistry,
    Tier,
)
from jackfield.kernel import FieldType, MessagingProvider, StorageProvider


class Disk(StorageProvider):
    provider_type = "disk"
    display_name = "Disk"

    def put(self, path, data, content_type=None): ...
    def get(self, path): ...
    def delete(self, path): ...
    def list(self, prefix=""): ...
    def stat(self, path): ...


def test_register_get_list_and_is_registered():
    reg = ConnectorRegistry()
    reg.register(Disk)
    assert reg.get("storage", "disk") is Disk
    assert reg.is_registered("storage", "disk")
    assert not reg.is_registered("storage", "nope")
    assert reg.list_for_category("storage") == [Disk]
    assert reg.list_for_category("email") == []


def test_unknown_provider_raises_not_found_with_known_names():
    reg = ConnectorRegistry()
    reg.register(Disk)
    with pytest.raises(ConnectorNotFoundError, match="no provider 'nope'") as info:
        reg.get("storage", "nope")
    assert "disk" in info.value.remediation


def test_duplicate_registration_is_refused():
    reg = ConnectorRegistry()
    reg.register(Disk)

    class Disk2(Disk):
        pass

    with pytest.raises(ValueError, match="already registered"):
        reg.register(Disk2)


def test_invalid_classes_are_refused():
    reg = ConnectorRegistry()
    with pytest.raises(TypeError, match="not a ConnectorProvider"):
        reg.register(object)  # type: ignore[arg-type]

    class NoType(ConnectorProvider):
        category = "storage"
        display_name = "x"

    with pytest.raises(TypeError, match="provider_type"):
        reg.register(NoType)

    class WrongBase(ConnectorProvider):
        category = "storage"
        provider_type = "wrong"
        display_name = "Wrong"

    with pytest.raises(TypeError, match="must subclass StorageProvider"):
        reg.register(WrongBase)

    class Incomplete(MessagingProvider):
        provider_type = "incomplete"
        display_name = "Incomplete"

    with pytest.raises(TypeError, match="does not implement: send_message") as refused:
        reg.register(Incomplete)
    assert "only receives" not in str(refused.value)

    class ReceiveOnly(MessagingProvider):  # forgot the category's send method
        provider_type = "receive_only"
        display_name = "Receive only"
        sends = False

    with pytest.raises(TypeError, match=r"send_message \(a provider that only receives"):
        reg.register(ReceiveOnly)

    class BadTier(Disk):
        provider_type = "bad_tier"
        tier = "gold"  # type: ignore[assignment]

    with pytest.raises(TypeError, match="tier"):
        reg.register(BadTier)

    class BadName(Disk):
        provider_type = "Bad-Name"

    with pytest.raises(TypeError, match="lower_snake_case"):
        reg.register(BadName)


def test_discover_finds_the_builtin_entry_points_and_is_idempotent():
    reg = ConnectorRegistry()
    reg.discover()
    reg.discover()
    types = {(c.category, c.provider_type) for c in reg.all()}
    assert {("messaging", "echo"), ("storage", "local_fs"), ("email", "smtp")} <= types
    assert reg.get("messaging", "echo").tier is Tier.INTERNAL_TEST_ONLY


def test_discovery_does_not_run_at_import():
    code = (
        "import jackfield, jackfield.kernel, jackfield.connectors;"
        "from jackfield import connector_registry as r;"
        "assert r.all() == [], r.all();"
        "r.discover(); assert r.all()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_builtin_provider_missing_its_extra_gets_the_install_hint(monkeypatch):
    from importlib import metadata

    reg = ConnectorRegistry()
    broken = metadata.EntryPoint(
        "broken", "jackfield.connectors.missing_extra:Provider", "jackfield.providers"
    )
    monkeypatch.setattr(metadata, "entry_points", lambda group: [broken])
    reg.discover()
    assert reg.all() == []
    assert reg.unavailable[0].name == "broken"
    assert "pip install" in reg.unavailable[0].error


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (lambda: None, "must return a list of ConfigField, got NoneType"),
        (lambda: [("a", "A")], "must return only ConfigField items, got ('a', 'A')"),
        (lambda: [ConfigField("a", "A"), ConfigField("a", "B")], "declares the key 'a' twice"),
        (
            lambda: [ConfigField("api", "API"), ConfigField("api.token", "T", secret=True)],
            "key 'api' is a value and also the group of 'api.token'",
        ),
        (
            lambda: [ConfigField("n", "N", type=FieldType.INTEGER, default="abc")],
            "field 'n' has default 'abc': expected a whole number",
        ),
        (
            lambda: [ConfigField("mode", "Mode", type=FieldType.SELECT)],
            "field 'mode' is a select without choices",
        ),
        (  # before, the types list advertised an enum that no save enforced
            lambda: [ConfigField("color", "Color", choices=("red", "blue"), default="red")],
            "field 'color' has choices but type 'string': declare it type=FieldType.SELECT",
        ),
        (
            lambda: [ConfigField("n", "N", type=FieldType.INTEGER, choices=("1", "2"))],
            "field 'n' has choices but type 'integer'",
        ),
        (lambda: [ConfigField("a", "A", type="json")], "raised ValueError: 'json' is not a valid"),
    ],
)
def test_a_schema_the_framework_cannot_use_is_refused_at_registration(fields, problem):
    cls = type(
        "Sloppy",
        (MessagingProvider,),
        {
            "provider_type": "sloppy",
            "display_name": "Sloppy",
            "config_schema": classmethod(lambda cls: fields()),
            "send_message": lambda self, message: None,
            "__module__": __name__,
        },
    )
    reg = ConnectorRegistry()
    with pytest.raises(TypeError) as refused:
        reg.register(cls)
    assert f"{__name__}.Sloppy: config_schema() " in str(refused.value)
    assert problem in str(refused.value)
    assert not reg.is_registered("messaging", "sloppy")
