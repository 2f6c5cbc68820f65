"""The admin UI's session: a signed cookie, CSRF tokens, and the login requirement.

The cookie holds ``{user id, nonce, issued, expiry}`` signed with HMAC-SHA256 under a
key derived (HKDF) from the current master key, so it needs no server-side table and a
key rotation logs everybody out. Nothing secret is in it; it only proves "this browser
logged in as user U at I, until T". Logging out voids every session of the user issued
until then (``users.sessions_ended_at``): a copy of the cookie is refused afterwards.

Every browser gets a session before it logs in (an anonymous one, made the first time a
page needs a CSRF token), so the login form is CSRF-protected too; logging in replaces
the nonce, so a session planted before login is worthless afterwards. The CSRF token of
a form is an HMAC of the session nonce: a page from another site cannot know it.

:class:`SessionMiddleware` (pure ASGI, so streaming responses pass untouched) reads the
cookie, exposes the session as ``request.state.ui_session`` and sets
``request.state.session_user_id``, which :func:`jackfield.api.deps.current_principal`
honours. A REST write (``/api/...``, unsafe method) authenticated only by the cookie
must also carry ``X-CSRF-Token``; otherwise the cookie is ignored for that request.
UI pages check the token with the :func:`csrf_protect` dependency.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..app import Jackfield
from ..kernel.errors import AuthenticationError
from ..service import Principal

COOKIE_NAME = "jackfield_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
ANONYMOUS_SECONDS = 2 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_INFO = b"jackfield-ui-session"


class LoginRequired(Exception):
    """Raised by :func:`require_ui_principal`; answered with a redirect to the login page."""

    def __init__(self, next_path: str = "/") -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfFailed(Exception):
    """A state-changing request without the session's CSRF token."""


# -- signing --------------------------------------------------------------------------
_key_cache: dict[bytes, bytes] = {}


def session_key(jf: Jackfield) -> bytes:
    """The HMAC key for cookies: HKDF-SHA256 over the current master key."""
    raw = jf.box.keyring.current.raw
    key = _key_cache.get(raw)
    if key is None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(raw)
        _key_cache.clear()  # only the current master key matters
        _key_cache[raw] = key
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: bytes, data: bytes) -> bytes:
    return hmac.new(key, purpose + b"\x00" + data, hashlib.sha256).digest()


@dataclass
class UiSession:
    """One browser's session; ``changed`` makes the middleware write the cookie."""

    key: bytes = field(repr=False)
    user_id: str | None = None
    nonce: str = ""
    issued_ms: int = 0  # when it was issued, in milliseconds since the epoch
    expires: int = 0
    changed: bool = False
    cleared: bool = False

    @property
    def active(self) -> bool:
        return bool(self.nonce) and not self.cleared and self.expires > time.time()

    @property
    def csrf_token(self) -> str:
        """The token forms must send back; makes an anonymous session when needed."""
        if not self.active:
            self._renew(None, ANONYMOUS_SECONDS)
        return _b64(_mac(self.key, b"csrf", self.nonce.encode()))

    def check_csrf(self, token: str | None) -> bool:
        if not token or not self.active:
            return False
        expected = _b64(_mac(self.key, b"csrf", self.nonce.encode()))
        return hmac.compare_digest(expected.encode(), token.encode())

    def login(self, user_id: str) -> None:
        """Bind the session to ``user_id`` with a fresh nonce (no session fixation)."""
        self._renew(user_id, SESSION_SECONDS)

    @property
    def issued_at(self) -> datetime:
        return datetime.fromtimestamp(self.issued_ms / 1000, UTC)

    def logout(self) -> None:
        self.user_id, self.nonce, self.issued_ms, self.expires = None, "", 0, 0
        self.changed, self.cleared = True, True

    def _renew(self, user_id: str | None, lifetime: int) -> None:
        now = time.time()
        self.user_id = user_id
        self.nonce = secrets.token_urlsafe(16)
        self.issued_ms, self.expires = int(now * 1000), int(now) + lifetime
        self.changed, self.cleared = True, False

    # -- the cookie ---------------------------------------------------------------------
    def dump(self) -> str:
        body = json.dumps(
            {"u": self.user_id, "n": self.nonce, "i": self.issued_ms, "e": self.expires},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(body)}.{_b64(_mac(self.key, b'session', body))}"

    @classmethod
    def load(cls, key: bytes, cookie: str | None) -> UiSession:
        """The session in ``cookie``, or an empty one if it is missing, forged or expired."""
        session = cls(key)
        if not cookie or "." not in cookie:
            return session
        body_text, _, signature = cookie.partition(".")
        try:
            body = _unb64(body_text)
            valid = hmac.compare_digest(_unb64(signature), _mac(key, b"session", body))
            data = json.loads(body) if valid else None
        except (binascii.Error, ValueError):
            return session
        if not isinstance(data, dict):
            return session
        user, nonce, expires = data.get("u"), data.get("n"), data.get("e")
        if not isinstance(nonce, str) or not isinstance(expires, int) or expires <= time.time():
            return session
        issued = data.get("i")
        if not isinstance(issued, int):  # a cookie from before "i": issued at its login
            issued = (expires - SESSION_SECONDS) * 1000
        session.user_id = user if isinstance(user, str) else None
        session.nonce, session.issued_ms, session.expires = nonce, issued, expires
        return session


# -- the middleware ---------------------------------------------------------------------
class SessionMiddleware:
    """Loads the session cookie into ``request.state`` and writes it back when changed."""

    def __init__(self, app: ASGIApp, jf: Jackfield) -> None:
        self.app = app
        self.jf = jf
        self.secure = jf.settings.public_url.lower().startswith("https://")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - http.cookies raises CookieError on junk; ignore it
            cookie = SimpleCookie()
        raw = cookie[COOKIE_NAME].value if COOKIE_NAME in cookie else None
        session = UiSession.load(session_key(self.jf), raw)
        state = scope.setdefault("state", {})
        state["ui_session"] = session
        if session.active and session.user_id:
            if _cookie_counts(scope, headers, session):
                state["session_user_id"] = session.user_id
            else:  # a logged-in browser's REST write without the header: told why
                state["session_needs_csrf"] = True

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.changed:
                extra = [(b"set-cookie", self._set_cookie(session).encode("latin-1"))]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _set_cookie(self, session: UiSession) -> str:
        parts = [f"{COOKIE_NAME}={'' if session.cleared else session.dump()}", "Path=/"]
        if session.cleared:
            parts.append("Max-Age=0")
        else:
            parts.append(f"Max-Age={max(0, session.expires - int(time.time()))}")
        parts += ["HttpOnly", "SameSite=Lax"]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookie_counts(scope: Scope, headers: dict[str, str], session: UiSession) -> bool:
    """Whether the cookie may authenticate this request (REST writes need the header)."""
    path: str = scope.get("path", "")
    if scope.get("method", "GET") in SAFE_METHODS or not path.startswith("/api/"):
        return True
    return session.check_csrf(headers.get(CSRF_HEADER))


# -- dependencies for pages ------------------------------------------------------------
def ui_session(request: Request) -> UiSession:
    """The request's session (an empty one if the middleware is not installed)."""
    session = getattr(request.state, "ui_session", None)
    if session is None:
        session = UiSession(session_key(request.app.state.jackfield))
        request.state.ui_session = session
    return session


def current_ui_principal(request: Request) -> Principal | None:
    """The logged-in principal, or ``None`` (cached on the request)."""
    if hasattr(request.state, "ui_principal"):
        cached: Principal | None = request.state.ui_principal
        return cached
    principal: Principal | None = None
    user_id = getattr(request.state, "session_user_id", None)
    if user_id:
        jf: Jackfield = request.app.state.jackfield
        try:
            principal = jf.accounts.principal_for_user(user_id, ui_session(request).issued_at)
        except AuthenticationError:  # the user is gone, or logged out elsewhere: log out
            ui_session(request).logout()
    request.state.ui_principal = principal
    return principal


def require_ui_principal(request: Request) -> Principal:
    """Dependency of every UI page: the principal, or a redirect to the login page."""
    principal = current_ui_principal(request)
    if principal is None:
        raise LoginRequired(_page_of(request))
    return principal


async def csrf_protect(request: Request) -> None:
    """Dependency: unsafe methods must carry the session's CSRF token.

    The token comes from the form field ``csrf_token`` (every form renders it) or the
    ``X-CSRF-Token`` header. Starlette caches the parsed form, so the page can read it
    again with ``await request.form()``.
    """
    if request.method in SAFE_METHODS:
        return
    token = request.headers.get(CSRF_HEADER)
    if not token:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    if not ui_session(request).check_csrf(token):
        raise CsrfFailed("the form has expired or did not come from this site")


def _page_of(request: Request) -> str:
    """Where to come back after login: the page the browser shows. For an htmx request
    (the Events page's poll, say) that is ``HX-Current-URL``, not the fragment's URL."""
    url: Any = request.url
    current = request.headers.get("hx-current-url")
    if request.headers.get("hx-request") == "true" and current:
        url = urlsplit(current)  # its path and query only: never another site
    return str(url.path or "/") + (f"?{url.query}" if url.query else "")


def login_url(next_path: str = "/") -> str:
    return "/login" + (f"?next={quote(next_path, safe='/')}" if next_path not in ("", "/") else "")


def safe_next(value: Any) -> str:
    """A local path to go to after login (never another site)."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/connectors"


def ui_router() -> APIRouter:
    """The router of a UI page module: hidden from OpenAPI, CSRF-checked on every POST."""
    return APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])


async def _read_form(request: Request) -> FormData:
    return await request.form()


UiForm = Annotated[FormData, Depends(_read_form)]
"""``form: UiForm`` in a page's signature: the submitted form (urlencoded or multipart),
read in the event loop so that a sync page function can use it in its worker thread."""

UiPrincipal = Annotated[Principal, Depends(require_ui_principal)]
"""``who: UiPrincipal`` in a page's signature: logged in or redirected to the login page."""
