"""Serve an ASGI app on loopback for a test: Jackfield itself, or a small app that
follows a vendor's documented API (an OAuth server, a Drive-like API) so a provider is
tested against real HTTP instead of mocks."""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import uvicorn


class LiveServer:
    """``with LiveServer(app) as server: httpx2.get(server.url + "/...")``.

    uvicorn runs in a background thread on 127.0.0.1; ``port=0`` (the default) lets the
    kernel pick a free port, read back once the server listens.
    """

    def __init__(
        self, app: Any, port: int = 0, *, lifespan: Literal["auto", "on", "off"] = "on"
    ) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = port
        self.url = ""

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
