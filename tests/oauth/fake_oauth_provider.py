"""A local OAuth2 authorization server with two protected resources, for the OAuth tests.

``ProviderServer`` follows RFC 6749 (authorization code grant, refresh token grant,
client authentication by HTTP Basic or form) and RFC 7636 (PKCE, S256 only), and serves
``/api/me`` (for ``oauth2_http``) and a subset of the Google Drive v3 REST API under
``/drive/v3`` and ``/upload/drive/v3`` (for ``google_drive``) with Drive's documented
request and response shapes. Switches on the instance make it rotate refresh tokens,
omit them, delay or refuse refreshes; ``calls`` counts token endpoint calls by grant.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "jackfield-test-client"
CLIENT_SECRET = "cs-4f8a2e-client-secret-value"
FOLDER_MIME = "application/vnd.google-apps.folder"


def _error(status: int, error: str, description: str = "") -> JSONResponse:
    body = {"error": error}
    if description:
        body["error_description"] = description
    return JSONResponse(body, status, headers={"Cache-Control": "no-store"})


def _drive_error(status: int, reason: str, message: str) -> JSONResponse:
    errors = [{"domain": "global", "reason": reason, "message": message}]
    return JSONResponse({"error": {"code": status, "message": message, "errors": errors}}, status)


class ProviderServer:
    """Authorization server + protected resources, with switches for the tests."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()  # token endpoint calls by grant type, authorize
        self.codes: dict[str, dict[str, Any]] = {}
        self.access: dict[str, float] = {}  # access token -> expiry (server clock)
        self.refresh: dict[str, bool] = {}  # refresh token -> still valid
        self.expires_in = 3600
        self.rotate = False  # issue a new refresh token on every refresh
        self.omit_refresh = False  # answer a refresh without refresh_token
        self.refresh_delay = 0.0
        self.refresh_failure: tuple[int, str] | None = None  # (status, error code)
        self.refresh_page: str | None = None  # answer refreshes 200 with this (not JSON)
        self.client_auth_seen: list[str] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.page_size_cap = 3  # small pages so listing must follow nextPageToken
        # answer every Drive call 200 with this body (a proxy's page, a cut body);
        # ``{token}`` in it becomes the access token the request carried
        self.drive_not_json: str | None = None
        self.size_text: str | None = None  # every file's size as this (a malformed answer)
        self.url = ""

    # -- helpers for tests ------------------------------------------------------------
    def issue_access(self, expires_in: int | None = None) -> str:
        token = "at-" + secrets.token_urlsafe(16)
        self.access[token] = time.time() + (expires_in or self.expires_in)
        return token

    def revoke_all_access(self) -> None:
        self.access.clear()

    def make_folder(self, name: str = "jackfield") -> str:
        folder_id = "fld-" + secrets.token_hex(6)
        self.files[folder_id] = self._file(folder_id, name, FOLDER_MIME, "root", b"")
        return folder_id

    # -- authorization endpoint ------------------------------------------------------
    async def authorize(self, request: Request) -> Response:
        self.calls["authorize"] += 1
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or not q.get("redirect_uri"):
            return Response("unknown client or redirect_uri", 400)
        redirect_uri = q["redirect_uri"]

        def back(**params: str) -> Response:
            params["state"] = q.get("state", "")
            return RedirectResponse(f"{redirect_uri}?{urlencode(params)}", 302)

        if q.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return back(error="invalid_request", error_description="PKCE S256 required")
        code = "code-" + secrets.token_urlsafe(12)
        self.codes[code] = {
            "redirect_uri": redirect_uri,
            "challenge": q["code_challenge"],
            "scope": q.get("scope", ""),
            "used": False,
        }
        return back(code=code)

    # -- token endpoint ---------------------------------------------------------------
    def _client(self, request: Request, form: dict[str, str]) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            raw = base64.b64decode(header[6:]).decode()
            client_id, _, secret = raw.partition(":")
            self.client_auth_seen.append("client_secret_basic")
            return unquote_plus(client_id) if unquote_plus(secret) == CLIENT_SECRET else None
        self.client_auth_seen.append("client_secret_post")
        if form.get("client_secret") == CLIENT_SECRET:
            return form.get("client_id")
        return None

    def _tokens(self, scope: str, *, refresh: str | None) -> JSONResponse:
        body: dict[str, Any] = {
            "access_token": self.issue_access(),
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": scope,
        }
        if refresh:
            body["refresh_token"] = refresh
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        grant = form.get("grant_type", "")
        self.calls[grant] += 1
        if self._client(request, form) != CLIENT_ID:
            return _error(401, "invalid_client")
        if grant == "authorization_code":
            entry = self.codes.get(form.get("code", ""))
            if entry is None or entry["used"]:
                return _error(400, "invalid_grant", "unknown or used code")
            entry["used"] = True
            if form.get("redirect_uri") != entry["redirect_uri"]:
                return _error(400, "invalid_grant", "redirect_uri mismatch")
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not 43 <= len(verifier) <= 128 or challenge != entry["challenge"]:
                return _error(400, "invalid_grant", "PKCE verification failed")
            refresh = "rt-" + secrets.token_urlsafe(16)
            self.refresh[refresh] = True
            return self._tokens(entry["scope"], refresh=refresh)
        if grant == "refresh_token":
            if self.refresh_delay:
                await asyncio.sleep(self.refresh_delay)
            if self.refresh_page is not None:
                return Response(self.refresh_page, 200, media_type="text/html")
            if self.refresh_failure is not None:
                status, code = self.refresh_failure
                return _error(status, code, "the refresh token was revoked")
            old = form.get("refresh_token", "")
            if not self.refresh.get(old):
                return _error(400, "invalid_grant", "unknown or revoked refresh token")
            new = None
            if self.rotate:
                self.refresh[old] = False
                new = "rt-" + secrets.token_urlsafe(16)
                self.refresh[new] = True
            elif not self.omit_refresh:
                new = old
            return self._tokens("", refresh=new)
        return _error(400, "unsupported_grant_type")

    # -- protected resources ------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        return self.access.get(token, 0) > time.time()

    async def me(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"error": "invalid_token"}, 401)
        return JSONResponse({"user": "alice"})

    # -- Drive v3 ---------------------------------------------------------------------
    @staticmethod
    def _file(file_id: str, name: str, mime: str, parent: str, content: bytes) -> dict[str, Any]:
        return {
            "kind": "drive#file",
            "id": file_id,
            "name": name,
            "mimeType": mime,
            "parents": [parent],
            "trashed": False,
            "content": content,
            "modifiedTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }

    def _resource(self, item: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in item.items() if k not in ("content", "trashed")}
        if item["mimeType"] != FOLDER_MIME:
            out["size"] = self.size_text or str(len(item["content"]))  # int64 as a string
        return out

    def _matches(self, item: dict[str, Any], query: str) -> bool:
        for clause in _parse_query(query):
            if clause[1] == "in":
                if clause[0] not in item["parents"]:
                    return False
                continue
            field, op, value = clause
            actual = {"trashed": str(item["trashed"]).lower()}.get(field, item.get(field))
            if (actual == value) != (op == "="):
                return False
        return True

    async def drive(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse(
                {
                    "error": {
                        "code": 401,
                        "message": "Request had invalid authentication credentials.",
                        "status": "UNAUTHENTICATED",
                    }
                },
                401,
            )
        if self.drive_not_json is not None:
            token = request.headers["authorization"][7:]
            return Response(self.drive_not_json.replace("{token}", token), 200)
        method, path = request.method, request.url.path
        q = request.query_params
        match = re.fullmatch(r"/(upload/)?drive/v3/files(?:/([^/]+))?", path)
        if match is None:
            return _drive_error(404, "notFound", "Not Found")
        upload, file_id = match.group(1), match.group(2)
        if file_id == "root":
            root = self._file("root", "My Drive", FOLDER_MIME, "", b"")
            return JSONResponse(self._resource(root))
        if file_id is not None and file_id not in self.files:
            return _drive_error(404, "notFound", f"File not found: {file_id}.")
        if upload and method == "POST" and file_id is None:
            return await self._create(request)
        if upload and method == "PATCH" and file_id:
            if q.get("uploadType") != "media":
                return _drive_error(400, "invalid", "Invalid uploadType")
            item = self.files[file_id]
            item["content"] = await request.body()
            item["modifiedTime"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            return JSONResponse(self._resource(item))
        if method == "GET" and file_id is None:
            return self._list(q.get("q", ""), q.get("pageSize"), q.get("pageToken"))
        if method == "GET" and file_id:
            item = self.files[file_id]
            if q.get("alt") == "media":
                return Response(item["content"], media_type=item["mimeType"])
            return JSONResponse(self._resource(item))
        if method == "DELETE" and file_id:
            del self.files[file_id]
            return Response(status_code=204)
        return _drive_error(405, "methodNotAllowed", "Method not allowed")

    def _list(self, query: str, page_size: str | None, page_token: str | None) -> Response:
        try:
            items = [i for i in self.files.values() if self._matches(i, query)]
        except ValueError as exc:
            return _drive_error(400, "invalid", f"Invalid Value: {exc}")
        items.sort(key=lambda i: i["id"])
        size = min(int(page_size or 100), self.page_size_cap)
        start = int(page_token or 0)
        body: dict[str, Any] = {
            "kind": "drive#fileList",
            "incompleteSearch": False,
            "files": [self._resource(i) for i in items[start : start + size]],
        }
        if start + size < len(items):
            body["nextPageToken"] = str(start + size)
        return JSONResponse(body)

    async def _create(self, request: Request) -> Response:
        if request.query_params.get("uploadType") != "multipart":
            return _drive_error(400, "invalid", "Invalid uploadType")
        ctype = request.headers.get("content-type", "")
        found = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.startswith("multipart/related") or found is None:
            return _drive_error(400, "badContent", "multipart/related with a boundary expected")
        parts = _multipart_parts(await request.body(), found.group(1).encode())
        if len(parts) != 2:
            return _drive_error(400, "badContent", "expected metadata and media parts")
        metadata = json.loads(parts[0][1])
        parent = (metadata.get("parents") or ["root"])[0]
        mime = metadata.get("mimeType") or "application/octet-stream"
        file_id = "f-" + secrets.token_hex(8)
        self.files[file_id] = self._file(file_id, metadata["name"], mime, parent, parts[1][1])
        return JSONResponse(self._resource(self.files[file_id]))

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PATCH", "DELETE"]
        return Starlette(
            routes=[
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/api/me", self.me),
                Route("/drive/v3/files", self.drive, methods=methods),
                Route("/drive/v3/files/{file_id}", self.drive, methods=methods),
                Route("/upload/drive/v3/files", self.drive, methods=methods),
                Route("/upload/drive/v3/files/{file_id}", self.drive, methods=methods),
            ]
        )


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<op>!=|=)|(?P<word>[A-Za-z]+))")


def _parse_query(query: str) -> list[tuple[str, str, str]]:
    """Clauses of a Drive ``q`` joined by ``and``: ``'x' in parents``, ``field = 'v'``,
    ``field != 'v'``, ``trashed = false``."""
    tokens: list[str] = []
    pos = 0
    while pos < len(query.rstrip()):
        m = _TOKEN.match(query, pos)
        if m is None:
            raise ValueError(f"cannot parse query at {query[pos:]!r}")
        value = m.group("str")
        if value is not None:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
            tokens.append("S:" + value)
        else:
            tokens.append(m.group("op") or m.group("word"))
        pos = m.end()
    clauses: list[tuple[str, str, str]] = []
    for chunk in _split(tokens, "and"):
        if len(chunk) == 3 and chunk[1] == "in" and chunk[2] == "parents":
            clauses.append((chunk[0][2:], "in", "parents"))
        elif len(chunk) == 3 and chunk[1] in ("=", "!="):
            value = chunk[2][2:] if chunk[2].startswith("S:") else chunk[2]
            clauses.append((chunk[0], chunk[1], value))
        else:
            raise ValueError(f"unsupported clause {chunk}")
    return clauses


def _split(tokens: list[str], word: str) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for token in tokens:
        if token == word:
            out.append([])
        else:
            out[-1].append(token)
    return out


def _multipart_parts(body: bytes, boundary: bytes) -> list[tuple[bytes, bytes]]:
    parts = []
    for segment in body.split(b"--" + boundary)[1:]:
        if segment.startswith(b"--"):
            break
        head, _, content = segment.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        parts.append((head, content.removesuffix(b"\r\n")))
    return parts
