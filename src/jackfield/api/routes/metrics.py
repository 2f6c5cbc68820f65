"""Prometheus metrics (instance totals; no organization data, no secrets)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from ...service import metrics
from ..deps import JF

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=PlainTextResponse)
def prometheus_metrics(jf: JF) -> PlainTextResponse:
    deliveries = jf.runtime.delivery.stats.outcomes()
    text = metrics.exposition(metrics.collect(jf.db, deliveries))
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
