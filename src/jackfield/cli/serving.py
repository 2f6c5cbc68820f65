"""How ``jackfield serve`` listens and stops.

The socket is bound before anything else starts, so a port in use or a host that does
not exist is a one-line user error, and the runtime never starts for a server that
cannot listen. On SIGTERM the server first ends the live event streams: they never end
by themselves, and uvicorn waits for open responses before it shuts the app (and the
runtime) down -- an open browser tab would otherwise hold the shutdown for the whole
grace period and then be cancelled with an error in the log.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from ..api import begin_shutdown
from .output import fail

GRACE_SECONDS = 5
"""How long requests still running at shutdown may take to finish."""


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (port 0: any free port), or a user error."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart right away
        sock.bind((host, port))
        sock.listen()
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        fail(f"cannot listen on {host}:{port}: {reason}", "choose another --host or --port")
    return sock


class Server(uvicorn.Server):
    """uvicorn's server for one app, which ends the app's event streams as it starts
    to shut down."""

    def __init__(self, app: Any) -> None:
        super().__init__(
            uvicorn.Config(app, log_config=None, timeout_graceful_shutdown=GRACE_SECONDS)
        )
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await begin_shutdown(self._app)
        await super().shutdown(sockets)
