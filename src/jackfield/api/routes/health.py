"""Liveness and readiness probes.

Readiness asks the database for ``SELECT 1`` in a read-only snapshot -- on SQLite that
neither takes nor waits for the write lock, so another process's long write transaction
does not hold the probe up -- and gives it ``PROBE_SECONDS``: a database that does not
answer in time is not ready (503). At most one probe query runs at a time; a probe that
finds one still running waits for that one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

router = APIRouter(tags=["health"])
PROBE_SECONDS = 2.0


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    if await _database_answers(request.app.state, PROBE_SECONDS):
        return JSONResponse({"status": "ok", "database": "reachable"})
    return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)


async def _database_answers(state: Any, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    running: tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]] | None = getattr(
        state, "readiness_probe", None
    )
    if running is None or running[0] is not loop or running[1].done():
        query = loop.run_in_executor(None, _select_one, state.jackfield.db)
        running = state.readiness_probe = (loop, query)
    try:  # a probe that times out leaves the query running for the next probe to await
        return await asyncio.wait_for(asyncio.shield(running[1]), timeout)
    except TimeoutError:
        return False


def _select_one(db: Any) -> bool:
    try:
        with db.snapshot() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True
