"""Editing connectors over real HTTP the way a client does: read a connector, change it,
send it back. What GET shows must be safe to show (to every role) and safe to send back."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from typing import Any

import httpx2

from .test_api_connectors import SECRET, assert_error, callers, vault

__all__ = ["callers"]  # the fixture, imported for these tests

FILE_SECRET = "file-secret-5d1e0a"


def test_config_masks_every_param_stored_as_secret(callers):
    """Before, ``/config`` masked by the provider's schema only: a param its sender marked
    secret, and the content of a secret file, came back in plaintext -- to role user too."""
    admin, user = callers["admin"], callers["user"]
    body = vault()
    body["params"] += [
        {"key": "extra.api_key", "value": SECRET, "secret": True},
        {
            "key": "client_cert",
            "value": base64.b64encode(FILE_SECRET.encode()).decode(),
            "value_type": "file",
            "secret": True,
        },
    ]
    created = admin("POST", "/api/connectors", json=body)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    for caller in (admin, user):
        answer = caller("GET", f"/api/connectors/{cid}/config")
        assert answer.status_code == 200, answer.text
        config = answer.json()["config"]
        assert config["extra"] == {"api_key": "********"}
        assert config["client_cert"] == "********"
        assert config["token"] == "********" and config["url"] == "https://vault.example.com"
        assert FILE_SECRET not in answer.text and SECRET not in answer.text


def test_sending_back_a_file_param_as_get_shows_it_keeps_the_file(callers):
    """Before, GET showed a (non-secret) file param as ``null`` and a PUT of those params
    stored ``null``: the file was gone. Now it is kept, and ``""`` removes it on purpose."""
    admin = callers["admin"]
    body = vault()
    body["params"].append(
        {"key": "ca", "value": base64.b64encode(b"-----CA-----").decode(), "value_type": "file"}
    )
    cid = admin("POST", "/api/connectors", json=body).json()["id"]
    shown = admin("GET", f"/api/connectors/{cid}").json()["params"]
    assert {"key": "ca", "value": None, "value_type": "file", "secret": False}.items() <= next(
        p for p in shown if p["key"] == "ca"
    ).items()

    put = admin("PUT", f"/api/connectors/{cid}", json={"params": shown})
    assert put.status_code == 200, put.text
    config = admin("GET", f"/api/connectors/{cid}/config").json()["config"]
    assert config["ca"] == "-----CA-----" and config["token"] == "********"

    shown = admin("GET", f"/api/connectors/{cid}").json()["params"]
    for param in shown:
        if param["key"] == "ca":
            param["value"] = ""
    assert admin("PUT", f"/api/connectors/{cid}", json={"params": shown}).status_code == 200
    config = admin("GET", f"/api/connectors/{cid}/config").json()["config"]
    assert config.get("ca") in (None, "")


def test_put_takes_the_create_body_back_but_category_and_provider_stay(callers):
    """Before, a PUT with ``category`` or ``provider_type`` (even unchanged) was refused as
    "Extra inputs are not permitted", so a connector read with GET could not be sent
    back whole."""
    admin = callers["admin"]
    cid = admin("POST", "/api/connectors", json=vault()).json()["id"]
    got = admin("GET", f"/api/connectors/{cid}").json()
    body = {k: got[k] for k in ("name", "category", "provider_type", "params", "is_default")}
    body["name"] = "Vault (edited)"
    put = admin("PUT", f"/api/connectors/{cid}", json=body)
    assert put.status_code == 200, put.text
    assert put.json()["name"] == "Vault (edited)" and put.json()["provider_type"] == "vault_test"

    for field, other in (("category", "storage"), ("provider_type", "oauth2_http")):
        error = assert_error(
            admin("PUT", f"/api/connectors/{cid}", json={**body, field: other, "name": "x"}),
            422,
            "invalid_config",
        )
        assert "cannot change" in error["message"] and field in error["details"]["fields"]
    after = admin("GET", f"/api/connectors/{cid}").json()
    assert (after["name"], after["category"], after["provider_type"]) == (
        "Vault (edited)",
        "http",
        "vault_test",
    )


def _all_at_once(calls: list[Callable[[], httpx2.Response]]) -> list[httpx2.Response]:
    """Run the calls on their own threads, released together."""
    barrier = threading.Barrier(len(calls))
    answers: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        answers[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_concurrent_set_default_calls_take_turns_without_errors(callers, api, tmp_path):
    """Before, on PostgreSQL, concurrent ``PUT {"is_default": true}`` of connectors of one
    category failed with 500 (IntegrityError on uq_connectors_default_per_category) for
    about a third of the callers; so did concurrent creates with ``is_default``."""
    admin = callers["admin"]
    headers = dict(admin.client.headers)

    def call(method: str, path: str, body: dict[str, Any]) -> Callable[[], httpx2.Response]:
        def send() -> httpx2.Response:
            with httpx2.Client(base_url=api.url, headers=headers, timeout=60) as client:
                return client.request(method, path, json=body)

        return send

    ids = [
        admin("POST", "/api/connectors", json=vault(name=f"v{i}")).json()["id"] for i in range(8)
    ]
    for _ in range(3):
        answers = _all_at_once(
            [call("PUT", f"/api/connectors/{cid}", {"is_default": True}) for cid in ids]
        )
        assert [a.status_code for a in answers] == [200] * len(ids), [
            a.text for a in answers if a.status_code != 200
        ]
        assert all(a.json()["is_default"] for a in answers)
        listed = admin("GET", "/api/connectors?category=http").json()["items"]
        assert len([c for c in listed if c["is_default"]]) == 1

    files = {
        "category": "storage",
        "provider_type": "local_fs",
        "config": {"root": str(tmp_path / "x")},
    }
    created = _all_at_once(
        [
            call("POST", "/api/connectors", {**files, "name": f"fs{i}", "is_default": True})
            for i in range(8)
        ]
    )
    assert [a.status_code for a in created] == [201] * 8, [a.text for a in created]
    listed = admin("GET", "/api/connectors?category=storage").json()["items"]
    assert len(listed) == 8 and len([c for c in listed if c["is_default"]]) == 1


def test_a_key_given_twice_is_refused_naming_the_key(callers, tmp_path):
    """Before, a key listed twice kept the last one listed (REST), while
    ``unflatten_params`` keeps the highest ``sequence``: the stored value was a guess."""
    admin = callers["admin"]
    twice = [
        {"key": "url", "value": "https://a.example", "sequence": 20},
        {"key": "url", "value": "https://b.example", "sequence": 10},
    ]
    for body in (
        {**vault(), "params": twice},
        {**vault(), "config": {"url": "https://c.example", "x.y": "1", "x": {"y": "2"}}},
    ):
        error = assert_error(admin("POST", "/api/connectors", json=body), 422, "invalid_config")
        assert error["details"]["fields"]
        assert "url" in error["details"]["fields"] or "x.y" in error["details"]["fields"]
    assert admin("GET", "/api/connectors").json()["items"] == []

    cid = admin("POST", "/api/connectors", json=vault()).json()["id"]
    error = assert_error(
        admin("PUT", f"/api/connectors/{cid}", json={"params": twice}), 422, "invalid_config"
    )
    assert list(error["details"]["fields"]) == ["url"] and "url" in error["message"]
    files = {"name": "f", "category": "storage", "provider_type": "local_fs"}
    fid = admin("POST", "/api/connectors", json={**files, "config": {"root": str(tmp_path / "x")}})
    doc = {"json_data": {"root": str(tmp_path / "y"), "a.b": "1", "a": {"b": "2"}}}
    error = assert_error(
        admin("POST", f"/api/connectors/{fid.json()['id']}/import-config", json=doc), 422
    )
    assert list(error["details"]["fields"]) == ["a.b"]
    # a params entry may still override the same key of the nested config
    both = {"config": {"url": "https://e.example"}, "params": [twice[0]]}
    put = admin("PUT", f"/api/connectors/{cid}", json=both)
    assert put.status_code == 200, put.text
    assert admin("GET", f"/api/connectors/{cid}/config").json()["config"]["url"] == (
        "https://a.example"
    )


def test_list_pages_skip_nothing_when_an_earlier_row_is_deleted(callers):
    """Before, ``next_cursor`` was an offset: deleting a connector of the first page made
    the second page start one too far, and a connector was never listed."""
    admin = callers["admin"]
    ids = [
        admin("POST", "/api/connectors", json=vault(name=f"v{i}")).json()["id"] for i in range(7)
    ]
    first = admin("GET", "/api/connectors?limit=3").json()
    assert [c["id"] for c in first["items"]] == ids[:3] and first["next_cursor"]
    assert admin("DELETE", f"/api/connectors/{ids[2]}").status_code == 204
    assert admin("DELETE", f"/api/connectors/{ids[0]}").status_code == 204
    second = admin("GET", f"/api/connectors?limit=3&cursor={first['next_cursor']}").json()
    assert [c["id"] for c in second["items"]] == ids[3:6]
    third = admin("GET", f"/api/connectors?limit=3&cursor={second['next_cursor']}").json()
    assert [c["id"] for c in third["items"]] == ids[6:] and third["next_cursor"] is None
    offset = base64.urlsafe_b64encode(b"3").decode().rstrip("=")  # the old cursor format
    for bad in (offset, "!!", "bm9wZQ", "x" * 100):
        assert_error(admin("GET", f"/api/connectors?cursor={bad}"), 422, "invalid_request")
