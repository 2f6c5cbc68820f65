"""Login, logout and the UI's plumbing (session middleware, static files, redirects).

``setup_app`` is called by ``create_app``: it installs :class:`SessionMiddleware`, the
``/static`` mount of the vendored assets, and the handlers that turn
:class:`LoginRequired` into a redirect to the login page and :class:`CsrfFailed` into a
403 page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ...api.errors import status_for
from ...app import Jackfield
from ...kernel.errors import AuthenticationError, JackfieldError
from ...secrets import redactor
from ...service.login_throttle import TooManyLoginAttempts
from ..render import STATIC_PREFIX, redirect, render
from ..session import (
    CsrfFailed,
    LoginRequired,
    SessionMiddleware,
    UiForm,
    current_ui_principal,
    login_url,
    safe_next,
    ui_router,
    ui_session,
)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = ui_router()


@router.get("/")
def home(request: Request) -> Response:
    """The admin UI's entry: the connectors, or the login page when not logged in."""
    if current_ui_principal(request) is None:
        return redirect(login_url(), status_code=303)
    return redirect("/connectors", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str = "/connectors") -> Response:
    if current_ui_principal(request) is not None:
        return redirect(safe_next(next))
    return render(request, "login.html", next=safe_next(next), email="", error="")


@router.post("/login")
def login(request: Request, form: UiForm) -> Response:
    jf: Jackfield = request.app.state.jackfield
    email = str(form.get("email") or "")
    password = str(form.get("password") or "")
    target = safe_next(form.get("next"))
    try:
        principal = jf.accounts.authenticate_password(email, password)
    except TooManyLoginAttempts as exc:
        error = f"Too many failed logins for this email. Try again in {exc.retry_after} s."
        answer = render(
            request, "login.html", status_code=429, next=target, email=email, error=error
        )
        answer.headers["Retry-After"] = str(exc.retry_after)
        return answer
    except AuthenticationError:
        # one message for an unknown email and a wrong password: no user enumeration
        return render(
            request,
            "login.html",
            status_code=401,
            next=target,
            email=email,
            error="Wrong email or password.",
        )
    assert principal.user_id is not None  # authenticate_password always names the user
    ui_session(request).login(principal.user_id)
    return redirect(target)


@router.post("/logout")
def logout(request: Request) -> Response:
    jf: Jackfield = request.app.state.jackfield
    session = ui_session(request)
    if session.active and session.user_id:  # a copy of the cookie must not outlive this
        jf.accounts.end_sessions(session.user_id)
    session.logout()
    return redirect(login_url())


# -- plumbing ---------------------------------------------------------------------------
def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    url = login_url(exc.next_path)
    if request.headers.get("hx-request") == "true":  # htmx: navigate the whole page
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _csrf_failed(request: Request, exc: Exception) -> HTMLResponse:
    return render(
        request,
        "error.html",
        status_code=403,
        title="Form expired",
        message="This form has expired or did not come from this site. "
        "Go back, reload the page and try again.",
    )


MACHINE_PATHS = ("/api/", "/hooks/", "/oauth/", STATIC_PREFIX + "/")
"""Paths of machines' endpoints: their 404 stays the JSON error of the API."""


def _page_not_found(api_answer: Any) -> Any:
    """The app's HTTP error handler, but a browser asking for a page that does not exist
    gets the UI's page instead of the API's JSON."""

    async def answer(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        path = request.url.path
        wants_page = "text/html" in request.headers.get("accept", "")
        if exc.status_code == 404 and wants_page and not path.startswith(MACHINE_PATHS):
            return await run_in_threadpool(  # render reads the session's user
                render,
                request,
                "error.html",
                status_code=404,
                title="Page not found",
                message="There is no page at this address.",
            )
        response: Response = await api_answer(request, exc)
        return response

    return answer


OAUTH_CALLBACK = "/api/connectors/oauth/callback/"


def _oauth_callback_page(api_answer: Any) -> Any:
    """The app's handler of Jackfield's errors, but a browser coming back from an OAuth
    provider (the callback is an API route) whose callback fails -- a state used already
    or expired -- gets a page instead of the API's JSON."""

    async def answer(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, JackfieldError)
        wants_page = "text/html" in request.headers.get("accept", "")
        if wants_page and request.url.path.startswith(OAUTH_CALLBACK):
            hint = f" {exc.remediation}" if exc.remediation else ""
            return await run_in_threadpool(
                render,
                request,
                "error.html",
                status_code=status_for(exc),
                title="The connection was not completed",
                message=redactor.redact(exc.message + hint),  # (no organization known)
            )
        response: Response = await api_answer(request, exc)
        return response

    return answer


def setup_app(app: FastAPI) -> None:
    jf: Jackfield = app.state.jackfield
    app.add_middleware(SessionMiddleware, jf=jf)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CsrfFailed, _csrf_failed)
    api_answer = app.exception_handlers[StarletteHTTPException]
    app.add_exception_handler(StarletteHTTPException, _page_not_found(api_answer))
    errors = app.exception_handlers[JackfieldError]
    app.add_exception_handler(JackfieldError, _oauth_callback_page(errors))
