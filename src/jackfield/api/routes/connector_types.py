"""``GET /api/connectors/types``: the providers that can be configured.

This module sorts before ``connectors`` (routers are included in module-name order), so
``/api/connectors/types`` is matched before ``/api/connectors/{connector_id}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from ..deps import JF, Caller
from ..schemas import ProviderTypeList, error_responses

router = APIRouter(prefix="/api/connectors", tags=["connectors"])


@router.get(
    "/types",
    response_model=ProviderTypeList,
    responses=error_responses(400, 401, 422),
    summary="List provider types",
)
def list_provider_types(
    jf: JF,
    who: Caller,
    category: str | None = Query(default=None, max_length=50),
) -> dict[str, Any]:
    """Every registered provider (of ``category``), with its config JSON Schema."""
    return {"items": jf.connectors.provider_types(category), "next_cursor": None}
