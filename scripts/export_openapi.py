"""Write the OpenAPI document of the REST API to ``openapi.json`` at the repository root.

Run ``python scripts/export_openapi.py`` after changing a route or a schema; a test
fails while the committed document differs from what the application serves.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "openapi.json"


def document() -> dict[str, Any]:
    """The document ``create_app`` serves at ``/openapi.json`` (on a throwaway database)."""
    from jackfield.api import create_app
    from jackfield.app import Jackfield
    from jackfield.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/openapi.db",
            secret_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
            data_dir=Path(tmp),
        )
        jf = Jackfield(settings=settings)
        try:
            return dict(create_app(jf, start_runtime=False).openapi())
        finally:
            jf.close()


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    sys.path.insert(0, str(ROOT / "src"))
    TARGET.write_text(render(document()), encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
