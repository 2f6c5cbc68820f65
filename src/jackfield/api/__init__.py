"""REST API (FastAPI): translate HTTP <-> service calls."""

from .app import begin_shutdown, create_app

__all__ = ["begin_shutdown", "create_app"]
