"""Tenant isolation over EVERY route of the application, walked at test time, so routes
added later are covered without touching this file.

Organization A owns a connector (with a secret), a message in the outbox and what those
produce. Admin and user of organization B call every route with A's ids in the path and
in the query (``connector_id``, ``organization_id``). Expected: a route about one of A's
resources answers 404 (or 403 for B's user, whose role is refused before any lookup);
no answer carries A's data (its ids, its connector's name, its secret) with a 2xx.

Skipped: ``/hooks/*`` (no user auth; verified by the connector), ``/healthz``,
``/readyz``, ``/metrics``, ``/openapi.json``, ``/docs*``, ``/redoc``, ``/static``, the
OAuth callback (no user auth; the single-use state is the proof) and
``/api/events/stream`` (a never-ending SSE stream; its tenant filter belongs to the
events tests). UI pages (``include_in_schema=False``) ARE walked: B reaches them with a
bearer token and no session, and must not see A's data either.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx2
from fastapi.routing import iter_route_contexts

from jackfield.api import create_app

SECRET = "tok-5e1f0d-tenant-a-secret"
SKIP = re.compile(
    r"^/(hooks/|healthz|readyz|metrics|openapi\.json|docs|redoc|static)"
    r"|^/api/connectors/oauth/callback/|^/api/events/stream"
)
# bodies that pass request validation, so that the service (and its tenant check) runs
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/api/connectors/{connector_id}"): {"name": "stolen"},
    ("POST", "/api/connectors/{connector_id}/import-config"): {"json_data": {"url": "https://x"}},
    ("POST", "/api/connectors/{connector_id}/messages"): {"payload": {"text": "stolen"}},
}


def token(jf: Any, org: str, role: str) -> str:
    email = f"{role}-{uuid.uuid4().hex[:6]}@x.io"
    _, value = jf.accounts.create_user(email, org, role, with_token=True)
    return str(value)


def routes(jf: Any) -> list[tuple[str, str]]:
    app = create_app(jf, start_runtime=False)
    found = []
    for route in iter_route_contexts(app.routes):
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None) or set()
        if path and not SKIP.search(path):
            found += [(m, path) for m in sorted(methods - {"HEAD", "OPTIONS"})]
    return found


def test_another_organization_sees_nothing_of_ours_on_any_route(jf, api):
    org_a, org_b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    a = httpx2.Client(
        base_url=api.url, headers={"Authorization": f"Bearer {token(jf, org_a, 'admin')}"}
    )
    connector = a.post(
        "/api/connectors",
        json={"name": "A-private-connector", "category": "messaging", "provider_type": "echo"},
    ).json()
    vault = a.post(
        "/api/connectors",
        json={
            "name": "A-vault",
            "category": "http",
            "provider_type": "vault_test",
            "params": [{"key": "url", "value": "https://a"}, {"key": "token", "value": SECRET}],
        },
    ).json()
    ids = {"connector_id": connector["id"], "organization_id": connector["organization_id"]}
    sent = a.post(f"/api/connectors/{connector['id']}/messages", json={"payload": {"text": "hi"}})
    if sent.status_code in (200, 202):
        ids["envelope_id"] = sent.json()["envelope_id"]
    private = {
        connector["id"],
        vault["id"],
        connector["organization_id"],
        "A-private-connector",
        "A-vault",
        SECRET,
        *ids.values(),
    }

    walked = routes(jf)
    assert ("GET", "/api/connectors/{connector_id}") in walked and len(walked) > 10
    problems: list[str] = []
    for role in ("admin", "user"):
        b = httpx2.Client(
            base_url=api.url,
            headers={"Authorization": f"Bearer {token(jf, org_b, role)}"},
            timeout=30,
        )
        for method, template in walked:
            names = re.findall(r"{(\w+)(?::\w+)?}", template)
            path = re.sub(
                r"{(\w+)(?::\w+)?}", lambda m: ids.get(m.group(1), connector["id"]), template
            )
            body = BODIES.get(
                (method, template), {} if method in ("POST", "PUT", "PATCH") else None
            )
            response = b.request(
                method,
                path,
                params={
                    "connector_id": ids["connector_id"],
                    "organization_id": ids["organization_id"],
                },
                json=body,
            )
            label = f"{role} {method} {template} -> {response.status_code}"
            if SECRET in response.text:
                problems.append(f"{label}: shows A's secret")
            if response.is_success and any(value in response.text for value in private):
                problems.append(f"{label}: shows A's data: {response.text[:200]}")
            if names and template.startswith("/api/"):
                allowed = {404} if role == "admin" else {403, 404}
                if response.status_code not in allowed:
                    hint = (
                        " (add a valid sample body to BODIES)"
                        if response.status_code == 422
                        else ""
                    )
                    problems.append(
                        f"{label}: expected {sorted(allowed)}{hint}: {response.text[:200]}"
                    )
        b.close()
    assert problems == []
    # A's resources are untouched by all of this
    assert a.get(f"/api/connectors/{connector['id']}").json()["name"] == "A-private-connector"
    assert a.get(f"/api/connectors/{vault['id']}").json()["name"] == "A-vault"
    a.close()
