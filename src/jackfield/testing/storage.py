"""The storage conformance suite: what every storage provider must do the same way.

A provider passes by subclassing ``StorageConformance`` in its own tests and supplying a
``provider`` fixture that yields an opened, *empty* store (fresh for each test)::

    class TestLocalFs(StorageConformance):
        @pytest.fixture
        def provider(self, tmp_path):
            return LocalFsProvider.from_config({"root": str(tmp_path)})

The tests are coroutines run by pytest-asyncio (``pip install 'jackfield[testing]'``); the
suite marks its coroutines ``asyncio`` itself (not the plain tests a subclass adds), so they
run in its default strict mode as well as in ``asyncio_mode = "auto"``, with no setting in
the provider's own project.

Everything goes through ``call_async``, so sync and async providers pass the same tests,
and through the public interface only (``put/get/delete/list/stat``, ``test_connection``
and ``deliver``), so built-in and standalone (gRPC) providers are held to one standard.
"""

from __future__ import annotations

import base64
import inspect
from typing import Any

import pytest
from ulid import ULID

try:
    import pytest_asyncio  # noqa: F401 - runs the suite's coroutines; imported to say so early
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "the jackfield conformance suites need pytest-asyncio: "
        "pip install 'jackfield[testing]' (or pytest-asyncio)"
    ) from exc

from jackfield.kernel import (
    ConnectionTestResult,
    ConnectorConfigError,
    ConnectorNotFoundError,
    Delivered,
    Envelope,
    ObjectInfo,
    Permanent,
    call_async,
)

BINARY = bytes(range(256)) * 4
ESCAPES = ("../outside.txt", "a/../../outside.txt", "/etc/passwd")


def _envelope(operation: str, payload: dict[str, Any]) -> Envelope:
    return Envelope(str(ULID()), "conformance", operation, payload)


def _mark_coroutines(cls: type) -> None:
    """Mark each coroutine test of ``cls`` for pytest-asyncio (unmarked, its default
    strict mode leaves them unrun: "async def functions are not natively supported").
    Not the whole class (``pytestmark``): a plain test a subclass adds would be warned
    about a mark it never asked for."""
    for name, test in list(vars(cls).items()):
        if name.startswith("test_") and inspect.iscoroutinefunction(test):
            setattr(cls, name, pytest.mark.asyncio(test))


class StorageConformance:
    """Subclass and provide a ``provider`` fixture; every test here then runs against it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _mark_coroutines(cls)  # a coroutine test the subclass overrides or adds, too

    @pytest.fixture
    def provider(self) -> Any:
        raise NotImplementedError(
            "subclasses of StorageConformance must define a 'provider' fixture"
        )

    # -- round trips --------------------------------------------------------------
    @pytest.mark.parametrize(
        "data", [b"hello, world", BINARY, b""], ids=["text", "binary", "empty"]
    )
    async def test_put_then_get_returns_the_same_bytes(self, provider: Any, data: bytes) -> None:
        await call_async(provider.put, "folder/object.bin", data)
        assert await call_async(provider.get, "folder/object.bin") == data

    async def test_put_overwrites_an_existing_object(self, provider: Any) -> None:
        await call_async(provider.put, "note.txt", b"first version, longer")
        await call_async(provider.put, "note.txt", b"second")
        assert await call_async(provider.get, "note.txt") == b"second"
        assert [i.path for i in await call_async(provider.list)] == ["note.txt"]

    async def test_stat_reports_path_and_size(self, provider: Any) -> None:
        await call_async(provider.put, "docs/report.txt", b"12345")
        await call_async(provider.put, "docs/empty.txt", b"")
        info = await call_async(provider.stat, "docs/report.txt")
        assert isinstance(info, ObjectInfo)
        assert (info.path, info.size) == ("docs/report.txt", 5)
        assert (await call_async(provider.stat, "docs/empty.txt")).size == 0

    # -- listing ------------------------------------------------------------------
    async def _put_tree(self, provider: Any) -> None:
        for path in ("b.txt", "docs/z.txt", "docs/a.txt", "docs/sub/deep.txt", "docsx.txt"):
            await call_async(provider.put, path, path.encode())

    async def test_list_without_prefix_returns_every_object_sorted(self, provider: Any) -> None:
        await self._put_tree(provider)
        items = await call_async(provider.list)
        assert [i.path for i in items] == [
            "b.txt",
            "docs/a.txt",
            "docs/sub/deep.txt",
            "docs/z.txt",
            "docsx.txt",
        ]
        assert all(isinstance(i, ObjectInfo) for i in items)
        assert {i.path: i.size for i in items}["docs/sub/deep.txt"] == len(b"docs/sub/deep.txt")

    async def test_list_with_prefix_returns_matching_objects_sorted(self, provider: Any) -> None:
        await self._put_tree(provider)
        listed = [i.path for i in await call_async(provider.list, "docs/")]
        assert listed == ["docs/a.txt", "docs/sub/deep.txt", "docs/z.txt"]
        assert [i.path for i in await call_async(provider.list, "docs/sub/")] == [
            "docs/sub/deep.txt"
        ]
        assert await call_async(provider.list, "nothing-here/") == []

    async def test_list_of_an_empty_store_is_empty(self, provider: Any) -> None:
        assert await call_async(provider.list) == []

    # -- deletion and missing objects -----------------------------------------------
    async def test_deleted_object_is_gone(self, provider: Any) -> None:
        await call_async(provider.put, "gone.txt", b"x")
        await call_async(provider.delete, "gone.txt")
        with pytest.raises(ConnectorNotFoundError):
            await call_async(provider.get, "gone.txt")
        assert await call_async(provider.list) == []

    @pytest.mark.parametrize("method", ["get", "stat", "delete"])
    async def test_missing_object_raises_not_found(self, provider: Any, method: str) -> None:
        with pytest.raises(ConnectorNotFoundError):
            await call_async(getattr(provider, method), "no/such/object.txt")

    # -- safety -------------------------------------------------------------------
    @pytest.mark.parametrize("path", ESCAPES)
    async def test_paths_escaping_the_store_are_refused(self, provider: Any, path: str) -> None:
        with pytest.raises(ConnectorConfigError):
            await call_async(provider.put, path, b"x")
        with pytest.raises(ConnectorConfigError):
            await call_async(provider.get, path)

    @pytest.mark.parametrize("path", ["dir1/", "a/b/", "dir1/."])
    async def test_a_path_naming_a_folder_is_not_an_object(self, provider: Any, path: str) -> None:
        """A trailing '/' names a folder (a ``list`` prefix). Storing "dir1/" as "dir1",
        or reading "dir1" back as "dir1/", would let two names mean one object."""
        with pytest.raises(ConnectorConfigError):
            await call_async(provider.put, path, b"x")
        assert await call_async(provider.list) == []
        await call_async(provider.put, path.rstrip("/."), b"file")
        for method in ("get", "stat", "delete"):
            with pytest.raises(ConnectorConfigError):
                await call_async(getattr(provider, method), path)
        assert await call_async(provider.get, path.rstrip("/.")) == b"file"

    # -- framework integration ----------------------------------------------------
    async def test_test_connection_succeeds(self, provider: Any) -> None:
        result = await call_async(provider.test_connection)
        assert isinstance(result, ConnectionTestResult)
        assert result.success, result.message

    async def test_deliver_put_object_stores_the_content(self, provider: Any) -> None:
        payload = {"path": "out/hello.txt", "content": "hello"}
        outcome = await provider.deliver(_envelope("put_object", payload))
        assert isinstance(outcome, Delivered), outcome
        assert await call_async(provider.get, "out/hello.txt") == b"hello"

    async def test_deliver_put_object_accepts_base64_content(self, provider: Any) -> None:
        encoded = base64.b64encode(BINARY).decode()
        payload = {"path": "out/blob.bin", "content_base64": encoded}
        outcome = await provider.deliver(_envelope("put_object", payload))
        assert isinstance(outcome, Delivered), outcome
        assert await call_async(provider.get, "out/blob.bin") == BINARY

    @pytest.mark.parametrize("bad", ["@@@", "abc", "é", 42])
    async def test_deliver_put_object_with_invalid_base64_is_permanent(
        self, provider: Any, bad: Any
    ) -> None:
        payload = {"path": "out/bad.bin", "content_base64": bad}
        outcome = await provider.deliver(_envelope("put_object", payload))
        assert isinstance(outcome, Permanent), outcome
        assert "content_base64" in outcome.message
        with pytest.raises(ConnectorNotFoundError):
            await call_async(provider.stat, "out/bad.bin")

    async def test_deliver_delete_object_removes_it(self, provider: Any) -> None:
        await call_async(provider.put, "out/old.txt", b"old")
        outcome = await provider.deliver(_envelope("delete_object", {"path": "out/old.txt"}))
        assert isinstance(outcome, Delivered), outcome
        with pytest.raises(ConnectorNotFoundError):
            await call_async(provider.stat, "out/old.txt")

    async def test_deliver_delete_object_again_is_delivered_not_dead(self, provider: Any) -> None:
        """Delivery is at-least-once: a retry of a delete whose first attempt removed
        the object (but never reported back) must not end in a dead letter."""
        await call_async(provider.put, "out/once.txt", b"once")
        retried = _envelope("delete_object", {"path": "out/once.txt"})
        first = await provider.deliver(retried)
        again = await provider.deliver(retried)
        assert isinstance(first, Delivered), first
        assert isinstance(again, Delivered), again
        assert (first.result, again.result) == (
            {"path": "out/once.txt", "existed": True},
            {"path": "out/once.txt", "existed": False},
        )

    async def test_deliver_with_an_escaping_path_is_permanent(self, provider: Any) -> None:
        payload = {"path": "../escape.txt", "content": "x"}
        outcome = await provider.deliver(_envelope("put_object", payload))
        assert isinstance(outcome, Permanent), outcome



_mark_coroutines(StorageConformance)
