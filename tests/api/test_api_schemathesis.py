"""Property-based checks of the running API from its own OpenAPI document (schemathesis).

The connector, provider type and OAuth routes must never answer 5xx and must answer
exactly what the document promises (status codes, content types, response schemas).
Every other API route (added by other areas) must at least never answer 5xx. Excluded:
``/hooks/*`` (webhook ingress, no user auth), ``/api/events/stream`` (a never-ending
server-sent event stream) and the UI pages (not in the document). Bounded: a few
examples per operation, no deadline, so the whole file stays well under a minute.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CONNECTOR_ROUTES = (
    r"^/api/connectors(/types|/oauth/callback/\{provider_type\}"
    r"|/\{connector_id\}(/(test|activate|deactivate|import-config|config|oauth/authorize))?)?$"
)
SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


@pytest.fixture
def seeded(jf: Any, admin_token: str, api: Any, tmp_path: Any) -> dict[str, Any]:
    """An existing connector, so generated cases reach past the 404 now and then."""
    import httpx2

    headers = {"Authorization": f"Bearer {admin_token}"}
    body = {"name": "seed", "category": "storage", "provider_type": "local_fs"}
    body["config"] = {"root": str(tmp_path / f"jf-schemathesis-{uuid.uuid4().hex[:8]}")}
    created = httpx2.post(f"{api.url}/api/connectors", json=body, headers=headers)
    assert created.status_code == 201, created.text
    return {"headers": headers, "connector_id": created.json()["id"]}


def _aim(case: Any, seeded: dict[str, Any]) -> None:
    """Point about half of the cases with a connector id at the seeded connector."""
    params = case.path_parameters or {}
    if "connector_id" in params and case.method != "DELETE" and hash(str(params)) % 2 == 0:
        params["connector_id"] = seeded["connector_id"]


def run_operations(api: Any, seeded: dict[str, Any], schema: Any, checks: list[Any]) -> int:
    """Generate and send cases for every operation of ``schema``; returns how many ran.

    (schemathesis' own pytest plugin does not run on pytest 9 yet, so the loop is here.)
    """
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @SETTINGS
        def check(case: Any) -> None:
            _aim(case, seeded)
            case.call_and_validate(base_url=api.url, headers=seeded["headers"], checks=checks)

        check()
        ran += 1
    return ran


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_connector_routes_conform_to_the_document(api: Any, seeded: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    ran = run_operations(api, seeded, schema.include(path_regex=CONNECTOR_ROUTES), checks)
    assert ran == 13  # list, create, types, get, put, delete, 5 actions, 2 OAuth routes


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_other_api_routes_never_answer_5xx(api: Any, seeded: dict[str, Any]) -> None:
    schema = (
        schemathesis.openapi.from_url(f"{api.url}/openapi.json")
        .include(path_regex=r"^/api/")
        .exclude(path_regex=CONNECTOR_ROUTES)
        .exclude(path_regex=r"^/api/events/stream")
    )
    assert run_operations(api, seeded, schema, [not_a_server_error]) > 0
