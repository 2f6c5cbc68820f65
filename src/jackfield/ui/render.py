"""Rendering pages: one Jinja2 environment, one ``render`` helper, the navigation.

Page authors call ``render(request, "thing.html", **context)``; the template does
``{% extends "base.html" %}`` and fills ``{% block title %}`` and ``{% block content %}``
(optionally ``{% block head %}`` for extra ``<link>``/``<script src>`` of ``/static``).
Every template sees, besides its own context:

* ``principal`` — the logged-in :class:`~jackfield.service.Principal` (or ``None``);
* ``csrf_token`` — put ``{{ csrf_field() }}`` (or a hidden ``csrf_token`` input) in
  every ``<form method="post">``; htmx requests may send it as ``X-CSRF-Token``;
* ``nav`` — the navigation sections, ``active`` — the current top-level path;
* ``flashes`` — one-shot messages queued with :func:`flash` before a redirect;
* ``static(path)`` — the URL of a vendored asset under ``/static``.

Pages never contain a third-party URL: assets are vendored in ``ui/static``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.templating import Jinja2Templates

from .session import CSRF_FIELD, current_ui_principal, session_key, ui_session
from .times import utc_text

FLASH_COOKIE = "jackfield_flash"
STATIC_PREFIX = "/static"
STATIC_VERSION = "2"  # bump when a vendored asset changes, to defeat stale caches
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


CATEGORY_LABELS = {"http": "HTTP"}


@dataclass(frozen=True)
class NavLink:
    label: str
    href: str


@dataclass(frozen=True)
class NavSection:
    label: str
    links: tuple[NavLink, ...]
    group: str = ""  # a sub-heading under the section label


NAV: tuple[NavSection, ...] = (
    NavSection("Settings", (NavLink("Connectors", "/connectors"),), group="Integrations"),
    NavSection(
        "Operations",
        (
            NavLink("Runtime", "/runtime"),
            NavLink("Outbox", "/outbox"),
            NavLink("Events", "/events"),
        ),
    ),
)
"""The sidebar. Add a page by adding a link here (its module lives in ``ui/pages``)."""


@cache
def templates() -> Jinja2Templates:
    """The UI's templates (built on first use, not at import)."""
    env = Environment(
        loader=PackageLoader("jackfield.ui", "templates"),
        autoescape=select_autoescape(["html", "xml"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url
    env.filters["category_label"] = category_label
    env.filters["utc"] = utc_text
    return Jinja2Templates(env=env)


def category_label(category: str) -> str:
    """``http`` -> ``HTTP``, ``storage`` -> ``Storage``."""
    return CATEGORY_LABELS.get(category, category.replace("_", " ").capitalize())


def static_url(path: str) -> str:
    return f"{STATIC_PREFIX}/{path.lstrip('/')}?v={STATIC_VERSION}"


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A full page (or an htmx partial) from ``template`` with the common context."""
    session = ui_session(request)
    token = session.csrf_token

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)

    path = request.url.path
    base = {
        "principal": current_ui_principal(request),
        "csrf_token": token,
        "csrf_field": csrf_field,
        "nav": NAV,
        "active": "/" + path.strip("/").split("/", 1)[0],
        "flashes": _read_flashes(request),
        "is_htmx": request.headers.get("hx-request") == "true",
    }
    response = templates().TemplateResponse(
        request, template, {**base, **context}, status_code=status_code, headers=headers
    )
    if base["flashes"]:
        response.delete_cookie(FLASH_COOKIE, path="/")
    _harden(response)
    return response


def redirect(url: str, *, status_code: int = 303) -> RedirectResponse:
    """After a POST: see other (the browser GETs ``url``)."""
    response = RedirectResponse(url, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def flash(
    request: Request, response: HTMLResponse | RedirectResponse, message: str, kind: str = "success"
) -> None:
    """Show ``message`` once on the next rendered page (a signed cookie)."""
    jf = request.app.state.jackfield
    body = json.dumps([kind, message]).encode()
    mac = hmac.new(session_key(jf), b"flash\x00" + body, hashlib.sha256).digest()
    value = f"{base64.urlsafe_b64encode(body).decode()}.{base64.urlsafe_b64encode(mac).decode()}"
    secure = jf.settings.public_url.lower().startswith("https://")
    response.set_cookie(
        FLASH_COOKIE, value, max_age=60, path="/", httponly=True, samesite="lax", secure=secure
    )


def _read_flashes(request: Request) -> list[dict[str, str]]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw or "." not in raw:
        return []
    body_text, _, mac_text = raw.partition(".")
    try:
        body = base64.urlsafe_b64decode(body_text)
        mac = base64.urlsafe_b64decode(mac_text)
    except ValueError:
        return []
    key = session_key(request.app.state.jackfield)
    if not hmac.compare_digest(mac, hmac.new(key, b"flash\x00" + body, hashlib.sha256).digest()):
        return []
    kind, message = json.loads(body)
    return [{"kind": str(kind), "message": str(message)}]


def _harden(response: HTMLResponse) -> None:
    """Headers every UI page carries: no framing, no caching, no foreign resources."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
