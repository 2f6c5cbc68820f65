"""REST API (FastAPI): translate HTTP <-> service calls."""

from .app import create_app

__all__ = ["create_app"]
