"""The committed ``openapi.json`` is the document the application serves."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_exporter():
    spec = importlib.util.spec_from_file_location(
        "export_openapi", ROOT / "scripts" / "export_openapi.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_openapi_document_is_up_to_date():
    exporter = load_exporter()
    current = exporter.document()
    committed_path = ROOT / "openapi.json"
    assert committed_path.exists(), (
        "openapi.json is missing: run `python scripts/export_openapi.py`"
    )
    committed = json.loads(committed_path.read_text(encoding="utf-8"))
    assert committed == json.loads(exporter.render(current)), (
        "openapi.json is out of date with the application's routes and schemas: "
        "run `python scripts/export_openapi.py` and commit the result"
    )


def test_document_describes_the_connector_api():
    doc = load_exporter().document()
    paths = doc["paths"]
    for path in (
        "/api/connectors",
        "/api/connectors/types",
        "/api/connectors/{connector_id}",
        "/api/connectors/{connector_id}/import-config",
        "/api/connectors/{connector_id}/oauth/authorize",
        "/api/connectors/oauth/callback/{provider_type}",
    ):
        assert path in paths, path
    create = paths["/api/connectors"]["post"]
    assert set(create["responses"]) >= {"201", "401", "403", "413", "422"}
    assert not any(p.startswith("/connectors") or p == "/login" for p in paths)  # UI pages


def test_every_error_is_documented_in_the_error_format():
    """FastAPI documents its own 422 body unless a route says otherwise; every 4xx here
    answers ``{"error": {...}}``, and the document must say so."""
    for path, operations in load_exporter().document()["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (
                        method,
                        path,
                        status,
                    )


def test_the_runtime_shapes_list_every_field_the_api_returns():
    from datetime import UTC, datetime

    from jackfield.service.events import EventRecord
    from jackfield.service.messages import message_view
    from jackfield.service.outbox_enqueue import NewRow
    from jackfield.service.units import unit_view
    from jackfield.store.models_outbox import RuntimeUnit

    now = datetime.now(UTC)
    schemas = load_exporter().document()["components"]["schemas"]
    message = message_view(NewRow("e", "c", "send", "pending", 0, now, now, now))
    row = RuntimeUnit(connector_id="c", liveness="running", restart_seen=0, updated_at=now)
    unit = unit_view(row, 0, "name")
    event = EventRecord(1, "c", "o", "e", "t", {}, "webhook", now, None).view()
    for name, returned in (("MessageOut", message), ("UnitOut", unit), ("EventOut", event)):
        assert set(schemas[name]["properties"]) == set(returned), name
