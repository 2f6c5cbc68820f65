"""Connector use cases, on SQLite and on PostgreSQL (the ``jf`` fixture runs both)."""

import base64
import json
from contextlib import contextmanager

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from jackfield import ConnectorConfigError, ConnectorNotFoundError, connector_registry
from jackfield.kernel import ConflictError, PermissionDeniedError
from jackfield.service import Principal, Role
from jackfield.store import AuditEvent, Connector, ConnectorParam


@contextmanager
def registered(cls):
    """A provider class of one test, registered while it runs."""
    connector_registry.register(cls)
    try:
        yield cls
    finally:
        connector_registry.unregister(cls.category, cls.provider_type)


def vault(jf, who, **kw):
    params = kw.pop(
        "params",
        [{"key": "url", "value": "https://vault.example"}, {"key": "token", "value": "good"}],
    )
    return jf.connectors.create(
        who,
        name=kw.pop("name", "vault"),
        category="http",
        provider_type="vault_test",
        params=params,
        **kw,
    )


def snapshot(jf):
    """Everything a failed call must leave untouched."""
    with jf.db.transaction() as s:
        connectors = [
            (c.id, c.name, c.status, c.is_enabled, c.is_default)
            for c in s.scalars(select(Connector))
        ]
        params = [
            (p.connector_id, p.key, p.value, p.sequence) for p in s.scalars(select(ConnectorParam))
        ]
        audits = s.query(AuditEvent).count()
    return connectors, params, audits


def test_create_get_list_update_delete(jf, admin):
    created = vault(jf, admin)
    assert created["status"] == "draft" and created["is_enabled"] is False
    assert created["organization_id"] == admin.organization_id
    token = next(p for p in created["params"] if p["key"] == "token")
    assert token == {
        "key": "token",
        "value": "********",
        "value_type": "text",
        "sequence": 20,
        "secret": True,
    }

    assert jf.connectors.get(admin, created["id"])["name"] == "vault"
    assert [c["id"] for c in jf.connectors.list(admin, category="http")] == [created["id"]]
    assert jf.connectors.list(admin, category="storage") == []

    updated = jf.connectors.update(admin, created["id"], name="renamed")
    assert updated["name"] == "renamed"

    jf.connectors.delete(admin, created["id"])
    with pytest.raises(ConnectorNotFoundError):
        jf.connectors.get(admin, created["id"])
    with jf.db.transaction() as s:
        assert s.scalars(select(ConnectorParam)).all() == []


def test_secret_is_encrypted_at_rest_and_the_mask_keeps_it(jf, admin):
    created = vault(jf, admin)
    with jf.db.transaction() as s:
        stored = s.scalar(select(ConnectorParam).where(ConnectorParam.key == "token"))
        assert stored.value.startswith("jf1:") and "good" not in stored.value
    # sending the mask back (as the UI does) keeps the stored value
    jf.connectors.update(
        admin,
        created["id"],
        params=[
            {"key": "url", "value": "https://vault.example"},
            {"key": "token", "value": "********"},
        ],
    )
    assert jf.connectors.test(admin, created["id"])["success"] is True
    assert jf.connectors.get_config(admin, created["id"]) == {
        "url": "https://vault.example",
        "token": "********",
    }


def test_a_param_its_sender_marks_secret_is_kept_secret(jf, admin):
    """Before, ``"secret": true`` on a key the provider's schema does not know was
    ignored: stored in plaintext and shown to every member of the organization."""
    created = jf.connectors.create(
        admin,
        name="echo",
        category="messaging",
        provider_type="echo",
        params=[{"key": "api.password", "value": "S3CR3T-UNKNOWN-7781", "secret": True}],
    )
    (param,) = created["params"]
    assert (param["value"], param["secret"]) == ("********", True)
    # a new value without the flag stays secret: once secret, always secret
    jf.connectors.update(
        admin, created["id"], params=[{"key": "api.password", "value": "N3W-UNKNOWN-7782"}]
    )
    with jf.db.transaction() as s:
        values = [row.value for row in s.scalars(select(ConnectorParam))]
    assert len(values) == 1 and values[0].startswith("jf1:")
    assert "UNKNOWN" not in values[0]
    assert jf.connectors.get(admin, created["id"])["params"][0]["value"] == "********"


def test_other_organizations_connectors_are_invisible(jf, admin, other_admin):
    created = vault(jf, admin)
    assert jf.connectors.list(other_admin) == []
    for call in (
        lambda: jf.connectors.get(other_admin, created["id"]),
        lambda: jf.connectors.update(other_admin, created["id"], name="x"),
        lambda: jf.connectors.delete(other_admin, created["id"]),
        lambda: jf.connectors.test(other_admin, created["id"]),
        lambda: jf.connectors.get_config(other_admin, created["id"]),
        lambda: jf.connectors.set_enabled(other_admin, created["id"], False),
    ):
        with pytest.raises(ConnectorNotFoundError):
            call()
    assert jf.connectors.get(admin, created["id"])["name"] == "vault"


def test_a_user_role_can_read_but_not_write(jf, admin):
    created = vault(jf, admin)
    user = Principal(admin.organization_id, "bob@example.com", Role.USER)
    assert jf.connectors.get(user, created["id"])["id"] == created["id"]
    with pytest.raises(PermissionDeniedError):
        jf.connectors.update(user, created["id"], name="x")
    with pytest.raises(PermissionDeniedError):
        vault(jf, user)


def test_connection_test_sets_status_and_activation_needs_connected(jf, admin):
    created = vault(
        jf,
        admin,
        params=[{"key": "url", "value": "https://v"}, {"key": "token", "value": "s3cr3t-bad"}],
    )
    with pytest.raises(ConflictError, match="not 'connected'"):
        jf.connectors.set_enabled(admin, created["id"], True)

    result = jf.connectors.test(admin, created["id"])
    assert result["success"] is False and result["status"] == "error"
    assert "s3cr3t-bad" not in result["message"] and "********" in result["message"]
    after = jf.connectors.get(admin, created["id"])
    assert after["status"] == "error" and after["last_tested_at"] is not None

    jf.connectors.update(
        admin, created["id"], params=[{"key": "token", "value": "good"}], merge=True
    )
    result = jf.connectors.test(admin, created["id"])
    assert result == {
        "success": True,
        "message": "vault reachable",
        "details": {"url": "https://v"},
        "status": "connected",
    }
    assert jf.connectors.set_enabled(admin, created["id"], True)["is_enabled"] is True
    assert jf.connectors.set_enabled(admin, created["id"], False)["is_enabled"] is False


def test_changing_params_makes_the_connector_draft_again(jf, admin):
    created = vault(jf, admin)
    jf.connectors.test(admin, created["id"])
    changed = jf.connectors.update(
        admin, created["id"], params=[{"key": "retries", "value": 5}], merge=True
    )
    assert changed["status"] == "draft"
    assert {p["key"] for p in changed["params"]} == {"url", "token", "retries"}


def test_only_one_default_per_category(jf, admin):
    first = vault(jf, admin, name="one", is_default=True)
    second = vault(jf, admin, name="two")
    assert jf.connectors.get(admin, first["id"])["is_default"] is True
    jf.connectors.update(admin, second["id"], is_default=True)
    assert jf.connectors.get(admin, first["id"])["is_default"] is False
    assert jf.connectors.get(admin, second["id"])["is_default"] is True


def test_the_database_also_refuses_two_defaults(jf, admin):
    vault(jf, admin, name="one", is_default=True)
    with pytest.raises(IntegrityError), jf.db.transaction() as s:
        s.add(
            Connector(
                organization_id=admin.organization_id,
                name="sneaky",
                category="http",
                provider_type="vault_test",
                is_default=True,
            )
        )


def test_import_config_json_and_base64_file(jf, admin):
    created = vault(jf, admin)
    doc = {"installed": {"url": "https://imported", "token": "good"}}
    imported = jf.connectors.import_config(admin, created["id"], json_data=doc)
    assert {p["key"]: p["value"] for p in imported["params"]} == {
        "url": "https://imported",
        "token": "********",
    }

    encoded = base64.b64encode(json.dumps({"installed": {"url": "https://file"}}).encode()).decode()
    imported = jf.connectors.import_config(
        admin, created["id"], file_content=encoded, file_name="c.json"
    )
    assert {p["key"] for p in imported["params"]} == {"url", "token"}
    assert jf.connectors.get_config(admin, created["id"])["url"] == "https://file"


def test_file_params_are_stored_encrypted_and_read_back(jf, admin, tmp_path):
    content = '{"private_key": "-----BEGIN KEY-----"}'
    created = vault(
        jf,
        admin,
        params=[
            {"key": "url", "value": "https://v"},
            {
                "key": "credentials",
                "value": base64.b64encode(content.encode()).decode(),
                "value_type": "file",
            },
        ],
    )
    param = next(p for p in created["params"] if p["key"] == "credentials")
    assert param["value_type"] == "file" and param["value"] == "********"
    files = [p for p in (tmp_path / "data" / "files").rglob("*") if p.is_file()]
    assert len(files) == 1 and b"BEGIN KEY" not in files[0].read_bytes()
    _, _, config = jf.connectors.resolve(created["id"])
    assert config["credentials"] == content
    jf.connectors.delete(admin, created["id"])
    assert not [p for p in (tmp_path / "data" / "files").rglob("*") if p.is_file()]


def test_legacy_config_column_is_the_fallback_without_params(jf, admin):
    with jf.db.transaction() as s:
        row = Connector(
            organization_id=admin.organization_id,
            name="legacy",
            category="http",
            provider_type="vault_test",
            config={"url": "https://legacy"},
        )
        s.add(row)
        s.flush()
        legacy_id = row.id
    assert jf.connectors.get_config(admin, legacy_id) == {"url": "https://legacy"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"category": "nope", "provider_type": "vault_test"}, "unknown category"),
        ({"category": "http", "provider_type": "nope"}, "unknown provider"),
        ({"category": "http", "provider_type": "vault_test", "params": []}, "URL is required"),
        (
            {
                "category": "http",
                "provider_type": "vault_test",
                "params": [{"key": "a..b", "value": "1"}],
            },
            "invalid parameter key",
        ),
        (
            {
                "category": "http",
                "provider_type": "vault_test",
                "params": [{"key": "url", "value": "x"}, {"key": "url.sub", "value": "y"}],
            },
            "conflicts",
        ),
        (
            {
                "category": "http",
                "provider_type": "vault_test",
                "params": [{"key": "url", "value": "x"}, {"key": "retries", "value": "many"}],
            },
            "whole number",
        ),
        (
            {
                "category": "http",
                "provider_type": "vault_test",
                "params": [
                    {"key": "url", "value": "x"},
                    {"key": "credentials", "value": "not base64!", "value_type": "file"},
                ],
            },
            "base64",
        ),
        # size limits, whoever calls (before, only REST's 1 MiB body limit bounded them)
        (
            {
                "category": "http",
                "provider_type": "vault_test",
                "config": {"url": "x", "big": "y" * (64 * 1024 + 1)},
            },
            r"param 'big' is too large: the limit is 64 KiB per text value",
        ),
        (
            {
                "category": "http",
                "provider_type": "vault_test",
                "params": [{"key": f"k{i}", "value": "y" * 64 * 1024} for i in range(17)],
            },
            "add up to 1114112 bytes; the limit is 1 MiB",
        ),
        (
            {
                "category": "http",
                "provider_type": "vault_test",
                "params": [
                    {"key": "url", "value": "x"},
                    {
                        "key": "credentials",
                        "value": base64.b64encode(b"z" * (1024 * 1024 + 1)).decode(),
                        "value_type": "file",
                    },
                ],
            },
            "param 'credentials' is too large: the limit is 1 MiB per file",
        ),
        (
            {
                "category": "http",
                "provider_type": "vault_test",
                "name": "  ",
                "params": [{"key": "url", "value": "x"}],
            },
            "name",
        ),
        # before: AttributeError: 'list' object has no attribute 'items'
        ({"category": "http", "provider_type": "vault_test", "config": ["url"]}, "config must"),
        ({"category": "http", "provider_type": "vault_test", "config": "url=x"}, "config must"),
    ],
)
def test_bad_create_input_is_a_clear_error_and_changes_nothing(jf, admin, kwargs, match):
    vault(jf, admin)  # something to leave untouched
    before = snapshot(jf)
    kwargs.setdefault("name", "bad")
    with pytest.raises(ConnectorConfigError, match=match):
        jf.connectors.create(admin, **kwargs)
    assert snapshot(jf) == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"json_data": ["not", "an", "object"]}, "JSON object"),
        ({"file_content": base64.b64encode(b"{not json").decode()}, "is not a JSON file"),
        ({"file_content": base64.b64encode(b"\xff\xfe").decode()}, "not UTF-8 text"),
        ({"file_content": "%%%"}, "file_content is not base64-encoded"),
        (
            {"file_content": base64.b64encode(b" " * (1024 * 1024 + 1)).decode()},
            "the imported file is 1048577 bytes; the limit is 1 MiB",
        ),
        ({"json_data": {"unexpected": "shape"}}, "not usable"),
    ],
)
def test_bad_import_is_a_clear_error_and_changes_nothing(jf, admin, kwargs, match):
    created = vault(jf, admin)
    before = snapshot(jf)
    with pytest.raises(ConnectorConfigError, match=match):
        jf.connectors.import_config(admin, created["id"], **kwargs)
    assert snapshot(jf) == before


def test_activating_an_untested_connector_changes_nothing(jf, admin):
    created = vault(jf, admin)
    before = snapshot(jf)
    with pytest.raises(ConflictError):
        jf.connectors.set_enabled(admin, created["id"], True)
    assert snapshot(jf) == before


def test_every_admin_change_is_audited_without_secret_values(jf, admin):
    created = vault(
        jf,
        admin,
        params=[
            {"key": "url", "value": "https://v"},
            {"key": "token", "value": "canary-token-123"},
        ],
    )
    jf.connectors.update(admin, created["id"], name="renamed")
    jf.connectors.test(admin, created["id"])
    jf.connectors.delete(admin, created["id"])
    with jf.db.transaction() as s:
        events = s.scalars(
            select(AuditEvent)
            .where(AuditEvent.organization_id == admin.organization_id)
            .order_by(AuditEvent.id)
        ).all()
        actions = [
            (e.action, e.outcome, e.actor, e.target_id)
            for e in events
            if e.target_type == "connector"
        ]
        dump = json.dumps([e.details for e in events])
    assert actions == [
        ("connector.create", "success", admin.actor, created["id"]),
        ("connector.update", "success", admin.actor, created["id"]),
        ("connector.test", "failure", admin.actor, created["id"]),
        ("connector.delete", "success", admin.actor, created["id"]),
    ]
    assert "canary-token-123" not in dump


def test_provider_types_describe_schema_and_metadata(jf):
    items = {t["provider_type"]: t for t in jf.connectors.provider_types()}
    assert items["local_fs"]["category"] == "storage" and items["local_fs"]["tier"] == "supported"
    assert items["echo"]["tier"] == "internal_test_only"
    smtp = items["smtp"]["config_schema"]
    assert smtp["properties"]["password"]["writeOnly"] is True
    assert [t["provider_type"] for t in jf.connectors.provider_types("email")] == ["smtp"]


@pytest.mark.parametrize(
    "params",
    [
        [{"key": "url", "value": "x"}, {"key": "k" * 201, "value": "1"}],
        [{"key": "url", "value": "bad\x00value"}],
    ],
)
def test_overlong_keys_and_nul_characters_are_refused(jf, admin, params):
    before = snapshot(jf)
    with pytest.raises(ConnectorConfigError):
        jf.connectors.create(
            admin, name="x", category="http", provider_type="vault_test", params=params
        )
    assert snapshot(jf) == before


def test_a_test_connection_answering_the_wrong_type_is_a_failed_test(jf, admin):
    """Before, ``{"ok": True}`` counted as success and the connector could be activated."""
    from jackfield.kernel import MessagingProvider

    class Sloppy(MessagingProvider):
        provider_type = "sloppy_test_result"
        display_name = "Sloppy test result"

        def test_connection(self):
            return {"ok": True}

        def send_message(self, message):
            return None

    with registered(Sloppy):
        created = jf.connectors.create(
            admin, name="sloppy", category="messaging", provider_type="sloppy_test_result"
        )
        result = jf.connectors.test(admin, created["id"])
    assert result["success"] is False and result["status"] == "error"
    assert result["message"] == (
        "test_connection() must return a ConnectionTestResult, not dict: {'ok': True}"
    )
    with pytest.raises(ConflictError, match="not 'connected'"):
        jf.connectors.set_enabled(admin, created["id"], True)


@pytest.mark.parametrize("error", [ValueError, ConnectorConfigError])
def test_a_secret_quoted_by_a_failing_import_is_masked_in_the_error(jf, admin, error):
    """Before, the 422 (and the CLI's error line) carried the new secret in clear; the
    errors DESIGN tells providers to raise (``ConnectorConfigError``) as well."""
    from jackfield import ConfigField
    from jackfield.kernel import MessagingProvider

    class Vendor(MessagingProvider):
        provider_type = "vendor_import_test"
        display_name = "Vendor import"

        @classmethod
        def config_schema(cls):
            return [ConfigField("api.url", "URL"), ConfigField("api.token", "Token", secret=True)]

        @classmethod
        def normalize_import_json(cls, data):
            vendor = data["vendor"]  # the vendor's own export format
            raise error(f"cannot use apiKey {vendor['apiKey']} with url {vendor['url']}")

        def send_message(self, message):
            return None

    with registered(Vendor):
        created = jf.connectors.create(
            admin, name="vendor", category="messaging", provider_type="vendor_import_test"
        )
        document = {"vendor": {"url": "https://vendor.example", "apiKey": "NEW-SECRET-777"}}
        with pytest.raises(ConnectorConfigError) as refused:
            jf.connectors.import_config(admin, created["id"], json_data=document)
    assert "NEW-SECRET-777" not in str(refused.value)
    assert refused.value.message == (
        "the imported document is not usable: cannot use apiKey ******** with url ********"
    )


def test_a_connection_test_that_never_returns_fails_at_its_deadline(jf, admin):
    """Before, a test without a timeout (a vendor SDK that hangs) held the REST call, the
    UI's Test button or the CLI for as long as it hung."""
    import threading
    import time

    from jackfield import ConnectionTestResult
    from jackfield.kernel import MessagingProvider

    release = threading.Event()

    class Hanging(MessagingProvider):
        provider_type = "never_returns_test"
        display_name = "Hanging"

        def test_connection(self):
            release.wait(30)
            return ConnectionTestResult(True, "too late")

        def send_message(self, message):
            return None

    with registered(Hanging):
        created = jf.connectors.create(
            admin, name="hangs", category="messaging", provider_type="never_returns_test"
        )
        jf.connectors.test_timeout_seconds = 0.5
        started = time.monotonic()
        try:
            result = jf.connectors.test(admin, created["id"])
        finally:
            release.set()  # (the test's thread may end now)
        took = time.monotonic() - started
    assert took < 5
    assert result["success"] is False and result["status"] == "error"
    assert result["message"] == "the connection test did not finish within 0.5 s"
    assert jf.connectors.get(admin, created["id"])["status"] == "error"


def test_a_providers_inbound_sources_are_listed_as_its_capabilities(jf):
    """A plugin author who forgot to list them: the types list still says how its
    connectors take events in (before, it showed none)."""
    from jackfield.kernel.categories.messaging import (
        MessagingProvider,
        OutboundMessage,
        SentMessage,
    )
    from jackfield.kernel.inbound import InboundEvent, PollingSource

    class Feed(MessagingProvider, PollingSource):
        provider_type = "feed_caps_test"
        display_name = "Feed"
        sends = False

        @classmethod
        def config_schema(cls):
            return []

        def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]:
            return [], cursor

        def send_message(self, message: OutboundMessage) -> SentMessage:
            raise NotImplementedError

    with registered(Feed):
        types = {t["provider_type"]: t for t in jf.connectors.provider_types("messaging")}
    assert types["feed_caps_test"]["capabilities"] == ["polling"]
    assert types["echo"]["capabilities"] == ["threads"]
    assert (
        "webhook"
        in {t["provider_type"]: t for t in jf.connectors.provider_types("http")}["webhook"][
            "capabilities"
        ]
    )


def test_a_secret_sealed_under_a_lost_key_can_be_replaced(jf, admin):
    """A key lost (no fallback for it): the admin types the secret again. The no-op check
    read every stored value first and failed on that one, so no save went through."""
    created = vault(jf, admin)
    lost = "jf1:lostkey0:" + base64.b64encode(b"n" * 12 + b"sealed-bytes").decode()
    with jf.db.transaction() as s:
        row = s.scalars(
            select(ConnectorParam).where(
                ConnectorParam.connector_id == created["id"], ConnectorParam.key == "token"
            )
        ).one()
        row.value = lost
    updated = jf.connectors.update(
        admin, created["id"], config={"url": "https://vault.example", "token": "good"}
    )
    assert updated["status"] == "draft"  # (whether it changed is not known: it may have)
    assert jf.connectors.resolve(created["id"])[2]["token"] == "good"


def test_a_file_param_gone_from_disk_can_be_replaced(jf, admin):
    """The stored file is missing (a data directory restored without it): uploading the
    file again repairs the connector. The no-op check read the missing file first."""
    content = base64.b64encode(b'{"k": 1}').decode()
    created = vault(
        jf,
        admin,
        params=[
            {"key": "url", "value": "https://vault.example"},
            {"key": "credentials", "value": content, "value_type": "file"},
        ],
    )
    with jf.db.transaction() as s:
        ref = s.scalars(
            select(ConnectorParam.file_ref).where(
                ConnectorParam.connector_id == created["id"], ConnectorParam.key == "credentials"
            )
        ).one()
    jf.files.delete(ref)
    updated = jf.connectors.update(
        admin,
        created["id"],
        params=[
            {"key": "url", "value": "https://vault.example"},
            {"key": "credentials", "value": content, "value_type": "file"},
        ],
    )
    assert updated["status"] == "draft"
    assert jf.connectors.resolve(created["id"])[2]["credentials"] == '{"k": 1}'


def test_a_value_stored_before_the_size_limits_does_not_block_an_unrelated_edit(jf, admin):
    """A 100 KiB value stored before the 64 KiB limit: the connector page sends it back
    with every save (as does a PUT of the connector as read). Before, renaming the
    connector was refused as 'too large'; a new long value still is."""
    created = vault(jf, admin)
    with jf.db.transaction() as s:
        s.add(ConnectorParam(connector_id=created["id"], key="notes", value="n" * 100_000))
    read = jf.connectors.get(admin, created["id"])
    updated = jf.connectors.update(admin, created["id"], name="renamed", params=read["params"])
    assert updated["name"] == "renamed"
    assert jf.connectors.resolve(created["id"])[2]["notes"] == "n" * 100_000
    longer = [{**p, "value": "m" * 100_000} if p["key"] == "notes" else p for p in read["params"]]
    with pytest.raises(ConnectorConfigError, match="too large"):
        jf.connectors.update(admin, created["id"], params=longer)
