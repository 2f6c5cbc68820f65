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
