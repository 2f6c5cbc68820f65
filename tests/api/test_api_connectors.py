"""The connector routes of the REST API over real HTTP: every route, error bodies, roles,
import-config in both forms, size limits and malformed input. No response may carry a
secret value."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest

SECRET = "tok-93f1c2-secret-value"
OTHER_SECRET = "tok-77aa01-imported-secret"


@dataclass
class Caller:
    """An HTTP client with a role; every body it received is kept for the secret check."""

    client: httpx2.Client
    seen: list[str] = field(default_factory=list)

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        response = self.client.request(method, path, **kwargs)
        self.seen.append(response.text)
        return response


@pytest.fixture
def callers(jf, api) -> Iterator[dict[str, Caller]]:
    org, other = f"acme-{uuid.uuid4().hex[:6]}", f"evil-{uuid.uuid4().hex[:6]}"
    made = {}
    for name, org_name, role in (
        ("admin", org, "admin"),
        ("user", org, "user"),
        ("other_admin", other, "admin"),
    ):
        _, token = jf.accounts.create_user(
            f"{name}-{uuid.uuid4().hex[:6]}@x.io", org_name, role, with_token=True
        )
        made[name] = Caller(
            httpx2.Client(
                base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
        )
    made["anonymous"] = Caller(httpx2.Client(base_url=api.url, timeout=30))
    yield made
    for caller in made.values():
        for body in caller.seen:
            assert SECRET not in body and OTHER_SECRET not in body
        caller.client.close()


def vault(**extra: Any) -> dict[str, Any]:
    return {
        "name": "Vault",
        "category": "http",
        "provider_type": "vault_test",
        "params": [
            {"key": "url", "value": "https://vault.example.com"},
            {"key": "token", "value": SECRET},
        ],
        **extra,
    }


def assert_error(response: httpx2.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "remediation"} and error["remediation"]
    assert "Traceback" not in response.text
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def test_crud_round_trip(callers):
    admin = callers["admin"]
    created = admin("POST", "/api/connectors", json=vault(config={"retries": 5}, is_default=True))
    assert created.status_code == 201, created.text
    body = created.json()
    cid = body["id"]
    params = {p["key"]: p for p in body["params"]}
    assert params["token"] == {
        "key": "token",
        "value": "********",
        "value_type": "text",
        "sequence": params["token"]["sequence"],
        "secret": True,
    }
    assert params["retries"]["value"] == "5" and params["retries"]["secret"] is False
    assert body["status"] == "draft" and body["is_default"] is True and body["is_enabled"] is False
    assert body["last_tested_at"] is None and body["created_at"]

    listed = admin("GET", "/api/connectors").json()
    assert listed["next_cursor"] is None and [c["id"] for c in listed["items"]] == [cid]
    assert admin("GET", f"/api/connectors/{cid}").json()["name"] == "Vault"

    # PUT: params replace the set; the mask keeps the stored secret
    changed = admin(
        "PUT",
        f"/api/connectors/{cid}",
        json={
            "name": "Vault 2",
            "params": [
                {"key": "url", "value": "https://v2.example.com"},
                {"key": "token", "value": "********", "secret": True},
            ],
        },
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Vault 2"
    assert {p["key"] for p in changed.json()["params"]} == {"url", "token"}
    config = admin("GET", f"/api/connectors/{cid}/config").json()
    assert config == {
        "success": True,
        "config": {"url": "https://v2.example.com", "token": "********"},
    }
    assert admin("POST", f"/api/connectors/{cid}/test").json()["success"] is False  # token kept
    assert admin("PUT", f"/api/connectors/{cid}", json={}).json()["name"] == "Vault 2"

    deleted = admin("DELETE", f"/api/connectors/{cid}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(admin("GET", f"/api/connectors/{cid}"), 404, "not_found")
    assert_error(admin("DELETE", f"/api/connectors/{cid}"), 404, "not_found")


def test_list_filters_and_pages(callers, tmp_path):
    admin = callers["admin"]
    ids = [
        admin("POST", "/api/connectors", json=vault(name=f"v{i}")).json()["id"] for i in range(3)
    ]
    fs = admin(
        "POST",
        "/api/connectors",
        json={
            "name": "files",
            "category": "storage",
            "provider_type": "local_fs",
            "config": {"root": str(tmp_path / "jf-api")},
        },
    )
    assert fs.status_code == 201, fs.text
    own_org = fs.json()["organization_id"]
    assert [c["id"] for c in admin("GET", "/api/connectors?category=http").json()["items"]] == ids
    assert [c["id"] for c in admin("GET", "/api/connectors?category=storage").json()["items"]] == [
        fs.json()["id"]
    ]
    assert len(admin("GET", f"/api/connectors?organization_id={own_org}").json()["items"]) == 4
    other_org = callers["other_admin"]("POST", "/api/connectors", json=vault()).json()[
        "organization_id"
    ]
    assert admin("GET", f"/api/connectors?organization_id={other_org}").json() == {
        "items": [],
        "next_cursor": None,
    }

    first = admin("GET", "/api/connectors?limit=3").json()
    assert len(first["items"]) == 3 and first["next_cursor"]
    second = admin("GET", f"/api/connectors?limit=3&cursor={first['next_cursor']}").json()
    assert [c["id"] for c in second["items"]] == [fs.json()["id"]] and second["next_cursor"] is None
    assert_error(admin("GET", "/api/connectors?cursor=%21%21"), 422, "invalid_request")
    assert_error(admin("GET", "/api/connectors?limit=0"), 422, "invalid_request")


def test_test_activate_and_deactivate(callers):
    admin = callers["admin"]
    bad = admin("POST", "/api/connectors", json=vault()).json()["id"]
    result = admin("POST", f"/api/connectors/{bad}/test").json()
    assert result["success"] is False and result["status"] == "error"
    assert "********" in result["message"]  # the provider echoed the token; it is masked
    assert_error(admin("POST", f"/api/connectors/{bad}/activate"), 409, "conflict")

    good = vault(params=[{"key": "url", "value": "https://v"}, {"key": "token", "value": "good"}])
    cid = admin("POST", "/api/connectors", json=good).json()["id"]
    result = admin("POST", f"/api/connectors/{cid}/test").json()
    assert result == {
        "success": True,
        "message": "vault reachable",
        "details": {"url": "https://v"},
        "status": "connected",
    }
    view = admin("GET", f"/api/connectors/{cid}").json()
    assert view["status"] == "connected" and view["last_tested_at"]
    assert admin("POST", f"/api/connectors/{cid}/activate").json()["is_enabled"] is True
    assert admin("POST", f"/api/connectors/{cid}/deactivate").json()["is_enabled"] is False


def test_import_config_in_both_forms(callers):
    admin = callers["admin"]
    cid = admin("POST", "/api/connectors", json=vault()).json()["id"]
    document = {"installed": {"url": "https://imported.example.com", "token": OTHER_SECRET}}
    imported = admin("POST", f"/api/connectors/{cid}/import-config", json={"json_data": document})
    assert imported.status_code == 200, imported.text
    assert {p["key"]: p["value"] for p in imported.json()["params"]} == {
        "url": "https://imported.example.com",
        "token": "********",
    }
    assert imported.json()["status"] == "draft"

    encoded = base64.b64encode(json.dumps({"url": "https://file.example.com"}).encode()).decode()
    from_file = admin(
        "POST",
        f"/api/connectors/{cid}/import-config",
        json={"file_content": encoded, "file_name": "creds.json", "file_mime": "application/json"},
    )
    assert from_file.status_code == 200, from_file.text
    assert admin("GET", f"/api/connectors/{cid}/config").json()["config"] == {
        "url": "https://file.example.com",
        "token": "",
    }

    path = f"/api/connectors/{cid}/import-config"
    assert_error(admin("POST", path, json={"file_content": "not base64!"}), 422, "invalid_config")
    not_json = base64.b64encode(b"\xff\xfe not json").decode()
    assert_error(admin("POST", path, json={"file_content": not_json}), 422, "invalid_config")
    assert_error(admin("POST", path, json={"json_data": document, "file_content": encoded}), 422)
    assert_error(admin("POST", path, json={"json_data": {"unrelated": 1}}), 422, "invalid_config")
    assert_error(admin("POST", path, json={"json_data": [1, 2]}), 422, "invalid_request")
    assert_error(admin("POST", path, json={}), 422)
    # documents the param store could not hold are refused before anything is written
    long_keys = {"url": "https://x", "a" * 150: {"b" * 60: "1"}}
    for document in (long_keys, {"url": "nul\x00"}):
        encoded = base64.b64encode(json.dumps(document).encode()).decode()
        assert_error(admin("POST", path, json={"json_data": document}), 422, "invalid_request")
        assert_error(admin("POST", path, json={"file_content": encoded}), 422, "invalid_request")


def test_provider_types(callers):
    user = callers["user"]
    items = user("GET", "/api/connectors/types").json()["items"]
    vault_type = next(t for t in items if t["provider_type"] == "vault_test")
    assert set(vault_type) >= {
        "provider_type",
        "display_name",
        "category",
        "tier",
        "capabilities",
        "config_schema",
    }
    assert vault_type["config_schema"]["properties"]["token"]["writeOnly"] is True
    storage = user("GET", "/api/connectors/types?category=storage").json()["items"]
    assert storage and {t["category"] for t in storage} == {"storage"}
    # a mistyped category is refused as POST /api/connectors refuses it (was 200 and an
    # empty list, indistinguishable from a category with nothing installed)
    error = assert_error(user("GET", "/api/connectors/types?category=nope"), 422)
    assert error["message"] == "unknown category 'nope'"
    assert "storage" in error["details"]["fields"]["category"]
    # a known category is listed even with nothing installed for it (the built-ins have
    # no queue provider; a test plugin may have registered one in this process)
    queue = user("GET", "/api/connectors/types?category=queue")
    assert queue.status_code == 200
    assert {t["category"] for t in queue.json()["items"]} <= {"queue"}
    assert_error(callers["anonymous"]("GET", "/api/connectors/types"), 401, "unauthenticated")


def test_one_provider_whose_schema_fails_later_does_not_take_the_listing_down(callers, caplog):
    """Before, the whole listing answered 500 for every provider."""
    from jackfield import ConfigField, connector_registry
    from jackfield.kernel import MessagingProvider

    class Flaky(MessagingProvider):
        provider_type = "flaky_schema_test"
        display_name = "Flaky schema"
        broken = False

        @classmethod
        def config_schema(cls):
            if cls.broken:
                raise KeyError("FLAKY_ENV")  # e.g. reads the environment at call time
            return [ConfigField("token", "Token", secret=True)]

        def send_message(self, message):
            return None

    connector_registry.register(Flaky)
    try:
        Flaky.broken = True
        response = callers["user"]("GET", "/api/connectors/types")
    finally:
        connector_registry.unregister("messaging", "flaky_schema_test")
    assert response.status_code == 200
    types = {t["provider_type"] for t in response.json()["items"]}
    assert "vault_test" in types and "echo" in types
    assert "flaky_schema_test" not in types
    assert "messaging/flaky_schema_test left out" in caplog.text


def test_roles(callers):
    admin, user, anonymous = callers["admin"], callers["user"], callers["anonymous"]
    cid = admin("POST", "/api/connectors", json=vault()).json()["id"]
    reads = [
        ("GET", "/api/connectors"),
        ("GET", f"/api/connectors/{cid}"),
        ("GET", f"/api/connectors/{cid}/config"),
    ]
    writes = [
        ("POST", "/api/connectors", vault()),
        ("PUT", f"/api/connectors/{cid}", {"name": "x"}),
        ("POST", f"/api/connectors/{cid}/test", None),
        ("POST", f"/api/connectors/{cid}/activate", None),
        ("POST", f"/api/connectors/{cid}/deactivate", None),
        ("POST", f"/api/connectors/{cid}/import-config", {"json_data": {"url": "https://x"}}),
        ("GET", f"/api/connectors/{cid}/oauth/authorize", None),
        ("DELETE", f"/api/connectors/{cid}", None),
    ]
    for method, path in reads:
        assert user(method, path).status_code == 200
        response = assert_error(anonymous(method, path), 401, "unauthenticated")
        assert response["remediation"]
    for method, path, body in writes:
        assert_error(user(method, path, json=body), 403, "forbidden")
        assert_error(anonymous(method, path, json=body), 401, "unauthenticated")
    bad_token = anonymous("GET", "/api/connectors", headers={"Authorization": "Bearer nope"})
    assert_error(bad_token, 401, "unauthenticated")
    assert bad_token.headers["www-authenticate"] == "Bearer"
    assert admin("GET", f"/api/connectors/{cid}").json()["name"] == "Vault"  # nothing changed


def test_bad_input_is_a_clear_4xx(callers):
    admin = callers["admin"]
    headers = {"Content-Type": "application/json"}
    malformed = admin("POST", "/api/connectors", content=b'{"name": "x",', headers=headers)
    assert_error(malformed, 400, "invalid_request")  # not JSON: malformed, as README says
    for not_json in (b'{"name": "\xff"}', b"[" * 100_000 + b"]" * 100_000):  # not UTF-8; too deep
        assert_error(admin("POST", "/api/connectors", content=not_json, headers=headers), 400)
    for body in (
        {**vault(), "name": 123},
        {**vault(), "params": "not a list"},
        {**vault(), "name": "x" * 201},
        {**vault(), "name": "nul\x00byte"},
        {**vault(), "surprise": True},
        {**vault(), "params": [{"key": "bad key!", "value": "1"}]},
        {**vault(), "params": [{"key": "x", "value": "1", "sequence": 10**12}]},
        {**vault(), "config": {"a" * 150: {"b" * 60: "1"}}},
    ):
        assert_error(admin("POST", "/api/connectors", json=body), 422, "invalid_request")
    deep: dict[str, Any] = {"v": "1"}
    for _ in range(40):
        deep = {"n": deep}
    too_deep = assert_error(admin("POST", "/api/connectors", json={**vault(), "config": deep}), 422)
    assert "config.n.n" in next(iter(too_deep["details"]["fields"]))  # where, not ""
    nul = admin("POST", "/api/connectors", json={**vault(), "config": {"a": "b\x00"}})
    assert assert_error(nul, 422)["details"]["fields"] == {
        "config.a": "NUL characters are not allowed"
    }
    named = assert_error(admin("POST", "/api/connectors", json={**vault(), "name": "n\x00"}), 422)
    assert named["message"] == "the request is not valid: name: NUL characters are not allowed"
    # JSON sent without its content type: FastAPI does not read it; say what to send
    document = json.dumps(vault()).encode()
    for content_type in ({"Content-Type": "text/plain"}, {}):
        wrong = admin("POST", "/api/connectors", content=document, headers=content_type)
        error = assert_error(wrong, 415, "unsupported_media_type")
        assert "application/json" in error["message"] and "application/json" in error["remediation"]
    unknown = assert_error(
        admin("POST", "/api/connectors", json={**vault(), "provider_type": "nope"}),
        422,
        "invalid_config",
    )
    assert "provider_type" in unknown["details"]["fields"]
    missing = assert_error(
        admin("POST", "/api/connectors", json={**vault(), "params": []}), 422, "invalid_config"
    )
    assert "url" in missing["details"]["fields"]
    assert_error(admin("GET", "/api/connectors/a%00b"), 400, "invalid_request")
    assert_error(admin("GET", "/api/connectors?category=a%00"), 400, "invalid_request")
    assert_error(admin("GET", f"/api/connectors/{'x' * 5000}"), 422, "invalid_request")
    # Allow names the methods of every route of the path, not only the first one's
    for method, path, allowed in (
        ("PATCH", "/api/connectors", "GET, POST"),
        ("OPTIONS", "/api/connectors", "GET, POST"),
        ("PATCH", f"/api/connectors/{uuid.uuid4()}", "DELETE, GET, PUT"),
        ("GET", f"/api/connectors/{uuid.uuid4()}/test", "POST"),
    ):
        refused = admin(method, path)
        assert_error(refused, 405, "method_not_allowed")
        assert refused.headers["allow"] == allowed, (method, path)
    # a static file's 405 (a mount's) says its own methods; before, "Allow: " (none)
    static = admin("PATCH", "/static/app.css")
    assert static.status_code == 405 and static.headers["allow"] == "GET, HEAD"
    assert admin("GET", "/api/connectors").json()["items"] == []  # nothing was created


def test_large_bodies_are_refused_with_413(callers):
    admin = callers["admin"]
    cid = admin("POST", "/api/connectors", json=vault()).json()["id"]
    big = {"json_data": {"url": "https://x", "blob": "a" * (1024 * 1024 + 10)}}
    for method, path, body in (
        ("POST", f"/api/connectors/{cid}/import-config", big),
        ("POST", "/api/connectors", {**vault(), "config": big["json_data"]}),
        ("PUT", f"/api/connectors/{cid}", {"config": big["json_data"]}),
    ):
        assert_error(admin(method, path, json=body), 413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        yield b'{"json_data": {"url": "https://x", "blob": "'
        for _ in range(20):
            yield b"a" * 65536
        yield b'"}}'

    streamed = admin(
        "POST",
        f"/api/connectors/{cid}/import-config",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert_error(streamed, 413, "too_large")
    assert (
        admin("GET", f"/api/connectors/{cid}/config").json()["config"]["url"]
        == "https://vault.example.com"
    )


def test_a_real_fault_is_a_500_in_the_error_format_without_a_trace(jf, callers):
    """Here the inbox table is briefly away. Before, a fault no handler knew was
    answered with Starlette's plain-text ``Internal Server Error``."""
    admin = callers["admin"]
    created = admin("POST", "/api/connectors", json={**vault(), "name": "mail"}).json()
    with jf.db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE inbox_events RENAME TO inbox_events_away")
    try:
        answer = admin("GET", f"/api/connectors/{created['id']}/events")
    finally:
        with jf.db.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE inbox_events_away RENAME TO inbox_events")
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["code"] == "internal_error" and error["remediation"]
    assert "inbox_events" not in answer.text and "Traceback" not in answer.text


def test_a_single_value_where_the_schema_has_a_group_is_refused(callers):
    """``auth`` of the http connector is a group (``auth.mode``, ...): ``"auth": "basic"``
    is a 422 naming it, in every way a config arrives, and nothing is stored."""
    admin = callers["admin"]
    base = {"base_url": "https://api.example.com"}

    def refused(response: httpx2.Response, group: str) -> None:
        error = assert_error(response, 422, "invalid_config")
        assert "must be a group of values" in error["details"]["fields"][group]

    http = {"name": "Api", "category": "http", "provider_type": "http"}
    refused(
        admin("POST", "/api/connectors", json={**http, "config": {**base, "auth": "basic"}}), "auth"
    )
    params = [{"key": "base_url", "value": base["base_url"]}, {"key": "auth", "value": "basic"}]
    refused(admin("POST", "/api/connectors", json={**http, "params": params}), "auth")
    oauth = {
        **base,
        "authorize_url": "https://idp.example.com/authorize",
        "token_url": "https://idp.example.com/token",
        "client_id": "c",
        "oauth": "zzz",  # a group without defaults: stored, it failed only at the callback
    }
    refused(
        admin(
            "POST",
            "/api/connectors",
            json={**http, "provider_type": "oauth2_http", "config": oauth},
        ),
        "oauth",
    )
    assert admin("GET", "/api/connectors").json()["items"] == []

    created = admin("POST", "/api/connectors", json={**http, "config": base})
    assert created.status_code == 201, created.text
    path = f"/api/connectors/{created.json()['id']}"
    refused(admin("PUT", path, json={"config": {**base, "auth": "basic"}}), "auth")
    refused(
        admin("POST", f"{path}/import-config", json={"json_data": {**base, "auth": "basic"}}),
        "auth",
    )
    kept = admin("GET", f"{path}/config").json()["config"]
    assert kept["base_url"] == base["base_url"] and "auth" not in kept


def test_a_connector_id_in_upper_case_names_the_same_connector(callers):
    """UUIDs are case-insensitive: a client that upper-cases one (or copied it from a
    tool that does) reaches the same connector, in a path and in ``?connector_id=``."""
    admin = callers["admin"]
    cid = admin("POST", "/api/connectors", json=vault()).json()["id"]
    upper = cid.upper()
    got = admin("GET", f"/api/connectors/{upper}")
    assert got.status_code == 200, got.text
    assert got.json()["id"] == cid
    renamed = admin("PUT", f"/api/connectors/{upper}", json={"name": "Renamed"})
    assert renamed.status_code == 200 and renamed.json()["id"] == cid
    assert admin("GET", f"/api/connectors/{upper}/config").status_code == 200
    assert admin("GET", f"/api/outbox?connector_id={upper}").status_code == 200
    assert admin("GET", f"/api/connectors/{upper}/events").json()["items"] == []
    assert_error(admin("GET", f"/api/connectors/{upper[:-1]}X"), 404, "not_found")
    assert admin("DELETE", f"/api/connectors/{upper}").status_code == 204
    assert admin("GET", "/api/connectors").json()["items"] == []
