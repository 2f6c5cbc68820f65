"""The FastAPI application: routers only; every rule lives in ``jackfield.service``.

Every module of ``jackfield.api.routes`` and ``jackfield.ui.pages`` that defines a
``router`` is included, in module-name order, so an area adds endpoints by adding a
module. The runtime (when the application has one) starts and stops with the app.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType

from fastapi import FastAPI

from ..app import Jackfield
from .errors import ErrorGuard, install_error_handlers
from .routes.events import end_streams

ROUTER_PACKAGES = ("jackfield.api.routes", "jackfield.ui.pages")


def _router_modules() -> list[ModuleType]:
    modules = []
    for package_name in ROUTER_PACKAGES:
        package = importlib.import_module(package_name)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            module = importlib.import_module(f"{package_name}.{info.name}")
            if hasattr(module, "router"):
                modules.append(module)
    return modules


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
    modules = _router_modules()
    for module in modules:
        app.include_router(module.router)
    for module in modules:
        setup = getattr(module, "setup_app", None)
        if setup is not None:  # e.g. static files, middleware of the UI
            setup(app)
    app.add_middleware(ErrorGuard)  # last, so that it wraps every other middleware
    return app


async def begin_shutdown(app: FastAPI) -> None:
    """What a server calls as it starts to shut down, before it waits for open
    responses: end those that would never finish by themselves (the event streams)."""
    await end_streams(app)
