"""The FastAPI application: routers only; every rule lives in ``jackfield.service``.

Routers are listed in ``ROUTER_MODULES``; each module exposes ``router``. Start-up and
shutdown hooks (the runtime) are registered through ``LIFESPAN_HOOKS``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..app import Jackfield
from .errors import install_error_handlers

ROUTER_MODULES = ["jackfield.api.health"]
"""Routers included in this order (each module defines ``router``)."""


def create_app(jf: Jackfield, *, start_runtime: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = getattr(jf, "runtime", None) if start_runtime else None
        if runtime is not None:
            await runtime.start()
        try:
            yield
        finally:
            if runtime is not None:
                await runtime.stop()

    app = FastAPI(title="Jackfield", version="0.1.0", lifespan=lifespan)
    app.state.jackfield = jf
    install_error_handlers(app)
    for name in ROUTER_MODULES:
        app.include_router(importlib.import_module(name).router)
    return app
