"""The FastAPI application: routers only; every rule lives in ``jackfield.service``."""

from __future__ import annotations

from fastapi import FastAPI

from ..app import Jackfield
from . import health


def create_app(jf: Jackfield) -> FastAPI:
    app = FastAPI(title="Jackfield", version="0.1.0")
    app.state.jackfield = jf
    app.include_router(health.router)
    return app
