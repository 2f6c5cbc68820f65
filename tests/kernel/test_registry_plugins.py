"""Discovery of third-party plugins, installed for real (``install_plugin``: a dist-info on
``sys.path``).

One broken or hostile plugin must never cost the user a built-in provider, another
plugin, or the ``jackfield`` command itself.
"""

from __future__ import annotations

import logging

from jackfield import ConnectorRegistry
from jackfield.connectors.echo import EchoProvider

HIJACK = """
from jackfield.kernel import MessagingProvider

class Evil(MessagingProvider):
    provider_type = "echo"
    display_name = "HIJACKED echo"

    def send_message(self, message):
        return None
"""


def test_a_plugin_cannot_replace_a_builtin_provider(install_plugin, caplog):
    install_plugin("hj-q7", {"hj_q7": HIJACK}, {"hj_q7": "hj_q7:Evil"})
    reg = ConnectorRegistry()
    with caplog.at_level(logging.WARNING, "jackfield.kernel.registry"):
        reg.discover()
    assert reg.get("messaging", "echo") is EchoProvider
    (refused,) = [u for u in reg.unavailable if u.name == "hj_q7"]
    assert "messaging/echo" in refused.error
    assert "'hj-q7'" in refused.error  # the plugin's distribution is named
    assert "built-in provider jackfield.connectors.echo.EchoProvider" in refused.error
    assert not any(u.target.startswith("jackfield.") for u in reg.unavailable)
    assert "hj_q7 (hj_q7:Evil) unavailable: refused" in caplog.text


def test_between_two_plugins_the_first_keeps_the_key_and_the_second_is_named(install_plugin):
    code = HIJACK.replace('"echo"', '"twin"')
    install_plugin("twin-b", {"twin_b": code}, {"twin_b": "twin_b:Evil"})
    install_plugin("twin-a", {"twin_a": code}, {"twin_a": "twin_a:Evil"})  # first on sys.path
    reg = ConnectorRegistry()
    reg.discover()
    assert reg.get("messaging", "twin").__module__ == "twin_a"
    (refused,) = [u for u in reg.unavailable if u.target.startswith("twin")]
    assert refused.name == "twin_b"
    assert "twin_a.Evil" in refused.error and "'twin-b'" in refused.error


GOOD = HIJACK.replace('"echo"', '"good_chat"').replace("HIJACKED echo", "Good chat")


def test_a_plugin_raising_anything_at_import_costs_only_that_provider(install_plugin, caplog):
    from jackfield.kernel.redaction import redactor

    redactor.add("plugin-s3cret-token")
    boom = "import os\nAPI_KEY = os.environ['ACME_API_KEY_UNSET_IN_TESTS']\n"
    leak = "raise RuntimeError('cannot log in with plugin-s3cret-token')\n"
    install_plugin("boom", {"boom_rt": boom}, {"boom_runtime": "boom_rt:X"})
    install_plugin("leak", {"leak_rt": leak}, {"leak_runtime": "leak_rt:X"})
    install_plugin("good", {"good_rt": GOOD}, {"good_chat": "good_rt:Evil"})
    reg = ConnectorRegistry()
    with caplog.at_level(logging.WARNING, "jackfield.kernel.registry"):
        reg.discover()  # before: the KeyError escaped and nothing after it was loaded
    assert reg.is_registered("messaging", "good_chat")
    assert reg.is_registered("messaging", "echo")
    errors = {u.name: u.error for u in reg.unavailable}
    assert errors["boom_runtime"] == "KeyError: 'ACME_API_KEY_UNSET_IN_TESTS'"
    assert errors["leak_runtime"] == "RuntimeError: cannot log in with ********"
    assert "boom_runtime (boom_rt:X) unavailable: KeyError" in caplog.text
    assert "plugin-s3cret-token" not in caplog.text


def test_load_errors_of_a_plugin_say_what_is_wrong_with_the_plugin(install_plugin):
    install_plugin(
        "jackfield-gone",
        {"gone_p": "import gone_missing_dep\n", "bad_ok": "class NotAProvider:\n    pass\n"},
        {"gone_chat": "gone_p:Gone", "bad_notprovider": "bad_ok:NotAProvider"},
    )
    reg = ConnectorRegistry()
    reg.discover()
    errors = {u.name: u.error for u in reg.unavailable}
    gone = errors["gone_chat"]
    assert "jackfield[all]" not in gone  # that hint is for Jackfield's own extras only
    assert "cannot import module 'gone_missing_dep'" in gone
    assert "distribution 'jackfield-gone'" in gone
    assert errors["bad_notprovider"].endswith(
        "bad_ok:NotAProvider is <class 'bad_ok.NotAProvider'>, not a ConnectorProvider subclass"
    )  # before: "type object 'NotAProvider' has no attribute 'category'"


def test_a_plugin_with_a_broken_schema_is_unavailable_and_the_rest_load(install_plugin):
    code = HIJACK.replace('"echo"', '"dup_keys"') + (
        "\n    @classmethod\n    def config_schema(cls):\n"
        "        from jackfield import ConfigField\n"
        "        return [ConfigField('a', 'A'), ConfigField('a', 'dup')]\n"
    )
    install_plugin("dups", {"dups_p": code}, {"dup_keys": "dups_p:Evil"})
    reg = ConnectorRegistry()
    reg.discover()
    assert not reg.is_registered("messaging", "dup_keys")
    assert reg.is_registered("messaging", "echo")
    (refused,) = [u for u in reg.unavailable if u.name == "dup_keys"]
    assert refused.error == "TypeError: dups_p.Evil: config_schema() declares the key 'a' twice"
