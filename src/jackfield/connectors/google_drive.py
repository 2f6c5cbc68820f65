"""Google Drive as storage (``google_drive``), over the Drive REST API v3.

Objects live as files directly inside one folder (``folder_id``, default ``root``); the
object path (``docs/report.txt``) is the file's name, so paths map one-to-one onto files
without creating folder trees. Calls used (Drive v3 reference):

* ``files.list`` with ``q`` (``'<folder>' in parents and trashed = false ...``) and
  ``pageToken`` pagination, to find a name and to list;
* ``files.create`` with ``uploadType=multipart`` (metadata + media in one request), and
  ``files.update`` with ``uploadType=media`` to overwrite an existing object;
* ``files.get`` with ``alt=media`` to download, ``files.delete`` to delete.

Access uses the OAuth2 authorization code flow (``OAuth2CodeFlow``); the authorization
URL, token URL and API bases are overridable so tests (and Drive-compatible services)
can point them elsewhere. HTTP libraries are imported inside methods.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from jackfield.kernel.categories.storage import ObjectInfo, StorageProvider
from jackfield.kernel.config import ConfigField, FieldType
from jackfield.kernel.errors import ConnectorConfigError, ConnectorError, ConnectorNotFoundError
from jackfield.kernel.provider import Capability, ConnectionTestResult, Tier

from .oauth2_http import TOKEN_FIELDS, OAuth2CodeFlow, url_problem

if TYPE_CHECKING:
    import httpx2

FOLDER_MIME = "application/vnd.google-apps.folder"
FILE_FIELDS = "id, name, size, modifiedTime, mimeType"
MAX_PAGES = 10_000

_SCHEMA = [
    ConfigField("client_id", "OAuth client ID", required=True),
    ConfigField("client_secret", "OAuth client secret", required=True, secret=True),
    ConfigField("folder_id", "Folder ID", default="root", help="the folder that holds objects"),
    ConfigField("scopes", "Scopes", default="https://www.googleapis.com/auth/drive.file"),
    ConfigField(
        "authorize_url", "Authorization URL", default="https://accounts.google.com/o/oauth2/v2/auth"
    ),
    ConfigField(
        "token_url", "Token URL", default="https://oauth2.googleapis.com/token", origin=True
    ),
    # the access token goes to both: a move of either must not take it along
    ConfigField(
        "api_base", "API base URL", default="https://www.googleapis.com/drive/v3", origin=True
    ),
    ConfigField(
        "upload_base",
        "Upload base URL",
        default="https://www.googleapis.com/upload/drive/v3",
        origin=True,
    ),
    ConfigField("timeout_seconds", "Timeout (seconds)", type=FieldType.INTEGER, default=60),
    *TOKEN_FIELDS,
]


def check_path(path: str) -> str:
    """A relative object path without ``.``/``..`` segments (those would escape)."""
    if not isinstance(path, str) or not path or len(path) > 1000:
        raise ConnectorConfigError("an object path must be 1 to 1000 characters")
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise ConnectorConfigError(
            f"invalid object path {path!r}: use a relative path without '.' or '..' parts"
        )
    return path


def _quote(value: str) -> str:
    """A string literal for a Drive query (``\\`` and ``'`` escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _info(item: Mapping[str, Any]) -> ObjectInfo:
    """An object's info from Drive's file resource. A field it cannot read counts as
    unknown (size 0, no time), as when Drive leaves it out: one odd value must not make
    the whole call fail (a ``ValueError`` out of a provider is a crash of its unit)."""
    modified = item.get("modifiedTime")
    when = None
    if isinstance(modified, str):
        try:
            when = datetime.fromisoformat(modified.replace("Z", "+00:00"))
        except ValueError:
            when = None
    try:
        size = int(item.get("size") or 0)  # Drive sends int64 values as strings
    except (TypeError, ValueError):
        size = 0
    return ObjectInfo(
        path=str(item.get("name", "")),
        size=size,
        modified_at=when,
        content_type=item.get("mimeType"),
    )


class GoogleDriveProvider(OAuth2CodeFlow, StorageProvider):
    provider_type: ClassVar[str] = "google_drive"
    display_name: ClassVar[str] = "Google Drive"
    tier: ClassVar[Tier] = Tier.SUPPORTED
    capabilities: ClassVar[frozenset[str]] = frozenset({Capability.OAUTH2})
    default_authorize_url: ClassVar[str] = "https://accounts.google.com/o/oauth2/v2/auth"
    default_token_url: ClassVar[str] = "https://oauth2.googleapis.com/token"
    default_token_auth_method: ClassVar[str] = "client_secret_post"
    # a refresh token is only issued with offline access; consent makes Google send it again
    oauth_extra_params: ClassVar[dict[str, str]] = {"access_type": "offline", "prompt": "consent"}

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self._client: httpx2.AsyncClient | None = None
        self._writers: dict[tuple[int, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def _one_writer(self, path: str) -> AsyncIterator[None]:
        """Run puts and deletes of one path one at a time.

        Drive allows many files with one name and has no conditional create, so a put is
        find-then-create: five concurrent puts of a new path all found nothing and made
        five files of that name. Holding a per-path lock across find and write makes the
        deliveries of this provider instance (the runtime keeps one per connector and
        node) take turns: the first creates, the rest overwrite it.

        What remains possible: two nodes, two instances (e.g. across a connector
        restart) or another Drive client writing the same name at the same moment can
        still create a second file; reads then use the first one found. Locks are per
        event loop (an ``asyncio.Lock`` belongs to one) and dropped when unused.
        """
        key = (id(asyncio.get_running_loop()), path)
        lock, users = self._writers.get(key) or (asyncio.Lock(), 0)
        self._writers[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._writers[key]
            if users > 1:
                self._writers[key] = (lock, users - 1)
            else:
                del self._writers[key]

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return list(_SCHEMA)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        result = super().validate_config(config)
        errors = {
            key: problem
            for key in ("authorize_url", "token_url", "api_base", "upload_base")
            if (problem := url_problem(str(result[key])))
        }
        if errors:
            raise ConnectorConfigError.for_fields(errors)
        return result

    # -- client ----------------------------------------------------------------------
    @property
    def _api(self) -> str:
        return str(self.config["api_base"]).rstrip("/")

    @property
    def _folder(self) -> str:
        return str(self.config.get("folder_id") or "root")

    def _new_client(self) -> httpx2.AsyncClient:
        from jackfield.integration import create_client

        timeout = float(self.config.get("timeout_seconds") or 60)
        return create_client(auth=self.oauth_auth(), timeout=timeout)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[httpx2.AsyncClient]:
        if self._client is not None:
            yield self._client
            return
        async with self._new_client() as client:
            yield client

    async def open(self) -> None:
        if self._client is None:
            self._client = self._new_client()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _call(
        self,
        client: httpx2.AsyncClient,
        method: str,
        url: str,
        operation: str,
        *,
        transfer: bool = False,
        **kwargs: Any,
    ) -> httpx2.Response:
        """One API call; 404 becomes ``ConnectorNotFoundError``, other errors the kernel's.

        ``timeout_seconds`` bounds a metadata call as a whole, but only each read and
        write of a ``transfer`` (a file's content): a file larger than the link carries
        in that time must still arrive.

        Every call allows shared drives, so ``folder_id`` may be a shared drive's folder.
        """
        from jackfield.integration import exchange, raise_for_response

        params = {**kwargs.pop("params", {}), "supportsAllDrives": "true"}
        if "q" in params:
            params["includeItemsFromAllDrives"] = "true"
        kwargs["params"] = params
        response = await exchange(
            client, method, url, operation=operation, bounded=not transfer, **kwargs
        )
        if response.status_code == 404:
            raise ConnectorNotFoundError(f"{operation}: no such object", operation=operation)
        raise_for_response(response, operation)
        return response

    async def _call_json(
        self, client: httpx2.AsyncClient, method: str, url: str, operation: str, **kwargs: Any
    ) -> dict[str, Any]:
        """``_call`` for an answer that must be a JSON object (file metadata, a listing):
        anything else -- a proxy's login page, a cut body -- is a ``TransientError``."""
        from jackfield.integration import json_object

        return json_object(await self._call(client, method, url, operation, **kwargs), operation)

    async def _find(self, client: httpx2.AsyncClient, path: str) -> dict[str, Any] | None:
        query = f"name = {_quote(path)} and {_quote(self._folder)} in parents and trashed = false"
        params = {"q": query, "fields": f"files({FILE_FIELDS})", "pageSize": "10"}
        found = await self._call_json(client, "GET", f"{self._api}/files", "find", params=params)
        files = [f for f in found.get("files") or [] if f.get("mimeType") != FOLDER_MIME]
        return files[0] if files else None

    async def _require(self, client: httpx2.AsyncClient, path: str) -> dict[str, Any]:
        found = await self._find(client, check_path(path))
        if found is None:
            raise ConnectorNotFoundError(f"no object {path!r}")
        return found

    # -- storage -----------------------------------------------------------------------
    async def put(self, path: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        check_path(path)
        mime = content_type or "application/octet-stream"
        upload = str(self.config["upload_base"]).rstrip("/")
        async with self._one_writer(path), self._session() as client:
            existing = await self._find(client, path)
            if existing is not None:
                answer = await self._call_json(
                    client,
                    "PATCH",
                    f"{upload}/files/{existing['id']}",
                    "put",
                    params={"uploadType": "media", "fields": FILE_FIELDS},
                    content=data,
                    headers={"Content-Type": mime},
                    transfer=True,
                )
            else:
                metadata = {"name": path, "parents": [self._folder], "mimeType": mime}
                body, boundary = _multipart(metadata, data, mime)
                answer = await self._call_json(
                    client,
                    "POST",
                    f"{upload}/files",
                    "put",
                    params={"uploadType": "multipart", "fields": FILE_FIELDS},
                    content=body,
                    headers={"Content-Type": f"multipart/related; boundary={boundary}"},
                    transfer=True,
                )
        info = _info(answer)
        return ObjectInfo(path, len(data), info.modified_at, mime)

    async def get(self, path: str) -> bytes:
        async with self._session() as client:
            found = await self._require(client, path)
            response = await self._call(
                client,
                "GET",
                f"{self._api}/files/{found['id']}",
                "get",
                params={"alt": "media"},
                transfer=True,
            )
        return response.content

    async def delete(self, path: str) -> None:
        async with self._one_writer(check_path(path)), self._session() as client:
            found = await self._require(client, path)
            await self._call(client, "DELETE", f"{self._api}/files/{found['id']}", "delete")

    async def stat(self, path: str) -> ObjectInfo:
        async with self._session() as client:
            return _info(await self._require(client, path))

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        query = (
            f"{_quote(self._folder)} in parents and trashed = false "
            f"and mimeType != {_quote(FOLDER_MIME)}"
        )
        params = {"q": query, "fields": f"nextPageToken, files({FILE_FIELDS})", "pageSize": "1000"}
        items: list[ObjectInfo] = []
        seen_tokens: set[str] = set()
        async with self._session() as client:
            for _ in range(MAX_PAGES):
                body = await self._call_json(
                    client, "GET", f"{self._api}/files", "list", params=params
                )
                items += [
                    _info(f)
                    for f in body.get("files") or []
                    if f.get("name", "").startswith(prefix)
                ]
                token = body.get("nextPageToken")
                if not token or token in seen_tokens:
                    break
                seen_tokens.add(token)
                params["pageToken"] = token
        return sorted(items, key=lambda i: i.path)

    async def test_connection(self) -> ConnectionTestResult:
        try:
            async with self._session() as client:
                folder = await self._call_json(
                    client,
                    "GET",
                    f"{self._api}/files/{self._folder}",
                    "test_connection",
                    params={"fields": "id, name, mimeType"},
                )
        except ConnectorError as exc:
            details = {"code": exc.code, "remediation": exc.remediation}
            return ConnectionTestResult(False, exc.message, details)
        if folder.get("mimeType") != FOLDER_MIME:
            return ConnectionTestResult(False, f"{self._folder} is not a folder")
        return ConnectionTestResult(True, f"Drive folder {folder.get('name')!r} is reachable")


def _multipart(metadata: Mapping[str, Any], data: bytes, mime: str) -> tuple[bytes, str]:
    """A ``multipart/related`` body: JSON metadata, then the media (Drive's multipart upload)."""
    boundary = "jackfield-" + secrets.token_hex(16)
    head = (
        f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
        f"{json.dumps(metadata)}\r\n--{boundary}\r\nContent-Type: {mime}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary
